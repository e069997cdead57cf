"""Whole-pipeline benchmark: Redis stream -> bridge -> OTLP/gRPC receiver (scripts/bench/pipeline.sh).

For each vCon size (5 KB, 100 KB, 2 MB of stored JSON, `vcons.py`):

1. **Fill** (not timed as the bridge's): stores a pool of realistic vCons in RedisJSON and calls the
   real producer, `vcon_otel.tracer.run`, as a 3-link chain calls a tracer (link_index -1, 0, 1, 2
   per run), writing two streams: one with the producer's **default options** (`snapshot: copy`, a
   server-side `COPY` of `vcon:{uuid}` at every call) and one with `snapshot: none`. Two options
   differ from the defaults for the fill only, because no bridge runs during it and the drains
   come later from a saved copy: `snapshot_budget: 0` (no cap on live copies; by default a call
   past 10,000 live copies takes none) and `snapshot_ttl` of a day. Each stream (with its
   snapshots and the stored vCons) is saved to its own RDB file (`SAVE`). Redis's own time per
   producer call over the fill is printed (`INFO commandstats`: the snapshot's `COPY` inside the
   script, and the whole script), since in production that work runs on the same Redis as the
   drain's.
2. **Drain**, RUNS repetitions, interleaved within each repetition. Before every drain Redis is
   restarted from a fresh copy of that stream's RDB file: a drain deletes each snapshot once hashed,
   journals each run and leaves completion markers, so every drain must start from the filled state.
   - the bridge (`vcon-otel run`, default configuration) on the `copy` stream, then on the `none`
     stream, each pinned to one core (`taskset -c CORE`) under `/usr/bin/time -v`, each with a new
     consumer group (so it reads the stream from its first entry). The drain is timed from the
     bridge reporting ready (`/readyz`, start-up excluded) until its group has lag 0 and nothing
     pending: every record decoded, snapshot fetched and hashed, span exported and accepted by the
     receiver (`examples/otlp_sink`), entry acknowledged;
   - the baseline: a bare consumer (`examples/drain_stream`, same core) that only reads and
     acknowledges the `none` stream.
   Without snapshots a record does not depend on the vCon's size, so the `none` stream holds at
   least `--none-records` records at every size (a drain long enough to time).
   For each drain it also records the Redis server's CPU time (`INFO cpu`, used_cpu_user +
   used_cpu_sys, all its threads), the receiver's (`/proc/PID/stat`), the bridge's own CPU time,
   peak RSS and minor page faults (`/usr/bin/time`), and each core's busy share (`/proc/stat`).
   Redis, the receiver and this driver float over both cores (`--others free`, the default) or are pinned to the
   other one (`--others other`).
3. **Latency** (5 KB only): a paced producer (`examples/pace_stream`, the same records and
   per-call snapshot as the Python tracer) writes a steady RATE events/s for LAT_SECS seconds while
   the bridge (pinned as above) runs; the receiver records each span's arrival. Latency = arrival
   minus the span's end time (the `ts_ns` of the record that completed it), over the spans of the
   steady middle of the run (the first 5 s and the last 1 s left out).

Medians over the repetitions are printed as Markdown tables. Every process started here is stopped
by its PID. Usage: see `--help`.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from vcon_otel import tracer as vtracer  # noqa: E402
from vcons import SIZES, make_vcon  # noqa: E402

LINKS = ["transcribe", "summarize", "tag"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Procs:
    """Processes started here; stopped by PID, never by name."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def redis_cpu(r):
    i = r.info("cpu")
    return float(i["used_cpu_user"]) + float(i["used_cpu_sys"])


def proc_cpu(pid):
    """CPU seconds (user + system) of process `pid` so far, from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_times():
    """Per core: (busy, total) clock ticks so far, from /proc/stat."""
    out = []
    with open("/proc/stat") as f:
        for ln in f:
            if ln.startswith("cpu") and ln[3].isdigit():
                t = [int(x) for x in ln.split()[1:]]
                out.append((sum(t) - t[3] - t[4], sum(t)))
    return out


def core_busy(before, after):
    """Per core: the busy share (0-100 %) between two `core_times`."""
    return [100.0 * (b1 - b0) / max(1, t1 - t0) for (b0, t0), (b1, t1) in zip(before, after)]


def command_usec(r, n):
    """Redis's own time per event in each command since the last CONFIG RESETSTAT (INFO
    commandstats), largest first: [(command, us per event, calls per event)]."""
    out = [(k[len("cmdstat_"):], v["usec"] / n, v["calls"] / n) for k, v in r.info("commandstats").items()]
    return sorted(out, key=lambda x: -x[1])


def wait_for(pred, timeout, every=0.01, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise RuntimeError("timed out after %ss waiting for %s" % (timeout, what))


def group_drained(r, stream, group):
    for g in r.xinfo_groups(stream):
        if g["name"].decode() == group:
            return g.get("lag") == 0 and g["pending"] == 0
    return False


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except Exception:
        return False


def http_text(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def child_pid(pid):
    """The first child of `pid` (the program /usr/bin/time runs)."""
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        kids = f.read().split()
    return int(kids[0]) if kids else None


def parse_time_v(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().rpartition(": ")
            out[k] = v
    return {"rss_mb": int(out["Maximum resident set size (kbytes)"]) / 1024,
            "cpu_s": float(out["User time (seconds)"]) + float(out["System time (seconds)"]),
            "faults": int(out["Minor (reclaiming a frame) page faults"])}


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = tempfile.mkdtemp(prefix="bench-pipeline-")
        self.procs = Procs()
        self.sport = free_port()
        self.arrivals = os.path.join(self.work, "arrivals.txt")
        self.sink_log = os.path.join(self.work, "sink.log")
        self.groups = 0

    def start(self):
        a = self.a
        self.sink = self.procs.start(self.others() + [os.path.join(a.bin_dir, "examples", "otlp_sink"), "127.0.0.1:%d" % self.sport, self.arrivals],
                         stdout=open(self.sink_log, "w"), stderr=subprocess.STDOUT)
        self.start_redis(None)

    def others(self):
        """The prefix pinning a process that is not the one measured (Redis, the receiver)."""
        return ["taskset", "-c", str(1 - self.a.core)] if self.a.others == "other" else []

    def start_redis(self, rdb):
        """(Re)starts Redis on a new free port, loading a copy of `rdb` (None: empty)."""
        if getattr(self, "redis", None) is not None:
            self.r.close()
            self.redis.terminate()
            self.redis.wait(60)
            shutil.rmtree(self.rdir, ignore_errors=True)
        self.rdir = tempfile.mkdtemp(prefix="redis-", dir=self.work)
        if rdb:
            shutil.copy(rdb, os.path.join(self.rdir, "dump.rdb"))
        self.rport = free_port()
        self.url = "redis://127.0.0.1:%d" % self.rport
        self.redis = self.procs.start(self.others() + [self.a.redis_server, "--bind", "127.0.0.1", "--port", str(self.rport), "--dir", self.rdir,
                                       "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no", "--loadmodule", self.a.rejson],
                                      stdout=subprocess.DEVNULL)
        self.r = redis.Redis.from_url(self.url)
        wait_for(lambda: self._ping(), 600, every=0.05, what="redis")

    def save(self, name):
        """Saves the database to WORK/NAME.rdb; returns the path."""
        self.r.save()
        path = os.path.join(self.work, name + ".rdb")
        shutil.move(os.path.join(self.rdir, "dump.rdb"), path)
        return path

    def _ping(self):
        try:
            return self.r.ping()
        except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
            return False

    def sink_counts(self):
        with open(self.sink_log) as f:
            lines = [ln.split() for ln in f if ln.startswith("spans ")]
        return (int(lines[-1][1]), int(lines[-1][3])) if lines else (0, 0)

    # ---- fill -------------------------------------------------------------------------------

    def fill(self, stream, pool, records, snapshot):
        """Calls the real tracer: `records` calls, 4 per run, runs cycling through `pool`."""
        opts = {"redis_url": self.url, "stream": stream, "snapshot_budget": 0, "snapshot_ttl": 86400}
        if snapshot == "none":
            opts["snapshot"] = "none"
        before = vtracer.stats()
        self.r.config_resetstat()
        t0 = time.perf_counter()
        for run in range(records // 4):
            u = pool[run % len(pool)]
            for idx in (-1, 0, 1, 2):
                vtracer.run(u, u, "otel", LINKS, idx, opts)
        elapsed = time.perf_counter() - t0
        after = vtracer.stats()
        sent = after["sent"] - before["sent"]
        if sent != records // 4 * 4 or after["failed"] != before["failed"]:
            raise RuntimeError("producer sent %d of %d records (stats %s)" % (sent, records, after))
        # Redis's own time per call in the producer's commands (its COPY is the snapshot).
        costs = {c: us for c, us, _ in command_usec(self.r, sent)}
        return elapsed, costs

    # ---- drains -----------------------------------------------------------------------------

    def bridge_config(self, stream, group, admin_port):
        path = os.path.join(self.work, "bridge-%s.yml" % group)
        with open(path, "w") as f:
            f.write('redis: {url: "%s"}\nexport: {endpoint: "http://127.0.0.1:%d"}\nadmin: {addr: "127.0.0.1:%d"}\n'
                    'stream: {key: "%s", group: "%s", consumer: bench}\n' % (self.url, self.sport, admin_port, stream, group))
        return path

    def start_bridge(self, stream, binary=None):
        self.groups += 1
        group = "bench-%d" % self.groups
        admin = free_port()
        cfg = self.bridge_config(stream, group, admin)
        timef = os.path.join(self.work, "time-%s.txt" % group)
        log = open(os.path.join(self.work, "bridge-%s.log" % group), "w")
        p = self.procs.start(["taskset", "-c", str(self.a.core), "/usr/bin/time", "-v", "-o", timef,
                              binary or self.a.bridge or os.path.join(self.a.bin_dir, "vcon-otel"), "run", "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: http_ok("http://127.0.0.1:%d/readyz" % admin), 30, every=0.002, what="bridge ready")
        return p, group, admin, timef

    def stop_bridge(self, p, admin, timef):
        metrics = http_text("http://127.0.0.1:%d/metrics" % admin)
        bridge = child_pid(p.pid)
        os.kill(bridge, signal.SIGTERM)
        p.wait(60)
        rejected = sum(float(ln.rsplit(" ", 1)[1]) for ln in metrics.splitlines() if ln.startswith("vcon_otel_events_rejected_total"))
        if rejected:
            raise RuntimeError("the bridge rejected %d records" % rejected)
        return parse_time_v(timef)

    def drain_bridge(self, rdb, stream, n, want_hashed, binary=None):
        self.start_redis(rdb)
        spans0, hashed0 = self.sink_counts()
        p, group, admin, timef = self.start_bridge(stream, binary)
        self.r.config_resetstat()
        c0, s0, k0, t0 = redis_cpu(self.r), proc_cpu(self.sink.pid), core_times(), time.perf_counter()
        wait_for(lambda: group_drained(self.r, stream, group), 3600, what="drained")
        t1, c1, s1, k1 = time.perf_counter(), redis_cpu(self.r), proc_cpu(self.sink.pid), core_times()
        cmds = command_usec(self.r, n)
        res = self.stop_bridge(p, admin, timef)
        # Every record of a tracer-only run produces one span (3 links + the root per 4 records).
        spans, hashed = wait_for(lambda: (lambda c: c if c[0] - spans0 >= n else None)(self.sink_counts()), 10, what="spans at the sink")
        if spans - spans0 != n or hashed - hashed0 != want_hashed:
            raise RuntimeError("receiver got %d spans (%d hashed), expected %d (%d hashed)" % (spans - spans0, hashed - hashed0, n, want_hashed))
        res.update(evs=n / (t1 - t0), redis_us=(c1 - c0) / n * 1e6, sink_us=(s1 - s0) / n * 1e6, cores=core_busy(k0, k1), bridge_us=res["cpu_s"] / n * 1e6, cmds=cmds,
                   faults_per_ev=res["faults"] / n)
        return res

    def drain_baseline(self, rdb, stream, n):
        self.start_redis(rdb)
        self.groups += 1
        c0, t0 = redis_cpu(self.r), time.perf_counter()
        out = subprocess.run(["taskset", "-c", str(self.a.core), os.path.join(self.a.bin_dir, "examples", "drain_stream"), self.url, stream,
                              "baseline-%d" % self.groups], check=True, capture_output=True, text=True).stdout
        t1, c1 = time.perf_counter(), redis_cpu(self.r)
        if out.split() != ["drained", str(n)]:
            raise RuntimeError("baseline: %s" % out)
        return {"evs": n / (t1 - t0), "redis_us": (c1 - c0) / n * 1e6}

    # ---- one size ---------------------------------------------------------------------------

    def size(self, key, records, runs):
        label, size = SIZES[key]
        self.start_redis(None)
        records = records // 4 * 4
        pool = [make_vcon(self.r, size) for _ in range(self.a.pool)]
        stored = statistics.median(s for _, s in pool)
        pool = [u for u, _ in pool]
        base = self.save("%s-vcons" % key)
        # Without snapshots the records do not depend on the vCon's size: drain at least
        # --none-records of them, so the drain is long enough to time at every size.
        counts = {"copy": records, "none": max(records, self.a.none_records // 4 * 4)}
        fill, rdb, mem, costs = {}, {}, {}, {}
        for m in ("copy", "none"):
            self.start_redis(base)
            fill[m], costs[m] = self.fill("bench:%s:%s" % (key, m), pool, counts[m], m)
            mem[m] = self.r.info("memory")["used_memory"] / 2**20
            rdb[m] = self.save("%s-%s" % (key, m))
        print("%s: stored vCon %d B, %d / %d records (copy / none); filled in %.1f s (copy) / %.1f s (none); Redis holds %.0f / %.0f MB"
              % (label, stored, records, counts["none"], fill["copy"], fill["none"], mem["copy"], mem["none"]), file=sys.stderr)
        print("  producer's Redis time per call, default: COPY %.1f us, whole script %.1f us; without snapshots: whole script %.1f us"
              % (costs["copy"].get("copy", 0.0), costs["copy"].get("evalsha", 0.0), costs["none"].get("evalsha", 0.0)), file=sys.stderr)
        rows = []
        for i in range(runs):
            copy = self.drain_bridge(rdb["copy"], "bench:%s:copy" % key, records, records // 4 * 3)
            none = self.drain_bridge(rdb["none"], "bench:%s:none" % key, counts["none"], 0)
            baseline = self.drain_baseline(rdb["none"], "bench:%s:none" % key, counts["none"])
            row = [copy, none, baseline]
            if self.a.compare:
                row += [self.drain_bridge(rdb["copy"], "bench:%s:copy" % key, records, records // 4 * 3, self.a.compare),
                        self.drain_bridge(rdb["none"], "bench:%s:none" % key, counts["none"], 0, self.a.compare)]
            rows.append(row)
            print("  run %d: copy %.0f ev/s (Redis %.1f us/ev, bridge %.1f us/ev, receiver %.1f us/ev), none %.0f ev/s (bridge %.1f us/ev), baseline %.0f ev/s, RSS %.0f / %.0f MB%s"
                  % (i + 1, copy["evs"], copy["redis_us"], copy["bridge_us"], copy["sink_us"], none["evs"], none["bridge_us"], baseline["evs"], copy["rss_mb"], none["rss_mb"],
                     "; compared binary: copy %.0f ev/s (%.1f us/ev), none %.0f ev/s (%.1f us/ev)" % (row[3]["evs"], row[3]["bridge_us"], row[4]["evs"], row[4]["bridge_us"])
                     if self.a.compare else ""), file=sys.stderr)
            print("    Redis per event, default: %s" % ", ".join("%s %.1f us (%.2f calls)" % c for c in copy["cmds"][:6]), file=sys.stderr)
            busy = lambda d: ", ".join("core %d %.0f %%" % (i, b) for i, b in enumerate(d["cores"]))  # noqa: E731
            print("    cores busy during the default drain: %s; without snapshots: %s" % (busy(copy), busy(none)), file=sys.stderr)
            print("    bridge page faults per event (start-up included), default / none: %.2f / %.2f%s" % (
                copy["faults_per_ev"], none["faults_per_ev"],
                "; compared binary: %.2f / %.2f" % (row[3]["faults_per_ev"], row[4]["faults_per_ev"]) if self.a.compare else ""), file=sys.stderr)
        med = lambda f: statistics.median(f(r) for r in rows)  # noqa: E731
        return {"label": label, "stored": stored, "records": records, "none_records": counts["none"], "rows": rows, "med": med, "pool": pool,
                "vcons_rdb": base}

    # ---- latency ----------------------------------------------------------------------------

    def latency(self, pool, mode, rate, secs):
        stream = "bench:lat:%s" % mode
        p, group, admin, timef = self.start_bridge(stream)
        start_ns = time.time_ns()
        out = subprocess.run(["taskset", "-c", str(1 - self.a.core), os.path.join(self.a.bin_dir, "examples", "pace_stream"), self.url, stream,
                              str(rate), str(secs), mode] + pool, check=True, capture_output=True, text=True).stdout
        end_ns = time.time_ns()
        wait_for(lambda: group_drained(self.r, stream, group), 900, every=0.05, what="latency run drained")
        res = self.stop_bridge(p, admin, timef)
        time.sleep(1.2)  # the receiver flushes its arrivals file once a second
        lo, hi = start_ns + 5 * 10**9, end_ns - 10**9
        lat = []
        with open(self.arrivals) as f:
            for line in f:
                end, arrived = map(int, line.split())
                if lo <= end <= hi:
                    lat.append((arrived - end) / 1e6)
        lat.sort()
        q = lambda x: lat[min(len(lat) - 1, int(len(lat) * x))]  # noqa: E731
        return {"mode": mode, "producer": out.strip(), "spans": len(lat), "p50": q(0.5), "p99": q(0.99), "max": lat[-1], "rss_mb": res["rss_mb"]}


def report(results, lat, a):
    if a.compare:
        print("\n### This build against %s (median of %d, same repetitions)\n" % (a.compare, a.runs))
        print("| vCon | snapshots | this build ev/s | compared ev/s | ratio | this build CPU us/event | compared CPU us/event |")
        print("|---|---|---|---|---|---|---|")
        for s in results:
            m = s["med"]
            for mode, i, j in (("default", 0, 3), ("none", 1, 4)):
                print("| %s | %s | %.0f | %.0f | %.2f | %.1f | %.1f |" % (s["label"], mode, m(lambda r: r[i]["evs"]), m(lambda r: r[j]["evs"]),
                      m(lambda r: r[i]["evs"] / r[j]["evs"]), m(lambda r: r[i]["bridge_us"]), m(lambda r: r[j]["bridge_us"])))
    print("\n### Throughput (median of %d; bridge pinned to core %d; Redis, receiver and driver: %s)\n"
          % (a.runs, a.core, "core %d" % (1 - a.core) if a.others == "other" else "either core"))
    print("| vCon (stored JSON) | records (default / none) | bridge, snapshots (default) ev/s | bridge, no snapshots ev/s | read+ack baseline ev/s "
          "| default / no snapshots | no snapshots / baseline | peak RSS default / none |")
    print("|---|---|---|---|---|---|---|---|")
    for s in results:
        m = s["med"]
        print("| %s (%d B) | %d / %d | %.0f | %.0f | %.0f | %.2f | %.2f | %.0f / %.0f MB |" % (
            s["label"], s["stored"], s["records"], s["none_records"], m(lambda r: r[0]["evs"]), m(lambda r: r[1]["evs"]), m(lambda r: r[2]["evs"]),
            m(lambda r: r[0]["evs"] / r[1]["evs"]), m(lambda r: r[1]["evs"] / r[2]["evs"]), m(lambda r: r[0]["rss_mb"]), m(lambda r: r[1]["rss_mb"])))
    print("\n### CPU per event (median; microseconds; bridge CPU from /usr/bin/time, start-up included)\n")
    print("| vCon | Redis, default | Redis, no snapshots | Redis, baseline | Redis's snapshot cost | Redis ceiling, default | bridge CPU, default | bridge CPU, no snapshots |")
    print("|---|---|---|---|---|---|---|---|")
    for s in results:
        m = s["med"]
        rc = m(lambda r: r[0]["redis_us"])
        print("| %s | %.1f | %.1f | %.1f | %.1f | %.0f ev/s | %.1f | %.1f |" % (
            s["label"], rc, m(lambda r: r[1]["redis_us"]), m(lambda r: r[2]["redis_us"]), m(lambda r: r[0]["redis_us"] - r[1]["redis_us"]),
            1e6 / rc, m(lambda r: r[0]["bridge_us"]), m(lambda r: r[1]["bridge_us"])))
    if lat:
        print("\n### Event -> collector latency at a steady rate (5 KB vCons)\n")
        print("| snapshots | producer | spans measured | p50 | p99 | max | bridge peak RSS |")
        print("|---|---|---|---|---|---|---|")
        for x in lat:
            print("| %s | %s | %d | %.1f ms | %.1f ms | %.1f ms | %.0f MB |" % (x["mode"], x["producer"], x["spans"], x["p50"], x["p99"], x["max"], x["rss_mb"]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin-dir", required=True, help="cargo's release directory (vcon-otel, examples/)")
    p.add_argument("--redis-server", required=True)
    p.add_argument("--rejson", required=True, help="the RedisJSON module (.so)")
    p.add_argument("--bridge", help="the vcon-otel binary to measure (default: BIN_DIR/vcon-otel)")
    p.add_argument("--compare", help="another vcon-otel binary, drained in the same repetitions (e.g. an older build)")
    p.add_argument("--sizes", default="5k=60000,100k=12000,2m=400", help="size=records,... (sizes: %s)" % ",".join(SIZES))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--none-records", type=int, default=60000, help="records of the stream without snapshots, at least")
    p.add_argument("--core", type=int, default=0, choices=(0, 1), help="the core the bridge is pinned to")
    p.add_argument("--others", default="free", choices=("free", "other"),
                   help="free: Redis, the receiver and this driver float over both cores; "
                        "other: they are pinned to the other core (the bridge has its core to itself)")
    p.add_argument("--pool", type=int, default=8, help="distinct stored vCons per size")
    p.add_argument("--rate", type=int, default=10000, help="latency run: events/s (0: no latency run)")
    p.add_argument("--lat-secs", type=int, default=20)
    p.add_argument("--keep", action="store_true", help="keep the work directory (bridge logs, arrivals)")
    a = p.parse_args()
    if a.others == "other":
        os.sched_setaffinity(0, {1 - a.core})
    b = Bench(a)
    try:
        b.start()
        results, lat, lat_pool = [], [], None
        for spec in a.sizes.split(","):
            key, n = spec.split("=")
            s = b.size(key, int(n), a.runs)
            results.append(s)
            if key == "5k":
                lat_pool = s["pool"]
                if a.rate:
                    for mode in ("copy", "none"):
                        b.start_redis(s["vcons_rdb"])
                        lat.append(b.latency(lat_pool, mode, a.rate, a.lat_secs))
                        print("  latency %s: %s" % (mode, json.dumps({k: v for k, v in lat[-1].items()})), file=sys.stderr)
        report(results, lat, a)
    finally:
        b.procs.stop_all()
        if a.keep:
            print("logs and arrivals kept in %s" % b.work, file=sys.stderr)
        else:
            shutil.rmtree(b.work, ignore_errors=True)


if __name__ == "__main__":
    main()
