#!/usr/bin/env bash
# Conserver-side cost per tracer call (python/bench/bench_call.py): starts Redis with RedisJSON and
# an OTLP/gRPC receiver on free loopback ports, then prints the comparison table.
set -euo pipefail
cd "$(dirname "$0")/../.."
tgt="${CARGO_TARGET_DIR:-target}"
CACHE=${VCON_OTEL_CACHE:-$HOME/.cache/vcon-otel}
. "$CACHE/env.sh"
. scripts/lib.sh
cargo build --release --quiet --example otlp_sink
work_dir work; rport=$(free_port); sport=$(free_port)
start "$work/redis.log" "$VCON_OTEL_REDIS_SERVER" --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --loadmodule "$VCON_OTEL_REJSON"
start "$work/sink.log" "$tgt"/release/examples/otlp_sink "127.0.0.1:$sport"
wait_port "$rport"; wait_port "$sport"
(cd python && "$VCON_OTEL_PYTHON" bench/bench_call.py "redis://127.0.0.1:$rport" "http://127.0.0.1:$sport" "${1:-1}")
