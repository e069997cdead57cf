"""The record the producer appends to the bridge's stream (docs/events.md, schema v1), as types.

One record per stream entry, in the entry field ``r``, as compact JSON. The bridge rejects unknown
fields, so :class:`Record` lists every field the schema has; the producer never adds others.
"""
from typing import Any, Dict, List, Literal, TypedDict

Event = Literal["tracer_call", "chain_start", "link_start", "link_complete", "link_error", "storage_start",
                "storage_complete", "storage_error", "chain_complete", "chain_error"]


class Producer(TypedDict, total=False):
    """The producer instance: becomes ``service.instance.id`` = ``host:pid``."""
    host: str
    pid: int
    thread: int


class ErrorInfo(TypedDict):
    """An exception: class name and message (at most 4096 characters)."""
    type: str
    message: str


class RunRef(TypedDict):
    """A run of a vCon: what ``prev_run`` and the ``vcon_otel:lastrun:{uuid}`` pointers hold."""
    vcon_uuid: str
    run: str


class Compliance(TypedDict, total=False):
    """How the bridge learns the step's compliance hash: exactly one of ``snapshot`` (a RedisJSON
    copy), ``sha256``, ``same_as`` (the ``seq`` of an earlier record of the run whose document is
    unchanged) or ``skipped`` (``budget`` or ``no_document``); ``subject: "input"`` when the hash
    describes the document the step was given rather than the one it produced."""
    snapshot: str
    sha256: str
    same_as: int
    skipped: Literal["budget", "no_document"]
    subject: Literal["input"]


class Record(TypedDict, total=False):
    """One event record. ``v``, ``event``, ``run``, ``vcon_uuid``, ``ts_ns`` are always present;
    the rest depend on the event (docs/events.md, *Fields*)."""
    v: int
    event: Event
    run: str
    vcon_uuid: str
    ts_ns: int
    start_ns: int
    run_start_ns: int
    seq: int
    chain: str
    links: List[str]
    link_index: int
    link: str
    module: str
    storage: str
    tracer: str
    in_vcon_uuid: str
    out_vcon_uuid: str
    halted: bool
    outcome: Literal["complete", "halted"]
    hooks: bool
    error: ErrorInfo
    call_ns: int
    traceparent: str
    producer: Producer
    ingress_list: str
    prev_run: RunRef
    compliance: Compliance


REQUIRED = ("v", "event", "run", "vcon_uuid", "ts_ns")

# The producer's options (the tracer's `opts`, the hooks' VCON_OTEL_HOOKS_OPTIONS), merged over the defaults.
Options = Dict[str, Any]
