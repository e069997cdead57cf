//! The terminal view: prints each finished span tree when its root span arrives.
//!
//! One block per trace: the root line (chain, duration, the vCon UUID the run began with), one line
//! per child span (link or storage, its outcome, the UUID it worked on when that differs from the
//! root's, and `vcon.hash.sha256` in short form: the first 12 hex digits of the `Vcon.hash` of the
//! vCon state after that step), then the run's outcome line: outcome, links by outcome, the hash
//! of the vCon entering and leaving the run and the run's hash chain (short form). For example:
//!
//! ```text
//! trace 0b466d3a5542c1c9261d6f1b93b55d9b
//!   chain transcription [81.2 ms] vcon.uuid=a1b962d4-280a-459e-a25a-ce8b468abc59 events=chain_start,tracer.pre_chain
//!   ├─ link transcribe [28.6 ms] ok vcon.hash.sha256=5b1f0c9a2e7d… events=tracer.call
//!   └─ link summarize [25.2 ms] ok vcon.hash.sha256=c03a77e1b2f4… events=tracer.call
//!   = complete · links 2 ok · vCon 9e41d2a0c3b7… → c03a77e1b2f4… · hash chain 7d0e5a1c9b34…
//! ```
//!
//! Child spans arrive before their root (they are exported as soon as their step ends), so they
//! wait here, keyed by trace ID, for at most `MAX_WAITING` traces; beyond that the oldest waiting
//! trace is printed without its root.

use crate::otlp::{attr_str, attr_text, status, ExportTraceServiceRequest, Span};
use std::collections::{HashMap, VecDeque};
use std::io::Write;

const MAX_WAITING: usize = 10_000;
/// Root attributes shown on the root line (the outcome and hashes go to the outcome line).
const ROOT_SHOWN: &[&str] = &["vcon.uuid", "vcon.uuid.final", "error.type"];
/// Child attributes shown after the outcome word.
const CHILD_SHOWN: &[&str] = &["vcon.uuid", "vcon.uuid.before", "vcon.uuid.after", "vcon.hash.sha256", "error.type"];
/// Hex digits of a hash shown in short form.
const SHORT_HASH: usize = 12;

/// Collects spans and prints complete trees to a writer (stdout by default).
pub struct Terminal {
    waiting: HashMap<Vec<u8>, Vec<Span>>,
    order: VecDeque<Vec<u8>>,
    out: Box<dyn Write + Send>,
}

impl Default for Terminal {
    fn default() -> Self {
        Terminal::new(Box::new(std::io::stdout()))
    }
}

impl Terminal {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Terminal { waiting: HashMap::new(), order: VecDeque::new(), out }
    }

    /// Takes the spans of one request; prints every tree whose root is now known.
    pub fn show(&mut self, req: &ExportTraceServiceRequest) {
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let is_root = s.parent_span_id.is_empty();
                    if !self.waiting.contains_key(&s.trace_id) {
                        self.order.push_back(s.trace_id.clone());
                    }
                    self.waiting.entry(s.trace_id.clone()).or_default().push(s.clone());
                    if is_root {
                        let spans = self.waiting.remove(&s.trace_id).unwrap_or_default();
                        self.print(&spans);
                    }
                }
            }
        }
        while self.waiting.len() > MAX_WAITING {
            if let Some(t) = self.order.pop_front() {
                if let Some(spans) = self.waiting.remove(&t) {
                    self.print(&spans);
                }
            }
        }
        if self.order.len() > 2 * MAX_WAITING {
            let waiting = &self.waiting;
            self.order.retain(|t| waiting.contains_key(t));
        }
    }

    fn print(&mut self, spans: &[Span]) {
        let mut text = format!("trace {}\n", hex::encode(&spans[0].trace_id));
        let root = spans.iter().find(|s| s.parent_span_id.is_empty());
        let mut children: Vec<&Span> = spans.iter().filter(|s| !s.parent_span_id.is_empty()).collect();
        children.sort_by_key(|s| (s.start_time_unix_nano, s.end_time_unix_nano));
        let root_uuid = root.and_then(|r| attr_str(&r.attributes, "vcon.uuid"));
        match root {
            Some(r) => text.push_str(&line(r, "", None, root_uuid)),
            None => text.push_str("  (root span not seen)\n"),
        }
        for (i, c) in children.iter().enumerate() {
            let branch = if i + 1 == children.len() { "└─ " } else { "├─ " };
            text.push_str(&line(c, branch, attr_str(&c.attributes, "vcon.link.outcome"), root_uuid));
        }
        if let Some(r) = root {
            text.push_str(&outcome_line(r, &children));
        }
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

/// A hash in short form: its first `SHORT_HASH` hex digits and an ellipsis.
fn short(hash: &str) -> String {
    format!("{}…", &hash[..hash.len().min(SHORT_HASH)])
}

fn line(s: &Span, branch: &str, outcome: Option<&str>, root_uuid: Option<&str>) -> String {
    let ms = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6;
    let err = s.status.as_ref().is_some_and(|st| st.code == status::StatusCode::Error as i32);
    let is_root = branch.is_empty();
    let shown = if is_root { ROOT_SHOWN } else { CHILD_SHOWN };
    // The outcome word, unless it only repeats the ERROR status.
    let mut parts: Vec<String> = outcome.filter(|o| !(err && *o == "error")).map(|o| vec![o.to_string()]).unwrap_or_default();
    for kv in shown.iter().filter_map(|k| s.attributes.iter().find(|kv| kv.key == *k)) {
        let v = attr_text(kv);
        if !is_root && kv.key == "vcon.uuid" && Some(v.as_str()) == root_uuid {
            continue; // the child works on the vCon the run began with: said once, on the root
        }
        let v = if kv.key.starts_with("vcon.hash") { short(&v) } else { v };
        parts.push(format!("{}={}", kv.key, v));
    }
    let events: Vec<&str> = s.events.iter().map(|e| e.name.as_str()).collect();
    format!(
        "  {branch}{} [{ms:.1} ms]{} {}{}\n",
        s.name,
        if err { " ERROR" } else { "" },
        parts.join(" "),
        if events.is_empty() { String::new() } else { format!(" events={}", events.join(",")) }
    )
}

/// `  = OUTCOME · links N ok[, N halted][, N error] · vCon ENTERING → FINAL · hash chain CHAIN`.
fn outcome_line(root: &Span, children: &[&Span]) -> String {
    let outcome = attr_str(&root.attributes, "vcon.run.outcome").unwrap_or("unknown");
    let mut parts = vec![outcome.to_string()];
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for c in children {
        if let Some(o) = attr_str(&c.attributes, "vcon.link.outcome") {
            match counts.iter_mut().find(|(k, _)| *k == o) {
                Some((_, n)) => *n += 1,
                None => counts.push((o, 1)),
            }
        }
    }
    if !counts.is_empty() {
        parts.push(format!("links {}", counts.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")));
    }
    let entering = attr_str(&root.attributes, "vcon.hash.entering");
    let last = attr_str(&root.attributes, "vcon.hash.final");
    match (entering, last) {
        (Some(e), Some(f)) => parts.push(format!("vCon {} → {}", short(e), short(f))),
        (None, Some(f)) => parts.push(format!("vCon → {}", short(f))),
        _ => parts.push("no compliance hash (the producer sent no snapshot)".into()),
    }
    if let Some(c) = attr_str(&root.attributes, "vcon.hash.chain") {
        parts.push(format!("hash chain {}", short(c)));
    }
    format!("  = {}\n", parts.join(" · "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::{kv_int, kv_str, KeyValue, ResourceSpans, ScopeSpans};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn span(name: &str, parent: &[u8], start: u64, attrs: Vec<KeyValue>) -> Span {
        Span { trace_id: vec![7; 16], span_id: vec![start as u8; 8], parent_span_id: parent.to_vec(), name: name.into(), start_time_unix_nano: start, end_time_unix_nano: start + 2_000_000, attributes: attrs, ..Default::default() }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest { resource_spans: vec![ResourceSpans { scope_spans: vec![ScopeSpans { spans, ..Default::default() }], ..Default::default() }] }
    }

    #[test]
    fn prints_short_hashes_per_span_and_the_runs_outcome_after_the_root_arrives() {
        let (h1, h2, h0, hc) = ("a".repeat(64), "b".repeat(64), "c".repeat(64), "d".repeat(64));
        let buf = Buf::default();
        let mut t = Terminal::new(Box::new(buf.clone()));
        let link = |name: &str, start: u64, uuid: &str, outcome: &str, hash: &str| {
            span(name, &[1; 8], start, vec![kv_str("vcon.uuid", uuid), kv_int("vcon.link.index", 0), kv_str("vcon.link.outcome", outcome), kv_str("vcon.hash.sha256", hash)])
        };
        t.show(&request(vec![link("link b", 20, "u-2", "halted", &h2), link("link a", 10, "u-1", "ok", &h1)]));
        assert!(buf.0.lock().unwrap().is_empty(), "children wait for their root");
        let root = span("chain c", &[], 1, vec![kv_str("vcon.uuid", "u-1"), kv_str("vcon.run.outcome", "halted"), kv_str("vcon.hash.entering", &h0), kv_str("vcon.hash.final", &h2), kv_str("vcon.hash.chain", &hc)]);
        t.show(&request(vec![root]));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("trace {}", "07".repeat(16)));
        assert_eq!(lines[1], "  chain c [2.0 ms] vcon.uuid=u-1");
        assert_eq!(lines[2], "  ├─ link a [2.0 ms] ok vcon.hash.sha256=aaaaaaaaaaaa…", "same vCon as the root: no UUID");
        assert_eq!(lines[3], "  └─ link b [2.0 ms] halted vcon.uuid=u-2 vcon.hash.sha256=bbbbbbbbbbbb…");
        assert_eq!(lines[4], "  = halted · links 1 ok, 1 halted · vCon cccccccccccc… → bbbbbbbbbbbb… · hash chain dddddddddddd…");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn a_run_without_hashes_says_so() {
        let buf = Buf::default();
        let mut t = Terminal::new(Box::new(buf.clone()));
        t.show(&request(vec![span("chain x", &[], 1, vec![kv_str("vcon.uuid", "u"), kv_str("vcon.run.outcome", "complete")])]));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with("  = complete · no compliance hash (the producer sent no snapshot)\n"), "{text}");
    }
}
