"""Python's answer for the `vcon_hash` fuzz target (fuzz/fuzz_targets/oracle.rs): `Vcon.hash` as
vCon Server computes it (`json.loads`, `normalize_legacy_fields`, `json.dumps`, SHA-256), or why not.

Reads documents from stdin (4-byte little-endian length, then the bytes) and answers one line each:
`ok <sha256 hex>`, or `err utf8` (not UTF-8), `err json` (json.loads refuses it), `err object` (not a
JSON object), `err depth` (RecursionError). The first line is `limit N python V`: the deepest nesting
this interpreter accepts here, measured at start. Integers of any length are allowed
(`sys.set_int_max_str_digits(0)`): the Rust side hashes them, a documented difference. On Python
3.11 the recursion limit is raised so nesting beyond vCon Server's bound (3.13's) can be compared;
from 3.12 on, json's C recursion bound does not move with it.
"""
import hashlib
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))
from vcon_hash_ref import normalize_legacy_fields  # noqa: E402

if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)
if sys.version_info < (3, 12):
    sys.setrecursionlimit(30000)


def answer(data):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "err utf8"
    try:
        d = json.loads(text)
        if not isinstance(d, dict):
            return "err object"
        normalize_legacy_fields(d)
        return "ok " + hashlib.sha256(json.dumps(d).encode()).hexdigest()
    except RecursionError:
        return "err depth"
    except ValueError:
        return "err json"


def limit():
    lo, hi = 0, 25000
    while lo < hi:
        m = (lo + hi + 1) // 2
        doc = ('{"a":' + "[" * (m - 1) + "]" * (m - 1) + "}").encode()
        lo, hi = (m, hi) if answer(doc) != "err depth" else (lo, m - 1)
    return lo


def main():
    out = sys.stdout
    out.write("limit %d python %s\n" % (limit(), sys.version.split()[0]))
    out.flush()
    read = sys.stdin.buffer.read
    while True:
        head = read(4)
        if len(head) < 4:
            return
        (n,) = struct.unpack("<I", head)
        out.write(answer(read(n)) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
