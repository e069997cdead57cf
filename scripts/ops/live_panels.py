"""Evaluates every dashboard panel query against a running Prometheus.

Used by scripts/check/dashboards-live.sh (the in-process demo) and scripts/check/stack.sh (the
compose stack run natively). A query must return data unless its panel is in
`expected_empty`, which maps a panel title (every query of the panel) or "title/refId" (one
query) to the reason that setup cannot feed it.
"""
import json
import os
import sys
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from panel_queries import panel_queries  # noqa: E402


def get(port, path, **params):
    url = "http://127.0.0.1:%s/api/v1/%s?%s" % (port, path, urllib.parse.urlencode(params))
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def check_panels(port, expected_empty, rate_interval="15s"):
    """Prints one line per panel query; returns (queries with data, unexpected empties).

    A panel listed as expected-empty that does return data is reported too (`data*`), so the
    list does not go stale silently; it does not count as a failure."""
    ok = bad = 0
    for f, p, t, expr in panel_queries(rate_interval):
        res = get(port, "query", query=expr)["data"]["result"]
        title = p["title"]
        key = "%s/%s" % (title, t["refId"])
        why = expected_empty.get(key, expected_empty.get(title))
        if res:
            ok += 1
            mark = "data*" if why else "data "
            print("%s %-22s %-32s %d series" % (mark, f, title, len(res)))
        elif why:
            print("empty %-22s %-32s (expected: %s)" % (f, title, why))
        else:
            bad += 1
            print("EMPTY %-22s %-32s %s" % (f, title, expr))
    return ok, bad
