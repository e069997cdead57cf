#!/usr/bin/env bash
# Whole-pipeline benchmark: Redis stream -> bridge -> OTLP/gRPC receiver.
#
# For each of RUNS repetitions it fills a fresh stream with RECORDS tracer-call records (tracer-only
# runs of a 3-link chain, as python/ writes them), starts `vcon-otel run` pinned to one core
# (taskset -c 0) under /usr/bin/time, and measures the wall time until every entry is acknowledged
# (group lag 0 and nothing pending). Side by side in the same repetition it measures the baseline:
# a bare consumer that only reads and acknowledges the same number of entries (examples/drain_stream),
# also pinned to core 0. Prints per-run figures, then medians and the bridge/baseline ratio.
#
# Usage: scripts/bench-pipeline.sh [RECORDS=200000] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
tgt="${CARGO_TARGET_DIR:-target}"
RECORDS=${1:-200000}
RUNS=${2:-5}
CACHE=${VCON_OTEL_CACHE:-$HOME/.cache/vcon-otel}
[ -f "$CACHE/env.sh" ] && . "$CACHE/env.sh"
REDIS_SERVER=${VCON_OTEL_REDIS_SERVER:-$(command -v redis-server)}
cargo build --release --quiet --bin vcon-otel --example otlp_sink --example fill_stream --example drain_stream
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
rport=$(free_port); sport=$(free_port); aport=$(free_port)
"$REDIS_SERVER" --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --daemonize yes --logfile "$work/redis.log" --pidfile "$work/redis.pid"
"$tgt"/release/examples/otlp_sink "127.0.0.1:$sport" > "$work/sink.log" 2>&1 &
sink=$!
cleanup() { kill "$sink" 2>/dev/null || true; kill "$(cat "$work/redis.pid")" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cli() { redis-cli -p "$rport" "$@"; }
until cli PING >/dev/null 2>&1; do sleep 0.1; done
cat > "$work/bridge.yml" <<YML
redis: {url: "redis://127.0.0.1:$rport"}
export: {endpoint: "http://127.0.0.1:$sport"}
admin: {addr: "127.0.0.1:$aport"}
stream: {consumer: bench}
YML
now() { date +%s.%N; }
drained() { # group lag 0 and nothing pending for group $1
  local lag pending
  lag=$(cli XINFO GROUPS vcon_otel:events | awk -v g="$1" '$0=="name"{getline; n=$0} $0=="lag"{getline; if(n==g) print}')
  pending=$(cli XPENDING vcon_otel:events "$1" | head -1)
  [ "$lag" = "0" ] && [ "$pending" = "0" ]
}
printf '%-4s %14s %14s %12s %10s\n' run bridge_ev/s baseline_ev/s ratio peak_rss_MB
results=()
for i in $(seq 1 "$RUNS"); do
  cli FLUSHALL >/dev/null
  "$tgt"/release/examples/fill_stream "redis://127.0.0.1:$rport" vcon_otel:events "$RECORDS" >/dev/null
  t0=$(now)
  taskset -c 0 "$tgt"/release/examples/drain_stream "redis://127.0.0.1:$rport" vcon_otel:events >/dev/null
  base=$(python3 -c "print($RECORDS/($(now)-$t0))")
  t0=$(now)
  taskset -c 0 /usr/bin/time -v -o "$work/time.txt" "$tgt"/release/vcon-otel run --config "$work/bridge.yml" > "$work/bridge.log" 2>&1 &
  pid=$!
  until drained vcon-otel 2>/dev/null; do sleep 0.05; done
  t1=$(now)
  pkill -TERM -x vcon-otel || true; wait "$pid" || true
  rss=$(awk -F: '/Maximum resident/{print $2/1024}' "$work/time.txt")
  ev=$(python3 -c "print($RECORDS/($t1-$t0))")
  ratio=$(python3 -c "print($ev/$base)")
  printf '%-4s %14.0f %14.0f %12.2f %10.1f\n' "$i" "$ev" "$base" "$ratio" "$rss"
  results+=("$ev $base $ratio $rss")
done
printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics as s
rows=[list(map(float,l.split())) for l in sys.stdin if l.strip()]
m=[s.median(c) for c in zip(*rows)]
print(f"median: bridge {m[0]:.0f} events/s, baseline {m[1]:.0f} events/s, ratio {m[2]:.2f}, peak RSS {m[3]:.1f} MB")'
