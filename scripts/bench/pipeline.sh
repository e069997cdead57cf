#!/usr/bin/env bash
# Whole-pipeline benchmark: Redis stream -> bridge -> OTLP/gRPC receiver, with the streams filled
# by the real Python producer (vcon_otel.tracer.run) with its default options (a compliance
# snapshot per call) and, side by side, the same records without snapshots and a bare read+ack
# baseline. Builds the binaries, then runs python/bench/bench_pipeline.py (its header says what is
# measured and how); that driver starts Redis (with RedisJSON) and the receiver on free loopback
# ports and stops every process it started by PID.
#
# Usage: scripts/bench/pipeline.sh [bench_pipeline.py options]
#   e.g. scripts/bench/pipeline.sh --sizes 5k=60000,100k=12000,2m=400 --runs 3 --rate 10000 (the defaults)
set -euo pipefail
cd "$(dirname "$0")/../.."
tgt="${CARGO_TARGET_DIR:-target}"
CACHE=${VCON_OTEL_CACHE:-$HOME/.cache/vcon-otel}
. "$CACHE/env.sh"
cargo build --release --quiet --bin vcon-otel --example otlp_sink --example drain_stream --example pace_stream
exec "$VCON_OTEL_PYTHON" python/bench/bench_pipeline.py --bin-dir "$tgt/release" \
  --redis-server "$VCON_OTEL_REDIS_SERVER" --rejson "$VCON_OTEL_REJSON" "$@"
