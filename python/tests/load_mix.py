"""A paced mix of vCons through the conserver-shaped driver, for replica and fault tests.

Each vCon goes through one chain in one of three install modes (tracer only, tracer + hooks,
hooks only) and one of the scenarios of conserver_sim (three links, a UUID swap, a halt, a raising
link); halts and raising links only where the hooks can see the run's end (in tracer-only mode such a
run is closed by the bridge's idle timeout, which this mix avoids on purpose).

    python load_mix.py --redis-url URL --vcons 5000 --rate 400 [--threads 4] [--stream KEY]

Prints one JSON line: {"vcons": n, "seconds": s, "errors": n}.
"""
import argparse
import json
import logging
import os
import sys
import threading
import time

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conserver_sim as sim  # noqa: E402

MIX = [
    ("tracer", "three_links"), ("tracer", "swap"),
    ("tracer+hooks", "three_links"), ("tracer+hooks", "swap"), ("tracer+hooks", "halt"), ("tracer+hooks", "link_error"),
    ("hooks", "three_links"), ("hooks", "swap"), ("hooks", "halt"), ("hooks", "link_error"),
]


def conservers(r, url, stream):
    opts = {"stream": stream, "redis_url": url}
    links = sim.links_for(r)
    storages = sim.storages_for(r)
    return {
        "tracer": sim.Conserver(r, sim.otel_tracer(opts), links, hooks=False, storages=storages),
        "tracer+hooks": sim.Conserver(r, sim.otel_tracer(opts), links, hooks=True, storages=storages),
        "hooks": sim.Conserver(r, None, links, hooks=True, storages=storages),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--vcons", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=400.0, help="vCons started per second, all threads together")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--stream", default="vcon_otel:events")
    a = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    os.environ["REDIS_URL"] = a.redis_url
    sim.otel_hooks.options = {"redis_url": a.redis_url, "stream": a.stream}
    next_slot = [0]
    lock = threading.Lock()
    errors = [0]
    started = time.monotonic()

    def worker():
        r = redis.Redis.from_url(a.redis_url)
        cs = conservers(r, a.redis_url, a.stream)
        while True:
            with lock:
                n = next_slot[0]
                if n >= a.vcons:
                    return
                next_slot[0] += 1
            due = started + n / a.rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            mode, scenario = MIX[n % len(MIX)]
            chain = sim.chain_for(scenario)
            vcon = sim.make_vcon(r)
            if cs[mode].handle(chain["ingress_lists"][0], vcon, chain) is not None:
                with lock:
                    errors[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"vcons": a.vcons, "seconds": round(time.monotonic() - started, 3), "errors": errors[0]}))


if __name__ == "__main__":
    main()
