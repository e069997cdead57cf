"""What the conserver pays per tracer call, side by side (run by scripts/bench-python.sh).

For vCons of 5 KB, 100 KB and 2 MB stored in RedisJSON, measures the wall time of one tracer call
(p50, p99 over many calls, cycling link_index -1, 0, 1, 2 as a 3-link chain does) for:
  vcon_otel  - vcon_otel.tracer.run: one Redis round trip (XADD + server-side snapshot COPY)
  otel_sdk   - (a) a pure-Python tracer doing the span work in-process with the OpenTelemetry SDK:
               one span per call with the same attributes, BatchSpanProcessor + OTLP/gRPC exporter
               to a local receiver (no compliance hash: it does less than vcon_otel)
  seed_hash  - (b) the seeds' compliance tracer pattern: JSON.GET the vCon, json.dumps, SHA-256
Usage: bench_call.py REDIS_URL OTLP_GRPC_ENDPOINT
"""
import hashlib
import os
import json
import statistics
import sys
import time
import uuid

import redis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vcon_otel import tracer as vtracer

SIZES = [("5 KB", 5_000, 3000), ("100 KB", 100_000, 3000), ("2 MB", 2_000_000, 400)]
LINKS = ["transcribe", "summarize", "tag"]


def make_vcon(r, size):
    u = str(uuid.uuid4())
    body = ("QUJD" * (size // 4 + 1))[: max(size - 600, 0)]
    doc = {"uuid": u, "vcon": "0.4.0", "created_at": "2026-11-22T10:00:00.000+00:00",
           "parties": [{"tel": "+15555550100"}, {"mailto": "agent@example.com"}],
           "dialog": [{"type": "recording", "start": "2026-11-22T10:00:00Z", "duration": 60, "parties": [0, 1],
                       "mediatype": "audio/x-wav", "encoding": "base64url", "body": body}],
           "analysis": [], "attachments": []}
    r.json().set("vcon:" + u, "$", doc)
    return u


def percentiles(samples):
    s = sorted(samples)
    return s[len(s) // 2] / 1e6, s[min(len(s) - 1, int(len(s) * 0.99))] / 1e6


def bench(fn, n):
    out = []
    for i in range(n):
        idx = (i % 4) - 1
        t0 = time.perf_counter_ns()
        fn(idx)
        out.append(time.perf_counter_ns() - t0)
    return out


def main():
    url, otlp = sys.argv[1], sys.argv[2]
    r = redis.Redis.from_url(url)
    from opentelemetry import trace as otel_trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "conserver"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp, insecure=True)))
    sdk_tracer = provider.get_tracer("bench")
    opts = {"redis_url": url, "stream": "bench:events"}
    rows = []
    for label, size, n in SIZES:
        u = make_vcon(r, size)

        def ours(idx):
            vtracer.run(u, u, "otel", LINKS, idx, opts)

        def sdk(idx):
            with sdk_tracer.start_as_current_span("link " + LINKS[max(idx, 0)]) as span:
                span.set_attribute("vcon.uuid", u)
                span.set_attribute("vcon.link.index", idx)
                span.set_attribute("vcon.chain.links", ",".join(LINKS))

        def seed(idx):
            doc = r.json().get("vcon:" + u)
            hashlib.sha256(json.dumps(doc).encode()).hexdigest()

        results = {}
        # Interleave the three in rounds so machine drift affects them alike.
        for name in ("vcon_otel", "otel_sdk", "seed_hash"):
            results[name] = []
        fns = {"vcon_otel": ours, "otel_sdk": sdk, "seed_hash": seed}
        for _ in range(5):
            for name, fn in fns.items():
                results[name] += bench(fn, n // 5)
        r.delete("bench:events")
        for k in list(r.scan_iter("vcon_otel:snap:*")):
            r.delete(k)
        p = {k: percentiles(v) for k, v in results.items()}
        rows.append((label, p))
    provider.shutdown()
    print("| vCon size | vcon_otel p50 | vcon_otel p99 | (a) OTel SDK p50 | (a) p99 | (b) seed hash p50 | (b) p99 | (b)/vcon_otel at p50 |")
    print("|---|---|---|---|---|---|---|---|")
    for label, p in rows:
        print("| %s | %.3f ms | %.3f ms | %.3f ms | %.3f ms | %.3f ms | %.3f ms | %.1fx |" % (
            label, p["vcon_otel"][0], p["vcon_otel"][1], p["otel_sdk"][0], p["otel_sdk"][1],
            p["seed_hash"][0], p["seed_hash"][1], p["seed_hash"][0] / p["vcon_otel"][0]))


if __name__ == "__main__":
    main()
