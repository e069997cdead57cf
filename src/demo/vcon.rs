//! The simulated conserver's vCon documents and what each demo link does to them.
//!
//! A demo vCon starts as a small call recording (two parties, one dialog, no analysis) and every
//! link changes it the way its namesake in vCon Server would: `transcribe`, `summarize`,
//! `classify` and `sentiment_filter` append an analysis entry, `tag` appends a tags attachment,
//! `deidentify` replaces the party names, and `redact` makes a redacted copy under a **new UUID**
//! (the UUID swap the chain then continues with). Because the document changes at every link,
//! every link span gets a different `Vcon.hash`, so the demo shows the compliance hashes moving
//! along the chain.

use rand::Rng;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// A new vCon as an ingress adapter would store it.
pub fn new_vcon(uuid: &str, rng: &mut impl Rng) -> Value {
    let now = iso8601_now();
    let seconds = rng.random_range(30..900u32);
    json!({
        "vcon": "0.0.1",
        "uuid": uuid,
        "created_at": now,
        "updated_at": now,
        "subject": "Support call",
        "parties": [
            {"tel": format!("+1555{:07}", rng.random_range(0..10_000_000u32)), "name": "Alex Caller", "role": "customer"},
            {"tel": "+15550100000", "name": "Sam Agent", "role": "agent"}
        ],
        "dialog": [{
            "type": "recording", "start": now, "duration": seconds, "parties": [0, 1],
            "mimetype": "audio/x-wav", "url": format!("https://media.example.com/{uuid}.wav")
        }],
        "analysis": [],
        "attachments": [],
        "group": [],
        "redacted": {}
    })
}

/// What a link did to the document.
pub enum Effect {
    /// The document was changed in place (same UUID).
    Changed,
    /// The link returned a new vCon (a redacted copy) under this UUID.
    Swapped(String),
}

/// Applies link `link` to `doc` (the vCon stored under its UUID). For `redact` the document
/// becomes the redacted copy under a new UUID; the caller stores it under that UUID.
pub fn apply_link(doc: &mut Value, link: &str, rng: &mut impl Rng) -> Effect {
    let analysis = |kind: &str, body: Value| json!({"type": kind, "dialog": 0, "vendor": "vcon-otel-demo", "encoding": "json", "body": body});
    let effect = match link {
        "deidentify" => {
            if let Some(parties) = doc["parties"].as_array_mut() {
                for (i, p) in parties.iter_mut().enumerate() {
                    p["name"] = json!(format!("Party {}", i + 1));
                }
            }
            Effect::Changed
        }
        "redact" => {
            let old = doc["uuid"].as_str().unwrap_or_default().to_string();
            let new = uuid::Uuid::new_v4().to_string();
            doc["uuid"] = json!(new);
            doc["redacted"] = json!({"uuid": old, "type": "PII"});
            if let Some(parties) = doc["parties"].as_array_mut() {
                for p in parties {
                    p["tel"] = json!("+1555XXXXXXX");
                }
            }
            Effect::Swapped(new)
        }
        "transcribe" => {
            let words = rng.random_range(80..400u32);
            push(doc, "analysis", analysis("transcript", json!({"words": words, "text": "hello, I am calling about my order ..."})));
            Effect::Changed
        }
        "summarize" => {
            push(doc, "analysis", analysis("summary", json!("The customer asked about a delayed order.")));
            Effect::Changed
        }
        "classify" => {
            let label = ["billing", "shipping", "returns"][rng.random_range(0..3)];
            push(doc, "analysis", analysis("classification", json!({"label": label})));
            Effect::Changed
        }
        "sentiment_filter" => {
            let score: f64 = (rng.random_range(-100..100) as f64) / 100.0;
            push(doc, "analysis", analysis("sentiment", json!({"score": score})));
            Effect::Changed
        }
        "tag" => {
            push(doc, "attachments", json!({"type": "tags", "encoding": "json", "body": ["demo", format!("run-{}", rng.random_range(0..1000u32))]}));
            Effect::Changed
        }
        _ => Effect::Changed,
    };
    doc["updated_at"] = json!(iso8601_now());
    effect
}

fn push(doc: &mut Value, key: &str, v: Value) {
    if let Some(a) = doc[key].as_array_mut() {
        a.push(v);
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn iso8601_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = crate::clock::civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_link_changes_the_hash_and_redact_swaps_the_uuid() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut doc = new_vcon("u-1", &mut rng);
        let hash = |d: &Value| crate::compliance::vcon_hash(d.to_string().as_bytes()).unwrap().sha256_hex;
        let mut seen = vec![hash(&doc)];
        for link in ["deidentify", "redact", "tag", "transcribe", "summarize", "classify", "sentiment_filter"] {
            let effect = apply_link(&mut doc, link, &mut rng);
            if link == "redact" {
                let Effect::Swapped(new) = effect else { panic!("redact keeps the UUID") };
                assert_eq!(doc["uuid"], json!(new));
                assert_eq!(doc["redacted"]["uuid"], json!("u-1"));
            }
            let h = hash(&doc);
            assert!(!seen.contains(&h), "{link} left the hash unchanged");
            seen.push(h);
        }
    }

    #[test]
    fn timestamps_are_utc_iso8601() {
        let t = iso8601_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && &t[4..5] == "-" && &t[10..11] == "T", "{t}");
        assert!(t.as_str() > "2024-01-01", "{t}");
    }
}
