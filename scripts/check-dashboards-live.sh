#!/usr/bin/env bash
# Every dashboard panel query against a real Prometheus (exemplar storage on) scraping a real
# bridge running the demo workload, which also exports its spans over OTLP to a local receiver.
# A query must return data, except the panels listed in EXPECTED_EMPTY with the reason the demo
# cannot produce their series. The chain latency panel's exemplars must carry trace IDs of traces
# the bridge exported (printed by the demo's terminal view).
set -euo pipefail
cd "$(dirname "$0")/.."
tgt="${CARGO_TARGET_DIR:-target}"
: "${VCON_OTEL_PROMETHEUS:?run scripts/test.sh (it installs prometheus)}"
cargo build --release --quiet --bin vcon-otel --example otlp_sink
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d); dport=$(free_port); pport=$(free_port); sport=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
"$tgt"/release/examples/otlp_sink "127.0.0.1:$sport" > "$work/sink.log" 2>&1 & pids+=($!)
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sport" "$tgt"/release/vcon-otel demo --admin-addr "127.0.0.1:$dport" --workers 4 --pace-ms 20 --idle-timeout-secs 2 > "$work/demo.out" 2> "$work/demo.err" & pids+=($!)
cat > "$work/prometheus.yml" <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: vcon-otel
    static_configs: [{targets: ["127.0.0.1:$dport"]}]
YML
"$VCON_OTEL_PROMETHEUS" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" --web.listen-address="127.0.0.1:$pport" --enable-feature=exemplar-storage > "$work/prom.log" 2>&1 & pids+=($!)
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$pport/api/v1/targets" 2>/dev/null | grep -q '"health":"up"' && break
  sleep 0.5
done
sleep 25  # enough scrapes for 15 s rate windows
"${VCON_OTEL_PYTHON:-python3}" - "$pport" "$work/demo.out" <<'PY'
import sys, time
port, demo_out = sys.argv[1], sys.argv[2]
sys.path.insert(0, "scripts/ops")
from live_panels import check_panels, get
# Panels whose series the demo cannot produce, and why.
EXPECTED_EMPTY = {
    "Queue depth": "no hosted tracer with a queue runs in the demo",
    "DLQ pushes by tracer": "no hosted tracer with dlq_vcon_on_error runs in the demo",
    "Export retries by reason": "the demo's collector never fails",
    "Dead letters": "the demo has no Redis stream to dead-letter into",
    "HTTP ingest answers": "the demo does not serve POST /v1/events",
    "Retries": "nothing fails in the demo, so neither hosted tracers nor the export retry",
    "Snapshots deleted and skipped/B": "the demo's producer is never over its snapshot budget",
}
ok, bad = check_panels(port, EXPECTED_EMPTY)
now = time.time()
ex = get(port, "query_exemplars", query="vcon_otel_chain_duration_seconds_bucket", start=now - 120, end=now)["data"]
ids = {e["labels"].get("trace_id") for s in ex for e in s["exemplars"]}
ids.discard(None)
printed = {l.split()[1] for l in open(demo_out) if l.startswith("trace ")}
matched = ids & printed
print("exemplars: %d trace IDs, %d of them traces the bridge exported" % (len(ids), len(matched)))
if not matched:
    bad += 1
    print("FAIL: no chain latency exemplar points at an exported trace")
print("dashboards-live: %d passed, %d failed" % (ok + (1 if matched else 0), bad))
sys.exit(1 if bad else 0)
PY
