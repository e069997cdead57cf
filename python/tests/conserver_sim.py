"""A driver that calls tracer modules and hooks exactly as vCon Server's chain loop does
(conserver/main.py: `_handle_vcon`, `VconChainRequest.process`, `_process_link`,
`_process_tracers`), against a real Redis holding vCons as RedisJSON documents.

Usable from tests and from the command line (the Rust end-to-end tests drive it)::

    python conserver_sim.py --redis-url URL --scenario three_links [--hooks] [--stream KEY]
"""
import argparse
import json
import logging
import os
import sys
import threading
import uuid

import redis

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from vcon_otel import hooks as otel_hooks  # noqa: E402
from vcon_otel import tracer as otel_tracer  # noqa: E402

log = logging.getLogger("conserver_sim")


class NoHooks:
    """The conserver's default hook modules: no-ops."""

    @staticmethod
    def before_processing(vcon_id, chain_details, context):
        return vcon_id

    @staticmethod
    def after_processing(vcon_id, chain_details, context, error=None):
        return None

    @staticmethod
    def after_link(*args):
        return None


class Conserver:
    """The parts of the conserver the tracer system sees."""

    def __init__(self, r, tracers, links, hooks=False):
        self.r = r
        self.config = {"tracers": tracers, "links": links}
        self.modules = {}
        self.hook = otel_hooks if hooks else NoHooks
        self.after_link_hook = otel_hooks if hooks else NoHooks

    # --- conserver/main.py: VconChainRequest._process_tracers
    def _process_tracers(self, vcon_id, in_vcon_uuid, out_vcon_uuid, links, link_index):
        if "tracers" in self.config:
            for tracer_name in self.config["tracers"]:
                tracer = self.config["tracers"][tracer_name]
                tracer_options = tracer.get("options")
                try:
                    tracer["module_obj"].run(in_vcon_uuid, out_vcon_uuid, tracer_name, links, link_index, tracer_options)
                except Exception as e:
                    log.error("Error in tracer %s for vCon %s: %s", tracer_name, vcon_id, e)
                    # Upstream: a tracer without options makes this line raise TypeError.
                    if "dlq_vcon_on_error" in tracer_options and tracer_options["dlq_vcon_on_error"]:
                        raise

    # --- conserver/main.py: VconChainRequest._process_link
    def _process_link(self, state, links, link_index):
        link_name = links[link_index]
        link = self.config["links"][link_name]
        module, options = link["module"], link.get("options")
        try:
            if link_index == 0:
                self._process_tracers(state["vcon_id"], state["vcon_id"], state["vcon_id"], links, -1)
            should_continue_chain = module.run(state["vcon_id"], link_name, options)
            self.after_link_hook.after_link(state["vcon_id"], link_name, module, options, {}, "success", None, [])
            if should_continue_chain:
                self._process_tracers(state["vcon_id"], should_continue_chain, state["vcon_id"], links, link_index)
            else:
                self._process_tracers(state["vcon_id"], state["vcon_id"], state["vcon_id"], links, link_index)
            return should_continue_chain
        except Exception as e:
            try:
                self.after_link_hook.after_link(state["vcon_id"], link_name, module, options, {}, "error", e, [])
            except Exception:
                pass
            raise

    # --- conserver/main.py: VconChainRequest.process
    def _process(self, state, chain):
        should_continue_chain = state["vcon_id"]
        for i in range(len(chain["links"])):
            should_continue_chain = self._process_link(state, chain["links"], i)
            if not should_continue_chain:
                break
            if should_continue_chain != state["vcon_id"]:
                state["vcon_id"] = should_continue_chain
        if should_continue_chain:
            for egress in chain.get("egress_lists", []):
                self.r.rpush(egress, state["vcon_id"])

    # --- conserver/main.py: _handle_vcon
    def handle(self, ingress_list, vcon_id, chain, context=None):
        state = {"vcon_id": vcon_id}
        processing_error = None
        try:
            context = context or {}
            context["ingress_list"] = ingress_list
            if not self.hook.before_processing(vcon_id, chain, context):
                return None
            self._process(state, chain)
        except Exception as e:
            processing_error = e
            self.r.rpush("DLQ:" + ingress_list, vcon_id)
        finally:
            self.hook.after_processing(state["vcon_id"], chain, context, error=processing_error)
        return processing_error


# --- links used by the scenarios ---------------------------------------------------------------

def make_vcon(r, size=0):
    u = str(uuid.uuid4())
    doc = {"uuid": u, "vcon": "0.4.0", "created_at": "2026-11-22T10:00:00.000+00:00", "parties": [{"tel": "+15555550100"}],
           "dialog": [{"type": "recording", "body": "A" * size, "encoding": "base64url"}] if size else [], "analysis": [], "attachments": []}
    r.json().set("vcon:" + u, "$", doc)
    return u


class Link:
    def __init__(self, fn):
        self.run = fn
        self.__name__ = "links." + fn.__name__


def links_for(r):
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

    return {name: {"module": Link(fn)} for name, fn in [("tag", tag), ("tag2", tag), ("tag3", tag), ("swap", swap), ("halt", halt), ("boom", boom)]}


def tracers(opts):
    return {"otel": {"module": "vcon_otel.tracer", "module_obj": otel_tracer, "options": opts}}


SCENARIOS = {
    "three_links": ["tag", "tag2", "tag3"],
    "swap": ["tag", "swap", "tag2"],
    "halt": ["tag", "halt", "tag2"],
    "link_error": ["tag", "boom", "tag2"],
}


def run_scenario(r, redis_url, name, hooks, stream):
    c = Conserver(r, tracers({"stream": stream, "redis_url": redis_url}), links_for(r), hooks=hooks)
    vcon = make_vcon(r)
    chain = {"name": name, "links": SCENARIOS[name], "ingress_lists": [name + "_in"], "egress_lists": [name + "_out"]}
    err = c.handle(name + "_in", vcon, chain)
    return vcon, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    ap.add_argument("--hooks", action="store_true")
    ap.add_argument("--stream", default="vcon_otel:events")
    a = ap.parse_args()
    os.environ["REDIS_URL"] = a.redis_url
    r = redis.Redis.from_url(a.redis_url)
    otel_hooks.options = {"redis_url": a.redis_url, "stream": a.stream}
    vcon, err = run_scenario(r, a.redis_url, a.scenario, a.hooks, a.stream)
    print(json.dumps({"vcon_uuid": vcon, "error": str(err) if err else None}))


if __name__ == "__main__":
    main()
