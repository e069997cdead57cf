"""A driver that calls tracer modules and hooks exactly as vCon Server's chain loop does
(conserver/main.py: `_handle_vcon`, `VconChainRequest.process`, `_process_link`, `_wrap_up`,
`_process_storage`, `_process_tracers`), against a real Redis holding vCons as RedisJSON documents.

Only the order and arguments of the calls the tracer system sees are reproduced; the conserver's own
logging, metrics and OpenTelemetry spans are left out.

Usable from tests and from the command line (the Rust end-to-end tests drive it)::

    python conserver_sim.py --redis-url URL --scenario three_links [--hooks [--no-tracer]] [--stream KEY]
        [--options JSON] [--conserver-options JSON]

(--hooks: vcon_otel.hooks replace the conserver's hook modules; --no-tracer: and vcon_otel.tracer
is not in `tracers:` (hooks only); --options: more producer options, e.g. TLS and credentials;
--conserver-options: the same kind of options for the conserver's own connection, when it needs
TLS or a password.)

Scenario `egress` runs two chains joined by an egress list: `egress` (links tag, swap; egress
list `egress_out`) and then `egress_next` (link tag2) on the UUID popped from `egress_out`.

It prints one JSON line: {"vcon_uuid": first vCon, "vcon_uuids": [...], "errors": [...]}.
"""
import argparse
import importlib
import json
import logging
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import redis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vcon_otel import hooks as otel_hooks  # noqa: E402

log = logging.getLogger("conserver_sim")

VCON_DLQ_EXPIRY = 7 * 24 * 3600  # conserver settings.VCON_DLQ_EXPIRY default


class NoHooks:
    """The conserver's default hook modules (conserver/hook.py, after_link_hook.py): no-ops."""

    @staticmethod
    def before_processing(vcon_id, chain_details, context):
        return vcon_id

    @staticmethod
    def after_processing(vcon_id, chain_details, context, error=None):
        return None

    @staticmethod
    def after_link(vcon_id, link_name, link_module, link_opts, link_hook_config, status, error, parties):
        return None


class Conserver:
    """The parts of the conserver the tracer system sees.

    tracers: the config's `tracers:` mapping, {name: {"module": import path, "options": ...}}
             ("module_obj" may give the module object directly, for test doubles).
    links:   {name: {"module": module object with run(vcon_uuid, link_name, opts), "options": ...}}
    storages: {name: callable(vcon_uuid)}
    """

    def __init__(self, r, tracers, links, hooks=False, storages=None):
        self.r = r
        self.config = {"tracers": tracers, "links": links}
        if tracers is None:
            del self.config["tracers"]
        self.storages = storages or {}
        self.imported_modules = {}
        self.hook = otel_hooks if hooks else NoHooks
        self.after_link_hook = otel_hooks if hooks else NoHooks

    # --- VconChainRequest._process_tracers
    def _process_tracers(self, vcon_id, in_vcon_uuid, out_vcon_uuid, links, link_index):
        if "tracers" in self.config:
            for tracer_name in self.config["tracers"]:
                tracer = self.config["tracers"][tracer_name]
                tracer_options = tracer.get("options")
                try:
                    module_name = tracer.get("module")
                    if "module_obj" in tracer:
                        module = tracer["module_obj"]
                    else:
                        if module_name not in self.imported_modules:
                            self.imported_modules[module_name] = importlib.import_module(module_name)
                        module = self.imported_modules[module_name]
                    module.run(in_vcon_uuid, out_vcon_uuid, tracer_name, links, link_index, tracer_options)
                except Exception as e:
                    log.error("Error in tracer %s (module: %s) for vCon %s: %s", tracer_name, module_name, vcon_id, e)
                    # As upstream: with no options block this line itself raises TypeError.
                    if "dlq_vcon_on_error" in tracer_options and tracer_options["dlq_vcon_on_error"]:
                        raise

    # --- VconChainRequest._process_link
    def _process_link(self, req, links, link_index):
        link_name = links[link_index]
        link = self.config["links"][link_name]
        module, options = link["module"], link.get("options")
        parties = []
        try:
            doc = self.r.json().get("vcon:" + req["vcon_id"])
            for party in (doc or {}).get("parties") or []:
                for k in ("tel", "mailto"):
                    if party.get(k):
                        parties.append(party[k])
        except Exception:
            pass
        link_hook_config = (options or {}).get("after_link", {})
        try:
            if link_index == 0:
                self._process_tracers(req["vcon_id"], req["vcon_id"], req["vcon_id"], links, -1)
            should_continue_chain = module.run(req["vcon_id"], link_name, options)
            self.after_link_hook.after_link(req["vcon_id"], link_name, module, options, link_hook_config, "success", None, parties)
            if should_continue_chain:
                self._process_tracers(req["vcon_id"], should_continue_chain, req["vcon_id"], links, link_index)
            else:
                self._process_tracers(req["vcon_id"], req["vcon_id"], req["vcon_id"], links, link_index)
            return should_continue_chain
        except Exception as e:
            try:
                self.after_link_hook.after_link(req["vcon_id"], link_name, module, options, link_hook_config, "error", e, parties)
            except Exception:
                pass
            raise

    # --- VconChainRequest._wrap_up / _process_storage (sequential storages)
    def _wrap_up(self, req, chain):
        for egress in chain.get("egress_lists", []):
            self.r.rpush(egress, req["vcon_id"])
        for name in chain.get("storages", []):
            try:
                self.storages[name](req["vcon_id"])
            except Exception as e:  # storage failures are logged and swallowed
                log.error("Failed to save vCon %s to storage %s: %s", req["vcon_id"], name, e)

    # --- VconChainRequest.process
    def _process(self, req, chain):
        should_continue_chain = req["vcon_id"]
        for i in range(len(chain["links"])):
            should_continue_chain = self._process_link(req, chain["links"], i)
            if not should_continue_chain:
                break
            if should_continue_chain != req["vcon_id"]:
                req["vcon_id"] = should_continue_chain
        if should_continue_chain:
            self._wrap_up(req, chain)

    # --- _handle_vcon
    def handle(self, ingress_list, vcon_id, chain, context=None):
        """Runs one vCon popped from `ingress_list`; returns the processing error (None on success)."""
        if context is None:
            raw = self.r.lpop("context:%s:%s" % (ingress_list, vcon_id))  # retrieve_context
            context = json.loads(raw) if raw else None
        req = {"vcon_id": vcon_id}
        processing_error = None
        try:
            context = context or {}
            context["ingress_list"] = ingress_list
            if not self.hook.before_processing(vcon_id, chain, context):
                return None
            self._process(req, chain)
        except Exception as e:
            processing_error = e
            self.r.rpush("DLQ:" + ingress_list, vcon_id)  # the originally popped UUID
            self.r.expire("vcon:" + vcon_id, VCON_DLQ_EXPIRY)
        finally:
            self.hook.after_processing(req["vcon_id"], chain, context, error=processing_error)
        return processing_error


# --- links, tracers and storages used by the scenarios ---------------------------------------------

def make_vcon(r, size=0):
    u = str(uuid.uuid4())
    doc = {"uuid": u, "vcon": "0.4.0", "created_at": "2026-11-22T10:00:00.000+00:00", "parties": [{"tel": "+15555550100"}],
           "dialog": [{"type": "recording", "body": "A" * size, "encoding": "base64url"}] if size else [], "analysis": [], "attachments": []}
    r.json().set("vcon:" + u, "$", doc)
    return u


class Link:
    """A link module: `run(vcon_uuid, link_name, opts)`; `__name__` as an imported module has."""

    def __init__(self, name, fn):
        self.run = fn
        self.__name__ = name


def links_for(r):
    failed_once = set()

    def tag(vcon_uuid, link_name, opts=None):
        r.json().arrappend("vcon:" + vcon_uuid, "$.attachments", {"purpose": "tags", "body": ["step:" + link_name], "encoding": "json"})
        return vcon_uuid

    def swap(vcon_uuid, link_name, opts=None):
        doc = r.json().get("vcon:" + vcon_uuid)
        new = str(uuid.uuid4())
        doc["uuid"] = new
        r.json().set("vcon:" + new, "$", doc)
        return new

    def halt(vcon_uuid, link_name, opts=None):
        return None

    def boom(vcon_uuid, link_name, opts=None):
        raise RuntimeError("link exploded")

    def flaky(vcon_uuid, link_name, opts=None):
        """Fails the first time it sees a vCon, then tags it (a DLQ reprocess succeeds)."""
        if vcon_uuid not in failed_once:
            failed_once.add(vcon_uuid)
            raise TimeoutError("transient failure")
        return tag(vcon_uuid, link_name, opts)

    def slow(vcon_uuid, link_name, opts=None):
        time.sleep(0.05)
        return vcon_uuid

    fns = [("slow", slow), ("tag", tag), ("tag2", tag), ("tag3", tag), ("swap", swap), ("halt", halt), ("boom", boom), ("flaky", flaky)]
    return {name: {"module": Link("links." + fn.__name__, fn), "options": {}} for name, fn in fns}


class FailingTracer:
    """A tracer module that raises at one link index (all indexes when `at` is None)."""

    def __init__(self, at=None):
        self.at = at
        self.calls = []

    def run(self, in_vcon_uuid, out_vcon_uuid, tracer_name, links, link_index, opts):
        self.calls.append(link_index)
        if self.at is None or link_index == self.at:
            raise ValueError("tracer failed at %d" % link_index)
        return True


def otel_tracer(opts):
    return {"otel": {"module": "vcon_otel.tracer", "options": opts}}


def storages_for(r):
    def file_store(vcon_uuid):
        r.set("stored:" + vcon_uuid, "1")

    def broken(vcon_uuid):
        raise OSError("storage down")

    return {"file": file_store, "broken": broken}


SCENARIOS = {
    "three_links": ["tag", "tag2", "tag3"],
    "swap": ["tag", "swap", "tag2"],
    "halt": ["tag", "halt", "tag2"],
    "link_error": ["tag", "boom", "tag2"],
    "tracer_error": ["tag", "tag2", "tag3"],
    "two_threads": ["tag", "tag2", "tag3"],
    "dlq_reprocess": ["tag", "flaky", "tag2"],
    "egress": ["tag", "swap"],
}


def chain_for(name):
    return {"name": name, "links": SCENARIOS[name], "ingress_lists": [name + "_in"], "egress_lists": [name + "_out"],
            "storages": ["file", "broken"]}


def run_scenario(r, redis_url, name, hooks, stream="vcon_otel:events", rounds=10, options=None, tracer=True):
    """Runs a named scenario; returns (vCon UUIDs, processing errors) in the order they happened.
    `options`: more tracer options (TLS, credentials), merged over stream and redis_url.
    `tracer=False`: vcon_otel.tracer is not registered (with `hooks`: the hooks alone report)."""
    opts = {"stream": stream, "redis_url": redis_url}
    opts.update(options or {})
    tracers = otel_tracer(opts) if tracer else {}
    if name == "tracer_error":
        # A second tracer, after vcon_otel, that raises after link 1 with dlq_vcon_on_error.
        tracers["audit"] = {"module": "failing", "module_obj": FailingTracer(at=1), "options": {"dlq_vcon_on_error": True}}
    c = Conserver(r, tracers, links_for(r), hooks=hooks, storages=storages_for(r))
    chain = chain_for(name)
    ingress = chain["ingress_lists"][0]
    if name == "two_threads":
        # CONSERVER_VCON_CONCURRENCY=2: a pool of two threads, each taking vCons in turn.
        vcons = [make_vcon(r) for _ in range(2 * rounds)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            errors = list(pool.map(lambda v: c.handle(ingress, v, chain), vcons))
        return vcons, errors
    vcon = make_vcon(r)
    r.rpush(ingress, vcon)
    popped = r.lpop(ingress).decode()
    errors = [c.handle(ingress, popped, chain)]
    if name == "dlq_reprocess":
        # An operator moves the DLQ back to the ingress list; the worker pops it again.
        again = r.lpop("DLQ:" + ingress).decode()
        errors.append(c.handle(ingress, again, chain))
    if name == "egress":
        # The next chain's worker pops the (swapped) UUID from the first chain's egress list.
        nxt = r.lpop(chain["egress_lists"][0]).decode()
        errors.append(c.handle(chain["egress_lists"][0], nxt, {"name": "egress_next", "links": ["tag2"], "storages": ["file"]}))
        return [vcon, nxt], errors
    return [vcon], errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    ap.add_argument("--hooks", action="store_true", help="install vcon_otel.hooks as the conserver's hook modules")
    ap.add_argument("--no-tracer", action="store_true", help="with --hooks: vcon_otel.tracer is not registered (hooks only)")
    ap.add_argument("--stream", default="vcon_otel:events")
    ap.add_argument("--rounds", type=int, default=10, help="two_threads: vCons per thread")
    ap.add_argument("--options", type=json.loads, default={},
                    help="JSON object of more options for the tracer and hooks (tls_ca_file, redis_password_env, ...)")
    ap.add_argument("--conserver-options", type=json.loads, default=None,
                    help="JSON object of options (redis_url, tls_*, redis_password_*) for the conserver's own connection; "
                         "default: --redis-url as given")
    a = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    os.environ["REDIS_URL"] = a.redis_url
    if a.conserver_options is not None:
        from vcon_otel import _connect
        r = _connect.make_client(dict({"redis_url": a.redis_url}, **a.conserver_options))
    else:
        r = redis.Redis.from_url(a.redis_url)
    otel_hooks.options = dict({"redis_url": a.redis_url, "stream": a.stream}, **a.options)
    if a.no_tracer and not a.hooks:
        ap.error("--no-tracer needs --hooks (without either, nothing is recorded)")
    vcons, errors = run_scenario(r, a.redis_url, a.scenario, a.hooks, a.stream, a.rounds, a.options, tracer=not a.no_tracer)
    print(json.dumps({"vcon_uuid": vcons[0], "vcon_uuids": vcons,
                      "errors": [None if e is None else "%s: %s" % (type(e).__name__, e) for e in errors]}))


if __name__ == "__main__":
    main()
