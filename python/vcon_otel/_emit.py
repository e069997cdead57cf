"""Options, counters, failure logging and the one Redis round trip per call.

Everything the tracer and the hooks send goes through :func:`send`: one Lua script (_script.py)
carrying the XADD of the record (and of records held back from earlier calls of the run), the
compliance snapshot (a server-side ``COPY`` of ``vcon:{uuid}`` within ``snapshot_budget``) and the
"last run of this vCon" bookkeeping. Nothing here ever raises into the conserver unless the caller
asks for it (``dlq_vcon_on_error``).
"""
import logging
import os
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from typing import Dict, Iterable, Optional, Sequence

import redis

from . import _connect, _script
from ._record import Options, Producer, Record

logger = logging.getLogger("vcon_otel")

DEFAULTS: Options = {
    # Redis of the bridge's stream; default the conserver's own REDIS_URL. rediss:// for TLS;
    # redis://USER@host:port for an ACL user. TLS and credentials: see _connect.py.
    "redis_url": None,
    # The password from an environment variable or a file, instead of in redis_url.
    "redis_password_env": None,
    "redis_password_file": None,
    # TLS (rediss:// only): private CA, client certificate and key (PEM files).
    "tls_ca_file": None,
    "tls_cert_file": None,
    "tls_key_file": None,
    # true: no check of the server's certificate (logged as an ERROR once per process).
    "tls_insecure_skip_verify": False,
    # The stream the bridge reads (config stream.key).
    "stream": "vcon_otel:events",
    # Approximate cap on the stream length (XADD MAXLEN ~). None: no cap, so nothing is ever
    # trimmed before the bridge read it; the bridge's acks do not shrink a stream, so set a cap
    # (e.g. 1000000) or trim by age in production.
    "maxlen": None,
    # "copy": snapshot the vCon server-side at every call (COPY vcon:{uuid}), so the bridge hashes
    # the state of that step; "none": no snapshot, no hash.
    "snapshot": "copy",
    # Seconds a snapshot lives at most: the safety net, since the bridge deletes a copy once it has
    # its hash (seconds after the call). A bridge down for longer than this loses the hashes of
    # that period (each missing one is logged), never spans.
    "snapshot_ttl": 600,
    # Most live snapshots at once (0: no limit). A call past it takes no copy: its record says
    # compliance {"skipped": "budget"}. Counted in the sorted set snapshot_index (member: key,
    # score: expiry in Unix ms); expired members are dropped in the same round trip. 10,000 copies
    # of vCons written by vCon Server (bodies are strings, which RedisJSON 2.8 shares between a
    # copy and its original) hold about 10 MB; see docs/conserver.md for other documents.
    "snapshot_budget": 10000,
    # The sorted set that tracks live snapshots for the budget (the bridge removes a member when
    # it deletes the copy).
    "snapshot_index": "vcon_otel:snaps",
    # Seconds the "last run of this vCon" pointer lives (links consecutive runs).
    "lastrun_ttl": 7 * 86400,
    # Redis connect/read timeout (seconds): the most one call waits for a hung Redis.
    "socket_timeout": 0.5,
    # Failures are logged at most once per this many seconds (each one is counted).
    "log_interval": 60,
    # After a failure, calls in the next this many seconds do not touch Redis (counted as
    # "skipped"), so a hung Redis costs the conserver at most one socket_timeout per second per
    # process instead of one per call. 0 disables it.
    "retry_after": 1.0,
    # Raise into the conserver on failure (it then sends the vCon to its DLQ), as upstream tracers.
    "dlq_vcon_on_error": False,
}

_HOST = socket.gethostname()
_stats_lock = threading.Lock()
_stats = {"sent": 0, "failed": 0, "skipped": 0, "errors": 0}
_last_log = [-1e18]
_down_until: Dict[object, float] = {}  # redis_url -> monotonic time before which calls skip Redis


class RedisUnavailable(ConnectionError):
    """Raised (only with dlq_vcon_on_error) for a call skipped because Redis failed just before."""


def options(opts: Optional[Options]) -> Options:
    """`opts` (may be None) merged over DEFAULTS."""
    merged = dict(DEFAULTS)
    if opts:
        merged.update({k: v for k, v in opts.items() if v is not None or k in ("maxlen",)})
    if not merged.get("redis_url"):
        merged["redis_url"] = os.environ.get("REDIS_URL", "redis://localhost:6379")
    return merged


def client(opts: Options) -> "redis.Redis":
    return _connect.client(opts)


def stats() -> Dict[str, int]:
    """Counters since the process started: records sent, calls whose Redis round trip failed,
    calls that did not try because Redis failed less than `retry_after` seconds before."""
    with _stats_lock:
        return dict(_stats)


def _count(name: str) -> None:
    with _stats_lock:
        _stats[name] += 1


def producer() -> Producer:
    return {"host": _HOST, "pid": os.getpid(), "thread": threading.get_ident()}


def new_run_id() -> str:
    return uuid.uuid4().hex


LASTRUN = "vcon_otel:lastrun:"


def snapshot_key(run: str, seq: int) -> str:
    return "vcon_otel:snap:%s:%d" % (run, seq)


def _int_option(opts: Options, name: str, minimum: int, none_ok: bool = False) -> Optional[int]:
    v = opts.get(name)
    if v is None and none_ok:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise _connect.ConfigError("%s must be an integer >= %d%s, not %r" % (name, minimum, " or null" if none_ok else "", v))
    return v


def _snapshot_mode(opts: Options) -> bool:
    mode = opts.get("snapshot")
    if mode not in ("copy", "none"):
        raise _connect.ConfigError('snapshot must be "copy" or "none", not %r' % (mode,))
    index = opts.get("snapshot_index")
    if not isinstance(index, str) or not index:
        raise _connect.ConfigError("snapshot_index must be a Redis key name (a non-empty string), not %r" % (index,))
    return bool(mode == "copy")


def send(opts: Options, record: Record, *, ready: Sequence[Record] = (), snapshot_of: Optional[str] = None,
         open_run_of: Optional[str] = None, point: Iterable[str] = (), hold: bool = False) -> bool:
    """Appends `ready` (records held back from earlier calls, complete) and then `record` to the
    stream in one round trip (one Lua script, see _script.py).

    snapshot_of: vCon UUID to snapshot (within snapshot_budget); sets record["compliance"].
    open_run_of: vCon UUID whose last-run pointer is swapped for this run (record gains "prev_run").
    point: more vCon UUIDs (a swap, the final UUID) whose pointer is set to this run.
    hold: do not append `record` now: complete it (compliance, prev_run) for a later call to send.
    Returns True when Redis took it; False (counted, logged at most once per interval) otherwise,
    or raises when opts["dlq_vcon_on_error"] is truthy. On False, `ready` and `record` are lost.
    """
    try:
        down = _down_until.get(opts["redis_url"])
        if down is not None and time.monotonic() < down:
            _count("skipped")
            if opts.get("dlq_vcon_on_error"):
                raise RedisUnavailable("vcon_otel: Redis failed less than retry_after seconds ago; record not sent")
            return False
        copy = _snapshot_mode(opts)
        ttl = _int_option(opts, "snapshot_ttl", 1)
        budget = _int_option(opts, "snapshot_budget", 0)
        lastrun_ttl = _int_option(opts, "lastrun_ttl", 1)
        maxlen = _int_option(opts, "maxlen", 1, none_ok=True)
        snap = None
        if snapshot_of and copy:
            key = snapshot_key(record["run"], record.get("seq", 0))
            snap = ("vcon:" + snapshot_of, key, opts["snapshot_index"])
        run_ref = _script.compact({"vcon_uuid": record["vcon_uuid"], "run": record["run"]})
        status, prev = _script.run(
            client(opts), stream=opts["stream"], maxlen=maxlen, current=None if hold else _script.compact(record),
            ready=[_script.compact(r) for r in ready], snapshot=snap, snapshot_ttl=ttl or 0, budget=budget or 0,
            open_key=LASTRUN + open_run_of if open_run_of else None, point_keys=[LASTRUN + u for u in point],
            run_ref=run_ref, lastrun_ttl=lastrun_ttl or 0)
        if hold:
            c = _script.compliance_of(status, snap[1] if snap else "")
            if c is not None:
                record["compliance"] = c
            p = _script.prev_run_of(prev) if open_run_of else None
            if p is not None:
                record["prev_run"] = p
        if down is not None:
            _down_until.pop(opts["redis_url"], None)
        _count("sent")
        return True
    except Exception as e:  # never let tracing break the conserver
        if not isinstance(e, RedisUnavailable):
            _count("failed")
            retry = float(opts.get("retry_after") or 0)
            if retry > 0:
                _down_until[opts.get("redis_url")] = time.monotonic() + retry
        now = time.monotonic()
        if now - _last_log[0] >= float(opts.get("log_interval") or 0):
            _last_log[0] = now
            hint = None if isinstance(e, RedisUnavailable) else _connect.explain(e, opts)
            logger.error("vcon_otel: cannot append to stream %s at %s: %s: %s%s (failed: %d, skipped: %d so far; logged at most every %ss)",
                         opts.get("stream"), _redact(opts.get("redis_url")), type(e).__name__, e, "; fix: " + hint if hint else "",
                         _stats["failed"], _stats["skipped"], opts.get("log_interval"))
        if opts.get("dlq_vcon_on_error"):
            raise
        return False


def _redact(url: object) -> object:
    """The Redis URL without its password, for logs."""
    try:
        u = urllib.parse.urlsplit(str(url))
        if u.password:
            netloc = u.netloc.replace(":" + u.password + "@", ":***@")
            return urllib.parse.urlunsplit(u._replace(netloc=netloc))
    except Exception:
        pass
    return url


def internal_error(opts: Options, where: str, e: BaseException) -> None:
    """An unexpected exception in this module itself: counted as "errors", logged like failures."""
    _count("errors")
    now = time.monotonic()
    if now - _last_log[0] >= float(opts.get("log_interval") or 0):
        _last_log[0] = now
        logger.error("vcon_otel: %s failed: %r (errors: %d so far)", where, e, _stats["errors"], exc_info=True)


def current_traceparent() -> Optional[str]:
    """The W3C traceparent of the conserver's current OpenTelemetry span, when the conserver runs
    instrumented (opentelemetry already imported); None otherwise. Never imports opentelemetry."""
    m = sys.modules.get("opentelemetry.trace")
    if m is None:
        return None
    try:
        c = m.get_current_span().get_span_context()
        if not c.is_valid:
            return None
        return "00-%032x-%016x-%02x" % (c.trace_id, c.span_id, int(c.trace_flags) & 0xFF)
    except Exception:
        return None


def traceparent(context: object) -> Optional[str]:
    """A W3C traceparent from the conserver's ingress context (`trace_id`, `span_id`, `trace_flags`)."""
    if not isinstance(context, dict):
        return None
    t, s = context.get("trace_id"), context.get("span_id")
    if not t or not s:
        return None
    try:
        flags = int(context.get("trace_flags", 1) or 0)
        t = "%032x" % int(str(t), 16)
        s = "%016x" % int(str(s), 16)
    except (TypeError, ValueError):
        return None
    if int(t, 16) == 0 or int(s, 16) == 0:
        return None
    return "00-%s-%s-%02x" % (t, s, flags & 0xFF)
