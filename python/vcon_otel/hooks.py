"""Lifecycle hooks for vCon Server (`conserver/hook.py` and `conserver/after_link_hook.py`).

They add what tracer calls cannot see: the chain's name and ingress list, the conserver's trace
context, link errors (a link that raises gets no tracer call), halts, and the end of the chain
(success or error). Install them by replacing the conserver's no-op hook modules with
``python/conserver_hooks/hook.py`` and ``after_link_hook.py`` (see docs/conserver.md).

Call order in the conserver: ``before_processing`` → (tracer ``-1``) → link 0 → ``after_link`` →
tracer ``0`` → … → egress, storages → ``after_processing`` (also after an error). The hooks never
raise into the conserver.
"""
import time

from . import _emit, _state

# Options of the hooks (the conserver passes none): override by assigning before use.
options = {}


def before_processing(vcon_id, chain_details, context):
    try:
        o = _emit.options(options)
        details = chain_details or {}
        run_ = _state.start(_state.Run(vcon_id, links=details.get("links") or [], chain=details.get("name"), hooks=True))
        ctx = context if isinstance(context, dict) else {}
        run_.ingress_list = ctx.get("ingress_list")
        run_.traceparent = _emit.traceparent(ctx)
        rec = run_.base("chain_start", run_.start_ns)
        if run_.traceparent:
            rec["traceparent"] = run_.traceparent
        _emit.send(o, rec, snapshot_of=vcon_id, open_run_of=vcon_id)
        run_.last_ns = time.time_ns()
    except Exception:  # never break the conserver
        _emit.logger.exception("vcon_otel.hooks.before_processing failed")
    return vcon_id


def after_link(vcon_id, link_name, link_module, link_opts, link_hook_config, status, error, parties):
    try:
        run_ = _state.current()
        if run_ is None:
            return None
        module = getattr(link_module, "__name__", None)
        if status == "error":
            o = _emit.options(options)
            now = time.time_ns()
            index = run_.last_index + 1
            rec = run_.base("link_error", now)
            rec.update({"link": link_name, "link_index": index, "start_ns": run_.last_ns,
                        "error": {"type": type(error).__name__ if error is not None else "Error",
                                  "message": str(error) if error is not None else ""},
                        "out_vcon_uuid": run_.current})
            if module:
                rec["module"] = module
            run_.errored = True
            _emit.send(o, rec)
            run_.last_ns = time.time_ns()
        else:
            # Merged into the tracer call that follows, so each link gives one record.
            run_.link_module = module
    except Exception:
        _emit.logger.exception("vcon_otel.hooks.after_link failed")
    return None


def after_processing(vcon_id, chain_details, context, error=None):
    try:
        run_ = _state.current()
        if run_ is None:
            return None
        o = _emit.options(options)
        now = time.time_ns()
        if error is not None:
            rec = run_.base("chain_error", now)
            rec["error"] = {"type": type(error).__name__, "message": str(error)}
        else:
            rec = run_.base("chain_complete", now)
            links = run_.links or []
            halted = bool(links) and run_.last_index < len(links) - 1
            rec["outcome"] = "halted" if halted else "complete"
        rec["out_vcon_uuid"] = vcon_id
        _emit.send(o, rec, snapshot_of=vcon_id if error is None else None)
    except Exception:
        _emit.logger.exception("vcon_otel.hooks.after_processing failed")
    finally:
        _state.clear()
    return None
