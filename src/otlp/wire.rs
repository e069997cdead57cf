//! OTLP spans written straight to protobuf: [`WireSpan`] is the span the assembler builds and the
//! exporter sends. Its identities, name, kind and times are plain fields; its attributes, events
//! and links are encoded as they are added ([`Attrs`], [`WireSpan::event`], [`WireSpan::link`]),
//! so a span costs a few buffers instead of two `String`s per attribute, and encoding a request
//! copies bytes instead of walking message structs.
//!
//! Contract: [`WireSpan::encode_raw`] writes exactly what `prost` writes for the equivalent
//! `opentelemetry.proto.trace.v1.Span` (`Message::encode_raw`): fields in field-number order
//! (as `prost` writes them), proto3 defaults (0, empty) omitted, a `oneof` value always written. The tests
//! compare the two byte for byte, and [`WireSpan::to_proto`] decodes a span back (for tests and
//! the terminal view).

use super::{span, Span};
use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;

/// Protobuf wire types.
const VARINT: u32 = 0;
const I64: u32 = 1;
const LEN: u32 = 2;
const I32: u32 = 5;

/// A field's key (tag number and wire type).
fn key(tag: u32, wire: u32, out: &mut Vec<u8>) {
    encode_varint(u64::from(tag << 3 | wire), out);
}

/// The bytes of a field's key (the wire type never changes its length).
fn key_len(tag: u32) -> usize {
    encoded_len_varint(u64::from(tag << 3))
}

/// The bytes of a length-delimited field with `len` bytes of content.
pub fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// The key and length of a length-delimited field.
pub fn header(tag: u32, len: usize, out: &mut Vec<u8>) {
    key(tag, LEN, out);
    encode_varint(len as u64, out);
}

/// A length-delimited field (written even when empty: a message, a `oneof` value).
pub fn bytes(tag: u32, b: &[u8], out: &mut Vec<u8>) {
    header(tag, b.len(), out);
    out.extend_from_slice(b);
}

/// The bytes of a proto3 string or bytes field: none when empty.
pub fn opt_len(tag: u32, len: usize) -> usize {
    if len == 0 { 0 } else { field_len(tag, len) }
}

/// A proto3 string or bytes field: omitted when empty.
pub fn opt_bytes(tag: u32, b: &[u8], out: &mut Vec<u8>) {
    if !b.is_empty() {
        bytes(tag, b, out);
    }
}

fn opt_varint_len(tag: u32, v: u64) -> usize {
    if v == 0 { 0 } else { key_len(tag) + encoded_len_varint(v) }
}

fn opt_varint(tag: u32, v: u64, out: &mut Vec<u8>) {
    if v != 0 {
        key(tag, VARINT, out);
        encode_varint(v, out);
    }
}

/// The bytes of a proto3 `fixed32` (`N` = 4) or `fixed64` (`N` = 8) field, given its value's
/// little-endian bytes: none when 0.
fn opt_fixed_len<const N: usize>(tag: u32, le: [u8; N]) -> usize {
    if le == [0; N] { 0 } else { key_len(tag) + N }
}

/// A proto3 `fixed32` or `fixed64` field from its value's little-endian bytes: omitted when 0.
fn opt_fixed<const N: usize>(tag: u32, le: [u8; N], out: &mut Vec<u8>) {
    if le != [0; N] {
        key(tag, if N == 8 { I64 } else { I32 }, out);
        out.extend_from_slice(&le);
    }
}

/// Encoded `KeyValue` attributes, each written as field `TAG` of the message that holds them
/// (a span's 9, an event's 3, a link's 4, a resource's 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attrs<const TAG: u32>(Vec<u8>);

/// A span's attributes.
pub type SpanAttrs = Attrs<9>;
/// A span event's attributes.
pub type EventAttrs = Attrs<3>;
/// A span link's attributes.
pub type LinkAttrs = Attrs<4>;
/// A resource's attributes.
pub type ResourceAttrs = Attrs<1>;

impl<const TAG: u32> Attrs<TAG> {
    pub fn with_capacity(bytes: usize) -> Self {
        Attrs(Vec::with_capacity(bytes))
    }

    /// The encoded attributes (each with its field key and length).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// A string attribute (`AnyValue.string_value`, field 1).
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.value(k, field_len(1, v.len()), |out| bytes(1, v.as_bytes(), out))
    }

    /// An integer attribute (`AnyValue.int_value`, field 3).
    pub fn int(&mut self, k: &str, v: i64) -> &mut Self {
        self.value(k, 1 + encoded_len_varint(v as u64), |out| {
            key(3, VARINT, out);
            encode_varint(v as u64, out);
        })
    }

    /// A boolean attribute (`AnyValue.bool_value`, field 2).
    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.value(k, 2, |out| {
            key(2, VARINT, out);
            out.push(u8::from(v));
        })
    }

    /// `KeyValue { key: k (1), value: AnyValue (2) }`, the `AnyValue` being `any_len` bytes that
    /// `any` writes.
    fn value(&mut self, k: &str, any_len: usize, any: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        let kv_len = opt_len(1, k.len()) + field_len(2, any_len);
        let out = &mut self.0;
        header(TAG, kv_len, out);
        opt_bytes(1, k.as_bytes(), out);
        header(2, any_len, out);
        any(out);
        self
    }
}

/// A span, its attributes, events and links already encoded (see the module header).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WireSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// None: a root span (`parent_span_id` empty).
    pub parent_span_id: Option<[u8; 8]>,
    pub flags: u32,
    pub name: String,
    pub kind: span::SpanKind,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: SpanAttrs,
    /// Encoded `Event`s (field 11).
    events: Vec<u8>,
    pub dropped_events_count: u32,
    /// Encoded `Link`s (field 13).
    links: Vec<u8>,
    /// `Status { code, message }`.
    pub status: Option<(super::status::StatusCode, String)>,
}

impl WireSpan {
    /// A span with no flags, times, attributes, events, links or status yet.
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], parent_span_id: Option<[u8; 8]>, name: String, kind: span::SpanKind) -> Self {
        WireSpan { trace_id, span_id, parent_span_id, name, kind, ..Default::default() }
    }

    /// Adds an event (`Span.Event`: time 1, name 2, attributes 3).
    pub fn event(&mut self, time_unix_nano: u64, name: &str, attrs: &EventAttrs) {
        let time = time_unix_nano.to_le_bytes();
        let len = opt_fixed_len(1, time) + opt_len(2, name.len()) + attrs.0.len();
        let out = &mut self.events;
        header(11, len, out);
        opt_fixed(1, time, out);
        opt_bytes(2, name.as_bytes(), out);
        out.extend_from_slice(&attrs.0);
    }

    /// Adds a link (`Span.Link`: trace ID 1, span ID 2, attributes 4, flags 6).
    pub fn link(&mut self, trace_id: &[u8; 16], span_id: &[u8; 8], flags: u32, attrs: &LinkAttrs) {
        let len = field_len(1, 16) + field_len(2, 8) + attrs.0.len() + opt_fixed_len(6, flags.to_le_bytes());
        let out = &mut self.links;
        header(13, len, out);
        bytes(1, trace_id, out);
        bytes(2, span_id, out);
        out.extend_from_slice(&attrs.0);
        opt_fixed(6, flags.to_le_bytes(), out);
    }

    pub fn has_links(&self) -> bool {
        !self.links.is_empty()
    }

    fn status_len(&self) -> Option<usize> {
        self.status.as_ref().map(|(code, message)| opt_len(2, message.len()) + opt_varint_len(3, *code as i32 as u64))
    }

    /// The length of the span's encoding (its fields, without its own key and length).
    pub fn encoded_len(&self) -> usize {
        field_len(1, 16)
            + field_len(2, 8)
            + self.parent_span_id.map_or(0, |_| field_len(4, 8))
            + opt_fixed_len(16, self.flags.to_le_bytes())
            + opt_len(5, self.name.len())
            + opt_varint_len(6, self.kind as i32 as u64)
            + opt_fixed_len(7, self.start_time_unix_nano.to_le_bytes())
            + opt_fixed_len(8, self.end_time_unix_nano.to_le_bytes())
            + self.attributes.0.len()
            + self.events.len()
            + opt_varint_len(12, u64::from(self.dropped_events_count))
            + self.links.len()
            + self.status_len().map_or(0, |n| field_len(15, n))
    }

    /// The span's fields, in `prost`'s order (by field number; trace_state, dropped attribute and
    /// link counts are never set here).
    pub fn encode_raw(&self, out: &mut Vec<u8>) {
        bytes(1, &self.trace_id, out);
        bytes(2, &self.span_id, out);
        if let Some(p) = &self.parent_span_id {
            bytes(4, p, out);
        }
        opt_bytes(5, self.name.as_bytes(), out);
        opt_varint(6, self.kind as i32 as u64, out);
        opt_fixed(7, self.start_time_unix_nano.to_le_bytes(), out);
        opt_fixed(8, self.end_time_unix_nano.to_le_bytes(), out);
        out.extend_from_slice(&self.attributes.0);
        out.extend_from_slice(&self.events);
        opt_varint(12, u64::from(self.dropped_events_count), out);
        out.extend_from_slice(&self.links);
        if let (Some(len), Some((code, message))) = (self.status_len(), &self.status) {
            header(15, len, out);
            opt_bytes(2, message.as_bytes(), out);
            opt_varint(3, *code as i32 as u64, out);
        }
        opt_fixed(16, self.flags.to_le_bytes(), out);
    }

    /// The span as `prost`'s message, decoded from its encoding.
    pub fn to_proto(&self) -> Span {
        let mut b = Vec::with_capacity(self.encoded_len());
        self.encode_raw(&mut b);
        Span::decode(&b[..]).expect("a WireSpan encodes a valid Span")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::{kv_bool, kv_int, kv_str, status, KeyValue, Status};

    /// The same span built both ways, from one description.
    fn both(i: u64) -> (WireSpan, Span) {
        let name = "n".repeat((i * 7 % 200) as usize);
        let mut w = WireSpan {
            trace_id: [i as u8; 16],
            span_id: [(i + 1) as u8; 8],
            parent_span_id: (i % 3 != 0).then_some([9; 8]),
            flags: if i % 4 == 0 { 0 } else { 0x101 },
            name: name.clone(),
            kind: [span::SpanKind::Unspecified, span::SpanKind::Internal, span::SpanKind::Client, span::SpanKind::Consumer][(i % 4) as usize],
            start_time_unix_nano: if i % 5 == 0 { 0 } else { i << 33 },
            end_time_unix_nano: i << 34,
            dropped_events_count: (i % 6) as u32 * 300,
            ..Default::default()
        };
        let mut p = Span {
            trace_id: w.trace_id.to_vec(),
            span_id: w.span_id.to_vec(),
            parent_span_id: w.parent_span_id.map(|x| x.to_vec()).unwrap_or_default(),
            flags: w.flags,
            name,
            kind: w.kind as i32,
            start_time_unix_nano: w.start_time_unix_nano,
            end_time_unix_nano: w.end_time_unix_nano,
            dropped_events_count: w.dropped_events_count,
            ..Default::default()
        };
        for k in 0..i % 17 {
            let (key, val) = (format!("k{}", "x".repeat((k * 11) as usize)), "v".repeat((k * k * 5) as usize));
            match k % 3 {
                0 => {
                    w.attributes.str(&key, &val);
                    p.attributes.push(kv_str(&key, val));
                }
                1 => {
                    let n = (k as i64 - 8) * 1_000_000_007 * i as i64;
                    w.attributes.int(&key, n);
                    p.attributes.push(kv_int(&key, n));
                }
                _ => {
                    w.attributes.bool(&key, k % 2 == 0);
                    p.attributes.push(kv_bool(&key, k % 2 == 0));
                }
            }
        }
        w.attributes.str("", "");
        p.attributes.push(KeyValue { key: String::new(), ..kv_str("", "") });
        for e in 0..i % 5 {
            let mut a = EventAttrs::default();
            a.str("outcome", "ok").int("n", -(e as i64));
            let t = if e == 0 { 0 } else { i + e };
            w.event(t, if e == 1 { "" } else { "tracer.call" }, &a);
            let attributes = vec![kv_str("outcome", "ok"), kv_int("n", -(e as i64))];
            p.events.push(span::Event { time_unix_nano: t, name: if e == 1 { "" } else { "tracer.call" }.into(), attributes, dropped_attributes_count: 0 });
        }
        for l in 0..i % 3 {
            let mut a = LinkAttrs::default();
            a.str("vcon_otel.link.type", "previous_run");
            let flags = if l == 0 { 0 } else { 0x301 };
            w.link(&[l as u8; 16], &[3; 8], flags, &a);
            p.links.push(span::Link {
                trace_id: vec![l as u8; 16],
                span_id: vec![3; 8],
                attributes: vec![kv_str("vcon_otel.link.type", "previous_run")],
                flags,
                ..Default::default()
            });
        }
        if i % 2 == 1 {
            let message = if i % 4 == 1 { String::new() } else { "boom ".repeat(i as usize) };
            let code = if i % 8 == 3 { status::StatusCode::Unset } else { status::StatusCode::Error };
            w.status = Some((code, message.clone()));
            p.status = Some(Status { code: code as i32, message });
        }
        (w, p)
    }

    #[test]
    fn encoding_is_byte_for_byte_what_prost_writes() {
        for i in 0..400 {
            let (w, p) = both(i);
            let mut mine = Vec::new();
            w.encode_raw(&mut mine);
            let mut theirs = Vec::new();
            p.encode_raw(&mut theirs);
            assert_eq!(mine, theirs, "span {i}");
            assert_eq!(w.encoded_len(), p.encoded_len(), "span {i}");
            assert_eq!(w.to_proto(), p, "span {i}");
        }
    }
}
