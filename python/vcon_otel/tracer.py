"""The vcon-otel tracer module for vCon Server.

Register it in the conserver's config.yml (see docs/conserver.md)::

    tracers:
      otel:
        module: vcon_otel.tracer
        options: {stream: vcon_otel:events}

``run(...)`` is the interface vCon Server really calls: before the first link (``link_index=-1``,
``in == out == the vCon's UUID``) and after each link that returned (``link_index=i``,
``in_vcon_uuid`` = the UUID the link returned, ``out_vcon_uuid`` = the UUID before it; on a halt both
are the current UUID). Each call costs the conserver one Redis round trip; the bridge does the rest.

``trace(vcon_uuid, event, opts)`` is the event-based interface of the tracer documentation, for
conservers that call it (events chain_start, link_start, link_complete, link_error, storage_start,
storage_complete, storage_error, chain_complete, chain_error).
"""
import time
from typing import Dict, Optional, Sequence, cast

from . import _emit, _state
from ._record import Event, Options

default_options = dict(_emit.DEFAULTS)


def stats() -> Dict[str, int]:
    """Records sent and calls failed in this process."""
    return _emit.stats()


def run(in_vcon_uuid: str, out_vcon_uuid: str, tracer_name: str, links: Optional[Sequence[str]], link_index: int,
        opts: Optional[Options] = None) -> bool:
    """Called by vCon Server before the first link (``link_index=-1``) and after each link that
    returned. One Redis round trip; returns True. Never raises unless ``opts["dlq_vcon_on_error"]``
    is truthy (then Redis failures raise, as upstream tracers).

    With the lifecycle hooks installed, the record of a link's call is held back and sent with the
    run's next round trip (so a halt found at the end can mark it); the ``-1`` call sends the held
    ``chain_start`` (now naming this tracer) and refers to its snapshot (``same_as``) instead of
    copying the unchanged vCon again."""
    started = time.perf_counter_ns()
    o = None
    try:
        o = _emit.options(opts)
        now = time.time_ns()
        run_ = _state.current()
        links = list(links or [])
        same_as = None
        if link_index == -1:
            if (run_ is not None and run_.lifecycle and not run_.tracer_seen and run_.last_index == -1
                    and run_.current == out_vcon_uuid):
                # before_processing opened this run a moment ago.
                opened_here = False
                if not run_.links:
                    run_.links = links
                opening = run_.held[-1] if run_.held_event() == "chain_start" else None
                if opening is not None:
                    opening["tracer"] = tracer_name
                    if "compliance" in opening:
                        same_as = opening["seq"]  # nothing ran since its snapshot
            else:
                run_ = _state.start(_state.Run(out_vcon_uuid, links=links, start_ns=now))
                opened_here = True
                run_.traceparent = _emit.current_traceparent()
            run_.tracer_seen = True
        elif run_ is None or run_.current != out_vcon_uuid:
            # This call's run was not opened here (module registered mid-run): open one now.
            run_ = _state.start(_state.Run(out_vcon_uuid, links=links, start_ns=now))
            run_.tracer_seen = True
            opened_here = True
        else:
            opened_here = False
        rec = run_.base("tracer_call", now)
        rec.update({"links": links, "link_index": link_index, "tracer": tracer_name,
                    "in_vcon_uuid": in_vcon_uuid, "out_vcon_uuid": out_vcon_uuid})
        if opened_here and run_.traceparent:
            rec["traceparent"] = run_.traceparent
        if same_as is not None:
            rec["compliance"] = {"same_as": same_as}
        if link_index >= 0:
            rec["start_ns"] = run_.last_ns
            if run_.ok_index == link_index and run_.link_module:
                rec["module"] = run_.link_module
            run_.ok_index = None
            run_.link_module = None
            run_.last_index = link_index
        swapped = link_index >= 0 and bool(in_vcon_uuid) and in_vcon_uuid != out_vcon_uuid
        if swapped:
            run_.current = in_vcon_uuid
        if link_index >= 0 and link_index == len(links) - 1 and not run_.hooks:
            _state.clear()  # the run ends here
        rec["call_ns"] = time.perf_counter_ns() - started
    except Exception as e:  # a bug here must not break the conserver either
        _emit.internal_error(o or _emit.DEFAULTS, "tracer.run", e)
        if isinstance(opts, dict) and opts.get("dlq_vcon_on_error"):
            raise
        return True
    run_.send(o, rec, snapshot_of=in_vcon_uuid if same_as is None else None, open_run_of=out_vcon_uuid if opened_here else None,
              point=[in_vcon_uuid] if swapped else None, hold=run_.lifecycle and link_index >= 0)
    run_.last_ns = time.time_ns()
    return True


_SEED_EVENTS = {"chain_start", "link_start", "link_complete", "link_error", "storage_start",
                "storage_complete", "storage_error", "chain_complete", "chain_error"}


def trace(vcon_uuid: str, event: str, opts: Optional[Options] = None) -> None:
    """The event-based interface of the tracer documentation (one call per event, on the thread
    running the chain). `opts` may carry `chain`, `link`, `module`, `storage`, `error` (an exception
    or a message) to enrich the record; unknown events are logged and ignored. Links are numbered
    in order: a `link_start` begins the next link, and so does a `link_complete`/`link_error`
    without one. Never raises unless `dlq_vcon_on_error` is truthy."""
    o = None
    try:
        o = _emit.options(opts)
        extra = opts or {}
        now = time.time_ns()
        if event not in _SEED_EVENTS:
            _emit.logger.warning("vcon_otel.trace: unknown event %r ignored", event)
            return None
        run_ = _state.current()
        if event == "chain_start" or run_ is None:
            run_ = _state.start(_state.Run(vcon_uuid, chain=extra.get("chain"), hooks=True, start_ns=now))
            if event == "chain_start":
                rec = run_.base("chain_start", now)
                run_.send(o, rec, snapshot_of=vcon_uuid, open_run_of=vcon_uuid)
                run_.last_ns = time.time_ns()
                return None
        rec = run_.base(cast(Event, event), now)  # one of _SEED_EVENTS
        if event.startswith("link_"):
            if event == "link_start" or not run_.link_open:
                run_.last_index += 1
            run_.link_open = event == "link_start"
            rec["link_index"] = run_.last_index
            rec["link"] = extra.get("link") or "link_%d" % run_.last_index
            if extra.get("module"):
                rec["module"] = extra["module"]
        if event.startswith("storage_"):
            rec["storage"] = extra.get("storage") or "storage"
        if event.endswith("_error"):
            err = extra.get("error")
            rec["error"] = {"type": type(err).__name__ if isinstance(err, BaseException) else "Error",
                            "message": (str(err) if err is not None else event)[:4096]}
        if event in ("link_complete", "link_error", "storage_complete", "storage_error"):
            rec["start_ns"] = run_.last_ns
        if vcon_uuid != run_.vcon_uuid:
            rec["out_vcon_uuid"] = vcon_uuid
        run_.current = vcon_uuid
        if event in ("chain_complete", "chain_error"):
            _state.clear()
    except Exception as e:
        _emit.internal_error(o or _emit.DEFAULTS, "tracer.trace", e)
        if isinstance(opts, dict) and opts.get("dlq_vcon_on_error"):
            raise
        return None
    run_.send(o, rec, snapshot_of=vcon_uuid if event in ("link_complete", "chain_complete", "chain_error") else None)
    run_.last_ns = time.time_ns()
    return None
