//! The event record decoder (`vcon_otel::event::decode`) on arbitrary bytes.
//!
//! Checks: no panic; the same answer twice; a record over the size limit is refused as too large,
//! one that is not JSON as not JSON; an accepted record is a JSON object and keeps the contract of
//! `docs/events.md` (field bounds, the fields each event requires); a rejection names a reason and
//! says why.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vcon_otel::event::{decode, Compliance, EventKind, Reason, Record, MAX_RECORD_BYTES, MAX_RUN_LEN};

/// What `docs/events.md` promises of every accepted record.
fn keeps_the_contract(r: &Record) {
    assert!(!r.run.is_empty() && r.run.len() <= MAX_RUN_LEN && r.run.bytes().all(|b| (0x21..0x7f).contains(&b)), "run {:?}", r.run);
    assert!(!r.vcon_uuid.is_empty() && r.vcon_uuid.len() <= MAX_RUN_LEN, "vcon_uuid {:?}", r.vcon_uuid);
    assert!(r.link_index.is_none_or(|i| i >= -1), "link_index {:?}", r.link_index);
    assert!(r.error.as_ref().is_none_or(|e| e.message.len() <= 4096), "error message over 4096 bytes");
    if let Some(Compliance::Sha256(h)) = &r.compliance {
        assert!(h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "sha256 {h:?}");
    }
    match r.event {
        EventKind::TracerCall => {
            let (links, i) = (r.links.as_ref().expect("links"), r.link_index.expect("link_index"));
            assert!(i < links.len() as i64 && r.tracer.is_some());
        }
        EventKind::LinkStart | EventKind::LinkComplete | EventKind::LinkError => assert!(r.link_index.is_some() && r.link_name().is_some()),
        EventKind::StorageStart | EventKind::StorageComplete | EventKind::StorageError => assert!(r.storage.as_deref().is_some_and(|s| !s.is_empty())),
        _ => {}
    }
    if matches!(r.event, EventKind::LinkError | EventKind::StorageError | EventKind::ChainError) {
        assert!(r.error.is_some(), "an error event carries its error");
    }
    let _ = r.ends_run();
}

fuzz_target!(|data: &[u8]| {
    let got = decode(data);
    assert_eq!(got, decode(data), "decoding is deterministic");
    match &got {
        Ok(r) => {
            assert!(data.len() <= MAX_RECORD_BYTES);
            keeps_the_contract(r);
            let v: serde_json::Value = serde_json::from_slice(data).expect("an accepted record is JSON");
            assert!(v.is_object(), "an accepted record is a JSON object");
        }
        Err(e) => {
            assert!(!e.detail.is_empty(), "a rejection says why");
            assert!(Reason::ALL.contains(&e.reason));
            if data.len() > MAX_RECORD_BYTES {
                assert_eq!(e.reason, Reason::TooLarge);
            } else if serde_json::from_slice::<serde_json::Value>(data).is_err() {
                assert_eq!(e.reason, Reason::NotJson, "{e}");
            }
        }
    }
});
