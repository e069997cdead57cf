#!/usr/bin/env bash
# Checks the operations pack: Prometheus config, alert rules and their unit tests, Grafana
# dashboards against Grafana's own schema types, every panel query's PromQL, docker-compose.yml
# against the compose specification (plus depends_on targets and mounted paths), the compose bridge
# config, and (when the binary is built) every panel query against a real Prometheus scraping the
# demo (scripts/check/dashboards-live.sh). Closing line: `check-ops: N passed, M failed`.
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${VCON_OTEL_PROMTOOL:?run scripts/test.sh (it installs promtool)}" "${VCON_OTEL_NODE_MODULES:?run scripts/test.sh}" "${VCON_OTEL_CHECK_JSONSCHEMA:?run scripts/test.sh}"
passed=0; failed=0
. scripts/lib.sh
work_dir work
check() { local name=$1; shift; if "$@" >"$work/out" 2>&1; then passed=$((passed+1)); echo "ok   $name"; else failed=$((failed+1)); echo "FAIL $name"; sed 's/^/     /' "$work/out" | tail -30; fi; }

check "promtool check config" "$VCON_OTEL_PROMTOOL" check config config/prometheus.yml
check "promtool check rules" "$VCON_OTEL_PROMTOOL" check rules config/alerts.yml
check "promtool test rules (every alert firing and quiet)" bash -c "cd config && '$VCON_OTEL_PROMTOOL' test rules alerts.test.yml"
check "every alert has a runbook section" python3 - <<'PY'
import re, sys
alerts = re.findall(r"- alert: (\S+)", open("config/alerts.yml").read())
doc = open("docs/alerts.md").read().lower()
tested = open("config/alerts.test.yml").read()
missing = [a for a in alerts if ("## " + a.lower()) not in doc]
untested = [a for a in alerts if ("alertname: " + a) not in tested]
if missing or untested:
    sys.exit("no runbook: %s; no unit test: %s" % (missing, untested))
PY

# Dashboards: regenerate (must equal what is committed), then type-check with @grafana/schema.
check "dashboards are what scripts/ops/make_dashboards.py generates" bash -c "cp -r dashboards '$work/before' && python3 scripts/ops/make_dashboards.py >/dev/null && diff -r '$work/before' dashboards"
ln -s "$VCON_OTEL_NODE_MODULES/node_modules" "$work/node_modules"
for f in dashboards/*.json; do
  python3 - "$f" "$work/$(basename "$f" .json).ts" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
open(sys.argv[2], "w").write("import { Dashboard } from '@grafana/schema';\nexport const d: Dashboard = " + json.dumps(d, indent=1) + ";\n")
PY
done
python3 - "$work/negative.ts" <<'PY'
import json, sys
d = json.load(open("dashboards/chains.json")); d["panels"][1]["no_such_key"] = 1
open(sys.argv[1], "w").write("import { Dashboard } from '@grafana/schema';\nexport const d: Dashboard = " + json.dumps(d) + ";\n")
PY
check "dashboards match Grafana's schema types (tsc --strict)" bash -c "cd '$work' && node_modules/.bin/tsc --noEmit --strict --skipLibCheck $(cd dashboards && ls *.json | sed 's/json$/ts/' | tr '\n' ' ')"
check "the schema check rejects an unknown key (self-check)" bash -c "cd '$work' && ! node_modules/.bin/tsc --noEmit --strict --skipLibCheck negative.ts"
python3 - "$work/panels.rules.yml" <<'PY'
import json, sys
sys.path.insert(0, "scripts/ops")
from panel_queries import panel_queries
rules = [{"record": "panel:%s:%d:%s" % (f[:-5].replace("-", "_"), p["id"], t["refId"]), "expr": expr}
         for f, p, t, expr in panel_queries("1m")]
open(sys.argv[1], "w").write(json.dumps({"groups": [{"name": "panels", "rules": rules}]}))
PY
check "every panel query is valid PromQL" "$VCON_OTEL_PROMTOOL" check rules "$work/panels.rules.yml"

check "docker-compose.yml matches the compose specification" "$VCON_OTEL_CHECK_JSONSCHEMA" --builtin-schema vendor.compose-spec docker-compose.yml
check "compose depends_on targets and mounted paths exist" "${VCON_OTEL_PYTHON:-python3}" - <<'PY'
import os, sys, yaml
c = yaml.safe_load(open("docker-compose.yml"))
services = c["services"]
problems = []
for name, s in services.items():
    deps = s.get("depends_on", [])
    for d in (deps if isinstance(deps, list) else list(deps)):
        if d not in services:
            problems.append("%s depends_on unknown service %s" % (name, d))
    for v in s.get("volumes", []):
        src = v.split(":")[0]
        if src.startswith("./") and not os.path.exists(src):
            problems.append("%s mounts missing path %s" % (name, src))
    b = s.get("build")
    if isinstance(b, dict) and not os.path.exists(os.path.join(b.get("context", "."), b.get("dockerfile", "Dockerfile"))):
        problems.append("%s builds from a missing Dockerfile" % name)
if problems:
    sys.exit("\n".join(problems))
PY
check "compose Jaeger config: every pipeline component and extension is defined" "${VCON_OTEL_PYTHON:-python3}" - <<'PY'
import sys, yaml
c = yaml.safe_load(open("config/compose/jaeger.yml"))
problems = ["extension %s is not defined" % e for e in c["service"]["extensions"] if e not in c.get("extensions", {})]
for name, p in c["service"]["pipelines"].items():
    for kind in ("receivers", "processors", "exporters"):
        problems += ["pipeline %s: %s %s is not defined" % (name, kind[:-1], x) for x in p.get(kind, []) if x not in (c.get(kind) or {})]
if problems:
    sys.exit("\n".join(problems))
PY
check "compose images are pinned to a version (no latest, no untagged)" "${VCON_OTEL_PYTHON:-python3}" - <<'PY'
import re, sys, yaml
bad = ["%s: %s" % (n, s["image"]) for n, s in yaml.safe_load(open("docker-compose.yml"))["services"].items()
       if "image" in s and not re.search(r":v?\d+\.\d+", s["image"])]
if bad:
    sys.exit("unpinned images: %s" % bad)
PY
# The bridge binary (built here if needed: the test command builds it first, so this is cached).
cargo build --release --quiet --bin vcon-otel
bin="${CARGO_TARGET_DIR:-target}/release/vcon-otel"
check "config/compose/vcon-otel.yml passes vcon-otel check-config" "$bin" check-config config/compose/vcon-otel.yml
check "config/vcon-otel.yml passes vcon-otel check-config" env OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 "$bin" check-config config/vcon-otel.yml
check "every panel query returns data from a real Prometheus scraping the demo" bash scripts/check/dashboards-live.sh
echo "check-ops: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
