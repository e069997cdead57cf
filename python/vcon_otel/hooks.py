"""Lifecycle hooks for vCon Server (`conserver/hook.py` and `conserver/after_link_hook.py`).

They add what tracer calls cannot see: the chain's name and ingress list, the conserver's trace
context, link errors (a link that raises gets no tracer call), halts, and the end of the chain
(success or error). Install them by replacing the conserver's no-op hook modules with
``python/conserver_hooks/hook.py`` and ``after_link_hook.py`` (see docs/conserver.md).

Call order in the conserver: ``before_processing`` → (tracer ``-1``) → link 0 → ``after_link`` →
tracer ``0`` → … → egress, storages → ``after_processing`` (also after an error). The hooks never
raise into the conserver.
"""
import json
import os
import time

from . import _emit, _state


def _env_options():
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
options = _env_options()


def _error(e):
    if e is None:
        return {"type": "Error", "message": ""}
    return {"type": type(e).__name__, "message": str(e)[:4096]}


def before_processing(vcon_id, chain_details, context):
    """Opens the run (record ``chain_start``). Always returns ``vcon_id``: the chain goes on."""
    try:
        o = _emit.options(options)
        details = chain_details or {}
        run_ = _state.start(_state.Run(vcon_id, links=details.get("links") or [], chain=details.get("name"), hooks=True))
        ctx = context if isinstance(context, dict) else {}
        run_.ingress_list = ctx.get("ingress_list")
        run_.traceparent = _emit.traceparent(ctx) or _emit.current_traceparent()
        rec = run_.base("chain_start", run_.start_ns)
        rec["out_vcon_uuid"] = vcon_id
        if run_.traceparent:
            rec["traceparent"] = run_.traceparent
        run_.snapshot_taken = o.get("snapshot") == "copy"
        _emit.send(o, rec, snapshot_of=vcon_id, open_run_of=vcon_id)
        run_.last_ns = time.time_ns()
    except Exception as e:  # never break the conserver
        _emit.internal_error(_emit.DEFAULTS, "hooks.before_processing", e)
    return vcon_id


def after_link(vcon_id, link_name, link_module, link_opts, link_hook_config, status, error, parties):
    """``success``: remembered and merged into the tracer's record for this link (one record per
    link); without the tracer module, emits ``link_complete`` itself. ``error``: emits
    ``link_error`` (no tracer call follows a link that raised). ``parties`` are never recorded."""
    try:
        run_ = _state.current()
        if run_ is None or not run_.hooks:
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
            rec = run_.base("link_complete", time.time_ns())
            rec.update({"link": link_name, "link_index": index, "start_ns": run_.last_ns, "out_vcon_uuid": vcon_id})
            if module:
                rec["module"] = module
            run_.last_index = index
            _emit.send(o, rec, snapshot_of=vcon_id)
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
        rec = run_.base("link_error", time.time_ns())
        rec.update({"link": link_name, "link_index": index, "start_ns": run_.last_ns,
                    "error": _error(error), "out_vcon_uuid": run_.current})
        if module:
            rec["module"] = module
        run_.errored = True
        run_.last_index = index
        _emit.send(o, rec)
        run_.last_ns = time.time_ns()
    except Exception as e:
        _emit.internal_error(_emit.DEFAULTS, "hooks.after_link", e)
    return None


def after_processing(vcon_id, chain_details, context, error=None):
    """Ends the run: ``chain_complete`` (outcome ``halted`` when a link returned falsy) or
    ``chain_error``. ``vcon_id`` is the UUID after any swap; runs after egress and storages."""
    try:
        run_ = _state.current()
        if run_ is None or not run_.hooks:
            return None
        o = _emit.options(options)
        now = time.time_ns()
        if error is not None:
            rec = run_.base("chain_error", now)
            rec["error"] = _error(error)
        else:
            rec = run_.base("chain_complete", now)
            links = run_.links or []
            rec["outcome"] = "halted" if run_.last_index < len(links) - 1 else "complete"
        rec["out_vcon_uuid"] = vcon_id
        _emit.send(o, rec, snapshot_of=vcon_id)
    except Exception as e:
        _emit.internal_error(_emit.DEFAULTS, "hooks.after_processing", e)
    finally:
        _state.clear()
    return None
