//! The snapshot reader (`enrich::snapshot::fetch_and_hash`) against a real Redis with RedisJSON:
//! documents small enough to hash as their reply is polled and large ones hashed on the blocking
//! pool, interleaved in one call, each output is the hash of its own key's document, in input
//! order; a key that holds nothing is `missing`; a step without a key gets nothing. Run on one
//! worker thread (the bridge pinned to one core) and on two.

use crate::support::redis::RedisServer;
use vcon_otel::enrich::snapshot::{fetch_and_hash, BLOCKING_BYTES, CHUNK};

/// A vCon-shaped document of about `size` bytes; `n` makes each one different.
fn doc(size: usize, n: usize) -> String {
    let segments: Vec<String> = (0..size / 250).map(|i| format!(r#"{{"start": {}.5, "speaker": {}, "text": "segment {i} of call {n}"}}"#, i, i % 2)).collect();
    let body = "QUJD".repeat(size / 8);
    format!(
        r#"{{"uuid": "u-{n}", "vcon": "0.4.0", "parties": [{{"tel": "+1555{n:07}"}}], "dialog": [{{"type": "recording", "body": "{body}"}}], "analysis": [{{"type": "transcript", "body": {{"segments": [{}]}}}}]}}"#,
        segments.join(", ")
    )
}

fn check(worker_threads: usize) {
    let redis = RedisServer::start();
    let mut c = redis.conn();
    // 3 small, 2 large, repeated: small chunks and large ones in the same call.
    let sizes: Vec<usize> = (0..90).map(|i| if i % 5 < 3 { 5_000 } else { 2 * BLOCKING_BYTES }).collect();
    let mut keys: Vec<Option<String>> = Vec::new();
    for (n, size) in sizes.iter().enumerate() {
        let key = format!("vcon_otel:snap:t{worker_threads}:{n}");
        let _: () = redis::cmd("JSON.SET").arg(&key).arg("$").arg(doc(*size, n)).query(&mut c).unwrap();
        keys.push(Some(key));
    }
    keys.insert(7, Some("vcon_otel:snap:gone".into()));
    keys.insert(30, None);
    let mut expected: Vec<Option<String>> = Vec::new();
    for k in &keys {
        let text: Option<String> = match k {
            Some(k) => redis::cmd("JSON.GET").arg(k).query(&mut c).unwrap(),
            None => None,
        };
        expected.push(text.map(|t| vcon_otel::compliance::vcon_hash(t.as_bytes()).unwrap().sha256_hex));
    }
    assert!(keys.len() > 2 * CHUNK, "more than one round trip");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(worker_threads).enable_all().build().unwrap();
    let got = rt.block_on(async {
        let conn = redis::Client::open(redis.url()).unwrap().get_connection_manager().await.unwrap();
        let refs: Vec<Option<&str>> = keys.iter().map(|k| k.as_deref()).collect();
        fetch_and_hash(&conn, &refs, false, true).await
    });
    assert_eq!(got.len(), keys.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g.hash.as_ref().map(|h| h.sha256_hex.clone()), *e, "output {i} ({:?})", keys[i]);
        assert_eq!(g.missing, i == 7, "output {i}: only the key that holds nothing is missing");
        assert_eq!(g.text.is_some(), e.is_some(), "output {i}: the text is kept when asked");
    }
    // Every chunk holding a large document is over BLOCKING_BYTES: hashed on the blocking pool.
    let large = got.iter().filter(|g| g.text.as_ref().is_some_and(|t| t.len() > BLOCKING_BYTES)).count();
    assert_eq!(large, sizes.iter().filter(|s| **s > BLOCKING_BYTES).count());
}

#[test]
fn every_output_is_its_own_keys_hash_in_input_order_on_one_worker_thread() {
    check(1);
}

#[test]
fn every_output_is_its_own_keys_hash_in_input_order_on_two_worker_threads() {
    check(2);
}
