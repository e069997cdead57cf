#!/usr/bin/env bash
# libFuzzer targets in fuzz/ (cargo-fuzz, stable toolchain; docs/benchmarks.md, "Fuzzing"):
#   record_decode  vcon_otel::event::decode
#   vcon_hash      Vcon.hash against the in-memory model and against Python (scripts/hash/vcon_hash_oracle.py)
#   http_body      the HTTP ingest body parser (when the source has ingest::http::parse_body)
#
#   scripts/test/fuzz.sh                     the short run of the test command: each target for
#                                       FUZZ_SECONDS (default 60) from its corpus
#   scripts/test/fuzz.sh run TARGET [ARGS]   one target with libFuzzer ARGS (e.g. -runs=10000000)
#   scripts/test/fuzz.sh merge TARGET DIR... minimize DIR... into the kept corpus fuzz/corpus/TARGET
#
# The kept corpus is read, never written by a run: new inputs go to a temporary directory (or
# FUZZ_WORK). A crash leaves its input in fuzz/artifacts/TARGET/ and fails the run; the last lines
# print it. cargo-fuzz is installed by scripts/install-test-deps.sh; the Python of the oracle is
# VCON_OTEL_FUZZ_PYTHON (default: the test venv's; "none" compares with the in-memory model only). Targets are built without a sanitizer (-s none):
# the code under test is safe Rust, and the build needs no nightly-only flag then.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${VCON_OTEL_CACHE:-$HOME/.cache/vcon-otel}
# shellcheck disable=SC1091
[ -f "$CACHE/env.sh" ] && . "$CACHE/env.sh"
export PATH="$CACHE/cargo-fuzz/bin:$PATH"
command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo-fuzz is missing: run scripts/install-test-deps.sh" >&2; exit 1; }
export VCON_OTEL_FUZZ_PYTHON=${VCON_OTEL_FUZZ_PYTHON:-${VCON_OTEL_PYTHON:-python3}}
tdir=$(realpath -m "${CARGO_TARGET_DIR:-target}/fuzz")
opts=(-O -s none --target-dir "$tdir")

targets=(record_decode vcon_hash)
if grep -qs 'pub fn parse_body' src/ingest/http/body.rs; then
  targets+=(http_body)
else
  echo "fuzz.sh: http_body skipped: this source has no ingest::http::parse_body yet" >&2
fi

# Per target: the libFuzzer dictionary, the largest input, extra read-only seed directories.
args_for() {
  case $1 in
    record_decode) echo "-dict=fuzz/dicts/record.dict -max_len=70000" ;;
    http_body) echo "-dict=fuzz/dicts/record.dict -max_len=140000" ;;
    vcon_hash) echo "-dict=fuzz/dicts/vcon.dict -max_len=24000" ;;
  esac
}
seeds_for() {
  case $1 in
    vcon_hash) echo "tests/vectors" ;;
    http_body) echo "fuzz/corpus/record_decode" ;;
  esac
}

run_one() { # run_one TARGET WORKDIR LIBFUZZER_ARGS...
  local t=$1 w=$2; shift 2
  mkdir -p "$w" "fuzz/artifacts/$t"
  # shellcheck disable=SC2046
  if cargo fuzz run "${opts[@]}" "$t" "$w" "fuzz/corpus/$t" $(seeds_for "$t") -- \
      $(args_for "$t") -print_final_stats=1 "$@" 2> "$w.log"; then
    local n; n=$(awk '/stat::number_of_executed_units/ {print $2}' "$w.log" | tail -1)
    local s; s=$(awk '/stat::average_exec_per_sec/ {print $2}' "$w.log" | tail -1)
    echo "fuzz.sh: $t: ${n:-?} executions (${s:-?}/s), 0 crashes"
  else
    tail -40 "$w.log" >&2
    echo "fuzz.sh: $t: FAILED (input kept in fuzz/artifacts/$t/)" >&2
    return 1
  fi
}

case ${1:-short} in
  short)
    for t in "${targets[@]}"; do cargo fuzz build "${opts[@]}" "$t"; done
    work=${FUZZ_WORK:-$(mktemp -d)}
    failed=0
    for t in "${targets[@]}"; do
      run_one "$t" "$work/$t" -max_total_time="${FUZZ_SECONDS:-60}" || failed=1
    done
    [ -n "${FUZZ_WORK:-}" ] || rm -rf "$work"
    exit "$failed"
    ;;
  run)
    t=$2; shift 2
    work=${FUZZ_WORK:-$(mktemp -d)}
    run_one "$t" "$work/$t" "$@"
    ;;
  merge)
    t=$2; shift 2
    # Adds to the kept corpus only the inputs of DIR... that reach new coverage.
    # shellcheck disable=SC2046
    # Edges only (-use_counters=0), inputs up to 4 KB: a small corpus that keeps the coverage.
    cargo fuzz run "${opts[@]}" "$t" "fuzz/corpus/$t" "$@" -- -merge=1 -use_counters=0 $(args_for "$t") -max_len=4096
    ;;
  *) sed -n 2,16p "$0"; exit 64 ;;
esac
