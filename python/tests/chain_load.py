"""Runs vCons already stored in Redis through one chain of the conserver-shaped driver
(`conserver_sim.Conserver`, calling `vcon_otel.tracer` as vCon Server's chain loop does), one after
the other, for tests that choose the documents themselves (tests/it/budget.rs stores large ones).

    python chain_load.py --redis-url URL [--links tag,tag2,tag3] [--options JSON] UUID...

--options: more producer options (e.g. {"snapshot_budget": 50}), merged over redis_url.
Prints one JSON line: {"vcons": n, "errors": [...]}.
"""
import argparse
import json
import logging
import os
import sys

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conserver_sim as sim  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--links", default="tag,tag2,tag3", help="link names of conserver_sim.links_for, comma-separated")
    ap.add_argument("--options", type=json.loads, default={})
    ap.add_argument("vcons", nargs="+")
    a = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    r = redis.Redis.from_url(a.redis_url)
    opts = dict({"redis_url": a.redis_url}, **a.options)
    c = sim.Conserver(r, sim.otel_tracer(opts), sim.links_for(r))
    chain = {"name": "load", "links": a.links.split(",")}
    errors = [c.handle("load_in", u, chain) for u in a.vcons]
    print(json.dumps({"vcons": len(a.vcons), "errors": [None if e is None else "%s: %s" % (type(e).__name__, e) for e in errors]}))


if __name__ == "__main__":
    main()
