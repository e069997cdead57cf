#!/usr/bin/env bash
# Checks deploy/kubernetes/ offline: the base's config copy equals config/vcon-otel.yml, the
# PrometheusRule is what scripts/ops/make_prometheusrule.py generates from config/alerts.yml,
# `kubectl kustomize` renders the base and the example overlay, and every rendered object validates
# strictly against the Kubernetes schemas (kubernetes-validate) and the CRD schemas kept in
# deploy/kubernetes/schemas/ (jsonschema), with the references between objects checked
# (scripts/ops/validate_k8s.py). Self-checks prove the validation rejects what it must.
# Closing line: `check-k8s: N passed, M failed`.
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${VCON_OTEL_PYTHON:?run scripts/test.sh (it installs the venv)}"
KUBECTL=${VCON_OTEL_KUBECTL:-$(command -v kubectl)}
py=$VCON_OTEL_PYTHON
k8s=deploy/kubernetes
passed=0; failed=0
. scripts/lib.sh
work_dir work
check() { local name=$1; shift; if "$@" >"$work/out" 2>&1; then passed=$((passed+1)); echo "ok   $name"; else failed=$((failed+1)); echo "FAIL $name"; sed 's/^/     /' "$work/out" | tail -30; fi; }
# rejects FILE PATTERN: validation fails, naming the expected problem.
rejects() { ! "$py" scripts/ops/validate_k8s.py "$1" > "$work/neg" || { cat "$work/neg"; return 1; }; grep -q -- "$2" "$work/neg" || { cat "$work/neg"; return 1; }; }

check "base/vcon-otel.yml is a copy of config/vcon-otel.yml (cp config/vcon-otel.yml $k8s/base/)" cmp config/vcon-otel.yml $k8s/base/vcon-otel.yml
check "base/prometheusrule.yaml is generated from config/alerts.yml" "$py" scripts/ops/make_prometheusrule.py --check
check "every CRD schema has its source in schemas/README.md" bash -c "for f in $k8s/schemas/*.json; do grep -q \"\$(basename \$f)\" $k8s/schemas/README.md || { echo \"\$f: not in README.md\"; exit 1; }; done"
check "kubectl kustomize renders the base" bash -c "'$KUBECTL' kustomize $k8s/base > '$work/base.yaml'"
check "kubectl kustomize renders the example overlay" bash -c "'$KUBECTL' kustomize $k8s/overlays/example > '$work/overlay.yaml'"
check "base: every object valid (Kubernetes 1.32 and 1.37, CRDs), references intact" "$py" scripts/ops/validate_k8s.py "$work/base.yaml" --k8s-version 1.32.0 --k8s-version 1.37.0
check "overlay: every object valid, references intact after namePrefix and namespace" "$py" scripts/ops/validate_k8s.py "$work/overlay.yaml" --k8s-version 1.32.0 --k8s-version 1.37.0

# Self-checks: each must be rejected.
cp -r $k8s "$work/k8s"
sed -i '/^configurations:/,/keda-names.yaml/d' "$work/k8s/base/kustomization.yaml"
"$KUBECTL" kustomize "$work/k8s/overlays/example" > "$work/no-nameref.yaml" 2>"$work/out"
check "self-check: without the KEDA nameReference, the prefixed overlay's scaleTargetRef dangles" rejects "$work/no-nameref.yaml" "scaleTargetRef StatefulSet/vcon-otel is not the rendered"
"$py" - "$work" <<'PY'
import copy, sys, yaml
work = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(work + "/base.yaml")) if d]
def write(name, mutate):
    ds = copy.deepcopy(docs)
    mutate({d["kind"]: d for d in ds})
    yaml.safe_dump_all(ds, open("%s/%s.yaml" % (work, name), "w"))
write("bad-crd", lambda k: k["ScaledObject"]["spec"]["triggers"][0].__setitem__("metadataa", {}))
write("bad-core", lambda k: k["StatefulSet"]["spec"]["template"]["spec"]["containers"][0].__setitem__("imagePullPolicyy", "Always"))
write("pending-trigger", lambda k: k["ScaledObject"]["spec"]["triggers"][0]["metadata"].__setitem__("pendingEntriesCount", "5"))
PY
check "self-check: an unknown field in a ScaledObject is rejected (CRD schema)" rejects "$work/bad-crd.yaml" "'metadataa' was unexpected"
check "self-check: an unknown field in the StatefulSet is rejected (kubernetes-validate --strict)" rejects "$work/bad-core.yaml" "'imagePullPolicyy' was unexpected"
check "self-check: a pendingEntriesCount trigger is rejected" rejects "$work/pending-trigger.yaml" "scale on lagCount, not pendingEntriesCount"
echo "check-k8s: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
