"""Reference `Vcon.hash` in Python, as vCon Server computes it.

vCon Server reads the document with redis-py (`json.loads` of the `JSON.GET` text), applies
`normalize_legacy_fields` in place, and hashes `json.dumps(vcon_dict)` with SHA-256. This module
re-implements the normalization from its documented behaviour (renames move the key to the end of
its object; when both keys exist the legacy one is dropped) so the Rust implementation can be
compared with real Python `json` semantics.
"""
import hashlib
import json


def _rename(d, old, new):
    if old not in d:
        return
    if new in d:
        d.pop(old, None)
        return
    d[new] = d.pop(old)


def _entry(e, attachment):
    if not isinstance(e, dict):
        return
    _rename(e, "schema_version", "schema")
    _rename(e, "mimetype", "mediatype")
    _rename(e, "must_support", "critical")
    if attachment and "purpose" not in e and "type" in e:
        e["purpose"] = e.pop("type")


def normalize_legacy_fields(d):
    _rename(d, "appended", "amended")
    _rename(d, "must_support", "critical")
    for key, attachment in (("dialog", False), ("analysis", False), ("attachments", True)):
        items = d.get(key, []) or []
        if isinstance(items, list):
            for e in items:
                _entry(e, attachment)
    return d


def vcon_hash(text):
    d = json.loads(text)
    normalize_legacy_fields(d)
    return hashlib.sha256(json.dumps(d).encode()).hexdigest()
