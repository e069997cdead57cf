"""Per-thread run state.

vCon Server runs one vCon's chain sequentially on one thread (several threads per process with
CONSERVER_VCON_CONCURRENCY, several processes with CONSERVER_WORKERS), so "the run this thread is
in" identifies a run without any shared state: the same vCon in two chains at once is on two
threads, a DLQ reprocess starts a new run at its pre-chain call, a UUID swap keeps the run.
"""
import threading
import time

from . import _emit

_local = threading.local()


class Run:
    __slots__ = ("vcon_uuid", "run", "start_ns", "seq", "last_ns", "chain", "links", "hooks",
                 "ingress_list", "current", "last_index", "link_module", "ok_index", "traceparent",
                 "errored", "tracer_seen", "snapshot_taken", "link_open")

    def __init__(self, vcon_uuid, links=None, chain=None, hooks=False, start_ns=None):
        self.vcon_uuid = vcon_uuid          # the UUID the run began with
        self.run = _emit.new_run_id()
        self.start_ns = time.time_ns() if start_ns is None else start_ns
        self.seq = 0
        self.last_ns = self.start_ns        # when the previous call for this run returned
        self.chain = chain
        self.links = list(links) if links is not None else None
        self.hooks = hooks
        self.ingress_list = None
        self.current = vcon_uuid            # the UUID the chain is on now
        self.last_index = -1                # last link that has its record (tracer call or hook)
        self.link_module = None             # module after_link("success") saw for link ok_index
        self.ok_index = None                # link after_link("success") was called for, pending merge
        self.traceparent = None
        self.errored = False
        self.tracer_seen = False            # the tracer module is registered (its -1 call came)
        self.snapshot_taken = False         # the opening record already carries a snapshot
        self.link_open = False              # trace(): a link_start without its completion yet

    def base(self, event, ts_ns):
        r = {"v": 1, "event": event, "run": self.run, "vcon_uuid": self.vcon_uuid, "ts_ns": ts_ns,
             "run_start_ns": self.start_ns, "seq": self.seq, "producer": _emit.producer()}
        self.seq += 1
        if self.chain:
            r["chain"] = self.chain
        if self.links is not None:
            r["links"] = self.links
        if self.hooks:
            r["hooks"] = True
        if self.ingress_list:
            r["ingress_list"] = self.ingress_list
        return r


def current():
    return getattr(_local, "run", None)


def start(run):
    _local.run = run
    return run


def clear():
    _local.run = None
