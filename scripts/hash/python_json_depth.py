"""Prints the deepest nesting that this interpreter's json.loads and json.dumps accept (arrays and
objects), from several call contexts: a script's top level, 100 Python frames deep, a thread, and an
asyncio task. Python raises RecursionError past the limit. Usage: python3 scripts/hash/python_json_depth.py (docs/compliance.md, "Nesting")"""
import asyncio
import json
import sys
import threading


def accepts(n, kind, op):
    if op == "loads":
        text = ("[" * n + "]" * n) if kind == "array" else ('{"a":' * n + "0" + "}" * n)
        try:
            json.loads(text)
            return True
        except RecursionError:
            return False
    v = 0
    for _ in range(n):
        v = [v] if kind == "array" else {"a": v}
    try:
        json.dumps(v)
        return True
    except RecursionError:
        return False


def deepest(kind, op):
    lo, hi = 0, 1 << 17
    while lo < hi:
        m = (lo + hi + 1) // 2
        lo, hi = (m, hi) if accepts(m, kind, op) else (lo, m - 1)
    return lo


def measure():
    return {f"{op} {kind}": deepest(kind, op) for op in ("loads", "dumps") for kind in ("array", "object")}


def nested(k):
    return measure() if k == 0 else nested(k - 1)


def in_thread():
    out = {}
    t = threading.Thread(target=lambda: out.update(measure()))
    t.start()
    t.join()
    return out


async def in_task():
    return measure()


if __name__ == "__main__":
    print("Python", sys.version.split()[0], sys.platform)
    for name, f in [("top level", measure), ("100 frames deep", lambda: nested(100)), ("thread", in_thread), ("asyncio task", lambda: asyncio.run(in_task()))]:
        print(f"  {name:16} {f()}")
