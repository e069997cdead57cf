"""The one Lua script every producer call runs: its whole Redis round trip, atomically.

One ``EVALSHA`` (redis-py's ``Script``: on ``NOSCRIPT``, after a Redis restart or a script-cache
flush, it loads the script and retries, so that one call takes three round trips) does, in order:

1. **Snapshot with a budget** (when asked): ``TIME``; drop the expired members of the snapshot
   index (a sorted set, default ``vcon_otel:snaps``: member = snapshot key, score = its expiry in
   Unix milliseconds) with ``ZREMRANGEBYSCORE -inf now``; when ``budget > 0`` and ``ZCARD >=
   budget``, no copy (status ``budget``); else ``COPY vcon:{uuid} snapshot REPLACE`` (``0``: the vCon
   does not exist, status ``no_document``) then ``EXPIRE`` and ``ZADD`` (status ``copied``).
2. **Open a run** (when asked): ``GET`` the vCon's last-run pointer (the previous run) and ``SET``
   it to this run.
3. **Point** more UUIDs (a UUID swap, the final UUID) at this run: ``SET`` with the pointer TTL.
4. ``XADD`` the **ready** records (held back from earlier calls, complete JSON), then the
   **current** record unless the caller holds it back, with ``"compliance"`` (from step 1) and
   ``"prev_run"`` (from step 2, only when the pointer has exactly the shape this module writes, so
   a foreign value never corrupts the record) spliced in before its closing ``}``.

It returns ``[status, previous pointer or nil]`` so that a held-back record gets the same
compliance and ``prev_run`` fields, added in Python, when a later call sends it.

The vCon's key is an argument, not a declared key: Redis ACLs require read *and* write permission
on every key a script declares, and the producer may only read vCons (``%R~vcon:*``); the ``COPY``
inside is checked as a read of it. Redis Cluster is not supported (the keys span slots).
"""
import json
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import redis

from ._record import Compliance, RunRef

COPIED, NO_DOCUMENT, BUDGET, NOT_ASKED = 1, 0, -1, -2

# KEYS: stream, [snapshot index, snapshot key], [opened lastrun key], point keys...
# ARGV: 1 maxlen or '', 2 current record or '' (held), 3 vCon key to copy or '', 4 snapshot ttl (s),
#       5 budget (0: none), 6 the compliance JSON for a copy, 7 '1' to open a run, 8 run ref JSON,
#       9 lastrun ttl (s), 10 number of point keys, 11.. ready records.
SOURCE = """
local k = 2
local status, prev = -2, false
if ARGV[3] ~= '' then
  local index, snap = KEYS[2], KEYS[3]
  k = 4
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  local budget = tonumber(ARGV[5])
  if budget > 0 and redis.call('ZCARD', index) >= budget then
    status = -1
  elseif redis.call('COPY', ARGV[3], snap, 'REPLACE') == 1 then
    local ttl = tonumber(ARGV[4])
    redis.call('EXPIRE', snap, ttl)
    redis.call('ZADD', index, now + ttl * 1000, snap)
    status = 1
  else
    status = 0
  end
end
if ARGV[7] == '1' then
  prev = redis.call('GET', KEYS[k])
  redis.call('SET', KEYS[k], ARGV[8], 'EX', tonumber(ARGV[9]))
  k = k + 1
end
for i = k, k + tonumber(ARGV[10]) - 1 do
  redis.call('SET', KEYS[i], ARGV[8], 'EX', tonumber(ARGV[9]))
end
local function xadd(rec)
  local args = {KEYS[1]}
  if ARGV[1] ~= '' then
    table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, ARGV[1])
  end
  table.insert(args, '*'); table.insert(args, 'r'); table.insert(args, rec)
  redis.call('XADD', unpack(args))
end
for i = 11, #ARGV do
  xadd(ARGV[i])
end
if ARGV[2] ~= '' then
  local rec = string.sub(ARGV[2], 1, -2)
  if status == 1 then
    rec = rec .. ',"compliance":' .. ARGV[6]
  elseif status == 0 then
    rec = rec .. ',"compliance":{"skipped":"no_document"}'
  elseif status == -1 then
    rec = rec .. ',"compliance":{"skipped":"budget"}'
  end
  if prev and string.match(prev, '^{"vcon_uuid":"[^"\\\\]+","run":"[%w_%-]+"}$') then
    rec = rec .. ',"prev_run":' .. prev
  end
  xadd(rec .. '}')
end
return {status, prev}
"""

# The same shape check as the script's, for a pointer returned to Python (a held-back record).
_POINTER = re.compile(r'\{"vcon_uuid":"[^"\\]+","run":"[A-Za-z0-9_-]+"\}\Z')

_scripts: Dict[int, "redis.commands.core.Script"] = {}


def compact(value: object) -> str:
    """Compact JSON, as records are sent (the script splices fields before the final ``}``)."""
    return json.dumps(value, separators=(",", ":"))


def compliance_of(status: int, snapshot: str) -> Optional[Compliance]:
    """The compliance field for a script status (None: no snapshot was asked)."""
    if status == COPIED:
        return {"snapshot": snapshot}
    if status == NO_DOCUMENT:
        return {"skipped": "no_document"}
    if status == BUDGET:
        return {"skipped": "budget"}
    return None


def prev_run_of(pointer: Optional[bytes]) -> Optional[RunRef]:
    """The previous run from a last-run pointer the script returned, if it has our shape."""
    if not pointer:
        return None
    text = pointer.decode("utf-8", "replace")
    if not _POINTER.match(text):
        return None
    value: RunRef = json.loads(text)
    return value


def run(client: "redis.Redis", *, stream: str, maxlen: Optional[int], current: Optional[str], ready: Sequence[str],
        snapshot: Optional[Tuple[str, str, str]], snapshot_ttl: int, budget: int, open_key: Optional[str],
        point_keys: Sequence[str], run_ref: str, lastrun_ttl: int) -> Tuple[int, Optional[bytes]]:
    """One round trip. `snapshot`: (vCon key, snapshot key, index key) or None. `current`: the
    record to append with compliance/prev_run spliced in, or None when the caller holds it back.
    Returns (status, previous pointer of `open_key` or None)."""
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(SOURCE)
    keys: List[str] = [stream]
    if snapshot:
        keys += [snapshot[2], snapshot[1]]
    if open_key:
        keys.append(open_key)
    keys += list(point_keys)
    args: List[Union[str, int]] = ["" if maxlen is None else maxlen, current or "", snapshot[0] if snapshot else "", snapshot_ttl, budget,
                          compact({"snapshot": snapshot[1]}) if snapshot else "", "1" if open_key else "0", run_ref, lastrun_ttl,
                          len(point_keys)]
    args += list(ready)
    status, prev = script(keys=keys, args=args)
    return int(status), prev
