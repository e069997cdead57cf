#!/usr/bin/env bash
# Python tests of the conserver integration (python/), against a real Redis with RedisJSON.
set -euo pipefail
cd "$(dirname "$0")/../python"
PY=${VCON_OTEL_PYTHON:-python3}
set +e
"$PY" -m pytest -q tests
rc=$?
set -e
# pytest exits 5 when it collected no test: that is a failure here.
[ "$rc" -eq 5 ] && { echo "test-python: no tests collected"; exit 1; }
exit "$rc"
