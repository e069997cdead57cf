"""What the conserver pays per tracer call, side by side in one run (scripts/bench/python.sh).

For vCons of 5 KB, 100 KB and 2 MB stored in RedisJSON, calls are made as a 3-link chain makes
them (link_index -1, 0, 1, 2, repeated), and for each variant we report the wall time of one call
(p50, p99) and the CPU it costs per call: this process (user+sys, including background threads)
plus the Redis server (INFO cpu), both divided by the number of calls.

  vcon_otel      vcon_otel.tracer.run with the default snapshot=copy: one round trip (one Lua script)
                 carrying the XADD, the server-side COPY of the vCon (the bridge hashes the copy
                 later) and the snapshot budget's bookkeeping
  vcon_otel/none the same with snapshot=none: the difference is what the snapshot costs
  (a) otel_sdk   a pure-Python tracer doing the same span work in-process with the OpenTelemetry
                 SDK: a root span opened at -1, a link span per call from the previous call's end,
                 the same attributes, root ended after the last link; BatchSpanProcessor with the
                 OTLP/gRPC exporter to a local receiver (what a production tracer would use: a
                 SimpleSpanProcessor would export synchronously, one gRPC call per span, inside
                 the chain). No compliance hash: it does less than vcon_otel.
  (b) seed_hash  the seeds' compliance tracer pattern: JSON.GET the vCon, json.dumps, SHA-256

The variants run interleaved in rounds so that machine noise affects them alike. Snapshot copies are
deleted between rounds (outside the timed calls) so Redis memory stays bounded.
Usage: bench_call.py REDIS_URL OTLP_GRPC_ENDPOINT [SCALE]   (SCALE multiplies the call counts)
"""
import hashlib
import json
import os
import resource
import sys
import time
import uuid

import redis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vcon_otel import tracer as vtracer  # noqa: E402
from vcons import make_vcon  # noqa: E402  (python/bench/vcons.py)

# label, size of the stored vCon, calls per variant
SIZES = [("5 KB", 5_000, 4000), ("100 KB", 100_000, 4000), ("2 MB", 2_000_000, 800)]
ROUNDS = 8
LINKS = ["transcribe", "summarize", "tag"]


def pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q))] / 1e6


def cpu_self():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def cpu_redis(r):
    i = r.info("cpu")
    return float(i["used_cpu_user"]) + float(i["used_cpu_sys"])


def main():
    url, otlp = sys.argv[1], sys.argv[2]
    scale = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    r = redis.Redis.from_url(url)
    from opentelemetry import trace as otel_trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "conserver"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp, insecure=True)))
    sdk_tracer = provider.get_tracer("bench")
    stream = "bench:events"
    rows = []
    for label, size, n in SIZES:
        n = max(ROUNDS, int(n * scale))
        u, stored = make_vcon(r, size)
        copy_opts = {"redis_url": url, "stream": stream}
        none_opts = dict(copy_opts, snapshot="none")
        sdk_state = {}

        def ours(idx, opts=copy_opts):
            vtracer.run(u, u, "otel", LINKS, idx, opts)

        def ours_none(idx):
            vtracer.run(u, u, "otel", LINKS, idx, none_opts)

        def sdk(idx):
            now = time.time_ns()
            attrs = {"vcon.uuid": u, "vcon.chain.links": LINKS, "vcon.tracer.name": "otel",
                     "vcon.tracer.in_vcon_uuid": u, "vcon.tracer.out_vcon_uuid": u}
            if idx == -1:
                root = sdk_tracer.start_span("chain unknown", kind=otel_trace.SpanKind.CONSUMER, start_time=now,
                                             attributes=dict(attrs, **{"vcon.run.id": uuid.uuid4().hex}))
                root.add_event("tracer.pre_chain", attributes={"vcon.link.index": -1}, timestamp=now)
                sdk_state.update(root=root, ctx=otel_trace.set_span_in_context(root))
            else:
                span = sdk_tracer.start_span("link " + LINKS[idx], context=sdk_state["ctx"], start_time=sdk_state["last"],
                                             attributes=dict(attrs, **{"vcon.link.name": LINKS[idx], "vcon.link.index": idx}))
                span.add_event("tracer.call", attributes={"vcon.link.index": idx}, timestamp=now)
                span.end(end_time=now)
                if idx == len(LINKS) - 1:
                    sdk_state["root"].end(end_time=now)
            sdk_state["last"] = time.time_ns()

        def seed(idx):
            doc = r.json().get("vcon:" + u)
            hashlib.sha256(json.dumps(doc).encode()).hexdigest()

        fns = {"vcon_otel": ours, "vcon_otel/none": ours_none, "otel_sdk": sdk, "seed_hash": seed}
        lat = {k: [] for k in fns}
        cpu = {k: 0.0 for k in fns}
        per_round = n // ROUNDS // 4 * 4
        for _ in range(ROUNDS):
            for name, fn in fns.items():
                c0, rc0 = cpu_self(), cpu_redis(r)
                out = lat[name]
                for i in range(per_round):
                    idx = (i % 4) - 1
                    t0 = time.perf_counter_ns()
                    fn(idx)
                    out.append(time.perf_counter_ns() - t0)
                if name == "otel_sdk":
                    provider.force_flush()  # its export work counts in its CPU, not in its latency
                cpu[name] += (cpu_self() - c0) + (cpu_redis(r) - rc0)
                # outside the measurement: drop snapshot copies (and their members of the budget's
                # index, as the bridge does) and the stream so memory stays flat and every call copies
                keys = list(r.scan_iter("vcon_otel:snap:*", count=1000))
                if keys:
                    r.unlink(*keys)
                r.delete(stream, "vcon_otel:snaps")
        calls = per_round * ROUNDS
        rows.append((label, stored, calls, {k: (pct(v, 0.5), pct(v, 0.99), cpu[k] / calls * 1e3) for k, v in lat.items()}))
        r.delete("vcon:" + u)
    provider.shutdown()
    print("vcon_otel stats: %s" % json.dumps(vtracer.stats()))
    print()
    print("| vCon (stored JSON) | calls/variant | vcon_otel p50 / p99 | snapshot=none p50 / p99 | (a) OTel SDK p50 / p99 | (b) seed hash p50 / p99 | (b) / vcon_otel p50 |")
    print("|---|---|---|---|---|---|---|")
    for label, stored, calls, p in rows:
        cell = lambda k: "%.3f / %.3f ms" % (p[k][0], p[k][1])  # noqa: E731
        print("| %s (%d B) | %d | %s | %s | %s | %s | %.1fx |" % (
            label, stored, calls, cell("vcon_otel"), cell("vcon_otel/none"), cell("otel_sdk"), cell("seed_hash"),
            p["seed_hash"][0] / p["vcon_otel"][0]))
    print()
    print("CPU per call, conserver process + Redis server (ms):")
    print()
    print("| vCon | vcon_otel | snapshot=none | (a) OTel SDK (incl. export thread) | (b) seed hash |")
    print("|---|---|---|---|---|")
    for label, stored, calls, p in rows:
        print("| %s | %.3f | %.3f | %.3f | %.3f |" % (label, p["vcon_otel"][2], p["vcon_otel/none"][2], p["otel_sdk"][2], p["seed_hash"][2]))


if __name__ == "__main__":
    main()
