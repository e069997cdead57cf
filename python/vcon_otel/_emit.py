"""Record building and the one Redis round trip per call.

Everything the tracer and the hooks send goes through :func:`send`: one pipeline (or one Lua
script when the call opens a run) carrying the XADD of the record, the compliance snapshot (a
server-side ``COPY`` of ``vcon:{uuid}``) and the "last run of this vCon" bookkeeping. Nothing here
ever raises into the conserver unless the caller asks for it (``dlq_vcon_on_error``).
"""
import json
import logging
import os
import socket
import sys
import threading
import time
import urllib.parse
import uuid

from . import _connect

logger = logging.getLogger("vcon_otel")

DEFAULTS = {
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
    # Seconds a snapshot lives. Each one is a full copy of the vCon in Redis memory, so keep this
    # short: the bridge reads a snapshot seconds after the call; a bridge down for longer than
    # this loses the hashes of that period (each missing one is logged), never spans.
    "snapshot_ttl": 600,
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
_down_until = {}  # redis_url -> monotonic time before which calls skip Redis


class RedisUnavailable(ConnectionError):
    """Raised (only with dlq_vcon_on_error) for a call skipped because Redis failed just before."""


def options(opts):
    """`opts` (may be None) merged over DEFAULTS."""
    merged = dict(DEFAULTS)
    if opts:
        merged.update({k: v for k, v in opts.items() if v is not None or k in ("maxlen",)})
    if not merged.get("redis_url"):
        merged["redis_url"] = os.environ.get("REDIS_URL", "redis://localhost:6379")
    return merged


def client(opts):
    return _connect.client(opts)


def stats():
    """Counters since the process started: records sent, calls whose Redis round trip failed,
    calls that did not try because Redis failed less than `retry_after` seconds before."""
    with _stats_lock:
        return dict(_stats)


def _count(name):
    with _stats_lock:
        _stats[name] += 1


def producer():
    return {"host": _HOST, "pid": os.getpid(), "thread": threading.get_ident()}


def new_run_id():
    return uuid.uuid4().hex


# Opens a run: reads and replaces the vCon's last-run pointer, takes the snapshot and appends the
# record with the previous run spliced in as its field "prev_run" -- all server-side, one round trip.
# The record (ARGV[1]) is compact JSON ending in "}"; the pointer is spliced in only when it has
# exactly the shape this module writes, so a foreign value never corrupts the record.
# KEYS: stream, lastrun key, [snapshot key]; ARGV: record, run ref, lastrun ttl, maxlen, snapshot ttl,
# [vcon key]. The vCon's key is an ARGV, not a KEYS entry: Redis ACLs require read *and* write
# permission on every key a script declares, and the producer may only read vCons (%R~vcon:*); the
# COPY inside is checked as a read of it (docs/operations.md).
_OPEN_SCRIPT = """
local prev = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
if KEYS[3] then
  if redis.call('COPY', ARGV[6], KEYS[3], 'REPLACE') == 1 then
    redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5]))
  end
end
local rec = ARGV[1]
if prev and string.match(prev, '^{"vcon_uuid":"[^"\\\\]+","run":"[%w_%-]+"}$') then
  rec = string.sub(rec, 1, -2) .. ',"prev_run":' .. prev .. '}'
end
local args = {KEYS[1]}
if ARGV[4] ~= '' then
  table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, ARGV[4])
end
table.insert(args, '*'); table.insert(args, 'r'); table.insert(args, rec)
return redis.call('XADD', unpack(args))
"""
_scripts = {}
LASTRUN = "vcon_otel:lastrun:"


def snapshot_key(run, seq):
    return "vcon_otel:snap:%s:%d" % (run, seq)


def send(opts, record, snapshot_of=None, open_run_of=None, point_run_from=None):
    """Appends `record` to the stream in one round trip.

    snapshot_of: vCon UUID to snapshot (sets record["compliance"]["snapshot"]).
    open_run_of: vCon UUID whose last-run pointer is swapped for this run (record gains "p").
    point_run_from: a new vCon UUID (after a swap) that must point at this run too.
    Returns True when Redis took it; False (counted, logged at most once per interval) otherwise,
    or raises when opts["dlq_vcon_on_error"] is truthy.
    """
    try:
        down = _down_until.get(opts["redis_url"])
        if down is not None and time.monotonic() < down:
            _count("skipped")
            if opts.get("dlq_vcon_on_error"):
                raise RedisUnavailable("vcon_otel: Redis failed less than retry_after seconds ago; record not sent")
            return False
        snap = None
        if snapshot_of and opts.get("snapshot") == "copy":
            snap = snapshot_key(record["run"], record.get("seq", 0))
            record["compliance"] = {"snapshot": snap}
        data = json.dumps(record, separators=(",", ":"))
        r = client(opts)
        maxlen = opts.get("maxlen")
        run_ref = json.dumps({"vcon_uuid": record["vcon_uuid"], "run": record["run"]}, separators=(",", ":"))
        if open_run_of:
            script = _scripts.get(id(r))
            if script is None:
                # redis-py's Script sends EVALSHA and, on NOSCRIPT (first use, Redis restarted),
                # loads the script and retries.
                script = _scripts[id(r)] = r.register_script(_OPEN_SCRIPT)
            keys = [opts["stream"], LASTRUN + open_run_of]
            args = [data, run_ref, int(opts["lastrun_ttl"]), "" if maxlen is None else int(maxlen), int(opts["snapshot_ttl"])]
            if snap:
                keys.append(snap)
                args.append("vcon:" + snapshot_of)
            script(keys=keys, args=args)
        else:
            p = r.pipeline(transaction=False)
            if snap:
                p.copy("vcon:" + snapshot_of, snap, replace=True)
                p.expire(snap, int(opts["snapshot_ttl"]))
            if point_run_from:
                p.set(LASTRUN + point_run_from, run_ref, ex=int(opts["lastrun_ttl"]))
            if maxlen is None:
                p.xadd(opts["stream"], {"r": data})
            else:
                p.xadd(opts["stream"], {"r": data}, maxlen=int(maxlen), approximate=True)
            p.execute()
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


def _redact(url):
    """The Redis URL without its password, for logs."""
    try:
        u = urllib.parse.urlsplit(str(url))
        if u.password:
            netloc = u.netloc.replace(":" + u.password + "@", ":***@")
            return urllib.parse.urlunsplit(u._replace(netloc=netloc))
    except Exception:
        pass
    return url


def internal_error(opts, where, e):
    """An unexpected exception in this module itself: counted as "errors", logged like failures."""
    _count("errors")
    now = time.monotonic()
    if now - _last_log[0] >= float(opts.get("log_interval") or 0):
        _last_log[0] = now
        logger.error("vcon_otel: %s failed: %r (errors: %d so far)", where, e, _stats["errors"], exc_info=True)


def current_traceparent():
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


def traceparent(context):
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
