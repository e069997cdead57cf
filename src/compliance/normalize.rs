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

use super::pyjson::{PyStr, Value};

fn rename(fields: &mut Vec<(PyStr<'_>, Value<'_>)>, old: &str, new: &'static str) {
    let Some(pos) = fields.iter().position(|(k, _)| k.is(old)) else { return };
    let (_, v) = fields.remove(pos);
    if !fields.iter().any(|(k, _)| k.is(new)) {
        fields.push((PyStr::Text(std::borrow::Cow::Borrowed(new)), v));
    }
}

fn entry(v: &mut Value<'_>, attachment: bool) {
    let Value::Object(fields) = v else { return };
    rename(fields, "schema_version", "schema");
    rename(fields, "mimetype", "mediatype");
    rename(fields, "must_support", "critical");
    if attachment && !fields.iter().any(|(k, _)| k.is("purpose")) {
        rename(fields, "type", "purpose");
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
    rename(fields, "appended", "amended");
    rename(fields, "must_support", "critical");
    for (key, attachment) in [("dialog", false), ("analysis", false), ("attachments", true)] {
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
    [n("parties"), n("dialog"), n("analysis"), n("attachments")]
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
