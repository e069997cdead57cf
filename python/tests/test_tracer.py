"""The tracer module and hooks, driven exactly as vCon Server's chain loop drives them."""
import json
import logging
import threading

import pytest
import redis

import conserver_sim as sim
from vcon_otel import _emit, hooks, tracer

STREAM = "vcon_otel:events"


def records(r):
    out = []
    for _id, fields in r.xrange(STREAM):
        rec = json.loads(fields[b"r"])
        if b"p" in fields:
            rec["_p"] = json.loads(fields[b"p"])
        out.append(rec)
    return out


def run(server, scenario, use_hooks=False):
    hooks.options = {"redis_url": server.url}
    return sim.run_scenario(server.client, server.url, scenario, use_hooks, STREAM)


def test_three_links_give_n_plus_one_calls_with_the_conservers_semantics(server):
    vcon, err = run(server, "three_links")
    assert err is None
    recs = records(server.client)
    assert [r["event"] for r in recs] == ["tracer_call"] * 4
    assert [r["link_index"] for r in recs] == [-1, 0, 1, 2]
    assert {r["run"] for r in recs} == {recs[0]["run"]} and len(recs[0]["run"]) == 32
    assert all(r["vcon_uuid"] == vcon and r["in_vcon_uuid"] == vcon and r["out_vcon_uuid"] == vcon for r in recs)
    assert all(r["links"] == ["tag", "tag2", "tag3"] and r["tracer"] == "otel" for r in recs)
    assert [r["seq"] for r in recs] == [0, 1, 2, 3]
    for prev, cur in zip(recs[1:], recs[2:]):
        assert cur["start_ns"] >= prev["ts_ns"], "a link starts after the previous call"
    assert "hooks" not in recs[0]
    assert recs[0]["producer"]["pid"] > 0


def test_the_snapshot_is_the_vcon_as_it_was_at_that_step(server):
    vcon, _ = run(server, "three_links")
    recs = records(server.client)
    tags = []
    for rec in recs:
        snap = server.client.json().get(rec["compliance"]["snapshot"])
        tags.append(len(snap["attachments"]))
    # Before the first link nothing was tagged; each link added one tag.
    assert tags == [0, 1, 2, 3]
    assert len(server.client.json().get("vcon:" + vcon)["attachments"]) == 3


def test_a_uuid_swap_keeps_the_run_and_records_the_new_uuid(server):
    vcon, _ = run(server, "swap")
    recs = records(server.client)
    assert len({r["run"] for r in recs}) == 1
    after_swap = recs[2]
    assert after_swap["link_index"] == 1 and after_swap["out_vcon_uuid"] == vcon and after_swap["in_vcon_uuid"] != vcon
    new = after_swap["in_vcon_uuid"]
    assert recs[3]["in_vcon_uuid"] == new == recs[3]["out_vcon_uuid"]
    assert all(r["vcon_uuid"] == vcon for r in recs), "vcon_uuid stays the UUID the run began with"
    # The new UUID now points at this run, so the next chain links back to it.
    assert json.loads(server.client.get("vcon_otel:lastrun:" + new)) == {"vcon_uuid": vcon, "run": recs[0]["run"]}


def test_a_halt_gives_no_more_calls_and_with_hooks_a_halted_chain_complete(server):
    run(server, "halt")
    recs = records(server.client)
    assert [r["link_index"] for r in recs] == [-1, 0, 1]
    server.client.delete(STREAM)
    run(server, "halt", use_hooks=True)
    recs = records(server.client)
    assert [r["event"] for r in recs] == ["chain_start", "tracer_call", "tracer_call", "tracer_call", "chain_complete"]
    assert recs[-1]["outcome"] == "halted" and recs[0]["chain"] == "halt"
    assert all(r.get("hooks") for r in recs)
    assert recs[1]["link_index"] == -1 and recs[2]["module"] == "links.tag"


@pytest.mark.parametrize("use_hooks", [False, True])
def test_a_link_that_raises(server, use_hooks):
    vcon, err = run(server, "link_error", use_hooks)
    assert isinstance(err, RuntimeError)
    assert server.client.lrange("DLQ:link_error_in", 0, -1) == [vcon.encode()]
    events = [(r["event"], r.get("link_index")) for r in records(server.client)]
    if use_hooks:
        assert events == [("chain_start", None), ("tracer_call", -1), ("tracer_call", 0), ("link_error", 1), ("chain_error", None)]
        err_rec = records(server.client)[3]
        assert err_rec["error"] == {"type": "RuntimeError", "message": "link exploded"} and err_rec["link"] == "boom"
    else:
        # No tracer call follows a link that raised: the bridge closes the run as incomplete.
        assert events == [("tracer_call", -1), ("tracer_call", 0)]


def test_with_hooks_the_chain_name_ingress_list_and_traceparent_are_recorded(server):
    hooks.options = {"redis_url": server.url}
    c = sim.Conserver(server.client, sim.tracers({"redis_url": server.url}), sim.links_for(server.client), hooks=True)
    vcon = sim.make_vcon(server.client)
    ctx = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7", "trace_flags": 1}
    c.handle("main_in", vcon, {"name": "main", "links": ["tag"]}, ctx)
    recs = records(server.client)
    assert recs[0]["ingress_list"] == "main_in" and recs[0]["chain"] == "main"
    assert recs[0]["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert recs[-1]["event"] == "chain_complete" and recs[-1]["outcome"] == "complete"


def test_a_reprocessed_vcon_gets_a_new_run_linked_to_the_previous(server):
    hooks.options = {"redis_url": server.url}
    c = sim.Conserver(server.client, sim.tracers({"redis_url": server.url}), sim.links_for(server.client))
    vcon = sim.make_vcon(server.client)
    chain = {"name": "c", "links": ["tag"]}
    c.handle("in", vcon, chain)
    c.handle("in", vcon, chain)
    recs = records(server.client)
    first, second = recs[0], recs[2]
    assert first["run"] != second["run"]
    assert "_p" not in first
    assert second["_p"] == {"vcon_uuid": vcon, "run": first["run"]}


class FailingTracer:
    @staticmethod
    def run(*a):
        raise ValueError("tracer failed")


def test_tracer_errors_follow_the_conservers_dlq_rule(server):
    vcon = sim.make_vcon(server.client)
    for opts, expect_dlq in [({"dlq_vcon_on_error": False}, False), ({"dlq_vcon_on_error": True}, True), (None, True)]:
        c = sim.Conserver(server.client, {"bad": {"module_obj": FailingTracer, "options": opts}}, sim.links_for(server.client))
        server.client.delete("DLQ:in")
        err = c.handle("in", vcon, {"name": "c", "links": ["tag"]})
        assert (err is not None) == expect_dlq, opts
        assert bool(server.client.llen("DLQ:in")) == expect_dlq


def test_opts_none_uses_defaults_and_redis_url_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("REDIS_URL", server.url)
    vcon = sim.make_vcon(server.client)
    assert tracer.run(vcon, vcon, "otel", ["a"], -1, None) is True
    assert len(records(server.client)) == 1


def test_redis_down_never_raises_is_counted_and_logged_once(caplog):
    before = tracer.stats()["failed"]
    opts = {"redis_url": "redis://127.0.0.1:9", "socket_timeout": 0.05}
    with caplog.at_level(logging.ERROR, logger="vcon_otel"):
        for _ in range(5):
            assert tracer.run("u", "u", "otel", ["a"], -1, opts) is True
    assert tracer.stats()["failed"] - before == 5
    assert len([r for r in caplog.records if "cannot append" in r.getMessage()]) <= 1
    with pytest.raises(redis.ConnectionError):
        tracer.run("u", "u", "otel", ["a"], -1, dict(opts, dlq_vcon_on_error=True))


def test_two_threads_interleaving_two_vcons_never_mix_runs(server):
    c = sim.Conserver(server.client, sim.tracers({"redis_url": server.url}), sim.links_for(server.client))
    vcons = [sim.make_vcon(server.client) for _ in range(2)]
    barrier = threading.Barrier(2)

    def work(v):
        barrier.wait()
        for _ in range(20):
            c.handle("in", v, {"name": "c", "links": ["tag", "tag2", "tag3"]})

    ts = [threading.Thread(target=work, args=(v,)) for v in vcons]
    [t.start() for t in ts]
    [t.join() for t in ts]
    recs = records(server.client)
    runs = {}
    for r in recs:
        runs.setdefault(r["run"], []).append(r)
    assert len(runs) == 40
    for rs in runs.values():
        assert [r["link_index"] for r in rs] == [-1, 0, 1, 2]
        assert len({r["vcon_uuid"] for r in rs}) == 1 and len({r["producer"]["thread"] for r in rs}) == 1


def test_seed_trace_interface_produces_seed_model_records(server):
    opts = {"redis_url": server.url}
    vcon = sim.make_vcon(server.client)
    for ev in ["chain_start", "link_start", "link_complete", "storage_start", "storage_complete", "chain_complete"]:
        tracer.trace(vcon, ev, dict(opts, link="tag", storage="s3"))
    recs = records(server.client)
    assert [r["event"] for r in recs] == ["chain_start", "link_start", "link_complete", "storage_start", "storage_complete", "chain_complete"]
    assert len({r["run"] for r in recs}) == 1
    assert recs[2]["link"] == "tag" and recs[2]["link_index"] == 0 and recs[4]["storage"] == "s3"
