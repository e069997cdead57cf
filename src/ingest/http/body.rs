//! The body of `POST /v1/events`: reading it under a size limit and a deadline ([`read`]), and
//! splitting it into records ([`parse_body`], pure, the fuzz target's entry point).
//!
//! A body is one record (a JSON object) or a batch (a JSON array of records, possibly empty).
//! Each record keeps **its own bytes** as sent: those bytes pass through [`event::decode`], the one
//! decode entry point of every source (size limit [`event::MAX_RECORD_BYTES`], schema), and those
//! same bytes are what is appended to the stream, so the stream reader sees exactly what was checked.

use crate::event;
use axum::body::Body;
use futures::StreamExt;
use serde_json::value::RawValue;
use std::time::Duration;

/// Why a body cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is empty; send a record (JSON object) or a batch (JSON array of records)")]
    Empty,
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body must be a record (JSON object) or a batch (JSON array of records), got {0}")]
    NotRecordOrBatch(&'static str),
    /// Record `index` (0 for a single record) failed [`event::decode`]; nothing is taken.
    #[error("record {index}: {rejection}")]
    Record { index: usize, rejection: event::Rejection },
}

/// Splits a body into the raw bytes of each record and checks each with [`event::decode`].
/// Any failure rejects the whole body (the caller writes nothing). `[]` gives no records.
pub fn parse_body(bytes: &[u8]) -> Result<Vec<&RawValue>, BodyError> {
    let not_json = |e: serde_json::Error| BodyError::NotJson(e.to_string());
    let records: Vec<&RawValue> = match bytes.iter().find(|b| !b" \t\r\n".contains(b)) {
        None => return Err(BodyError::Empty),
        Some(b'[') => serde_json::from_slice(bytes).map_err(not_json)?,
        Some(b'{') => vec![serde_json::from_slice(bytes).map_err(not_json)?],
        Some(&c) => {
            serde_json::from_slice::<&RawValue>(bytes).map_err(not_json)?;
            return Err(BodyError::NotRecordOrBatch(json_type(c)));
        }
    };
    for (index, r) in records.iter().enumerate() {
        event::decode(r.get().as_bytes()).map_err(|rejection| BodyError::Record { index, rejection })?;
    }
    Ok(records)
}

fn json_type(first: u8) -> &'static str {
    match first {
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}

/// Why a body could not be received.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// More than the limit arrived (a chunked body, or one longer than its `Content-Length`).
    TooLarge,
    /// The whole body did not arrive within the deadline.
    TimedOut,
    /// The connection failed or the body was malformed on the wire.
    Broken(String),
}

/// Receives a whole body of at most `limit` bytes within `deadline`; `declared` (the
/// `Content-Length`, already checked against `limit`) sizes the buffer once.
pub async fn read(body: Body, limit: usize, declared: Option<u64>, deadline: Duration) -> Result<Vec<u8>, ReadError> {
    let collect = async {
        let mut out = Vec::with_capacity(declared.map_or(0, |n| n.min(limit as u64) as usize));
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ReadError::Broken(e.to_string()))?;
            if out.len() + chunk.len() > limit {
                return Err(ReadError::TooLarge);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(deadline, collect).await.unwrap_or(Err(ReadError::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"v":1,"event":"chain_start","run":"r","vcon_uuid":"u","ts_ns":1}"#;

    #[test]
    fn a_record_or_a_batch_keeps_each_records_own_bytes() {
        let padded = format!(" {GOOD}\n");
        let one = parse_body(padded.as_bytes()).unwrap();
        assert_eq!(one.iter().map(|r| r.get()).collect::<Vec<_>>(), [GOOD]);
        let spaced = GOOD.replace(',', ", ");
        let body = format!("[{GOOD},\n  {spaced}]");
        let two = parse_body(body.as_bytes()).unwrap();
        assert_eq!(two.iter().map(|r| r.get()).collect::<Vec<_>>(), [GOOD, spaced.as_str()]);
        assert!(parse_body(b" [ ] ").unwrap().is_empty());
    }

    #[test]
    fn every_record_goes_through_the_one_decoder_with_its_size_limit() {
        let big = GOOD.replace(r#""run":"r""#, &format!(r#""run":"{}""#, "x".repeat(event::MAX_RECORD_BYTES)));
        let body = format!("[{GOOD},{big}]");
        match parse_body(body.as_bytes()) {
            Err(BodyError::Record { index: 1, rejection }) => assert_eq!(rejection.reason, event::Reason::TooLarge),
            other => panic!("{other:?}"),
        }
        let bad = format!(r#"[{GOOD},{GOOD},{{"v":1}}]"#);
        let e = parse_body(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("record 2: missing_field:"), "{e}");
        let e = parse_body(format!("[{GOOD},[1]]").as_bytes()).unwrap_err();
        assert!(matches!(&e, BodyError::Record { index: 1, rejection } if rejection.reason == event::Reason::NotObject), "{e:?}");
    }

    #[test]
    fn bodies_that_are_not_records_say_what_they_are() {
        assert_eq!(parse_body(b"").unwrap_err(), BodyError::Empty);
        assert_eq!(parse_body(b" \r\n").unwrap_err(), BodyError::Empty);
        assert_eq!(parse_body(b"\"x\"").unwrap_err(), BodyError::NotRecordOrBatch("a string"));
        assert_eq!(parse_body(b"12").unwrap_err(), BodyError::NotRecordOrBatch("a number"));
        assert_eq!(parse_body(b"null").unwrap_err(), BodyError::NotRecordOrBatch("null"));
        for junk in [&b"[1,"[..], b"{\"v\":", b"nope", b"[]]", b"\xff\xfe", b"{}{}"] {
            assert!(matches!(parse_body(junk), Err(BodyError::NotJson(_))), "{junk:?}");
        }
        let deep = "[".repeat(100_000);
        assert!(matches!(parse_body(deep.as_bytes()), Err(BodyError::NotJson(_))), "deep nesting is an error, not a crash");
    }

    #[tokio::test]
    async fn reading_stops_at_the_limit() {
        assert_eq!(read(Body::from(vec![b'x'; 10]), 10, Some(10), Duration::from_secs(1)).await.unwrap().len(), 10);
        assert_eq!(read(Body::from(vec![b'x'; 11]), 10, None, Duration::from_secs(1)).await, Err(ReadError::TooLarge));
    }
}
