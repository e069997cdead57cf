"""The tracer module and hooks, driven exactly as vCon Server's chain loop drives them, against a
real Redis with RedisJSON. Records are read back with XRANGE and compared field by field."""
import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest
import redis

import conserver_sim as sim
from records import STREAM, check_volatile, records, runs_of, stable
from vcon_otel import _emit, hooks, tracer

SIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conserver_sim.py")


def tc(vcon, idx, links, in_=None, out=None, **extra):
    """An expected tracer_call record (stable fields)."""
    r = {"v": 1, "event": "tracer_call", "vcon_uuid": vcon, "seq": extra.pop("seq"), "links": links, "link_index": idx,
         "tracer": "otel", "in_vcon_uuid": in_ or vcon, "out_vcon_uuid": out or vcon}
    r.update(extra)
    return r


def conserver(server, use_hooks=False, tracers=None, opts=None):
    hooks.options = {"redis_url": server.url}
    t = sim.otel_tracer(dict(opts or {}, redis_url=server.url)) if tracers is None else tracers
    return sim.Conserver(server.client, t, sim.links_for(server.client), hooks=use_hooks, storages=sim.storages_for(server.client))


def scenario(server, name, use_hooks=False):
    hooks.options = {"redis_url": server.url}
    return sim.run_scenario(server.client, server.url, name, use_hooks, STREAM)


# --- the call table ------------------------------------------------------------------------------

def test_three_links_give_n_plus_one_calls_exactly_as_the_conserver_makes_them(server):
    (vcon,), errors = scenario(server, "three_links")
    assert errors == [None]
    recs = records(server.client)
    links = ["tag", "tag2", "tag3"]
    assert [stable(r) for r in recs] == [tc(vcon, i, links, seq=i + 1) for i in range(-1, 3)]
    check_volatile(recs)
    assert "compliance" in recs[0] and all("compliance" in r for r in recs)
    # egress and storages ran (a broken storage is swallowed), nothing in the DLQ
    assert server.client.lrange("three_links_out", 0, -1) == [vcon.encode()]
    assert server.client.get("stored:" + vcon) == b"1" and not server.client.exists("DLQ:three_links_in")


@pytest.mark.parametrize("use_hooks", [False, True])
def test_a_link_span_covers_the_links_execution(server, use_hooks):
    c = conserver(server, use_hooks=use_hooks)
    vcon = sim.make_vcon(server.client)
    t0 = time.time_ns()
    c.handle("in", vcon, {"name": "c", "links": ["tag", "slow", "tag2"]})
    t1 = time.time_ns()
    recs = [r for r in records(server.client) if r["event"] == "tracer_call"]
    slow = recs[2]
    assert slow["link_index"] == 1
    # from when the previous call returned to when this call began: the 50 ms sleep, plus little
    # (bounds in wall time on a shared machine: only the order of magnitude is checked)
    assert 50_000_000 <= slow["ts_ns"] - slow["start_ns"] < 1_000_000_000
    assert recs[1]["ts_ns"] < slow["start_ns"]
    for r in recs[1:]:
        if r is not slow:  # a fast link's span does not include the slow link's sleep
            assert r["ts_ns"] - r["start_ns"] < 50_000_000
    assert t0 <= recs[0]["run_start_ns"] <= recs[0]["ts_ns"] < t1


def test_the_snapshot_is_the_vcon_exactly_as_it_was_at_that_step(server):
    seen = []

    class Capture:  # a tracer after vcon_otel that reads the vCon at the same moment
        @staticmethod
        def run(in_uuid, out_uuid, name, links, idx, opts):
            seen.append(server.client.json().get("vcon:" + in_uuid))

    tracers = sim.otel_tracer({"redis_url": server.url})
    tracers["capture"] = {"module": "capture", "module_obj": Capture, "options": {}}
    c = conserver(server, tracers=tracers)
    vcon = sim.make_vcon(server.client, size=100_000)
    assert c.handle("in", vcon, {"name": "c", "links": ["tag", "tag2", "tag3"]}) is None
    recs = records(server.client)
    snaps = [server.client.json().get(r["compliance"]["snapshot"]) for r in recs]
    assert snaps == seen
    assert [len(s["attachments"]) for s in snaps] == [0, 1, 2, 3]
    # later links changed the vCon; the snapshots did not follow, and they expire
    assert server.client.json().get("vcon:" + vcon) == snaps[-1] != snaps[0]
    assert 0 < server.client.ttl(recs[0]["compliance"]["snapshot"]) <= 600


def test_snapshot_none_copies_nothing(server):
    c = conserver(server, opts={"snapshot": "none"})
    vcon = sim.make_vcon(server.client)
    c.handle("in", vcon, {"name": "c", "links": ["tag"]})
    assert all("compliance" not in r for r in records(server.client))
    assert list(server.client.scan_iter("vcon_otel:snap:*")) == []


# --- tracer errors and the DLQ rule ------------------------------------------------------------------

@pytest.mark.parametrize("opts,fails", [({"dlq_vcon_on_error": False}, False), ({}, False), ({"dlq_vcon_on_error": True}, True), (None, True)])
def test_another_tracers_error_follows_the_conservers_dlq_rule(server, opts, fails):
    bad = sim.FailingTracer()
    tracers = sim.otel_tracer({"redis_url": server.url})
    tracers["bad"] = {"module": "bad", "module_obj": bad, "options": opts}
    c = conserver(server, tracers=tracers)
    vcon = sim.make_vcon(server.client)
    err = c.handle("in", vcon, {"name": "c", "links": ["tag", "tag2"]})
    assert (err is not None) == fails
    assert bool(server.client.llen("DLQ:in")) == fails
    # vcon_otel (first in the mapping) recorded the -1 call either way
    assert [r["link_index"] for r in records(server.client)] == ([-1] if fails else [-1, 0, 1])


@pytest.mark.parametrize("use_hooks", [False, True])
def test_tracer_error_scenario_after_the_link_was_recorded(server, use_hooks):
    (vcon,), errors = scenario(server, "tracer_error", use_hooks)
    assert isinstance(errors[0], ValueError)
    events = [(r["event"], r.get("link_index")) for r in records(server.client)]
    if use_hooks:
        # link 1 already has its (successful) record: no second link record; the chain failed
        assert events == [("chain_start", None), ("tracer_call", -1), ("tracer_call", 0), ("tracer_call", 1), ("chain_error", None)]
        assert records(server.client)[-1]["error"] == {"type": "ValueError", "message": "tracer failed at 1"}
    else:
        assert events == [("tracer_call", -1), ("tracer_call", 0), ("tracer_call", 1)]


def test_a_tracer_raising_before_the_first_link_gives_link_error_for_link_0_with_hooks(server):
    tracers = {"bad": {"module": "bad", "module_obj": sim.FailingTracer(at=-1), "options": {"dlq_vcon_on_error": True}}}
    tracers.update(sim.otel_tracer({"redis_url": server.url}))
    c = conserver(server, use_hooks=True, tracers=tracers)
    vcon = sim.make_vcon(server.client)
    assert isinstance(c.handle("in", vcon, {"name": "c", "links": ["tag", "tag2"]}), ValueError)
    recs = records(server.client)
    assert [(r["event"], r.get("link_index")) for r in recs] == [("chain_start", None), ("link_error", 0), ("chain_error", None)]
    assert recs[1]["link"] == "tag"


def test_vcon_otel_with_dlq_vcon_on_error_fails_the_chain_when_redis_is_down(server):
    c = conserver(server, tracers=sim.otel_tracer({"redis_url": "redis://127.0.0.1:9", "dlq_vcon_on_error": True}))
    vcon = sim.make_vcon(server.client)
    err = c.handle("in", vcon, {"name": "c", "links": ["tag"]})
    assert isinstance(err, redis.ConnectionError)
    assert server.client.lrange("DLQ:in", 0, -1) == [vcon.encode()]


def test_opts_none_uses_the_defaults_and_redis_url_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("REDIS_URL", server.url)
    vcon = sim.make_vcon(server.client)
    assert tracer.run(vcon, vcon, "otel", ["a"], -1, None) is True
    assert tracer.run(vcon, vcon, "otel", ["a"], 0, None) is True
    recs = records(server.client)
    assert [stable(r) for r in recs] == [tc(vcon, -1, ["a"], seq=0), tc(vcon, 0, ["a"], seq=1)]
    assert "maxlen" not in tracer.default_options or tracer.default_options["maxlen"] is None


def test_maxlen_caps_the_stream_approximately(server):
    vcon = sim.make_vcon(server.client)
    for i in range(3000):
        tracer.run(vcon, vcon, "otel", ["a"], (i % 2) - 1, {"redis_url": server.url, "maxlen": 100, "snapshot": "none"})
    assert 100 <= server.client.xlen(STREAM) < 400


def test_redis_down_never_raises_is_counted_and_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(_emit, "_last_log", [-1e18])
    monkeypatch.setattr(_emit, "_down_until", {})
    before = tracer.stats()
    opts = {"redis_url": "redis://127.0.0.1:9", "socket_timeout": 0.05, "retry_after": 0}
    with caplog.at_level(logging.ERROR, logger="vcon_otel"):
        for i in range(5):
            assert tracer.run("u", "u", "otel", ["a"], i - 1, opts) is True
        # the hooks never raise either
        assert hooks.before_processing("u", {"name": "c", "links": ["a"]}, {}) == "u"
        hooks.options = opts
        assert hooks.before_processing("u", {"name": "c", "links": ["a"]}, {}) == "u"
        hooks.after_link("u", "a", None, {}, {}, "error", RuntimeError("x"), [])
        hooks.after_processing("u", {"name": "c"}, {}, error=RuntimeError("x"))
    after = tracer.stats()
    assert after["failed"] - before["failed"] >= 8 and after["errors"] == before["errors"]
    logged = [r for r in caplog.records if "cannot append" in r.getMessage()]
    assert len(logged) == 1 and "127.0.0.1:9" in logged[0].getMessage()
    with pytest.raises(redis.ConnectionError):
        tracer.run("u", "u", "otel", ["a"], -1, dict(opts, dlq_vcon_on_error=True))


def test_after_a_failure_calls_skip_redis_for_retry_after_seconds(monkeypatch):
    monkeypatch.setattr(_emit, "_down_until", {})
    before = tracer.stats()
    opts = {"redis_url": "redis://127.0.0.1:9", "socket_timeout": 0.05, "retry_after": 30}
    t0 = time.perf_counter()
    for i in range(100):
        tracer.run("u", "u", "otel", ["a"], (i % 2) - 1, opts)
    after = tracer.stats()
    assert after["failed"] - before["failed"] == 1 and after["skipped"] - before["skipped"] == 99
    assert time.perf_counter() - t0 < 1.0


def test_a_password_is_not_logged(caplog, monkeypatch):
    monkeypatch.setattr(_emit, "_last_log", [-1e18])
    monkeypatch.setattr(_emit, "_down_until", {})
    with caplog.at_level(logging.ERROR, logger="vcon_otel"):
        tracer.run("u", "u", "otel", ["a"], -1, {"redis_url": "redis://user:s3cret@127.0.0.1:9", "socket_timeout": 0.05})
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "s3cret" not in text and "***" in text


# --- run identity ------------------------------------------------------------------------------------

def check_tracer_only_runs(recs, links, n):
    runs = runs_of(recs)
    assert len(runs) == n
    for rs in runs.values():
        assert [r["link_index"] for r in rs] == list(range(-1, len(links)))
        v = rs[0]["vcon_uuid"]
        assert all(r["vcon_uuid"] == v and r["in_vcon_uuid"] == v and r["out_vcon_uuid"] == v for r in rs)
        assert len({(r["producer"]["pid"], r["producer"]["thread"]) for r in rs}) == 1
        check_volatile(rs)
    return runs


def test_two_threads_interleaving_vcons_never_mix_runs(server):
    vcons, errors = scenario(server, "two_threads")
    assert errors == [None] * len(vcons)
    recs = records(server.client)
    runs = check_tracer_only_runs(recs, ["tag", "tag2", "tag3"], len(vcons))
    assert sorted(rs[0]["vcon_uuid"] for rs in runs.values()) == sorted(vcons)
    assert len({r["producer"]["thread"] for r in recs}) == 2
    # the two threads really interleaved
    order = [r["run"] for r in recs]
    assert any(a != b for a, b in zip(order, order[1:]) if True) and len(order) == 4 * len(vcons)
    switches = sum(1 for a, b in zip(order, order[1:]) if a != b)
    assert switches > len(vcons), "records of different runs interleave in the stream"


def test_several_processes_never_mix_runs(server):
    procs = [subprocess.Popen([sys.executable, SIM, "--redis-url", server.url, "--scenario", "two_threads", "--rounds", "5"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    vcons = sum((json.loads(o[0])["vcon_uuids"] for o in outs), [])
    recs = records(server.client)
    runs = check_tracer_only_runs(recs, ["tag", "tag2", "tag3"], 20)
    assert sorted(rs[0]["vcon_uuid"] for rs in runs.values()) == sorted(vcons)
    assert len({r["producer"]["pid"] for r in recs}) == 2


@pytest.mark.parametrize("use_hooks", [False, True])
def test_the_same_vcon_in_two_chains_at_once_gets_two_runs(server, use_hooks):
    c = conserver(server, use_hooks=use_hooks)
    both_inside = threading.Barrier(2)

    def meet(vcon_uuid, link_name, opts=None):  # both chains are inside a link at the same time
        both_inside.wait(timeout=10)
        return vcon_uuid

    c.config["links"]["meet"] = {"module": sim.Link("links.meet", meet), "options": {}}
    vcon = sim.make_vcon(server.client)
    chains = [{"name": "a", "links": ["meet", "tag"]}, {"name": "b", "links": ["tag2", "meet", "tag3"]}]
    ts = [threading.Thread(target=c.handle, args=("in_" + ch["name"], vcon, ch)) for ch in chains]
    [t.start() for t in ts]
    [t.join() for t in ts]
    runs = runs_of(records(server.client))
    assert len(runs) == 2
    by_links = {tuple(rs[0]["links"]): rs for rs in runs.values()}
    assert set(by_links) == {("meet", "tag"), ("tag2", "meet", "tag3")}
    for links, rs in by_links.items():
        calls = [r["link_index"] for r in rs if r["event"] == "tracer_call"]
        assert calls == list(range(-1, len(links)))
        assert all(r["vcon_uuid"] == vcon for r in rs)
        if use_hooks:
            assert rs[0]["chain"] == ("a" if links[0] == "meet" else "b")
            assert [r["event"] for r in rs][0::len(rs) - 1] == ["chain_start", "chain_complete"]
        check_volatile(rs)


def test_a_foreign_lastrun_value_is_not_spliced_into_the_record(server):
    vcon = sim.make_vcon(server.client)
    server.client.set("vcon_otel:lastrun:" + vcon, 'x","evil":1,"y":"')
    tracer.run(vcon, vcon, "otel", ["a"], -1, {"redis_url": server.url})
    rec = records(server.client)[0]
    assert "prev_run" not in rec and "evil" not in rec


def test_the_open_script_survives_a_script_cache_flush(server):
    vcon = sim.make_vcon(server.client)
    opts = {"redis_url": server.url}
    tracer.run(vcon, vcon, "otel", ["a"], -1, opts)
    server.client.script_flush()
    tracer.run(vcon, vcon, "otel", ["a"], -1, opts)
    recs = records(server.client)
    assert len(recs) == 2 and recs[1]["prev_run"]["run"] == recs[0]["run"]


# --- hooks ---------------------------------------------------------------------------------------

def test_hooks_record_chain_name_ingress_list_and_traceparent(server):
    c = conserver(server, use_hooks=True)
    vcon = sim.make_vcon(server.client)
    # the API stores the producer's trace context; the worker LPOPs it (retrieve_context)
    server.client.rpush("context:main_in:" + vcon, json.dumps({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "trace_flags": 1}))
    assert c.handle("main_in", vcon, {"name": "main", "links": ["tag"]}) is None
    recs = records(server.client)
    assert recs[0]["event"] == "chain_start" and recs[0]["ingress_list"] == "main_in" and recs[0]["chain"] == "main"
    assert recs[0]["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert recs[-1]["event"] == "chain_complete" and recs[-1]["outcome"] == "complete"
    assert [r["event"] for r in recs] == ["chain_start", "tracer_call", "tracer_call", "chain_complete"]


def test_an_instrumented_conserver_gives_its_current_span_as_traceparent(server):
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace import TracerProvider
    t = TracerProvider().get_tracer("conserver")
    vcon = sim.make_vcon(server.client)
    opts = {"redis_url": server.url}
    with t.start_as_current_span("link.tag") as span:
        tracer.run(vcon, vcon, "otel", ["tag"], -1, opts)
        tracer.run(vcon, vcon, "otel", ["tag"], 0, opts)
    c = span.get_span_context()
    recs = records(server.client)
    assert recs[0]["traceparent"] == "00-%032x-%016x-01" % (c.trace_id, c.span_id)
    assert "traceparent" not in recs[1], "only the opening record carries it"


def test_a_chain_without_links(server):
    # tracer only: the conserver makes no tracer call at all
    vcon = sim.make_vcon(server.client)
    assert conserver(server).handle("in", vcon, {"name": "empty", "links": [], "egress_lists": ["out"]}) is None
    assert records(server.client) == [] and server.client.lrange("out", 0, -1) == [vcon.encode()]
    c = conserver(server, use_hooks=True)
    c.handle("in", vcon, {"name": "empty", "links": [], "egress_lists": ["out"]})
    recs = records(server.client)
    assert [(r["event"], r.get("outcome")) for r in recs] == [("chain_start", None), ("chain_complete", "complete")]


def test_hook_options_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("VCON_OTEL_HOOKS_OPTIONS", '{"stream": "s", "snapshot": "none"}')
    assert hooks._env_options() == {"stream": "s", "snapshot": "none"}
    monkeypatch.setenv("VCON_OTEL_HOOKS_OPTIONS", "not json")
    assert hooks._env_options() == {}
    monkeypatch.delenv("VCON_OTEL_HOOKS_OPTIONS")
    assert hooks._env_options() == {}


def test_drop_in_hook_modules_expose_the_conservers_functions():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conserver_hooks"))
    try:
        import after_link_hook
        import hook
    finally:
        sys.path.pop(0)
    assert hook.before_processing is hooks.before_processing and hook.after_processing is hooks.after_processing
    assert after_link_hook.after_link is hooks.after_link


# --- the seeds' event interface -------------------------------------------------------------------

def test_seed_trace_interface_produces_seed_model_records(server):
    opts = {"redis_url": server.url}
    vcon = sim.make_vcon(server.client)
    for ev in ["chain_start", "link_start", "link_complete", "storage_start", "storage_complete", "chain_complete"]:
        assert tracer.trace(vcon, ev, dict(opts, link="tag", storage="s3", chain="main")) is None
    recs = records(server.client)
    common = {"v": 1, "vcon_uuid": vcon, "chain": "main", "hooks": True}
    assert [stable(r) for r in recs] == [
        dict(common, event="chain_start", seq=0),
        dict(common, event="link_start", seq=1, link="tag", link_index=0),
        dict(common, event="link_complete", seq=2, link="tag", link_index=0),
        dict(common, event="storage_start", seq=3, storage="s3"),
        dict(common, event="storage_complete", seq=4, storage="s3"),
        dict(common, event="chain_complete", seq=5),
    ]
    check_volatile(recs)
    tracer.trace(vcon, "chain_start", opts)
    tracer.trace(vcon, "link_error", dict(opts, error=KeyError("k")))
    tracer.trace(vcon, "chain_error", dict(opts, error="boom"))
    recs = records(server.client)[6:]
    assert recs[1]["error"] == {"type": "KeyError", "message": "'k'"} and recs[2]["error"]["message"] == "boom"
    assert tracer.trace(vcon, "no_such_event", opts) is None


def test_seed_trace_numbers_links_without_link_start(server):
    opts = {"redis_url": server.url}
    vcon = sim.make_vcon(server.client)
    for ev in ["chain_start", "link_complete", "link_start", "link_complete", "link_error", "chain_error"]:
        tracer.trace(vcon, ev, opts)
    recs = records(server.client)
    assert [(r["event"], r.get("link_index"), r.get("link")) for r in recs] == [
        ("chain_start", None, None), ("link_complete", 0, "link_0"), ("link_start", 1, "link_1"),
        ("link_complete", 1, "link_1"), ("link_error", 2, "link_2"), ("chain_error", None, None)]


def test_bad_options_never_raise_into_the_conserver(server):
    before = tracer.stats()["errors"]
    assert tracer.run("u", "u", "otel", ["a"], -1, ["not", "a", "dict"]) is True
    assert tracer.trace("u", "chain_start", 42) is None
    assert tracer.stats()["errors"] == before + 2
