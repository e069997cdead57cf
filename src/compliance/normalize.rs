//! vCon Server's `normalize_legacy_fields` (`common/lib/vcon_compat.py`), applied on read.
//!
//! Renames happen in place as a Python dict does them: `d[new] = d.pop(old)` removes the legacy key
//! and appends the new one at the **end** of the object; when the new key already exists the legacy
//! key is dropped. Top level: `appended`→`amended`, `must_support`→`critical`. Every object in
//! `dialog` and `analysis`: `schema_version`→`schema`, `mimetype`→`mediatype`,
//! `must_support`→`critical`. Every object in `attachments`: the same, then `type`→`purpose` only
//! when `purpose` is absent. Entries that are not objects are left alone; a `dialog`, `analysis` or
//! `attachments` value that is not an array is left alone (Python would iterate a string's
//! characters and skip them, and raise on a number: such a document has no `Vcon.hash` upstream).
//!
//! The rules are the tables below; [`normalize_legacy_fields`] applies them to the in-memory model,
//! `super::stream` applies the same tables while streaming.

use super::pyjson::{PyStr, Value};

/// Top-level renames (legacy, new), in the order upstream applies them.
pub const ROOT_RENAMES: [(&str, &str); 2] = [("appended", "amended"), ("must_support", "critical")];

/// Renames in every `dialog`, `analysis` and `attachments` entry, in upstream's order; the last
/// ([`TYPE_TO_PURPOSE`]) only in attachments and only when `purpose` is absent.
pub const ENTRY_RENAMES: [(&str, &str); 4] = [("schema_version", "schema"), ("mimetype", "mediatype"), ("must_support", "critical"), ("type", "purpose")];

/// Index of `type`→`purpose` in [`ENTRY_RENAMES`].
pub const TYPE_TO_PURPOSE: usize = 3;

/// The top-level keys whose entries [`counts`] reports, in its order; the last three hold entries
/// that are normalized (`attachments` being the last).
pub const LISTS: [&str; 4] = ["parties", "dialog", "analysis", "attachments"];

fn rename(fields: &mut Vec<(PyStr<'_>, Value<'_>)>, old: &str, new: &'static str) {
    let Some(pos) = fields.iter().position(|(k, _)| k.is(old)) else { return };
    let (_, v) = fields.remove(pos);
    if !fields.iter().any(|(k, _)| k.is(new)) {
        fields.push((PyStr::Text(std::borrow::Cow::Borrowed(new)), v));
    }
}

fn entry(v: &mut Value<'_>, attachment: bool) {
    let Value::Object(fields) = v else { return };
    for (old, new) in &ENTRY_RENAMES[..TYPE_TO_PURPOSE] {
        rename(fields, old, new);
    }
    let (old, new) = ENTRY_RENAMES[TYPE_TO_PURPOSE];
    if attachment && !fields.iter().any(|(k, _)| k.is(new)) {
        rename(fields, old, new);
    }
}

fn list_mut<'v, 'a>(fields: &'v mut [(PyStr<'a>, Value<'a>)], key: &str) -> Option<&'v mut Vec<Value<'a>>> {
    fields.iter_mut().find(|(k, _)| k.is(key)).and_then(|(_, v)| match v {
        Value::Array(items) => Some(items),
        _ => None,
    })
}

/// Mutates the document in place, exactly as upstream.
pub fn normalize_legacy_fields(doc: &mut Value<'_>) {
    let Value::Object(fields) = doc else { return };
    for (old, new) in ROOT_RENAMES {
        rename(fields, old, new);
    }
    for (key, attachment) in [(LISTS[1], false), (LISTS[2], false), (LISTS[3], true)] {
        if let Some(items) = list_mut(fields, key) {
            for item in items.iter_mut() {
                entry(item, attachment);
            }
        }
    }
}

/// Entries in `parties`, `dialog`, `analysis`, `attachments`.
pub fn counts(doc: &Value<'_>) -> [u64; 4] {
    let Value::Object(fields) = doc else { return [0; 4] };
    let n = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k.is(key))
            .map(|(_, v)| if let Value::Array(a) = v { a.len() as u64 } else { 0 })
            .unwrap_or(0)
    };
    LISTS.map(n)
}

#[cfg(test)]
mod tests {
    use super::super::pyjson::{parse, write};
    use super::*;

    fn norm(text: &str) -> String {
        let mut v = parse(text).unwrap();
        normalize_legacy_fields(&mut v);
        let mut out = Vec::new();
        write(&mut out, &v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renamed_keys_move_to_the_end_and_legacy_duplicates_are_dropped() {
        assert_eq!(norm(r#"{"appended":1,"uuid":"u"}"#), r#"{"uuid": "u", "amended": 1}"#);
        assert_eq!(norm(r#"{"appended":1,"amended":2,"x":0}"#), r#"{"amended": 2, "x": 0}"#);
        assert_eq!(
            norm(r#"{"attachments":[{"type":"tags","body":[]},{"type":"lawful_basis","purpose":"p"}],"dialog":[{"mimetype":"audio/wav","x":1},"s"]}"#),
            r#"{"attachments": [{"body": [], "purpose": "tags"}, {"type": "lawful_basis", "purpose": "p"}], "dialog": [{"x": 1, "mediatype": "audio/wav"}, "s"]}"#
        );
    }
}
