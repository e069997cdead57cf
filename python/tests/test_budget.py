"""The snapshot budget: live snapshots are counted in the sorted set `snapshot_index` (member: key,
score: expiry in Unix ms) in the same round trip as the copy; past `snapshot_budget` the producer
takes no copy and its record says `compliance: {"skipped": "budget"}`, so Redis memory stays
bounded however long the bridge is away."""
import json
import logging
import time
import uuid

import pytest

import conserver_sim as sim
from records import check_volatile, records, runs_of
from vcon_otel import _emit, hooks, tracer

INDEX = "vcon_otel:snaps"


def live(server):
    return sorted(k.decode() for k in server.client.scan_iter("vcon_otel:snap:*"))


def index(server):
    return sorted(m.decode() for m in server.client.zrange(INDEX, 0, -1))


def calls(server, vcon, runs, opts, links=("a", "b", "c")):
    """`runs` tracer-only chain runs on one vCon (len(links) + 1 calls each)."""
    for _ in range(runs):
        for i in range(-1, len(links)):
            tracer.run(vcon, vcon, "otel", list(links), i, dict(opts, redis_url=server.url))


@pytest.mark.parametrize("mode", ["tracer", "tracer+hooks", "hooks"])
def test_past_the_budget_copies_are_skipped_and_the_index_never_exceeds_it(server, mode):
    hooks.options = {"redis_url": server.url, "snapshot_budget": 5}
    t = {} if mode == "hooks" else sim.otel_tracer({"redis_url": server.url, "snapshot_budget": 5})
    c = sim.Conserver(server.client, t, sim.links_for(server.client), hooks=mode != "tracer")
    vcon = sim.make_vcon(server.client)
    sizes = []
    for _ in range(3):
        c.handle("in", vcon, {"name": "c", "links": ["tag", "tag2", "tag3"]})
        sizes.append(server.client.zcard(INDEX))
    recs = records(server.client)
    forms = [r["compliance"] for r in recs if "compliance" in r and "same_as" not in r["compliance"]]
    copied = [f for f in forms if "snapshot" in f]
    assert len(copied) == 5 and forms[:5] == copied, "the first five copies are taken, in order"
    assert forms[5:] == [{"skipped": "budget"}] * (len(forms) - 5) and len(forms) > 5
    assert max(sizes) == sizes[-1] == 5
    assert live(server) == index(server) == sorted(f["snapshot"] for f in copied)
    for rs in runs_of(recs).values():
        check_volatile(rs)


def test_the_index_scores_are_the_snapshots_expiry_in_unix_ms(server):
    vcon = sim.make_vcon(server.client)
    t0 = int(time.time() * 1000)
    tracer.run(vcon, vcon, "otel", ["a"], -1, {"redis_url": server.url, "snapshot_ttl": 30})
    t1 = int(time.time() * 1000)
    (key, score), = server.client.zrange(INDEX, 0, -1, withscores=True)
    assert records(server.client)[0]["compliance"] == {"snapshot": key.decode()}
    assert t0 + 30_000 - 50 <= score <= t1 + 30_000 + 50
    assert 0 < server.client.pttl(key) <= 30_000


def test_expired_snapshots_free_the_budget(server):
    vcon = sim.make_vcon(server.client)
    opts = {"snapshot_budget": 2, "snapshot_ttl": 1}
    calls(server, vcon, 1, opts)  # 4 calls: 2 copies, 2 skipped
    assert [r["compliance"].get("skipped") for r in records(server.client)] == [None, None, "budget", "budget"]
    time.sleep(1.2)  # both copies expired (Redis deleted the keys; the index still lists them)
    assert live(server) == [] and len(index(server)) == 2
    calls(server, vcon, 1, opts)
    assert [r["compliance"].get("skipped") for r in records(server.client)[4:]] == [None, None, "budget", "budget"]
    assert live(server) == index(server) and len(index(server)) == 2


def test_a_snapshot_the_bridge_deleted_and_removed_from_the_index_frees_its_slot(server):
    vcon = sim.make_vcon(server.client)
    opts = {"snapshot_budget": 1}
    calls(server, vcon, 1, opts, links=("a",))
    first = records(server.client)[0]["compliance"]["snapshot"]
    assert records(server.client)[1]["compliance"] == {"skipped": "budget"}
    server.client.delete(first)  # what the bridge does once it has the hash
    server.client.zrem(INDEX, first)
    calls(server, vcon, 1, opts, links=("a",))
    assert [("snapshot" in r["compliance"]) for r in records(server.client)[2:]] == [True, False]


def test_budget_0_means_no_limit_and_still_indexes_every_copy(server):
    vcon = sim.make_vcon(server.client)
    calls(server, vcon, 5, {"snapshot_budget": 0})
    assert all("snapshot" in r["compliance"] for r in records(server.client))
    assert len(index(server)) == len(live(server)) == 20


def test_a_missing_vcon_gives_skipped_no_document_and_takes_no_slot(server):
    u = str(uuid.uuid4())  # never stored
    tracer.run(u, u, "otel", ["a"], -1, {"redis_url": server.url})
    hooks.options = {"redis_url": server.url}
    hooks.before_processing(u, {"name": "c", "links": []}, {})
    hooks.after_processing(u, {"name": "c"}, {})
    assert [r["compliance"] for r in records(server.client)] == [{"skipped": "no_document"}] * 3
    assert index(server) == [] and live(server) == []


def test_the_index_key_is_an_option(server):
    vcon = sim.make_vcon(server.client)
    tracer.run(vcon, vcon, "otel", ["a"], -1, {"redis_url": server.url, "snapshot_index": "my:snaps"})
    assert server.client.zcard("my:snaps") == 1 and not server.client.exists(INDEX)


@pytest.mark.parametrize("opts,message", [
    ({"snapshot_budget": -1}, "snapshot_budget must be an integer >= 0"),
    ({"snapshot_budget": "10"}, "snapshot_budget must be an integer >= 0"),
    ({"snapshot_budget": True}, "snapshot_budget must be an integer >= 0"),
    ({"snapshot_ttl": 0}, "snapshot_ttl must be an integer >= 1"),
    ({"snapshot": "yes"}, 'snapshot must be "copy" or "none"'),
    ({"snapshot_index": ""}, "snapshot_index must be a Redis key name"),
    ({"maxlen": "100"}, "maxlen must be an integer >= 1 or null"),
])
def test_a_bad_snapshot_option_is_one_clear_error_and_never_raises(server, caplog, monkeypatch, opts, message):
    monkeypatch.setattr(_emit, "_last_log", [-1e18])
    vcon = sim.make_vcon(server.client)
    before = tracer.stats()
    with caplog.at_level(logging.ERROR, logger="vcon_otel"):
        assert tracer.run(vcon, vcon, "otel", ["a"], -1, dict(opts, redis_url=server.url, retry_after=0)) is True
    assert tracer.stats()["failed"] == before["failed"] + 1
    logged = [r.getMessage() for r in caplog.records if r.name == "vcon_otel"]
    assert len(logged) == 1 and message in logged[0] and "ConfigError" in logged[0], logged
    assert server.client.xlen("vcon_otel:events") == 0


# --- memory -------------------------------------------------------------------------------------------

def node_heavy_vcon(r, segments=400):
    """A vCon whose transcript is nested JSON (many small nodes), the costliest kind to copy: with
    RedisJSON 2.8.3 a COPY of such a document costs about twice its JSON size (measured: 170 KB
    per copy of an 88 KB document), against about 0.7 KB for one whose bodies are strings, as
    vCon Server writes them. About 30 KB of JSON here."""
    u = str(uuid.uuid4())
    segs = [{"start": i * 2.5, "end": i * 2.5 + 2.4, "speaker": i % 2, "text": "segment %06d of the call" % i} for i in range(segments)]
    doc = {"uuid": u, "vcon": "0.4.0", "parties": [{"tel": "+15555550100"}], "dialog": [],
           "analysis": [{"type": "transcript", "encoding": "json", "body": {"segments": segs}}], "attachments": []}
    r.json().set("vcon:" + u, "$", doc)
    return u, len(json.dumps(doc, separators=(",", ":")))


def memory_growth(server, budget, runs):
    """Growth of Redis's `used_memory` (the bytes its allocator handed out, size classes included)
    over the calls. Not `used_memory_rss`: pages the allocator kept from an earlier test's data
    are reused without the RSS growing, so RSS growth can stay under the bound even unbounded."""
    vcon, size = node_heavy_vcon(server.client)
    before = server.client.info("memory")["used_memory"]
    peak = 0
    for _ in range(runs):
        calls(server, vcon, 1, {"snapshot_budget": budget})
        peak = max(peak, server.client.zcard(INDEX))
    return server.client.info("memory")["used_memory"] - before, size, peak


def test_redis_memory_stays_under_the_budget_bound_and_without_a_budget_it_does_not(server):
    budget, runs = 20, 100  # 400 calls, each wanting a copy of a ~30 KB node-heavy vCon
    grown, size, peak = memory_growth(server, budget, runs)
    assert peak == budget
    # Bound: the budget's copies at 2.5x the JSON size (margin for allocator size classes), plus
    # 4 MB for the stream's 400 records, the index and allocator slack (measured: 1.9 MB in all).
    bound = budget * 2.5 * size + 4 * 1024 * 1024
    assert grown < bound, "used_memory grew %d bytes, over the bound %d" % (grown, bound)
    # The same calls without a budget copy 400 times: over the bound (so the test can fail;
    # measured 27.6 MB of growth for the 400 copies).
    server.client.flushall()
    unbounded, _size, peak = memory_growth(server, 0, runs)
    assert peak == 4 * runs and unbounded > bound, (unbounded, bound)
