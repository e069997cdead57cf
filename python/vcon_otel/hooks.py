"""Lifecycle hooks for vCon Server (`conserver/hook.py` and `conserver/after_link_hook.py`).

They add what tracer calls cannot see: the chain's name and ingress list, the conserver's trace
context, link errors (a link that raises gets no tracer call), halts, and the end of the chain
(success or error). Install them by replacing the conserver's no-op hook modules with
``python/conserver_hooks/hook.py`` and ``after_link_hook.py`` (see docs/conserver.md).

Call order in the conserver: ``before_processing`` → (tracer ``-1``) → link 0 → ``after_link`` →
tracer ``0`` → … → egress, storages → ``after_processing`` (also after an error). The hooks never
raise into the conserver.

``chain_start`` and each link step's record are held back by one call (``_state``): the next
call's round trip appends them, with what that call revealed (``tracer`` on ``chain_start``,
``halted``, a UUID swap only the hooks see). Every call still makes at most one round trip.
"""
import json
import os
import time
from typing import Any, Dict, List, Optional

from . import _emit, _state
from ._record import ErrorInfo, Options


def _env_options() -> Options:
    """Options from the environment variable VCON_OTEL_HOOKS_OPTIONS (a JSON object)."""
    raw = os.environ.get("VCON_OTEL_HOOKS_OPTIONS")
    if not raw:
        return {}
    try:
        v = json.loads(raw)
        if isinstance(v, dict):
            return v
    except ValueError:
        pass
    _emit.logger.error("vcon_otel: VCON_OTEL_HOOKS_OPTIONS is not a JSON object; using the defaults")
    return {}


# Options of the hooks: the conserver passes none to hooks, so they come from the environment
# (VCON_OTEL_HOOKS_OPTIONS='{"stream": "vcon_otel:events"}'), or assign this dict before use.
# Same keys and defaults as the tracer's options.
options: Options = _env_options()


def _error(e: Optional[BaseException]) -> ErrorInfo:
    if e is None:
        return {"type": "Error", "message": ""}
    return {"type": type(e).__name__, "message": str(e)[:4096]}


def _settle(run_: _state.Run, vcon_id: str, halted: bool = False) -> List[str]:
    """Completes the held-back record with what this hook call reveals; returns the UUIDs whose
    last-run pointer must name the run from now on.

    Only the hooks reporting link steps (no tracer) need the swap rule: ``after_link`` names the
    UUID the link was *given*, so a link's returned UUID shows only at the next hook. Its
    snapshot was taken at its own ``after_link``, of the document it was given (the one it
    returned had no name yet): the record says so with ``compliance.subject = "input"``."""
    if not run_.held:
        return []
    rec = run_.held[-1]
    point = []
    if rec["event"] == "link_complete" and vcon_id and rec.get("out_vcon_uuid") != vcon_id:
        rec["in_vcon_uuid"] = vcon_id
        c = rec.get("compliance")
        if c is not None and "snapshot" in c:
            c["subject"] = "input"
        point.append(vcon_id)
    if halted and rec["event"] in ("link_complete", "tracer_call") and rec.get("link_index") == run_.last_index:
        rec["halted"] = True
    return point


def before_processing(vcon_id: str, chain_details: Optional[Dict[str, Any]], context: Optional[Dict[str, Any]]) -> str:
    """Opens the run (record ``chain_start``, held back until the run's next call). Always
    returns ``vcon_id``: the chain goes on."""
    try:
        o = _emit.options(options)
        details = chain_details or {}
        run_ = _state.start(_state.Run(vcon_id, links=details.get("links") or [], chain=details.get("name"), hooks=True, lifecycle=True))
        ctx = context if isinstance(context, dict) else {}
        run_.ingress_list = ctx.get("ingress_list")
        run_.traceparent = _emit.traceparent(ctx) or _emit.current_traceparent()
        rec = run_.base("chain_start", run_.start_ns)
        rec["out_vcon_uuid"] = vcon_id
        if run_.traceparent:
            rec["traceparent"] = run_.traceparent
        run_.send(o, rec, snapshot_of=vcon_id, open_run_of=vcon_id, hold=True)
        run_.last_ns = time.time_ns()
    except Exception as e:  # never break the conserver
        _emit.internal_error(_emit.DEFAULTS, "hooks.before_processing", e)
    return vcon_id


def after_link(vcon_id: str, link_name: str, link_module: Any, link_opts: Any, link_hook_config: Any, status: str,
               error: Optional[BaseException], parties: Any) -> None:
    """``success``: with the tracer module, remembered and merged into the tracer's record for
    this link (one record per link, no round trip here); without it, sends the held record and
    holds ``link_complete``. ``error``: sends ``link_error`` (no tracer call follows a link that
    raised). ``parties`` are never recorded."""
    try:
        run_ = _state.current()
        if run_ is None or not run_.lifecycle:
            return None
        o = _emit.options(options)
        module = getattr(link_module, "__name__", None)
        links = run_.links or []
        index = run_.last_index + 1
        if status == "success":
            run_.ok_index = index
            run_.link_module = module
            if run_.tracer_seen:
                return None  # the tracer call right after this carries the link
            point = _settle(run_, vcon_id)
            run_.current = vcon_id
            rec = run_.base("link_complete", time.time_ns())
            rec.update({"link": link_name, "link_index": index, "start_ns": run_.last_ns, "out_vcon_uuid": vcon_id})
            if module:
                rec["module"] = module
            run_.last_index = index
            run_.send(o, rec, snapshot_of=vcon_id, point=point, hold=True)
            run_.last_ns = time.time_ns()
            return None
        # status "error". The conserver also calls this when a *tracer* raised (with
        # dlq_vcon_on_error) after link k returned and k already has its record: then the link
        # span stays as it is and chain_error carries the error.
        k = run_.last_index
        if (0 <= k < len(links) and links[k] == link_name
                and not (k + 1 < len(links) and links[k + 1] == link_name)):
            run_.errored = True
            return None
        point = _settle(run_, vcon_id)
        run_.current = vcon_id
        rec = run_.base("link_error", time.time_ns())
        rec.update({"link": link_name, "link_index": index, "start_ns": run_.last_ns,
                    "error": _error(error), "out_vcon_uuid": vcon_id})
        if module:
            rec["module"] = module
        run_.errored = True
        run_.last_index = index
        run_.send(o, rec, point=point)
        run_.last_ns = time.time_ns()
    except Exception as e:
        _emit.internal_error(_emit.DEFAULTS, "hooks.after_link", e)
    return None


def after_processing(vcon_id: str, chain_details: Optional[Dict[str, Any]], context: Optional[Dict[str, Any]],
                     error: Optional[BaseException] = None) -> None:
    """Ends the run: ``chain_complete`` (outcome ``halted`` when a link returned falsy, and
    ``halted: true`` on that link's held record) or ``chain_error``, after whatever the run still
    holds. ``vcon_id`` is the final UUID (after any swap): its last-run pointer now names this run.
    Runs after egress and storages."""
    try:
        run_ = _state.current()
        if run_ is None or not run_.lifecycle:
            return None
        o = _emit.options(options)
        now = time.time_ns()
        links = run_.links or []
        halted = error is None and run_.last_index < len(links) - 1
        point = _settle(run_, vcon_id, halted=halted) + [vcon_id]
        if error is not None:
            rec = run_.base("chain_error", now)
            rec["error"] = _error(error)
        else:
            rec = run_.base("chain_complete", now)
            rec["outcome"] = "halted" if halted else "complete"
        rec["out_vcon_uuid"] = vcon_id
        run_.send(o, rec, snapshot_of=vcon_id, point=point)
    except Exception as e:
        _emit.internal_error(_emit.DEFAULTS, "hooks.after_processing", e)
    finally:
        _state.clear()
    return None
