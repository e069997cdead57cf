#!/usr/bin/env bash
# Redis memory held per tracer call (per compliance snapshot), before and after the snapshot
# lifecycle, for a body-heavy and a transcript-heavy vCon of about 100 KB
# (python/bench/snapshot_memory.py: its header says what each phase measures).
#
# For each kind and repetition: a new Redis with RedisJSON on a free loopback port; the vCons
# stored; CALLS calls of the real producer without snapshots (the control: what a call holds
# without one), then CALLS calls with its default options (a COPY per call, TTL 600 s): "before";
# then the bridge (default configuration) and an OTLP receiver drain the stream, the bridge is
# stopped and what stays is read: "after". Every process started here is stopped by its PID.
#
# Usage: scripts/bench/snapshot-memory.sh [CALLS (1000, rounded up to whole runs: 1002)] [REPETITIONS (3)]
set -euo pipefail
cd "$(dirname "$0")/../.."
tgt="${CARGO_TARGET_DIR:-target}"
CACHE=${VCON_OTEL_CACHE:-$HOME/.cache/vcon-otel}
. "$CACHE/env.sh"
. scripts/lib.sh
calls=$(( (${1:-1000} + 5) / 6 * 6 ))  # whole runs: a run cut short stays open until runs.idle_timeout_secs
reps=${2:-3}
cargo build --release --quiet --bin vcon-otel --example otlp_sink
py() { "$VCON_OTEL_PYTHON" python/bench/snapshot_memory.py "$@"; }
work_dir work

# bridge URL WORK STATE: an OTLP receiver and the bridge (default configuration), until the bridge
# drained STATE's calls (empty: just until it is ready), both stopped by PID.
bridge() {
  local url=$1 work=$2 st=$3 sport admin sink_pid bridge_pid
  sport=$(free_port); admin=$(free_port)
  start "$work/sink.log" "$tgt/release/examples/otlp_sink" "127.0.0.1:$sport"
  sink_pid=$LAST_PID
  wait_port "$sport"
  printf 'redis: {url: "%s"}\nexport: {endpoint: "http://127.0.0.1:%s"}\nadmin: {addr: "127.0.0.1:%s"}\n' \
    "$url" "$sport" "$admin" > "$work/bridge.yml"
  start "$work/bridge.log" "$tgt/release/vcon-otel" run --config "$work/bridge.yml"
  bridge_pid=$LAST_PID
  wait_http "http://127.0.0.1:$admin/readyz"
  if [ -n "$st" ]; then py drained "$url" "$st" "$calls"; fi
  stop "$bridge_pid"
  stop "$sink_pid"
}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2
states=()
for kind in body transcript; do
  for rep in $(seq "$reps"); do
    st="$work/$kind-$rep.json"
    rport=$(free_port)
    start "$work/redis-$kind-$rep.log" "$VCON_OTEL_REDIS_SERVER" --bind 127.0.0.1 --port "$rport" \
      --save '' --appendonly no --loadmodule "$VCON_OTEL_REJSON"
    redis_pid=$LAST_PID
    wait_port "$rport"
    url="redis://127.0.0.1:$rport"
    py store "$kind" "$url" "$st"
    py mem "$st" stored
    # One bridge session on the empty stream first: what a bridge's start leaves in Redis once
    # (its consumer group, start-up checks) is then in every reading below, not in the per-call ones.
    bridge "$url" "$work" ""
    py mem "$st" base
    py calls "$url" "$st" none "$calls"
    py mem "$st" control
    py calls "$url" "$st" copy "$calls"
    py mem "$st" copies
    py before "$url" "$st"
    bridge "$url" "$work" "$st"
    py mem "$st" drained
    py after "$url" "$st"
    stop "$redis_pid"
    states+=("$st")
    echo "$kind $rep done" >&2
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
py report "${states[@]}"
