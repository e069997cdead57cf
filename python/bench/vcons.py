"""Realistic stored vCons for the benchmarks (bench_call.py, bench_pipeline.py).

A vCon of about `size` bytes of stored JSON: 60 % a base64url recording body, 40 % a transcript
analysis of many small segments (about 8,000 at 2 MB), so a deep copy or a `JSON.GET` has to walk
many JSON nodes, as it would for a real transcribed call.
"""
import json
import uuid

# label, size of the stored vCon in bytes
SIZES = {"5k": ("5 KB", 5_000), "100k": ("100 KB", 100_000), "2m": ("2 MB", 2_000_000)}


def vcon_doc(size, u=None):
    """The document (a dict) of a vCon of about `size` bytes of compact JSON."""
    u = u or str(uuid.uuid4())
    n_seg = max(1, int(size * 0.4) // 100)
    segments = [{"start": i * 2.5, "end": i * 2.5 + 2.4, "speaker": i % 2, "text": "segment %06d of the call transcript" % i}
                for i in range(n_seg)]
    doc = {"uuid": u, "vcon": "0.4.0", "created_at": "2026-11-22T10:00:00.000+00:00",
           "parties": [{"tel": "+15555550100"}, {"mailto": "agent@example.com"}],
           "dialog": [{"type": "recording", "start": "2026-11-22T10:00:00Z", "duration": 60, "parties": [0, 1],
                       "mediatype": "audio/x-wav", "encoding": "base64url", "body": ""}],
           "analysis": [{"type": "transcript", "dialog": 0, "vendor": "bench", "encoding": "json", "body": {"segments": segments}}],
           "attachments": [{"purpose": "tags", "encoding": "json", "body": ["bench"]}]}
    base = len(json.dumps(doc, separators=(",", ":")))
    doc["dialog"][0]["body"] = ("QUJD" * (size // 4 + 1))[: max(size - base, 0)]
    return doc


def make_vcon(r, size):
    """Stores a new vCon of about `size` bytes as `vcon:{uuid}` (RedisJSON, as vCon Server stores
    it); returns its UUID and the length of its stored JSON."""
    doc = vcon_doc(size)
    u = doc["uuid"]
    r.json().set("vcon:" + u, "$", doc)
    stored = len(json.dumps(r.json().get("vcon:" + u), separators=(",", ":")))
    return u, stored
