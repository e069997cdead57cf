"""Writes the compliance-hash test vectors: tests/vectors/NAME.json (stored text, as RedisJSON or a
file would hold it) and tests/vectors/expected.txt (`<sha256>  NAME.json`), where each expected
value comes from running Python's own `json.loads` / `json.dumps` and hashlib
(scripts/hash/vcon_hash_ref.py). Run it again to regenerate: python3 scripts/hash/make_hash_vectors.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from vcon_hash_ref import vcon_hash  # noqa: E402

if sys.version_info < (3, 12):
    sys.setrecursionlimit(20000)  # 3.11 spends its Python recursion limit on json's nesting

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "vectors")

BASE = '"uuid":"018f5e2a-0000-8000-8000-000000000001","vcon":"0.4.0","created_at":"2026-11-22T10:00:00.000+00:00"'
CASES = {
    "minimal": '{' + BASE + ',"parties":[],"dialog":[],"analysis":[],"attachments":[]}',
    "legacy_top_level": '{"appended":{"uuid":"x"},' + BASE + ',"must_support":["ext"],"parties":[]}',
    "legacy_both_present": '{"appended":1,"amended":2,' + BASE + ',"must_support":["a"],"critical":["b"]}',
    "legacy_entries": '{' + BASE + ',"dialog":[{"type":"recording","mimetype":"audio/wav","schema_version":"1","must_support":[],"start":"2026-11-22T10:00:00Z"}],"analysis":[{"type":"transcript","schema_version":"2","body":"hi","mediatype":"text/plain","mimetype":"text/x"}],"attachments":[{"type":"tags","body":["a:b"],"encoding":"json"},{"type":"lawful_basis","purpose":"consent","body":{}},"not an object"]}',
    "non_ascii": '{' + BASE + ',"subject":"Zoë – café ☕ 中文 €","parties":[{"name":"José Müller","tel":"+15555550100"}]}',
    "astral": '{' + BASE + ',"subject":"😀 𝄞 \\ud83d\\ude00"}',
    "lone_surrogates": '{' + BASE + ',"subject":"a\\ud800b\\udfffc\\ud83d"}',
    "escapes_and_controls": '{' + BASE + ',"subject":"tab\\t nl\\n cr\\r bs\\b ff\\f q\\" sl\\\\ sol\\/ c\\u0001 del\\u007f ls\\u2028 ps\\u2029"}',
    "floats_python_spellings": '{' + BASE + ',"n":[1e-05,1e+16,0.1,-0.0,1.0,1e-07,123456789.123,1e15,1e16,5e-324,1.7976931348623157e308]}',
    "floats_redisjson_spellings": '{' + BASE + ',"n":[0.00001,1e16,1e-5,1E16,1.5e300,0.000123,100.0,2e0]}',
    "float_overflow": '{' + BASE + ',"n":[1e400,-1e400,1E999]}',
    "nan_infinity": '{' + BASE + ',"n":[NaN,Infinity,-Infinity]}',
    "big_integers": '{' + BASE + ',"n":[18446744073709551623,-99999999999999999999999999999999,9223372036854775808,-0,0]}',
    "redisjson_big_int_as_double": '{' + BASE + ',"n":1.8446744073709552e19}',
    "float_tie_half_even": '{' + BASE + ',"n":[1505058715994094.25,95998761259519.625]}',
    "nested_and_json_string_bodies": '{' + BASE + ',"analysis":[{"type":"summary","body":"{\\"a\\": [1, 2, {\\"b\\": null}]}","encoding":"json"},{"type":"x","body":{"deep":[[[[{"k":[true,false,null]}]]]]}}]}',
    "duplicate_keys": '{' + BASE + ',"subject":"first","x":1,"subject":"second","parties":[{"name":"a","name":"b"}]}',
    "empty_containers": '{' + BASE + ',"a":{},"b":[],"c":"","d":[{}],"e":[[]]}',
    "whitespace_spaced": '{ "uuid" : "u" ,\n  "vcon" : "0.4.0" ,\t"parties" : [ { "tel" : "+1" } ] }',
    # The deepest nesting Python 3.13 hashes (docs/compliance.md, "Nesting"): the object and 9,997 arrays.
    "nesting_9998": '{' + BASE + ',"deep":' + "[" * 9997 + "]" * 9997 + '}',
    "base64_body": '{' + BASE + ',"dialog":[{"type":"recording","encoding":"base64url","mediatype":"audio/x-wav","body":"' + "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA" * 200 + '"}]}',
}


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = []
    for name, text in sorted(CASES.items()):
        path = os.path.join(OUT, name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        lines.append("%s  %s.json" % (vcon_hash(text), name))
    with open(os.path.join(OUT, "expected.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d vectors" % len(lines))


if __name__ == "__main__":
    main()
