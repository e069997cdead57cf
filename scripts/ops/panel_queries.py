"""Every panel query of dashboards/*.json with its template variables substituted, for the checks.

Yields (dashboard file name, panel, target, expr) with `$__rate_interval` replaced by the given
window and the label variables ($tracer, $side, $chain, $link) by `.*` (every value).
"""
import glob
import json
import os

DASHBOARDS = os.path.join(os.path.dirname(__file__), "..", "..", "dashboards")


def panel_queries(rate_interval):
    for f in sorted(glob.glob(os.path.join(DASHBOARDS, "*.json"))):
        for p in json.load(open(f))["panels"]:
            for t in p.get("targets", []):
                expr = t["expr"].replace("$__rate_interval", rate_interval)
                for var in ("$tracer", "$side", "$chain", "$link"):
                    expr = expr.replace(var, ".*")
                yield os.path.basename(f), p, t, expr
