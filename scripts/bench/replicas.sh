#!/usr/bin/env bash
# Replicas benchmark: one vs two vs three bridge replicas (one consumer group, distinct
# `stream.consumer`) draining the same records, side by side in one run.
#
# 1. Fill: a Redis with RedisJSON on a free port; the real Python producer mix
#    (python/tests/load_mix.py: tracer only, tracer + hooks, hooks only; three links, UUID swaps,
#    halts, raising links; the producer's default options) appends VCONS vCons' records. The
#    consumer group is created at the stream's end (`XGROUP CREATE … $`), and the database saved.
# 2. Each run starts a fresh Redis from a copy of that file (the same records, no completion
#    markers, no pending entries), an OTLP/gRPC sink (examples/otlp_sink.rs) and N replicas, and
#    waits until every replica answers /readyz (so process start-up is not timed). Then
#    `CONFIG RESETSTAT`, the clock starts, and `XGROUP SETID … 0 ENTRIESREAD 0` hands the whole
#    stream to the group; the clock stops when `XINFO GROUPS` shows pending = 0 and lag = 0
#    (polled every 20 ms). Events/s = records / that time. Redis commands per record are the
#    `INFO commandstats` deltas over the drain divided by the records, without the benchmark's own
#    commands (its `XINFO GROUPS` polls, `CONFIG`, `INFO`, the `XGROUP SETID`).
# 3. Runs are interleaved (1,2,3,1,2,3,…), RUNS times each; the table shows medians.
#
# The replicas run with `stream.block_ms: 100` (idle replicas notice the SETID within 0.1 s) and
# `export.max_batch_delay_ms: 50`; everything else is the default configuration.
#
# Usage: scripts/bench/replicas.sh [--vcons N] [--runs N] [--rate VCONS_PER_S] [--replicas "1 2 3"]
#                                  [--baseline BIN]
#   defaults: --vcons 2000 --runs 3 --rate 1000 --replicas "1 2 3"
#   --baseline BIN: also run one replica of another build's vcon-otel binary in every round (row
#   "1 (baseline)"), e.g. the previous commit's, to compare side by side on the same records.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
VCONS=2000 RUNS=3 RATE=1000 REPLICAS="1 2 3" BASELINE=""
while [ $# -gt 0 ]; do
  case $1 in
    --vcons) VCONS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --replicas) REPLICAS=$2; shift 2 ;;
    --baseline) BASELINE=$2; shift 2 ;;
    *) echo "replicas.sh: unknown option $1 (see the header for the options)" >&2; exit 2 ;;
  esac
done
CACHE=${VCON_OTEL_CACHE:-$HOME/.cache/vcon-otel}
. "$CACHE/env.sh"
BIN="${CARGO_TARGET_DIR:-target}/release"
cargo build --release --quiet --bin vcon-otel --example otlp_sink
PY=$VCON_OTEL_PYTHON
STREAM=vcon_otel:events GROUP=vcon-otel
work_dir W

# start_redis DIR: a Redis with RedisJSON on a free port, persisting to DIR/dump.rdb; sets PORT.
start_redis() {
  PORT=$(free_port)
  start "$1/redis.log" "$VCON_OTEL_REDIS_SERVER" --bind 127.0.0.1 --port "$PORT" --dir "$1" \
    --dbfilename dump.rdb --save "" --appendonly no --loadmodule "$VCON_OTEL_REJSON"
  REDIS_PID=$LAST_PID
  wait_port "$PORT" 10
  until redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; do sleep 0.1; done
}

echo "filling: $VCONS vCons at $RATE/s through python/tests/load_mix.py" >&2
mkdir -p "$W/fill"
start_redis "$W/fill"
"$PY" python/tests/load_mix.py --redis-url "redis://127.0.0.1:$PORT" --vcons "$VCONS" --rate "$RATE" >&2
redis-cli -p "$PORT" XGROUP CREATE "$STREAM" "$GROUP" '$' >/dev/null
RECORDS=$(redis-cli -p "$PORT" XLEN "$STREAM")
redis-cli -p "$PORT" SAVE >/dev/null
stop "$REDIS_PID"
echo "filled: $RECORDS records" >&2

# one_run N OUT [BRIDGE]: one drain by N replicas of BRIDGE (default: this build's binary);
# appends "LABEL seconds commands-json finished-elsewhere" to OUT (LABEL: N, or "base" for a baseline).
one_run() {
  local n=$1 out=$2 bridge=${3:-$BIN/vcon-otel} label=$1 d i pids=() admins=()
  [ -n "${3:-}" ] && label=base
  d=$(mktemp -d "$W/run-XXXX")
  cp "$W/fill/dump.rdb" "$d/dump.rdb"
  start_redis "$d"
  local sink_port; sink_port=$(free_port)
  start "$d/sink.log" "$BIN/examples/otlp_sink" "127.0.0.1:$sink_port"
  local sink_pid=$LAST_PID
  wait_port "$sink_port" 10
  for i in $(seq "$n"); do
    local admin; admin=$(free_port)
    printf 'redis: {url: "redis://127.0.0.1:%s"}\nexport: {endpoint: "http://127.0.0.1:%s", max_batch_delay_ms: 50}\nstream: {consumer: bench-replica-%s, block_ms: 100}\n' \
      "$PORT" "$sink_port" "$i" > "$d/bridge-$i.yml"
    start "$d/bridge-$i.log" "$bridge" run --config "$d/bridge-$i.yml" --admin-addr "127.0.0.1:$admin"
    pids+=("$LAST_PID") admins+=("$admin")
  done
  for a in "${admins[@]}"; do wait_http "http://127.0.0.1:$a/readyz" 30; done
  "$PY" - "$PORT" "$STREAM" "$GROUP" "$label" "$RECORDS" >> "$out" <<'EOF'
import json, sys, time
import redis
port, stream, group, n, records = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
r = redis.Redis(port=int(port))
r.config_resetstat()
t0 = time.monotonic()
r.execute_command("XGROUP", "SETID", stream, group, "0", "ENTRIESREAD", "0")
polls = 0
while True:
    g = next(g for g in r.xinfo_groups(stream) if g["name"] == group.encode())
    polls += 1
    if g["pending"] == 0 and g["lag"] == 0:
        break
    if time.monotonic() - t0 > 600:
        sys.exit(f"not drained after 600 s: pending {g['pending']}, lag {g['lag']}")
    time.sleep(0.02)
secs = time.monotonic() - t0
stats = r.info("commandstats")
calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
calls["xinfo|groups"] = calls.get("xinfo|groups", 0) - polls
calls["xgroup|setid"] = calls.get("xgroup|setid", 0) - 1
calls = {k: v for k, v in calls.items() if v > 0 and not k.startswith(("config|", "info"))}
print(n, round(secs, 4), json.dumps(calls, separators=(",", ":")))
EOF
  local elsewhere=0 a v
  for a in "${admins[@]}"; do
    v=$(curl -sf "http://127.0.0.1:$a/metrics" | awk '/^vcon_otel_runs_finished_elsewhere_total/ {s += $2} END {print s + 0}')
    elsewhere=$(awk -v x="$elsewhere" -v y="$v" 'BEGIN {print x + y}')
  done
  sed -i '$ s/$/ '"$elsewhere"'/' "$out"
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop "${pids[$i]}"; done
  stop "$sink_pid"
  stop "$REDIS_PID"
  rm -rf "$d"
}

RESULTS="$W/results"
: > "$RESULTS"
for rep in $(seq "$RUNS"); do
  for n in $REPLICAS; do
    one_run "$n" "$RESULTS"
    echo "run $rep, $n replica(s): $(tail -1 "$RESULTS" | cut -d' ' -f2) s" >&2
  done
  if [ -n "$BASELINE" ]; then
    one_run 1 "$RESULTS" "$BASELINE"
    echo "run $rep, 1 replica of the baseline: $(tail -1 "$RESULTS" | cut -d' ' -f2) s" >&2
  fi
done
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"$PY" - "$RESULTS" "$RECORDS" "$VCONS" <<'EOF'
import json, statistics, sys
path, records, vcons = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = {}
for line in open(path):
    n, secs, calls, elsewhere = line.split(" ", 3)
    runs.setdefault(n, []).append((float(secs), json.loads(calls), float(elsewhere)))
label = lambda n: "1 (baseline)" if n == "base" else n
order = lambda n: (n == "base", n)
def med(xs):
    return statistics.median(xs)
print(f"{vcons} vCons, {records} records; median of {len(next(iter(runs.values())))} interleaved runs\n")
print("| replicas | drain (s) | events/s | Redis commands / record | top commands / record | runs finished elsewhere |")
print("|---:|---:|---:|---:|---|---:|")
for n in sorted(runs, key=order):
    rs = runs[n]
    secs = med([s for s, _, _ in rs])
    total = med([sum(c.values()) / records for _, c, _ in rs])
    names = set().union(*(c for _, c, _ in rs))
    per = {k: med([c.get(k, 0) / records for _, c, _ in rs]) for k in names}
    top = ", ".join(f"`{k}` {v:.3f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1])[:5])
    print(f"| {label(n)} | {secs:.2f} | {records / secs:,.0f} | {total:.3f} | {top} | {med([e for _, _, e in rs]):.0f} |")
print("\nRedis commands per record by command (median):\n")
ns = sorted(runs, key=order)
every = sorted(set().union(*(c for rs in runs.values() for _, c, _ in rs)))
per = {k: [med([c.get(k, 0) / records for _, c, _ in runs[n]]) for n in ns] for k in every}
print("| command | " + " | ".join(f"{label(n)} replica(s)" for n in ns) + " |")
print("|---|" + "---:|" * len(ns))
for k, vs in sorted(per.items(), key=lambda kv: -max(kv[1])):
    if max(vs) >= 0.0005:
        print(f"| `{k}` | " + " | ".join(f"{v:.4f}" for v in vs) + " |")
EOF
