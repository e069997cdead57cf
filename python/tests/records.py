"""Reading the producer's records back from the stream, and comparing them field by field."""
import json
import os

STREAM = "vcon_otel:events"
VOLATILE = ("run", "ts_ns", "start_ns", "run_start_ns", "call_ns", "producer", "compliance")
OWN = {"snapshot": "own"}  # exact(): a snapshot under this record's own key (vcon_otel:snap:{run}:{seq})
OWN_INPUT = {"snapshot": "own", "subject": "input"}


def entries(r, stream=STREAM):
    return [(fields, json.loads(fields[b"r"])) for _id, fields in r.xrange(stream)]


def records(r, stream=STREAM):
    return [rec for _f, rec in entries(r, stream)]


def snapshot_key(rec):
    return "vcon_otel:snap:%s:%d" % (rec["run"], rec["seq"])


def stable(rec):
    """The record without the fields that differ between runs (checked separately)."""
    return {k: v for k, v in rec.items() if k not in VOLATILE}


def exact(rec):
    """stable(), plus the compliance field, with a snapshot key of the record's own run and seq
    written as "own" (any other key fails the comparison)."""
    out = stable(rec)
    c = rec.get("compliance")
    if c is not None:
        out["compliance"] = dict(c, snapshot="own") if c.get("snapshot") == snapshot_key(rec) else c
    return out


def check_volatile(recs):
    """Every record of one run: same run id, same run_start_ns, seq 0.., times in order, a link's
    start is the end of the previous call, compliance in one of the documented forms."""
    assert len({r["run"] for r in recs}) == 1 and len(recs[0]["run"]) == 32
    int(recs[0]["run"], 16)
    assert [r["seq"] for r in recs] == list(range(len(recs)))
    assert len({r["run_start_ns"] for r in recs}) == 1 and recs[0]["run_start_ns"] <= recs[0]["ts_ns"]
    for prev, cur in zip(recs, recs[1:]):
        assert cur["ts_ns"] >= prev["ts_ns"]
        if "start_ns" in cur:
            assert prev["ts_ns"] <= cur["start_ns"] <= cur["ts_ns"]
    for r in recs:
        assert r["producer"]["pid"] == os.getpid() or r["producer"]["pid"] > 0
        c = r.get("compliance")
        if c is not None:
            assert set(c) - {"subject"} in ({"snapshot"}, {"same_as"}, {"skipped"}), c
            assert c.get("subject", "input") == "input"
            if "snapshot" in c:
                assert c["snapshot"] == snapshot_key(r)
            if "same_as" in c:
                assert 0 <= c["same_as"] < r["seq"]
            if "skipped" in c:
                assert c["skipped"] in ("budget", "no_document")
        if r["event"] == "tracer_call":
            assert isinstance(r["call_ns"], int) and 0 <= r["call_ns"] < 50_000_000


def runs_of(recs):
    runs = {}
    for r in recs:
        runs.setdefault(r["run"], []).append(r)
    return runs
