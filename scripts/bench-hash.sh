#!/usr/bin/env bash
# Compliance hashing throughput (MB/s of stored vCon JSON) on 100 KB and 5 MB vCons, side by side:
#   rust    - vcon_otel::compliance::vcon_hash in process (examples/hash_bench.rs)
#   python  - Vcon.hash as vCon Server computes it: json.loads + normalize + json.dumps + sha256
#   sha256sum - raw SHA-256 over the same bytes (coreutils), the floor
# Each figure is the median of 5 runs; ratios are computed from the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
tgt="${CARGO_TARGET_DIR:-target}"
PY=${VCON_OTEL_PYTHON:-python3}
cargo build --release --quiet --example hash_bench
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$PY" - "$work" <<'PYGEN'
import json, sys, os, random
r = random.Random(7)
def vcon(size):
    body = "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for _ in range(size))
    return {"uuid": "018f5e2a-0000-8000-8000-000000000001", "vcon": "0.4.0", "created_at": "2026-11-22T10:00:00.000+00:00",
            "parties": [{"tel": "+15555550100", "name": "Zoë"}, {"mailto": "agent@example.com"}],
            "dialog": [{"type": "recording", "start": "2026-11-22T10:00:00Z", "duration": 61.5, "parties": [0, 1],
                        "mediatype": "audio/x-wav", "encoding": "base64url", "body": body}],
            "analysis": [{"type": "transcript", "dialog": 0, "vendor": "x", "body": "hello " * 200, "encoding": "none"}],
            "attachments": [{"purpose": "tags", "body": ["a:b"], "encoding": "json"}]}
for name, size in [("100k", 100_000 - 2_000), ("5m", 5_000_000 - 2_000)]:
    with open(os.path.join(sys.argv[1], name + ".json"), "w") as f:
        f.write(json.dumps(vcon(size), separators=(",", ":"), ensure_ascii=False))
PYGEN
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '| vCon | rust MB/s | python MB/s | sha256sum MB/s | rust/python | sha256sum/rust |\n|---|---|---|---|---|---|\n'
for name in 100k 5m; do
  f="$work/$name.json"; bytes=$(stat -c %s "$f")
  n=$([ "$name" = 100k ] && echo 400 || echo 10)
  for _ in 1 2 3 4 5; do "$tgt"/release/examples/hash_bench "$f" "$n" | cut -d' ' -f1; done | median > "$work/rust"
  for _ in 1 2 3 4 5; do "$PY" - "$f" "$n" <<'PYH'
import sys, time, json, hashlib, os
sys.path.insert(0, "scripts")
from vcon_hash_ref import normalize_legacy_fields
text = open(sys.argv[1]).read(); n = int(sys.argv[2])
t = time.perf_counter()
for _ in range(n):
    d = json.loads(text); normalize_legacy_fields(d); hashlib.sha256(json.dumps(d).encode()).hexdigest()
print(len(text.encode()) * n / (time.perf_counter() - t) / 1e6)
PYH
  done | median > "$work/py"
  for _ in $(seq "$n"); do cat "$f"; done > "$work/rep"
  for _ in 1 2 3 4 5; do
    s=$(date +%s.%N); sha256sum "$work/rep" >/dev/null; e=$(date +%s.%N)
    python3 -c "print($bytes*$n/($e-$s)/1e6)"
  done | median > "$work/sum"
  python3 -c "
r,p,s=float(open('$work/rust').read()),float(open('$work/py').read()),float(open('$work/sum').read())
print('| %s | %.0f | %.0f | %.0f | %.1fx | %.2fx |' % ('$name', r, p, s, r/p, s/r))"
done
