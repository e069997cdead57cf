"""Property test: the Rust `Vcon.hash` equals Python's on generated documents.

Generates N random vCon-like documents as stored JSON text (compact like RedisJSON, or spaced,
with random float spellings, astral and lone-surrogate escapes, big integers, NaN/Infinity,
duplicate keys and legacy field names), hashes each with Python (scripts/hash/vcon_hash_ref.py) and with
`vcon-otel hash`, and compares. Usage: hash_property.py BINARY [N] [SEED]
"""
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from vcon_hash_ref import vcon_hash  # noqa: E402

ALPHABET = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\x01", "\x7f", "é", "ß", "€", "\u2028", "中", "😀", "𝄞"]


def rstr(r):
    s = "".join(r.choice(ALPHABET) for _ in range(r.randint(0, 12)))
    if r.random() < 0.1:
        s += r.choice(["\ud800", "\udfff", "\ud83d"])  # lone surrogates
    return s


def emit_str(r, s):
    # Stored text: raw UTF-8 where possible (as RedisJSON writes), escapes otherwise or at random.
    try:
        s.encode("utf-8")
        if r.random() < 0.7:
            return json.dumps(s, ensure_ascii=False)
    except UnicodeEncodeError:
        pass
    return json.dumps(s, ensure_ascii=True)


def emit_float(r, f):
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "Infinity" if f > 0 else "-Infinity"
    choice = r.random()
    if choice < 0.4:
        return repr(f)
    if choice < 0.6:
        return "%.17g" % f if ("." in "%.17g" % f or "e" in "%.17g" % f) else "%.17g.0" % f
    if choice < 0.8:
        return "%e" % f
    # RedisJSON's style: shortest digits, no "+" in exponents
    return repr(f).replace("e+", "e")


def rfloat(r):
    kind = r.random()
    if kind < 0.05:
        return r.choice([float("nan"), float("inf"), float("-inf"), -0.0, 0.0])
    exp = r.randint(-30, 30)
    return r.uniform(-10, 10) * (10.0 ** exp)


def value(r, depth):
    k = r.random()
    if depth > 3 or k < 0.35:
        t = r.random()
        if t < 0.25:
            return ("str", rstr(r))
        if t < 0.45:
            return ("int", r.choice([0, -1, 7, 2**63, 2**64 + 7, -(2**70), r.randint(-10**30, 10**30)]))
        if t < 0.75:
            return ("float", rfloat(r))
        return ("lit", r.choice(["true", "false", "null"]))
    if k < 0.6:
        return ("arr", [value(r, depth + 1) for _ in range(r.randint(0, 4))])
    keys = [r.choice(["a", "b", "type", "mimetype", "mediatype", "schema_version", "must_support", "purpose", "x"]) if r.random() < 0.5 else rstr(r) for _ in range(r.randint(0, 5))]
    return ("obj", [(key, value(r, depth + 1)) for key in keys])


def entry(r, legacy):
    fields = [("type", ("str", r.choice(["recording", "transcript", "tags", "lawful_basis"])))]
    if legacy:
        for key in r.sample(["mimetype", "schema_version", "must_support", "purpose", "mediatype", "schema"], r.randint(1, 3)):
            fields.append((key, ("str", rstr(r))))
    fields.append(("body", value(r, 2)))
    r.shuffle(fields)
    return ("obj", fields)


def document(r):
    fields = [("uuid", ("str", "%08x-0000-4000-8000-%012x" % (r.getrandbits(32), r.getrandbits(48)))), ("vcon", ("str", "0.4.0"))]
    for key in ("parties", "dialog", "analysis", "attachments"):
        if r.random() < 0.9:
            fields.append((key, ("arr", [entry(r, r.random() < 0.5) for _ in range(r.randint(0, 3))])))
    for key in ("appended", "amended", "must_support", "critical", "extra"):
        if r.random() < 0.3:
            fields.append((key, value(r, 1)))
    if r.random() < 0.3:
        dup = r.choice(fields)
        fields.append((dup[0], value(r, 2)))  # a duplicate key
    r.shuffle(fields[2:])
    return ("obj", fields)


def emit(r, v, compact):
    kind, x = v
    sep, colon = (",", ":") if compact else (", ", ": ")
    if kind == "str":
        return emit_str(r, x)
    if kind == "int":
        return str(x)
    if kind == "float":
        return emit_float(r, x)
    if kind == "lit":
        return x
    if kind == "arr":
        return "[" + sep.join(emit(r, i, compact) for i in x) + "]"
    return "{" + sep.join(emit_str(r, k) + colon + emit(r, i, compact) for k, i in x) + "}"


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 20261122
    r = random.Random(seed)
    passed = failed = 0
    with tempfile.TemporaryDirectory() as d:
        paths, expected = [], []
        for i in range(n):
            text = emit(r, document(r), r.random() < 0.7)
            p = os.path.join(d, "doc%05d.json" % i)
            with open(p, "w", encoding="utf-8", errors="surrogatepass") as f:
                f.write(text)
            paths.append(p)
            expected.append(vcon_hash(text))
        out = subprocess.run([binary, "hash", *paths], capture_output=True, text=True)
        got = {}
        for line in out.stdout.splitlines():
            h, _token, path = line.split("  ", 2)
            got[path] = h
        for p, e in zip(paths, expected):
            if got.get(p) == e:
                passed += 1
            else:
                failed += 1
                if failed <= 5:
                    print("MISMATCH", p, "python", e, "rust", got.get(p), file=sys.stderr)
                    print(open(p, encoding="utf-8", errors="surrogatepass").read()[:400], file=sys.stderr)
        if out.stderr:
            print(out.stderr[:2000], file=sys.stderr)
    print("hash-property: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or passed != n else 0)


if __name__ == "__main__":
    main()
