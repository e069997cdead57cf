#!/usr/bin/env bash
# Conserver-side cost per tracer call (python/bench/bench_call.py): starts Redis with RedisJSON and
# an OTLP/gRPC receiver on free loopback ports, then prints the comparison table.
set -euo pipefail
cd "$(dirname "$0")/.."
tgt="${CARGO_TARGET_DIR:-target}"
CACHE=${VCON_OTEL_CACHE:-$HOME/.cache/vcon-otel}
. "$CACHE/env.sh"
cargo build --release --quiet --example otlp_sink
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d); rport=$(free_port); sport=$(free_port)
"$VCON_OTEL_REDIS_SERVER" --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --loadmodule "$VCON_OTEL_REJSON" --daemonize yes --logfile "$work/redis.log" --pidfile "$work/redis.pid"
"$tgt"/release/examples/otlp_sink "127.0.0.1:$sport" > "$work/sink.log" 2>&1 &
sink=$!
trap 'kill $sink 2>/dev/null; kill "$(cat "$work/redis.pid")" 2>/dev/null; rm -rf "$work"' EXIT
until redis-cli -p "$rport" PING >/dev/null 2>&1; do sleep 0.1; done
cd python && "$VCON_OTEL_PYTHON" bench/bench_call.py "redis://127.0.0.1:$rport" "http://127.0.0.1:$sport" "${1:-1}"
