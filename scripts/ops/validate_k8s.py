"""Validates rendered Kubernetes manifests (the output of `kubectl kustomize`) offline.

Usage: python validate_k8s.py RENDERED.yaml [--k8s-version 1.32.0 ...]

1. Every object against the Kubernetes schemas of each given version, strictly (unknown fields
   are errors), with the PyPI package kubernetes-validate.
2. Every custom resource (KEDA ScaledObject/TriggerAuthentication, prometheus-operator
   ServiceMonitor/PrometheusRule) against the openAPIV3Schema of its CRD, kept in
   deploy/kubernetes/schemas/ (README.md there names the sources), with `jsonschema`; strict too:
   an object schema that lists properties and does not preserve unknown fields rejects others, as
   the API server's strict field validation does.
3. The references between objects and the bridge's own rules (see `check_refs`).

A kind that has no schema in either place is an error. Prints one line per problem and exits 1
when there is any.
"""
import json
import os
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "kubernetes", "schemas")
CRD_FILES = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_v1alpha1_triggerauthentication.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
}
# Secrets the deployment expects the operator to create (docs/operations.md, "Kubernetes").
EXTERNAL_SECRETS = {"vcon-otel-redis", "vcon-otel-otlp", "vcon-otel-tokens"}


def strict(schema):
    """The schema with additionalProperties: false wherever properties are listed and unknown
    fields are not explicitly preserved."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    s = {k: strict(v) for k, v in schema.items()}
    if "properties" in s and "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
        s["additionalProperties"] = False
    return s


def crd_validator(key):
    schema = json.load(open(os.path.join(SCHEMAS, CRD_FILES[key])))
    schema.pop("x-vcon-otel-source", None)
    return jsonschema.Draft7Validator(strict(schema))


def where(obj):
    return "%s/%s" % (obj.get("kind"), obj.get("metadata", {}).get("name"))


def validate_schemas(docs, versions):
    problems = []
    validators = {}
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        if key in CRD_FILES:
            v = validators.setdefault(key, crd_validator(key))
            for e in sorted(v.iter_errors(d), key=lambda e: list(e.path)):
                problems.append("%s: %s: %s (CRD schema)" % (where(d), "/".join(map(str, e.path)) or "(root)", e.message))
            continue
        for ver in versions:
            try:
                kubernetes_validate.validate(d, ver, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problems.append("%s: no schema for %s %s in Kubernetes %s nor in %s" % (where(d), key[0], key[1], ver, SCHEMAS))
            except kubernetes_validate.ValidationError as e:
                path = "/".join(map(str, getattr(e, "path", []) or []))
                problems.append("%s: Kubernetes %s: %s%s" % (where(d), ver, path + ": " if path else "", str(e).splitlines()[0]))
    return problems


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_refs(docs):
    """Cross-object references and the bridge's rules; returns the problems."""
    by = {}
    for d in docs:
        by.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    p = []
    sts_all = list(by.get("StatefulSet", {}).values())
    if len(sts_all) != 1 or by.get("Deployment"):
        return ["expected exactly one StatefulSet (stable pod names = stable consumer names) and no Deployment, got %s" % sorted(by)]
    sts = sts_all[0]
    pod = sts["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    c = spec["containers"][0]
    # The governing headless Service, and the one Prometheus scrapes.
    svc = by.get("Service", {}).get(sts["spec"]["serviceName"])
    if svc is None:
        p.append("%s: serviceName %s names no Service" % (where(sts), sts["spec"]["serviceName"]))
    else:
        if svc["spec"].get("clusterIP") != "None":
            p.append("%s: the StatefulSet's governing Service must be headless (clusterIP: None)" % where(svc))
        if not matches(svc["spec"].get("selector"), pod_labels):
            p.append("%s: selector %s does not select the bridge pods %s" % (where(svc), svc["spec"].get("selector"), pod_labels))
    if not matches(sts["spec"]["selector"]["matchLabels"], pod_labels):
        p.append("%s: selector does not match its own pod labels" % where(sts))
    for pdb in by.get("PodDisruptionBudget", {}).values():
        if not matches(pdb["spec"]["selector"]["matchLabels"], pod_labels):
            p.append("%s: selector does not select the bridge pods" % where(pdb))
    # ConfigMap and Secret references.
    cms = by.get("ConfigMap", {})
    for v in spec.get("volumes", []):
        name = v.get("configMap", {}).get("name")
        if name and name not in cms:
            p.append("%s: volume %s names ConfigMap %s, which is not rendered" % (where(sts), v["name"], name))
    secret_refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
    secret_refs += [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
    for ta in by.get("TriggerAuthentication", {}).values():
        secret_refs += [r["name"] for r in ta["spec"].get("secretTargetRef", [])]
    for s in secret_refs:
        if s not in by.get("Secret", {}) and s not in EXTERNAL_SECRETS:
            p.append("Secret %s is referenced but neither rendered nor one of the documented Secrets %s" % (s, sorted(EXTERNAL_SECRETS)))
    env_names = {e["name"] for e in c.get("env", [])}
    if "HOSTNAME" in env_names:
        p.append("%s: HOSTNAME is overridden; the bridge's consumer name must stay the pod name" % where(sts))
    # The bridge's configuration, as mounted.
    cfg = {}
    for cm in cms.values():
        if "vcon-otel.yml" in cm.get("data", {}):
            cfg = yaml.safe_load(cm["data"]["vcon-otel.yml"]) or {}
    if not cfg and cms:
        p.append("no ConfigMap carries vcon-otel.yml")
    stream = cfg.get("stream") or {}
    if stream.get("consumer"):
        p.append("vcon-otel.yml sets stream.consumer=%r: every replica would share one consumer name; leave it unset (default: the pod name)" % stream["consumer"])
    grace = int(cfg.get("shutdown_grace_secs", 10))
    tgp = spec.get("terminationGracePeriodSeconds", 30)
    if tgp <= grace:
        p.append("%s: terminationGracePeriodSeconds %d must exceed shutdown_grace_secs %d" % (where(sts), tgp, grace))
    admin_port = next((pt["containerPort"] for pt in c.get("ports", []) if pt.get("name") == "admin"), None)
    args = c.get("args", [])
    if "--admin-addr" not in args or not args[args.index("--admin-addr") + 1].endswith(":%s" % admin_port):
        p.append("%s: --admin-addr %s does not listen on the admin containerPort %s" % (where(sts), args, admin_port))
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        if c.get(probe, {}).get("httpGet", {}).get("path") != path:
            p.append("%s: %s must GET %s" % (where(sts), probe, path))
    p += check_scaling(by, sts, stream)
    p += check_monitoring(by, svc)
    return p


def check_scaling(by, sts, stream):
    p = []
    for so in by.get("ScaledObject", {}).values():
        ref = so["spec"]["scaleTargetRef"]
        if ref.get("kind", "Deployment") != sts["kind"] or ref["name"] != sts["metadata"]["name"]:
            p.append("%s: scaleTargetRef %s/%s is not the rendered %s (a namePrefix without the KEDA nameReference configuration?)" % (where(so), ref.get("kind", "Deployment"), ref["name"], where(sts)))
        types = [t["type"] for t in so["spec"]["triggers"]]
        if "redis-streams" not in types or "prometheus" not in types:
            p.append("%s: needs a redis-streams trigger and a prometheus trigger on vcon_otel_stream_lag, got %s" % (where(so), types))
        for t in so["spec"]["triggers"]:
            m = t["metadata"]
            auth = t.get("authenticationRef", {}).get("name")
            if auth and auth not in by.get("TriggerAuthentication", {}):
                p.append("%s: authenticationRef %s names no rendered TriggerAuthentication" % (where(so), auth))
            if t["type"] == "redis-streams":
                if "lagCount" not in m or "pendingEntriesCount" in m:
                    p.append("%s: scale on lagCount, not pendingEntriesCount (the bridge keeps runs in flight pending)" % where(so))
                if m.get("stream") != stream.get("key", "vcon_otel:events") or m.get("consumerGroup") != stream.get("group", "vcon-otel"):
                    p.append("%s: trigger reads %s/%s, the bridge reads %s/%s" % (where(so), m.get("stream"), m.get("consumerGroup"), stream.get("key", "vcon_otel:events"), stream.get("group", "vcon-otel")))
            if t["type"] == "prometheus" and "vcon_otel_stream_lag" not in m.get("query", ""):
                p.append("%s: the prometheus trigger must query vcon_otel_stream_lag" % where(so))
    return p


def check_monitoring(by, svc):
    p = []
    jobs = set()
    for sm in by.get("ServiceMonitor", {}).values():
        if svc is None:
            continue
        if not matches(sm["spec"]["selector"].get("matchLabels"), svc["metadata"].get("labels", {})):
            p.append("%s: selector does not select %s" % (where(sm), where(svc)))
        ports = {pt.get("name") for pt in svc["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            if ep.get("port") not in ports:
                p.append("%s: endpoint port %s is not a port of %s" % (where(sm), ep.get("port"), where(svc)))
        label = sm["spec"].get("jobLabel")
        jobs.add(svc["metadata"]["labels"].get(label) if label else svc["metadata"]["name"])
    for pr in by.get("PrometheusRule", {}).values():
        for g in pr["spec"]["groups"]:
            for r in g["rules"]:
                for job in re.findall(r'job="([^"]*)"', r["expr"]):
                    if job not in jobs:
                        p.append("%s: rule %s selects job=%r, but the ServiceMonitor gives job %s" % (where(pr), r.get("alert") or r.get("record"), job, sorted(map(str, jobs))))
    return p


def main():
    args = sys.argv[1:]
    versions = []
    while "--k8s-version" in args:
        i = args.index("--k8s-version")
        versions.append(args[i + 1])
        del args[i:i + 2]
    docs = [d for d in yaml.safe_load_all(open(args[0])) if d]
    problems = validate_schemas(docs, versions or ["1.32.0"]) + check_refs(docs)
    for pr in problems:
        print("  " + pr)
    kinds = sorted({d["kind"] for d in docs})
    print("%s: %d objects (%s), %d problems" % (args[0], len(docs), ", ".join(kinds), len(problems)))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
