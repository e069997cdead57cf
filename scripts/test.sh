#!/usr/bin/env bash
# The test command: installs what the tests need (scripts/install-test-deps.sh, cached), then runs
# every suite and prints one closing line `test.sh: N passed, M failed` (N, M count suites).
set -uo pipefail
cd "$(dirname "$0")/.."
CACHE=${VCON_OTEL_CACHE:-$HOME/.cache/vcon-otel}
bash scripts/install-test-deps.sh || { echo "test.sh: 0 passed, 1 failed"; exit 1; }
# shellcheck disable=SC1091
. "$CACHE/env.sh"
export CARGO_TERM_COLOR=never
locked=""
[ -f Cargo.lock ] && locked="--locked"
passed=0; failed=0; failures=()
suite() { # suite NAME COMMAND...
  local name=$1; shift
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$name"); fi
}
suite "cargo build" cargo build --release $locked --bins --examples
suite "cargo test" cargo test --release $locked
for s in scripts/test/python.sh scripts/check/ops.sh scripts/check/k8s.sh scripts/check/stack.sh scripts/test/hash-property.sh scripts/test/fuzz.sh; do
  [ -x "$s" ] && suite "$s" bash "$s"
done
[ ${#failures[@]} -eq 0 ] || echo "failed suites: ${failures[*]}"
echo "test.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
