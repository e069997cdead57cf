//! The streaming hasher against the in-memory model (`pyjson::parse` + `normalize` + `write`),
//! which the vectors and the property test tie to Python.

use super::stream::{dump, Fail, MAX_DEPTH};
use super::{normalize, pyjson};

fn model(text: &str) -> Result<String, pyjson::ParseError> {
    let mut v = pyjson::parse(text)?;
    normalize::normalize_legacy_fields(&mut v);
    let mut out = Vec::new();
    pyjson::write(&mut out, &v);
    Ok(String::from_utf8(out).unwrap())
}

fn streamed(text: &str) -> Result<String, Fail> {
    dump(text, Vec::new).map(|(b, _)| String::from_utf8(b).unwrap())
}

#[track_caller]
fn same(text: &str) -> String {
    let want = model(text).unwrap();
    assert_eq!(streamed(text).unwrap(), want, "{text}");
    want
}

#[test]
fn renamed_keys_go_to_the_end_in_upstream_order() {
    assert_eq!(same(r#"{"appended":1,"uuid":"u","must_support":[]}"#), r#"{"uuid": "u", "amended": 1, "critical": []}"#);
    assert_eq!(same(r#"{"must_support":[],"appended":1}"#), r#"{"amended": 1, "critical": []}"#);
    let e = same(r#"{"dialog":[{"must_support":1,"mimetype":"a","schema_version":"2","x":0}]}"#);
    assert_eq!(e, r#"{"dialog": [{"x": 0, "schema": "2", "mediatype": "a", "critical": 1}]}"#);
    same(r#"{"analysis":[{"mimetype":{"a":[1,{"b":2}]},"body":"x"},7,"s",[{"mimetype":1}]]}"#);
}

#[test]
fn legacy_keys_are_dropped_when_the_new_name_exists_before_or_after() {
    assert_eq!(same(r#"{"appended":1,"amended":2}"#), r#"{"amended": 2}"#);
    assert_eq!(same(r#"{"amended":2,"appended":1}"#), r#"{"amended": 2}"#);
    same(r#"{"dialog":[{"mediatype":"b","mimetype":"a"},{"mimetype":"a","mediatype":"b"}]}"#);
}

#[test]
fn attachment_type_is_kept_in_place_when_purpose_is_anywhere_in_the_entry() {
    assert_eq!(same(r#"{"attachments":[{"type":"t","body":{"type":1},"purpose":"p"}]}"#), r#"{"attachments": [{"type": "t", "body": {"type": 1}, "purpose": "p"}]}"#);
    assert_eq!(same(r#"{"attachments":[{"purpose":"p","type":"t"}]}"#), r#"{"attachments": [{"purpose": "p", "type": "t"}]}"#);
    assert_eq!(same(r#"{"attachments":[{"type":"t","body":{"purpose":1}}]}"#), r#"{"attachments": [{"body": {"purpose": 1}, "purpose": "t"}]}"#);
    same(r#"{"attachments":[{"type":"t","body":"a\"purpose\":","x":[{"purpose":2}]}]}"#);
    // Only attachments rename `type`; only top-level lists hold entries.
    same(r#"{"dialog":[{"type":"recording","mimetype":"m"}],"x":{"attachments":[{"type":"t"}]}}"#);
}

#[test]
fn duplicate_keys_keep_the_first_position_and_the_last_value_at_every_level() {
    assert_eq!(same(r#"{"a":1,"b":2,"a":3}"#), r#"{"a": 3, "b": 2}"#);
    assert_eq!(same(r#"{"x":[{"k":1,"j":0,"k":{"k":5,"k":6}}]}"#), r#"{"x": [{"k": {"k": 6}, "j": 0}]}"#);
    same(r#"{"appended":1,"appended":2,"uuid":"u"}"#);
    same(r#"{"dialog":[{"mimetype":"a","x":1}],"dialog":[{"mimetype":"b","mimetype":"c"}]}"#);
    same(r#"{"attachments":[{"type":"t","purpose":"p","purpose":"q","type":"u"}]}"#);
    same(r#"{"attachments":[{"type":"t","type":"u"}],"parties":[1],"parties":[1,2,3]}"#);
    same(r#"{"appended":{"a":1,"a":[{"b":1,"b":2}]},"c":0,"c":1}"#);
    // Escaped spellings of one key are one key.
    assert_eq!(same(r#"{"a":1,"\u0061":2,"app\u0065nded":3}"#), r#"{"a": 2, "amended": 3}"#);
    same(r#"{"\ud800":1,"\ud800":2,"\udc00":3}"#);
}

#[test]
fn objects_with_many_keys_find_their_duplicates() {
    let mut text = String::from("{");
    for i in 0..200 {
        text.push_str(&format!("\"k{}\":{i},", i % 150));
    }
    text.push_str("\"end\":true}");
    same(&text);
}

#[test]
fn escaped_and_plain_spellings_of_a_key_are_one_key_below_and_past_the_linear_bound() {
    assert_eq!(same(r#"{"a":1,"\u0061":2,"a":3,"b":4,"\u0062":5}"#), r#"{"a": 3, "b": 5}"#);
    same(r#"{"\u0061":1,"a":2,"\u0061":3}"#);
    for n in [15, 16, 17, 40] {
        let mut text = String::from("{");
        for i in 0..n {
            text.push_str(&format!("\"k{i}\":{i},"));
        }
        text.push_str(r#""\u006b7":"x","k1\u0030":"y","k3":"z","\u006b3":"w"}"#);
        same(&text);
    }
    // `purpose` spelled with an escape, in a small and in an indexed attachment.
    same(r#"{"attachments":[{"\u0070urpose":"p","type":"t"},{"type":"t","x":{"\u0070urpose":1}}]}"#);
    let many: String = (0..20).map(|i| format!("\"f{i}\":0,")).collect();
    same(&format!(r#"{{"attachments":[{{{many}"purp\u006fse":"p","type":"t"}},{{{many}"type":"t"}}]}}"#));
}

#[test]
fn counts_follow_the_winning_values() {
    let (_, s) = dump(r#"{"parties":[1,2],"dialog":[{}],"parties":[1],"attachments":"x"}"#, Vec::new).unwrap();
    assert_eq!(s.counts, [1, 1, 0, 0]);
    assert!(s.object);
    assert!(!dump("[1]", Vec::new).unwrap().1.object);
}

#[test]
fn errors_are_the_models_errors() {
    for bad in [r#"{"a":1,}"#, r#"{"a" 1}"#, "[1 2]", "{\"a\":\"\u{1}\"}", r#"{"appended":[1,}"#, r#"{"a":1,"a":[}"#, "", " ", "01", "[-]", "{\"a\":1} x", r#"{"attachments":[{"type":"t","x":[}]}"#] {
        let want = model(bad).unwrap_err();
        assert_eq!(streamed(bad).unwrap_err(), Fail::Json(want), "{bad}");
    }
}

#[test]
fn nesting_is_accepted_to_pythons_bound_and_refused_one_level_deeper() {
    let deep = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
    let ok = streamed(&deep(MAX_DEPTH)).unwrap();
    assert_eq!(ok.len(), 7 + 2 * (MAX_DEPTH - 1));
    match streamed(&deep(MAX_DEPTH + 1)) {
        Err(Fail::TooDeep(e)) => assert_eq!(e.offset, 5 + MAX_DEPTH - 1),
        other => panic!("{other:?}"),
    }
    // A syntax error before the deep part is reported first, as json.loads does.
    assert!(matches!(streamed(&format!("{{\"a\":0,,{}", "[".repeat(MAX_DEPTH + 5))), Err(Fail::Json(_))));
}
