"""Per-thread run state, and the records a run holds back by one call.

vCon Server runs one vCon's chain sequentially on one thread (several threads per process with
CONSERVER_VCON_CONCURRENCY, several processes with CONSERVER_WORKERS), so "the run this thread is
in" identifies a run without any shared state: the same vCon in two chains at once is on two
threads, a DLQ reprocess starts a new run at its pre-chain call, a UUID swap keeps the run.

**Held-back records** (docs/events.md, "Records the hooks hold back by one call"). With the
lifecycle hooks installed, a link step's record (the tracer call, or ``link_complete`` when only
the hooks run) and ``chain_start`` are completed in their own call's round trip (snapshot,
``prev_run``) but appended in the next round trip of the run, once that call has revealed what
they could not know: a halt, a UUID swap seen by the hooks alone, the tracer that reports the link
steps. A run holds at most one record at a time (a ``chain_start`` and a link record never wait
together); a run's last call (``after_processing``) sends whatever is held. A record held when its
process dies, or whose carrying round trip fails, is lost with the run's other unsent records.
"""
import threading
import time
from typing import List, Optional, Set

from . import _emit
from ._record import Event, Options, Record

_local = threading.local()


class Run:
    __slots__ = ("vcon_uuid", "run", "start_ns", "seq", "last_ns", "chain", "links", "hooks", "lifecycle",
                 "ingress_list", "current", "last_index", "link_module", "ok_index", "traceparent",
                 "errored", "tracer_seen", "link_open", "held", "pointed")

    def __init__(self, vcon_uuid: str, links: Optional[List[str]] = None, chain: Optional[str] = None, hooks: bool = False,
                 start_ns: Optional[int] = None, lifecycle: bool = False) -> None:
        self.vcon_uuid = vcon_uuid          # the UUID the run began with
        self.run = _emit.new_run_id()
        self.start_ns = time.time_ns() if start_ns is None else start_ns
        self.seq = 0
        self.last_ns = self.start_ns        # when the previous call for this run returned
        self.chain = chain
        self.links = list(links) if links is not None else None
        self.hooks = hooks                  # records say "hooks": a chain_* record will end the run
        self.lifecycle = lifecycle          # opened by the lifecycle hooks: records are held back
        self.ingress_list: Optional[str] = None
        self.current = vcon_uuid            # the UUID the chain is on now
        self.last_index = -1                # last link that has its record (tracer call or hook)
        self.link_module: Optional[str] = None  # module after_link("success") saw for link ok_index
        self.ok_index: Optional[int] = None     # link after_link("success") was called for, pending merge
        self.traceparent: Optional[str] = None
        self.errored = False
        self.tracer_seen = False            # the tracer module is registered (its -1 call came)
        self.link_open = False              # trace(): a link_start without its completion yet
        self.held: List[Record] = []        # completed records waiting for the next round trip
        self.pointed: Set[str] = {vcon_uuid}  # UUIDs whose last-run pointer names this run

    def base(self, event: Event, ts_ns: int) -> Record:
        r: Record = {"v": 1, "event": event, "run": self.run, "vcon_uuid": self.vcon_uuid, "ts_ns": ts_ns,
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

    def held_event(self) -> Optional[Event]:
        return self.held[-1]["event"] if self.held else None

    def send(self, opts: Options, record: Record, *, snapshot_of: Optional[str] = None, open_run_of: Optional[str] = None,
             point: Optional[List[str]] = None, hold: bool = False) -> bool:
        """One round trip carrying the held records, then `record` (held back itself when `hold`).
        `point`: UUIDs whose last-run pointer is set to this run (each at most once per run)."""
        ready, self.held = self.held, []
        new = [u for u in (point or []) if u and u not in self.pointed]
        ok = _emit.send(opts, record, ready=ready, snapshot_of=snapshot_of, open_run_of=open_run_of, point=new, hold=hold)
        if ok:
            self.pointed.update(new)
            if hold:
                self.held.append(record)
        return ok


def current() -> Optional[Run]:
    return getattr(_local, "run", None)


def start(run: Run) -> Run:
    """Makes `run` this thread's run. Records the previous run still holds (its last call never
    came: a conserver with only some hooks installed) go out with the new run's first round trip."""
    old = current()
    if old is not None and old.held:
        run.held = old.held + run.held
    _local.run = run
    return run


def clear() -> None:
    _local.run = None
