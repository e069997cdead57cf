"""Extracts the validation schema of one version of a CustomResourceDefinition as JSON.

Usage: python extract_crd_schema.py CRD.yaml VERSION OUT.json

Writes `spec.versions[name=VERSION].schema.openAPIV3Schema` with every `description` removed
(documentation, not validation) and keys sorted, so the committed schema is the CRD's structural
schema and nothing else. The schemas in deploy/kubernetes/schemas/ were made with it; their sources
are listed in deploy/kubernetes/schemas/README.md.
"""
import json
import sys

import yaml


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main():
    path, version, out = sys.argv[1:4]
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    crd = next(d for d in docs if d.get("kind") == "CustomResourceDefinition")
    v = next((v for v in crd["spec"]["versions"] if v["name"] == version), None)
    if v is None:
        sys.exit("%s: no version %r in %s" % (path, version, [v["name"] for v in crd["spec"]["versions"]]))
    schema = strip(v["schema"]["openAPIV3Schema"])
    schema["x-vcon-otel-source"] = {"crd": crd["metadata"]["name"], "version": version}
    with open(out, "w") as f:
        json.dump(schema, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
