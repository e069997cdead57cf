//! The HTTP ingest body parser (`vcon_otel::ingest::http::parse_body`) on arbitrary bytes.
//!
//! Checks: no panic; the same answer twice; an all-whitespace body is `Empty` and nothing else is;
//! an accepted body is one record (a JSON object, its bytes the body's) or a batch (a JSON array,
//! one record per element, in order), and every record's own bytes decode with
//! `event::decode`; a refused record names its index, and decoding that element gives the same
//! rejection; a body that is not JSON is refused as not JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use vcon_otel::event::decode;
use vcon_otel::ingest::http::{parse_body, BodyError};

fuzz_target!(|data: &[u8]| {
    let got = parse_body(data);
    assert_eq!(got.as_ref().map(|r| r.iter().map(|v| v.get()).collect::<Vec<_>>()), parse_body(data).as_ref().map(|r| r.iter().map(|v| v.get()).collect::<Vec<_>>()), "deterministic");
    let blank = data.iter().all(|b| b" \t\r\n".contains(b));
    assert_eq!(blank, matches!(got, Err(BodyError::Empty)), "Empty exactly for a blank body");
    let first = data.iter().find(|b| !b" \t\r\n".contains(b)).copied();
    match &got {
        Ok(records) => {
            let elements = elements(data, first);
            assert_eq!(records.len(), elements.len());
            for (r, e) in records.iter().zip(&elements) {
                assert_eq!(r.get(), *e, "a record keeps its own bytes");
                assert!(decode(r.get().as_bytes()).is_ok(), "an accepted record decodes");
            }
        }
        Err(BodyError::Record { index, rejection }) => {
            let elements = elements(data, first);
            assert_eq!(decode(elements[*index].as_bytes()).as_ref().err(), Some(rejection));
            assert!(elements[..*index].iter().all(|e| decode(e.as_bytes()).is_ok()), "the first bad record is named");
        }
        Err(BodyError::NotJson(why)) => {
            assert!(!why.is_empty());
        }
        Err(BodyError::NotRecordOrBatch(_)) => assert!(!matches!(first, Some(b'{' | b'['))),
        Err(BodyError::Empty) => {}
    }
});

/// The records of a body already parsed successfully: the array's elements, or the object.
fn elements(data: &[u8], first: Option<u8>) -> Vec<&str> {
    match first {
        Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(data).expect("a batch").into_iter().map(RawValue::get).collect(),
        _ => vec![serde_json::from_slice::<&RawValue>(data).expect("a record").get()],
    }
}
