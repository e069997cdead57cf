"""Redis memory held per tracer call, before and after the snapshot lifecycle
(scripts/bench/snapshot-memory.sh runs the phases below against a Redis and a bridge it starts, and
runs a bridge session on the empty stream before the first reading, so what a bridge's first start
leaves in Redis once is in every reading and in no per-call figure).

Each phase is its own process, so every `used_memory` reading is taken on a connection of its own
with no producer connection open (a client's buffers count in `used_memory`). STATE is a JSON file
carried from phase to phase.

- ``store KIND URL STATE``: stores POOL vCons of KIND (``body``: about 100 KB of stored JSON, its
  bulk one dialog body, a base64url string; ``transcript``: a similar total size, its bulk one
  transcript analysis of thousands of small word objects (word, start, end), as a speech-to-text
  vendor returns them) and makes one producer call (snapshot none, a stream of its own) so the
  Lua script exists before the first reading.
- ``mem STATE NAME``: records ``used_memory`` as NAME.
- ``calls URL STATE MODE N``: N calls of the real producer (``vcon_otel.tracer.run``) as vCon Server
  makes them for a 5-link chain (link_index -1..4 per run, runs cycling through the pool), with
  the default options (MODE ``copy``, default stream) or ``snapshot: none`` (MODE ``none``, a
  stream of its own: the control, what a call holds without a snapshot).
- ``before URL STATE``: after the copy calls: live snapshot keys, index members, ``MEMORY USAGE``
  (``SAMPLES 0``) of every snapshot and of the stream.
- ``drained URL STATE N``: waits until the bridge's group read and acknowledged the N records and
  every snapshot and index member is gone (fails after 120 s).
- ``after URL STATE``: once the bridge is stopped: what is left, by key family (count, ``MEMORY
  USAGE``), and the ``used_memory`` freed per key by deleting any run journals left, then the step
  records, then the completion markers.
- ``report STATE...``: the Markdown tables, medians over the repetitions, and the steady state at
  10 vCons/s computed from them.
"""
import json
import os
import statistics
import sys
import time
import uuid

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from vcon_otel import tracer as vtracer  # noqa: E402

LINKS = ["transcribe", "diarize", "summarize", "tag", "route"]  # a 5-link chain: 6 calls per run
POOL = 10
SIZE = 100_000
STREAM = "vcon_otel:events"  # the producer's default
CONTROL = "bench:snapmem:none"
WORDS = ("yes", "the", "account", "number", "is", "thank", "you", "for", "calling", "I", "can", "help",
         "with", "that", "order", "please", "hold", "a", "moment", "while", "check")


def base_doc(u):
    return {"uuid": u, "vcon": "0.4.0", "created_at": "2026-11-22T10:00:00.000+00:00",
            "parties": [{"tel": "+15555550100"}, {"mailto": "agent@example.com"}],
            "dialog": [{"type": "recording", "start": "2026-11-22T10:00:00Z", "duration": 600, "parties": [0, 1],
                        "mediatype": "audio/x-wav"}],
            "analysis": [], "attachments": [{"purpose": "tags", "encoding": "json", "body": ["bench"]}]}


def compact(v):
    return json.dumps(v, separators=(",", ":"))


def body_doc(u):
    """About SIZE bytes, its bulk one base64url recording body."""
    doc = base_doc(u)
    doc["dialog"][0].update(encoding="base64url", body="")
    doc["dialog"][0]["body"] = ("QUJD" * (SIZE // 4))[: SIZE - len(compact(doc))]
    return doc


def transcript_doc(u):
    """About SIZE bytes, its bulk a transcript of small word objects (word, start, end), the
    recording referenced by URL."""
    doc = base_doc(u)
    doc["dialog"][0]["url"] = "https://recordings.example.com/%s.wav" % u
    words = []
    body = {"words": words}
    doc["analysis"].append({"type": "transcript", "dialog": 0, "vendor": "bench", "encoding": "json", "body": body})
    size, i = len(compact(doc)), 0
    while size < SIZE:
        w = {"word": WORDS[(i * 7) % len(WORDS)], "start": round(i * 0.29, 2), "end": round(i * 0.29 + 0.25, 2)}
        words.append(w)
        size += len(compact(w)) + 1
        i += 1
    return doc


KINDS = {"body": body_doc, "transcript": transcript_doc}


def load(path):
    with open(path) as f:
        return json.load(f)


def save(path, st):
    with open(path, "w") as f:
        json.dump(st, f)


def conn(url):
    return redis.Redis.from_url(url)


def store(kind, url, path):
    r = conn(url)
    pool, sizes, units = [], [], 0
    for _ in range(POOL):
        doc = KINDS[kind](str(uuid.uuid4()))
        r.json().set("vcon:" + doc["uuid"], "$", doc)
        pool.append(doc["uuid"])
        sizes.append(len(compact(r.json().get("vcon:" + doc["uuid"]))))
        units = len(doc["analysis"][0]["body"]["words"]) if doc["analysis"] else 0
    vtracer.run(pool[0], pool[0], "otel", LINKS, -1, {"redis_url": url, "stream": "bench:snapmem:warm", "snapshot": "none"})
    info = r.execute_command("MODULE", "LIST")
    ver = next(m[m.index(b"ver") + 1] for m in info if b"ReJSON" in m)
    st = {"kind": kind, "pool": pool, "stored": statistics.median(sizes), "words": units,
          "vcon_usage": r.memory_usage("vcon:" + pool[0], samples=0), "rejson": "%d.%d.%d" % (ver // 10000, ver // 100 % 100, ver % 100),
          "redis": r.info("server")["redis_version"], "mem": {}}
    save(path, st)


def mem(path, name):
    st = load(path)
    url = st["url"]
    st["mem"][name] = conn(url).info("memory")["used_memory"]
    save(path, st)


def calls(url, path, mode, n):
    st = load(path)
    opts = {"redis_url": url}
    if mode == "none":
        opts.update(snapshot="none", stream=CONTROL)
    before = vtracer.stats()
    per_run = len(LINKS) + 1
    for i in range(n):
        u = st["pool"][(i // per_run) % len(st["pool"])]
        vtracer.run(u, u, "otel", LINKS, i % per_run - 1, opts)
    after = vtracer.stats()
    if after["sent"] - before["sent"] != n or after["failed"] != before["failed"]:
        raise SystemExit("producer sent %d of %d records (stats %s)" % (after["sent"] - before["sent"], n, after))
    st["calls"] = n
    save(path, st)


def snapshot_keys(r):
    return list(r.scan_iter("vcon_otel:snap:*", count=1000))


def before(url, path):
    st = load(path)
    r = conn(url)
    keys = snapshot_keys(r)
    st["before"] = {"live": len(keys), "index": r.zcard("vcon_otel:snaps"),
                    "usage": statistics.median(r.memory_usage(k, samples=0) for k in keys) if keys else 0,
                    "stream_usage": r.memory_usage(STREAM, samples=0), "index_usage": r.memory_usage("vcon_otel:snaps", samples=0) or 0}
    save(path, st)


def drained(url, path, n):
    r = conn(url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        groups = r.xinfo_groups(STREAM)
        done = any(g["lag"] == 0 and g["pending"] == 0 and g["entries-read"] == n for g in groups)
        if done and not snapshot_keys(r) and r.zcard("vcon_otel:snaps") == 0:
            return
        time.sleep(0.1)
    raise SystemExit("not drained after 120 s: groups %s, %d snapshots left" % (r.xinfo_groups(STREAM), len(snapshot_keys(r))))


def family(key):
    k = key.decode()
    if k.startswith("vcon:"):
        return "vcon:*"
    if k.startswith("vcon_otel:steps:") and k.endswith(":run"):
        return "vcon_otel:steps:*:run"  # a run's journal (deleted once its root is acknowledged)
    head, _, tail = k.rpartition(":")
    return head + ":*" if head and tail and k not in (STREAM, CONTROL, "vcon_otel:snaps") else k


def after(url, path):
    st = load(path)
    r = conn(url)
    fam = {}
    for k in r.scan_iter(count=1000):
        f = fam.setdefault(family(k), [0, 0])
        f[0] += 1
        f[1] += r.memory_usage(k, samples=0) or 0
    steps = [k for k in r.scan_iter("vcon_otel:steps:*", count=1000) if not k.endswith(b":run")]
    fields = statistics.median(r.hlen(k) for k in steps) if steps else 0
    st["after"] = {"families": fam, "live": len(snapshot_keys(r)), "index": r.zcard("vcon_otel:snaps"),
                   "steps": len(steps), "step_fields": fields,
                   "step_usage": statistics.median(r.memory_usage(k, samples=0) for k in steps) if steps else 0,
                   "stream_usage": r.memory_usage(STREAM, samples=0)}
    st["after"]["freed"] = {f: freed(r, f) for f in ("vcon_otel:steps:*:run", "vcon_otel:steps:*", "vcon_otel:done:*")}
    save(path, st)


def freed(r, pattern):
    """`used_memory` freed by deleting the keys matching `pattern`, per key (the last phase, so
    deleting is harmless)."""
    keys = list(r.scan_iter(pattern, count=1000))
    if not keys:
        return 0
    m0 = r.info("memory")["used_memory"]
    r.delete(*keys)
    return (m0 - r.info("memory")["used_memory"]) / len(keys)


def derive(st):
    """Per-call figures of one repetition."""
    m, n, b, a = st["mem"], st["calls"], st["before"], st["after"]
    record = (m["control"] - m["base"]) / n  # a call without a snapshot: its stream record
    held_before = (m["copies"] - m["control"]) / n
    held_after = (m["drained"] - m["control"]) / n
    record_extra = (a["families"][STREAM][1] - a["families"][CONTROL][1]) / n  # the record's snapshot name
    return {"record": record, "before": held_before, "copy": held_before - record, "usage": b["usage"],
            "live_before": b["live"], "index_before": b["index"], "live_after": a["live"], "index_after": a["index"],
            "after": held_after, "after_extra": held_after - record, "step_usage": a["step_usage"],
            "step_freed": a["freed"]["vcon_otel:steps:*"], "step_per_call": a["freed"]["vcon_otel:steps:*"] / (len(LINKS) + 1),
            "done_freed": a["freed"]["vcon_otel:done:*"], "steps": a["steps"], "step_fields": a["step_fields"],
            "bridge_once": m["base"] - m["stored"],
            "record_extra": record_extra,
            # a live copy without the record's longer compliance field (which stays with the stream)
            "copy_only": held_before - record - record_extra}


LABEL = {"body": "body-heavy", "transcript": "transcript-heavy"}


def report(paths):
    sts = [load(p) for p in paths]
    kinds = list(dict.fromkeys(st["kind"] for st in sts))
    runs = {k: [derive(s) for s in sts if s["kind"] == k] for k in kinds}
    med = lambda k, f: statistics.median(d[f] for d in runs[k])  # noqa: E731
    first = sts[0]
    print("Redis %s, RedisJSON %s; %d tracer calls per repetition (a 5-link chain: 6 calls per run, runs cycling through %d "
          "stored vCons); median of %d repetitions, each on a new Redis.\n" % (first["redis"], first["rejson"], first["calls"], POOL, len(runs[kinds[0]])))
    print("Before (the producer's copies, no bridge yet):\n")
    print("| vCon | stored JSON | MEMORY USAGE of the vCon | live snapshots | MEMORY USAGE per snapshot | used_memory per call | "
          "of it a call without snapshot (control) | **per live copy** (the difference) |")
    print("|---|---|---|---|---|---|---|---|")
    for k in kinds:
        d = next(s for s in sts if s["kind"] == k)
        what = LABEL[k] + (" (%d words)" % d["words"] if d["words"] else " (one body)")
        print("| %s | %d B | %d B | %d | %d B | %.0f B | %.0f B | **%.0f B** |" % (
            what, d["stored"], d["vcon_usage"], med(k, "live_before"), med(k, "usage"), med(k, "before"), med(k, "record"), med(k, "copy")))
    print("\nAfter (the bridge hashed every copy and deleted it; bridge stopped, then read):\n")
    print("| vCon | live snapshots | index members | step records (fields each) | step record: MEMORY USAGE / used_memory freed by DEL "
          "| step record per call | completion marker per run (used_memory freed) | used_memory per call beyond the control's record "
          "| of it the record's snapshot name (MEMORY USAGE of the streams) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in kinds:
        print("| %s | %d | %d | %d (%d) | %d B / %.0f B | %.0f B | %.0f B | **%.0f B** | %.0f B |" % (
            LABEL[k], med(k, "live_after"), med(k, "index_after"), med(k, "steps"), med(k, "step_fields"), med(k, "step_usage"),
            med(k, "step_freed"), med(k, "step_per_call"), med(k, "done_freed"), med(k, "after_extra"), med(k, "record_extra")))
    for k in kinds:
        rng = lambda f: "%.0f-%.0f B" % (min(d[f] for d in runs[k]), max(d[f] for d in runs[k]))  # noqa: E731
        print("\nSpread over the repetitions, %s: per live copy %s, per call after %s." % (LABEL[k], rng("copy"), rng("after_extra")), end="")
    print()
    print("\nOnce per Redis, not per call: a bridge's first start (its consumer group, start-up checks) left %s in "
          "used_memory; it is in every reading above, so in none of the per-call figures." % " / ".join(
              "%.0f KB (%s)" % (med(k, "bridge_once") / 1024, LABEL[k]) for k in kinds))
    print("\nKeys after the drain, before the deletions above (last repetition of each kind): count, MEMORY USAGE in all\n")
    for k in kinds:
        last = [s for s in sts if s["kind"] == k][-1]
        fams = ", ".join("`%s` %d (%d B)" % (f, c, b) for f, (c, b) in sorted(last["after"]["families"].items()))
        print("- %s: %s" % (LABEL[k], fams))
    print("\nComputed from these medians (not measured at that rate): 10 vCons/s through a 5-link chain = 60 tracer calls/s, "
          "10 runs/s.\n")
    for k in kinds:
        copies, steps, done = 60 * 600, 10 * 900, 10 * 86_400
        print("- %s: before, %d live copies (snapshot TTL 600 s) x %.0f B (a live copy less the record's snapshot name) = %.1f MB; "
              "after, %d step records "
              "(step_record_ttl_secs 900) x %.0f B = %.1f MB, plus the copies not yet hashed (60 per second of bridge delay, "
              "%.2f MB per second of delay)" % (LABEL[k], copies, med(k, "copy_only"), copies * med(k, "copy_only") / 1e6, steps,
                                                med(k, "step_freed"), steps * med(k, "step_freed") / 1e6, 60 * med(k, "copy_only") / 1e6))
    k = kinds[0]
    print("- either kind, not the snapshot lifecycle's: the bridge's completion markers (runs.done_marker_ttl_secs 86400), "
          "%d x %.0f B = %.1f MB" % (done, med(k, "done_freed"), done * med(k, "done_freed") / 1e6))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "store":
        kind, url, path = args
        store(kind, url, path)
        st = load(path)
        st["url"] = url
        save(path, st)
    elif cmd == "mem":
        mem(*args)
    elif cmd == "calls":
        calls(args[0], args[1], args[2], int(args[3]))
    elif cmd == "before":
        before(*args)
    elif cmd == "drained":
        drained(args[0], args[1], int(args[2]))
    elif cmd == "after":
        after(*args)
    elif cmd == "report":
        report(args)
    else:
        raise SystemExit("unknown phase %r (see the module header)" % cmd)


if __name__ == "__main__":
    main()
