#!/usr/bin/env bash
# Property test: Rust `Vcon.hash` == Python's on 1,000 generated documents (scripts/hash/hash_property.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
tgt="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --bin vcon-otel
exec "${VCON_OTEL_PYTHON:-python3}" scripts/hash/hash_property.py "$tgt"/release/vcon-otel "${HASH_PROPERTY_N:-1000}"
