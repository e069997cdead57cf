#!/usr/bin/env bash
# Compliance hashing benchmarks (docs/benchmarks.md, "Compliance hashing").
#
# 1. Throughput (MB/s of stored vCon JSON), side by side, median of 5, on 100 KB and 5 MB vCons of
#    one long body, and on the pipeline benchmark's realistic vCons of 5 KB, 100 KB and 2 MB (v5k,
#    v100k, v2m: python/bench/vcons.py, 60 % base64url body, 40 % transcript of small segments):
#      rust      - vcon_otel::compliance::vcon_hash in process (examples/hash_bench.rs), per second of
#                  wall clock and per second of CPU (user + system: steadier on a shared machine)
#      python    - Vcon.hash as vCon Server computes it: json.loads + normalize + json.dumps + sha256
#      sha256sum - raw SHA-256 over the same bytes (coreutils), the floor
# 2. Peak memory and throughput of whole processes (`/usr/bin/time -v`), median of 3, on the same
#    two vCons and on a 100 MB vCon of tiny elements (an analysis body of ~25M small JSON values):
#      vcon-otel hash FILE  (SHA-256 and the sha512 token; the file is read whole), and the same
#      Python expression as above in a fresh interpreter.
#
# BENCH_HASH_MEMORY=0 skips part 2. BENCH_HASH_BASELINE_REV=<git revision> also builds that revision (in a temporary worktree, target
# dir ${BENCH_HASH_BASELINE_TARGET:-target/bench-baseline}, kept for the next run) and adds it side
# by side as "rust@REV". VCON_OTEL_PYTHON picks the Python (default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
tgt="${CARGO_TARGET_DIR:-target}"
PY=${VCON_OTEL_PYTHON:-python3}
cargo build --release --quiet --example hash_bench --bin vcon-otel
work=$(mktemp -d)
cleanup() { [ -d "$work/base" ] && git worktree remove --force "$work/base"; rm -rf "$work"; }
trap cleanup EXIT
base=""
if [ -n "${BENCH_HASH_BASELINE_REV:-}" ]; then
  rev=$BENCH_HASH_BASELINE_REV
  git worktree add --quiet --detach "$work/base" "$rev"
  btgt=$(realpath -m "${BENCH_HASH_BASELINE_TARGET:-target/bench-baseline}")
  (cd "$work/base" && CARGO_TARGET_DIR="$btgt" cargo build --release --quiet --example hash_bench --bin vcon-otel)
  base="$btgt/release"
fi
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
sys.path.insert(0, "python/bench")
from vcons import vcon_doc
for name, size in [("v5k", 5_000), ("v100k", 100_000), ("v2m", 2_000_000)]:
    with open(os.path.join(sys.argv[1], name + ".json"), "w") as f:
        f.write(json.dumps(vcon_doc(size, u="018f5e2a-0000-8000-8000-000000000002"), separators=(",", ":")))
# 100 MB of tiny elements: numbers, strings, literals, empty and one-entry containers.
head = ('{"uuid":"018f5e2a-0000-8000-8000-000000000001","vcon":"0.4.0","created_at":"2026-11-22T10:00:00.000+00:00",'
        '"parties":[{"tel":"+15555550100"}],"dialog":[],"analysis":[{"type":"x","encoding":"json","body":[')
tail = '0]}],"attachments":[]}'
unit = '0,1.5,"a",true,null,[],{},{"k":1},[2,3],-7,'
with open(os.path.join(sys.argv[1], "100m-tiny.json"), "w") as f:
    f.write(head + unit * ((100_000_000 - len(head) - len(tail)) // len(unit)) + tail)
PYGEN
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "## 1. Throughput in process (median of 5)"
hdr="| vCon | rust MB/s | rust MB/CPU-s |"; sep="|---|---|---|"
[ -n "$base" ] && { hdr="$hdr rust@$rev MB/s | rust@$rev MB/CPU-s |"; sep="$sep---|---|"; }
printf '%s python MB/s | sha256sum MB/s | rust/python | sha256sum/rust |\n%s---|---|---|---|\n' "$hdr" "$sep"
for name in 100k 5m v5k v100k v2m; do
  f="$work/$name.json"; bytes=$(stat -c %s "$f")
  case $name in v5k) n=8000 ;; 100k | v100k) n=400 ;; v2m) n=20 ;; *) n=10 ;; esac
  rust_runs() { # rust_runs DIR OUT: median wall MB/s into OUT, median MB per CPU second into OUT.cpu, the hash into OUT.hash
    : > "$2.all"; : > "$2.cpuall"
    for _ in 1 2 3 4 5; do
      /usr/bin/time -f '%U %S' -o "$work/cpu" "$1"/examples/hash_bench "$f" "$n" > "$work/line"
      cut -d' ' -f1 "$work/line" >> "$2.all"; cut -d' ' -f2 "$work/line" > "$2.hash"
      awk -v b="$bytes" -v n="$n" '{print b * n / ($1 + $2) / 1e6}' "$work/cpu" >> "$2.cpuall"
    done
    median < "$2.all" > "$2"; median < "$2.cpuall" > "$2.cpu"
  }
  rust_runs "$tgt/release" "$work/rust"
  echo 0 > "$work/base.mbs"; echo 0 > "$work/base.mbs.cpu"
  if [ -n "$base" ]; then
    rust_runs "$base" "$work/base.mbs"
    cmp -s "$work/rust.hash" "$work/base.mbs.hash" || { echo "bench-hash: $name: rust and rust@$rev hash differently" >&2; exit 1; }
  fi
  for _ in 1 2 3 4 5; do "$PY" - "$f" "$n" <<'PYH'
import sys, time, json, hashlib, os
sys.path.insert(0, "scripts/hash")
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
r,rc,b,bc,p,s=(float(open('$work/'+x).read()) for x in ('rust','rust.cpu','base.mbs','base.mbs.cpu','py','sum'))
col = (' %.0f | %.0f |' % (b, bc)) if '$base' else ''
print('| %s | %.0f | %.0f |%s %.0f | %.0f | %.1fx | %.2fx |' % ('$name', r, rc, col, p, s, r/p, s/r))"
done
rm -f "$work/rep"

[ "${BENCH_HASH_MEMORY:-1}" = 0 ] && exit 0
echo
echo "## 2. Whole process: peak RSS and throughput (/usr/bin/time -v, median of 3)"
cat > "$work/py_hash.py" <<'PYP'
import sys, json, hashlib
sys.path.insert(0, "scripts/hash")
from vcon_hash_ref import normalize_legacy_fields
d = json.loads(open(sys.argv[1], encoding="utf-8").read()); normalize_legacy_fields(d)
print(hashlib.sha256(json.dumps(d).encode()).hexdigest())
PYP
measure() { # measure LABEL FILE COMMAND... -> one table row
  local label=$1 f=$2; shift 2
  local bytes; bytes=$(stat -c %s "$f")
  : > "$work/rss"; : > "$work/secs"
  for _ in 1 2 3; do
    /usr/bin/time -v -o "$work/tv" "$@" > "$work/out"
    awk -F': ' '/Maximum resident set size/ {print $2}' "$work/tv" >> "$work/rss"
    awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$work/tv" >> "$work/secs"
  done
  local rss secs; rss=$(median < "$work/rss"); secs=$(median < "$work/secs")
  python3 -c "
b,rss,secs=$bytes,$rss*1024,$secs
print('| %s | %s | %.1f | %.0f | %.1fx | %.2f | %.0f |' % ('$(basename "$f" .json)', '$label', b/1e6, rss/1e6, rss/b, secs, b/secs/1e6 if secs else float('nan')))"
}
echo "| vCon | program | file MB | peak RSS MB | RSS/file | wall s | MB/s |"
echo "|---|---|---|---|---|---|---|"
for name in 100k 5m 100m-tiny; do
  f="$work/$name.json"
  measure "vcon-otel hash" "$f" "$tgt"/release/vcon-otel hash "$f"; h=$(cut -d' ' -f1 "$work/out")
  if [ -n "$base" ]; then
    measure "vcon-otel@$rev hash" "$f" "$base"/vcon-otel hash "$f"; b=$(cut -d' ' -f1 "$work/out")
    [ "$h" = "$b" ] || { echo "bench-hash: $name: rust $h != rust@$rev $b" >&2; exit 1; }
  fi
  measure "python $("$PY" -c 'import platform; print(platform.python_version())')" "$f" "$PY" "$work/py_hash.py" "$f"
  [ "$h" = "$(cat "$work/out")" ] || { echo "bench-hash: $name: rust $h != python $(cat "$work/out")" >&2; exit 1; }
done
