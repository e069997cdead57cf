"""Every mode the producer runs in -- tracer only, tracer + hooks, hooks only -- driven exactly as
vCon Server drives it, through a UUID swap, a halt, a raising link, two chains joined by egress and
a DLQ reprocess. Records are compared field by field, compliance included (docs/events.md: the
forms of `compliance`, and "Records the hooks hold back by one call"); every snapshot is checked
against the document it must describe; every call costs at most one Redis round trip."""
import json

import pytest
import redis

import conserver_sim as sim
from records import OWN, OWN_INPUT, STREAM, check_volatile, exact, records, runs_of
from vcon_otel import hooks, tracer

MODES = ["tracer", "tracer+hooks", "hooks"]


def scenario(server, name, mode):
    hooks.options = {"redis_url": server.url}
    return sim.run_scenario(server.client, server.url, name, mode != "tracer", STREAM, tracer=mode != "hooks")


def module_of(link):
    """The module name of a scenario link (conserver_sim.links_for)."""
    return sim.links_for(None)[link]["module"].__name__


class Expect:
    """Expected records of one run (stable fields and compliance, see records.exact)."""

    def __init__(self, mode, vcon, chain, links, ingress=None):
        self.mode, self.links = mode, links
        self.common = {"v": 1, "vcon_uuid": vcon}
        if mode != "tracer":
            self.common.update(chain=chain, links=links, hooks=True, ingress_list=ingress or chain + "_in")

    def _rec(self, seq, event, **kw):
        return dict(self.common, seq=seq, event=event, **kw)

    def start(self, seq, out, **kw):
        if self.mode == "tracer+hooks":
            kw["tracer"] = "otel"  # sent with the -1 call, which names the tracer
        return self._rec(seq, "chain_start", out_vcon_uuid=out, compliance=OWN, **kw)

    def call(self, seq, idx, in_, out, **kw):
        rec = self._rec(seq, "tracer_call", links=self.links, link_index=idx, tracer="otel", in_vcon_uuid=in_, out_vcon_uuid=out, **kw)
        rec.setdefault("compliance", OWN)
        if idx >= 0 and self.mode == "tracer+hooks":
            rec["module"] = module_of(self.links[idx])
        return rec

    def pre(self, seq, vcon, **kw):
        """The pre-chain tracer call; with hooks it refers to chain_start's snapshot."""
        if self.mode == "tracer+hooks":
            kw["compliance"] = {"same_as": seq - 1}
        return self.call(seq, -1, vcon, vcon, **kw)

    def link(self, seq, idx, out, **kw):
        name = self.links[idx]
        kw.setdefault("compliance", OWN)
        return self._rec(seq, "link_complete", link=name, link_index=idx, module=module_of(name), out_vcon_uuid=out, **kw)

    def step(self, seq, idx, given, returned=None, **kw):
        """Link idx's record: a tracer call (tracer modes) or link_complete (hooks only)."""
        returned = returned or given
        if self.mode == "hooks":
            if returned != given:
                kw.update(in_vcon_uuid=returned, compliance=OWN_INPUT)
            return self.link(seq, idx, given, **kw)
        return self.call(seq, idx, returned, given, **kw)

    def error(self, seq, idx, out, message):
        name = self.links[idx]
        return self._rec(seq, "link_error", link=name, link_index=idx, module=module_of(name), out_vcon_uuid=out, error=message)

    def end(self, seq, out, **kw):
        if "error" in kw:
            return self._rec(seq, "chain_error", out_vcon_uuid=out, compliance=OWN, **kw)
        return self._rec(seq, "chain_complete", out_vcon_uuid=out, compliance=OWN, **kw)


def snap(server, rec):
    """(uuid, number of tag attachments) of the snapshot a record names."""
    doc = server.client.json().get(rec["compliance"]["snapshot"])
    return doc["uuid"], len(doc["attachments"])


def snaps(server, recs):
    return [snap(server, r) if "snapshot" in r.get("compliance", {}) else r.get("compliance") for r in recs]


def pointer(server, uuid):
    raw = server.client.get("vcon_otel:lastrun:" + uuid)
    return json.loads(raw) if raw else None


@pytest.mark.parametrize("mode", MODES)
def test_a_uuid_swap(server, mode):
    (u0,), errors = scenario(server, "swap", mode)
    assert errors == [None]
    recs = records(server.client)
    u1 = server.client.lrange("swap_out", 0, -1)[0].decode()
    assert u1 != u0
    e = Expect(mode, u0, "swap", ["tag", "swap", "tag2"])
    steps = [e.step(1, 0, u0), e.step(2, 1, u0, u1), e.step(3, 2, u1)]
    if mode == "tracer":
        assert [exact(r) for r in recs] == [e.pre(0, u0)] + steps
        # each snapshot is the document after its step: the swap's is the new document
        assert snaps(server, recs) == [(u0, 0), (u0, 1), (u1, 1), (u1, 2)]
    elif mode == "tracer+hooks":
        steps = [e.step(2, 0, u0), e.step(3, 1, u0, u1), e.step(4, 2, u1)]
        assert [exact(r) for r in recs] == [e.start(0, u0), e.pre(1, u0)] + steps + [e.end(5, u1, outcome="complete")]
        assert snaps(server, recs) == [(u0, 0), {"same_as": 0}, (u0, 1), (u1, 1), (u1, 2), (u1, 2)]
    else:
        # after_link(swap) names the UUID the link was given; the next after_link reveals the new
        # one: link 1's record says so, and its snapshot is (labelled as) the document it was given
        assert [exact(r) for r in recs] == [e.start(0, u0)] + steps + [e.end(4, u1, outcome="complete")]
        assert snaps(server, recs) == [(u0, 0), (u0, 1), (u0, 1), (u1, 2), (u1, 2)]
    check_volatile(recs)
    ref = {"vcon_uuid": u0, "run": recs[0]["run"]}
    assert pointer(server, u0) == ref and pointer(server, u1) == ref


@pytest.mark.parametrize("mode", MODES)
def test_a_halt(server, mode):
    (u,), errors = scenario(server, "halt", mode)
    assert errors == [None]
    assert not server.client.exists("halt_out") and not server.client.exists("stored:" + u)
    recs = records(server.client)
    e = Expect(mode, u, "halt", ["tag", "halt", "tag2"])
    if mode == "tracer":
        # the halting link's call looks like a link that returned the same UUID
        assert [exact(r) for r in recs] == [e.pre(0, u), e.step(1, 0, u), e.step(2, 1, u)]
    elif mode == "tracer+hooks":
        assert [exact(r) for r in recs] == [e.start(0, u), e.pre(1, u), e.step(2, 0, u), e.step(3, 1, u, halted=True),
                                            e.end(4, u, outcome="halted")]
    else:
        assert [exact(r) for r in recs] == [e.start(0, u), e.step(1, 0, u), e.step(2, 1, u, halted=True), e.end(3, u, outcome="halted")]
    check_volatile(recs)


@pytest.mark.parametrize("mode", MODES)
def test_a_link_that_raises(server, mode):
    (u,), errors = scenario(server, "link_error", mode)
    assert isinstance(errors[0], RuntimeError)
    assert server.client.lrange("DLQ:link_error_in", 0, -1) == [u.encode()]
    recs = records(server.client)
    e = Expect(mode, u, "link_error", ["tag", "boom", "tag2"])
    err = {"type": "RuntimeError", "message": "link exploded"}
    if mode == "tracer":
        # no tracer call follows a link that raised: the bridge closes the run as incomplete
        assert [exact(r) for r in recs] == [e.pre(0, u), e.step(1, 0, u)]
    elif mode == "tracer+hooks":
        assert [exact(r) for r in recs] == [e.start(0, u), e.pre(1, u), e.step(2, 0, u), e.error(3, 1, u, err), e.end(4, u, error=err)]
    else:
        assert [exact(r) for r in recs] == [e.start(0, u), e.step(1, 0, u), e.error(2, 1, u, err), e.end(3, u, error=err)]
    check_volatile(recs)


@pytest.mark.parametrize("mode", MODES)
def test_two_chains_joined_by_egress_link_their_runs(server, mode):
    # the first chain's last link swaps the UUID; the next chain pops the new UUID from egress
    (u0, u1), errors = scenario(server, "egress", mode)
    assert errors == [None, None] and u1 != u0
    first, second = runs_of(records(server.client)).values()
    e = Expect(mode, u0, "egress", ["tag", "swap"])
    n = Expect(mode, u1, "egress_next", ["tag2"], ingress="egress_out")
    ref = {"vcon_uuid": u0, "run": first[0]["run"]}
    if mode == "tracer":
        assert [exact(r) for r in first] == [e.pre(0, u0), e.step(1, 0, u0), e.step(2, 1, u0, u1)]
        assert [exact(r) for r in second] == [n.pre(0, u1, prev_run=ref), n.step(1, 0, u1)]
    elif mode == "tracer+hooks":
        assert [exact(r) for r in first] == [e.start(0, u0), e.pre(1, u0), e.step(2, 0, u0), e.step(3, 1, u0, u1),
                                             e.end(4, u1, outcome="complete")]
        assert [exact(r) for r in second] == [n.start(0, u1, prev_run=ref), n.pre(1, u1), n.step(2, 0, u1), n.end(3, u1, outcome="complete")]
    else:
        # the swap by the last link shows only at after_processing, which points the final UUID here
        assert [exact(r) for r in first] == [e.start(0, u0), e.step(1, 0, u0), e.step(2, 1, u0, u1), e.end(3, u1, outcome="complete")]
        assert [exact(r) for r in second] == [n.start(0, u1, prev_run=ref), n.step(1, 0, u1), n.end(2, u1, outcome="complete")]
        assert snaps(server, first) == [(u0, 0), (u0, 1), (u0, 1), (u1, 1)]
    check_volatile(first)
    check_volatile(second)


@pytest.mark.parametrize("mode", MODES)
def test_a_dlq_reprocess_is_a_new_run_linked_to_the_failed_one(server, mode):
    (u,), errors = scenario(server, "dlq_reprocess", mode)
    assert isinstance(errors[0], TimeoutError) and errors[1] is None
    first, second = runs_of(records(server.client)).values()
    e = Expect(mode, u, "dlq_reprocess", ["tag", "flaky", "tag2"])
    err = {"type": "TimeoutError", "message": "transient failure"}
    ref = {"vcon_uuid": u, "run": first[0]["run"]}
    if mode == "tracer":
        assert [exact(r) for r in first] == [e.pre(0, u), e.step(1, 0, u)]
        assert [exact(r) for r in second] == [e.pre(0, u, prev_run=ref), e.step(1, 0, u), e.step(2, 1, u), e.step(3, 2, u)]
    elif mode == "tracer+hooks":
        assert [exact(r) for r in first] == [e.start(0, u), e.pre(1, u), e.step(2, 0, u), e.error(3, 1, u, err), e.end(4, u, error=err)]
        assert [exact(r) for r in second] == [e.start(0, u, prev_run=ref), e.pre(1, u), e.step(2, 0, u), e.step(3, 1, u), e.step(4, 2, u),
                                              e.end(5, u, outcome="complete")]
    else:
        assert [exact(r) for r in first] == [e.start(0, u), e.step(1, 0, u), e.error(2, 1, u, err), e.end(3, u, error=err)]
        assert [exact(r) for r in second] == [e.start(0, u, prev_run=ref), e.step(1, 0, u), e.step(2, 1, u), e.step(3, 2, u),
                                              e.end(4, u, outcome="complete")]
    check_volatile(first)
    check_volatile(second)


def test_hooks_only_point_the_new_uuid_at_the_run_as_soon_as_the_next_hook_sees_it(server):
    seen = []

    def probe(vcon_uuid, link_name, opts=None):  # runs after after_link(swap's successor)
        seen.append(pointer(server, vcon_uuid))
        return vcon_uuid

    hooks.options = {"redis_url": server.url}
    c = sim.Conserver(server.client, {}, sim.links_for(server.client), hooks=True)
    c.config["links"]["probe"] = {"module": sim.Link("links.probe", probe), "options": {}}
    u0 = sim.make_vcon(server.client)
    c.handle("in", u0, {"name": "c", "links": ["swap", "tag", "probe"]})
    run = records(server.client)[0]["run"]
    assert seen == [{"vcon_uuid": u0, "run": run}]


def test_a_foreign_lastrun_value_is_not_added_to_a_held_chain_start(server):
    hooks.options = {"redis_url": server.url}
    u = sim.make_vcon(server.client)
    server.client.set("vcon_otel:lastrun:" + u, '{"vcon_uuid":"x","run":"y","evil":1}')
    hooks.before_processing(u, {"name": "c", "links": []}, {})
    hooks.after_processing(u, {"name": "c"}, {})
    recs = records(server.client)
    assert [r["event"] for r in recs] == ["chain_start", "chain_complete"]
    assert "prev_run" not in recs[0] and "evil" not in json.dumps(recs)
    assert pointer(server, u) == {"vcon_uuid": u, "run": recs[0]["run"]}


def test_records_held_by_a_run_whose_last_hook_never_came_go_out_with_the_next_run(server):
    hooks.options = {"redis_url": server.url}
    u = sim.make_vcon(server.client)
    hooks.before_processing(u, {"name": "c", "links": ["a"]}, {})
    hooks.after_link(u, "a", None, {}, {}, "success", None, [])  # after_processing never comes
    hooks.before_processing(u, {"name": "c", "links": ["a"]}, {})
    recs = records(server.client)
    assert [(r["event"], r["seq"]) for r in recs] == [("chain_start", 0), ("link_complete", 1)]
    assert len(runs_of(recs)) == 1


# --- one round trip per call, in every mode ---------------------------------------------------------

class Counting:
    """Wraps the producer's entry points; records (call, Redis round trips) for each call."""

    def __init__(self, monkeypatch):
        self.sends, self.calls = 0, []
        real = redis.connection.Connection.send_packed_command

        def counting(conn, command, check_health=True):
            self.sends += 1
            return real(conn, command, check_health)

        monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)

    def wrap(self, name, fn, label):
        def call(*args, **kw):
            before = self.sends
            try:
                return fn(*args, **kw)
            finally:
                self.calls.append((label(*args, **kw), self.sends - before))
        call.__name__ = name
        return call

    def hooks(self):
        h = type("Hooks", (), {})()
        h.before_processing = self.wrap("before_processing", hooks.before_processing, lambda *a, **k: "before")
        h.after_processing = self.wrap("after_processing", hooks.after_processing, lambda *a, **k: "after")
        h.after_link = self.wrap("after_link", hooks.after_link, lambda *a, **k: "after_link:" + a[5])
        return h

    def tracer(self):
        t = type("Tracer", (), {})()
        t.run = self.wrap("run", tracer.run, lambda *a, **k: "tracer:%d" % a[4])
        return t


@pytest.mark.parametrize("mode", MODES)
def test_every_call_is_at_most_one_redis_round_trip(server, monkeypatch, mode):
    hooks.options = {"redis_url": server.url}
    r = redis.Redis.from_url(server.url)  # the conserver's own client, not counted below
    warm = sim.make_vcon(r)
    tracer.run(warm, warm, "otel", ["a"], -1, {"redis_url": server.url})  # connects, loads the script
    chains = [["tag", "swap", "tag2"], ["tag", "halt", "tag2"], ["tag", "boom"], []]
    vcons = [sim.make_vcon(r) for _ in chains]
    count = Counting(monkeypatch)
    tracers = {} if mode == "hooks" else {"otel": {"module": "vcon_otel.tracer", "module_obj": count.tracer(), "options": {"redis_url": server.url}}}
    c = sim.Conserver(r, tracers, sim.links_for(r), hooks=mode != "tracer")
    if mode != "tracer":
        c.hook = c.after_link_hook = count.hooks()
    for v, links in zip(vcons, chains):
        c.handle("in", v, {"name": "c", "links": links})
    monkeypatch.undo()
    # one round trip for each call, except after_link("success") with the tracer: its link's
    # record is the tracer call that follows, so that hook call does not touch Redis
    for label, n in count.calls:
        assert n == (0 if mode == "tracer+hooks" and label == "after_link:success" else 1), (label, n)
    labels = [label for label, _n in count.calls]
    per_mode = {"tracer": 4 + 3 + 2 + 0, "tracer+hooks": (1 + 4 + 3 + 1) + (1 + 3 + 2 + 1) + (1 + 2 + 2 + 1) + 2, "hooks": (1 + 3 + 1) + (1 + 2 + 1) + (1 + 2 + 1) + 2}
    assert len(labels) == per_mode[mode], labels
