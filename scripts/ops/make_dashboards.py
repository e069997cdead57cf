"""Generates the Grafana dashboards in dashboards/ (run: python3 scripts/ops/make_dashboards.py).

Each dashboard is templated by datasource and by the labels it filters on; latency panels over
link/chain histograms show exemplars, which Grafana links to the trace in Tempo (the Prometheus
datasource's exemplarTraceIdDestinations, config/grafana/provisioning/datasources/).
"""
import json
import os

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "dashboards")
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"


def ds_var():
    return {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus",
            "current": {"selected": False, "text": "default", "value": "default"}, "hide": 0, "refresh": 1, "regex": "", "options": []}


def label_var(name, query, label):
    return {"name": name, "type": "query", "label": label, "datasource": DS,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "sort": 1, "hide": 0, "regex": ""}


class Board:
    def __init__(self, uid, title, description, variables):
        self.uid, self.title, self.description, self.variables = uid, title, description, variables
        self.panels = []
        self.y = 0
        self.x = 0

    def row(self, title):
        if self.x:
            self.y += 8
            self.x = 0
        self.panels.append({"type": "row", "title": title, "id": len(self.panels) + 1, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def panel(self, title, targets, unit="short", kind="timeseries", exemplar=False, description="", w=12):
        if self.x + w > 24:
            self.y += 8
            self.x = 0
        p = {"type": kind, "title": title, "description": description, "id": len(self.panels) + 1, "datasource": DS,
             "gridPos": {"h": 8, "w": w, "x": self.x, "y": self.y},
             "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
             "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                         "tooltip": {"mode": "multi", "sort": "desc"}} if kind == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
             "targets": [{"datasource": DS, "refId": chr(65 + i), "expr": expr, "legendFormat": legend,
                          "exemplar": exemplar, "range": True} for i, (expr, legend) in enumerate(targets)]}
        self.panels.append(p)
        self.x += w

    def json(self):
        return {"uid": self.uid, "title": self.title, "description": self.description, "tags": ["vcon-otel"],
                "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True, "graphTooltip": 1,
                "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
                "templating": {"list": self.variables}, "annotations": {"list": []}, "panels": self.panels, "links": []}


def quantiles(metric, by, flt):
    return [("histogram_quantile(%s, sum by (le, %s) (rate(%s_bucket{%s}[%s])))" % (q, by, metric, flt, RI), "p%s {{%s}}" % (int(float(q) * 100), by.split(",")[0].strip()))
            for q in ("0.5", "0.95", "0.99")]


def tracers():
    b = Board("vcon-otel-tracers", "vcon-otel / Tracers", "Per tracer: call rate, failure ratio, latency, retries, queue depth. side=conserver is the cost producers report; side=bridge the hosted tracers and the OTLP export.",
              [ds_var(), label_var("tracer", "label_values(vcon_otel_tracer_calls_total, tracer)", "Tracer"),
               label_var("side", "label_values(vcon_otel_tracer_calls_total, side)", "Side")])
    f = 'tracer=~"$tracer",side=~"$side"'
    b.row("Calls")
    b.panel("Call rate", [("sum by (tracer, side) (rate(vcon_otel_tracer_calls_total{%s}[%s]))" % (f, RI), "{{tracer}} ({{side}})")], "reqps")
    # "or … * 0" makes a tracer without failures show 0 % instead of no data.
    calls = "sum by (tracer, side) (rate(vcon_otel_tracer_calls_total{%s}[%s]))" % (f, RI)
    failures = "sum by (tracer, side) (rate(vcon_otel_tracer_calls_total{%s,outcome!=\"ok\"}[%s]))" % (f, RI)
    b.panel("Failure ratio", [("(%s or %s * 0) / %s" % (failures, calls, calls), "{{tracer}} ({{side}})")], "percentunit",
            description="Share of invocations whose outcome is not ok (error or timeout). Alerts: VconOtelTracerFailureRatio*.")
    b.row("Latency")
    b.panel("p50 / p95 / p99 latency", quantiles("vcon_otel_tracer_duration_seconds", "tracer, side", f), "s", w=24)
    b.row("Pressure")
    b.panel("Retries", [("sum by (tracer) (rate(vcon_otel_tracer_retries_total{tracer=~\"$tracer\"}[%s]))" % RI, "{{tracer}}"),
                        ("sum by (reason) (rate(vcon_otel_export_retries_total[%s]))" % RI, "otlp_export: {{reason}}")], "reqps")
    b.panel("Queue depth", [("vcon_otel_tracer_queue_depth{tracer=~\"$tracer\"}", "{{tracer}}")], "short")
    return b


def chains():
    b = Board("vcon-otel-chains", "vcon-otel / Chains", "Per chain and link: throughput, duration percentiles (exemplars link to the trace), run outcomes, DLQ pushes.",
              [ds_var(), label_var("chain", "label_values(vcon_otel_runs_total, chain)", "Chain"),
               label_var("link", "label_values(vcon_otel_link_duration_seconds_count{chain=~\"$chain\"}, link)", "Link")])
    c = 'chain=~"$chain"'
    cl = 'chain=~"$chain",link=~"$link"'
    b.row("Runs")
    b.panel("Runs by outcome", [("sum by (chain, outcome) (rate(vcon_otel_runs_total{%s}[%s]))" % (c, RI), "{{chain}} {{outcome}}")], "reqps",
            description="complete, halted, failed, incomplete (closed by the idle timeout).")
    b.panel("Chain duration p50 / p95 / p99", quantiles("vcon_otel_chain_duration_seconds", "chain", c), "s", exemplar=True,
            description="Exemplar dots link to the run's trace in Tempo.")
    b.panel("Incomplete runs (last hour)", [("sum by (chain) (increase(vcon_otel_runs_total{%s,outcome=\"incomplete\"}[1h]))" % c, "{{chain}}")], "short")
    b.panel("Open runs", [("vcon_otel_open_runs", "open")], "short")
    b.row("Links")
    b.panel("Link throughput", [("sum by (chain, link) (rate(vcon_otel_link_duration_seconds_count{%s}[%s]))" % (cl, RI), "{{chain}}/{{link}}")], "reqps")
    b.panel("Link outcomes", [("sum by (link, outcome) (rate(vcon_otel_link_duration_seconds_count{%s}[%s]))" % (cl, RI), "{{link}} {{outcome}}")], "reqps")
    b.panel("Link duration p95 (exemplars)", [("histogram_quantile(0.95, sum by (le, chain, link) (rate(vcon_otel_link_duration_seconds_bucket{%s}[%s])))" % (cl, RI), "{{chain}}/{{link}}")], "s", exemplar=True, w=24)
    b.row("Dead-letter queues")
    b.panel("DLQ pushes by tracer", [("sum by (tracer) (rate(vcon_otel_dlq_pushes_total[%s]))" % RI, "{{tracer}}")], "reqps",
            description="vCon UUIDs pushed to a conserver DLQ:{ingress_list} by hosted tracers with dlq_vcon_on_error.")
    return b


def health():
    b = Board("vcon-otel-bridge", "vcon-otel / Bridge health", "Ingest, rejections, stream lag and pending, export outcomes and retries, dead letters, open runs.",
              [ds_var()])
    b.row("Ingest")
    b.panel("Events ingested", [("sum by (source, event) (rate(vcon_otel_events_ingested_total[%s]))" % RI, "{{source}} {{event}}")], "reqps")
    b.panel("Rejected events by reason", [("sum by (reason) (rate(vcon_otel_events_rejected_total[%s]))" % RI, "{{reason}}")], "reqps",
            description="Malformed records, dead-lettered to vcon_otel:events:dead with their reason.")
    b.panel("Stream lag and pending", [("vcon_otel_stream_lag", "lag (not delivered)"), ("vcon_otel_stream_pending", "pending (not acknowledged)")], "short")
    b.panel("In flight", [("vcon_otel_inflight_entries", "entries read, not acknowledged"), ("vcon_otel_open_runs", "open runs")], "short")
    b.row("Export")
    b.panel("Spans exported by outcome", [("sum by (outcome) (rate(vcon_otel_spans_exported_total[%s]))" % RI, "{{outcome}}")], "reqps")
    b.panel("Export retries by reason", [("sum by (reason) (rate(vcon_otel_export_retries_total[%s]))" % RI, "{{reason}}")], "reqps")
    b.panel("Export latency p99", [("histogram_quantile(0.99, sum by (le) (rate(vcon_otel_export_duration_seconds_bucket[%s])))" % RI, "p99")], "s")
    b.panel("Spans per request", [("histogram_quantile(0.5, sum by (le) (rate(vcon_otel_export_batch_spans_bucket[%s])))" % RI, "median")], "short")
    b.row("Compliance snapshots")
    b.panel("Live compliance snapshots", [("max(vcon_otel_snapshots_live)", "live (producer's budget index)")], "short",
            description="Snapshots the producer took and the bridge has not yet hashed and deleted; the producer skips new ones at snapshot_budget.")
    b.panel("Snapshots deleted and skipped", [("sum(rate(vcon_otel_snapshots_deleted_total[%s]))" % RI, "deleted"),
                                              ("sum by (reason) (rate(vcon_otel_snapshots_skipped_total[%s]))" % RI, "skipped {{reason}}")], "reqps",
            description="Skipped steps carry vcon.hash.unknown = reason instead of a hash.")
    b.row("Failures")
    b.panel("Dead letters", [("sum by (stage) (rate(vcon_otel_dead_letters_total[%s]))" % RI, "{{stage}}")], "reqps")
    b.panel("HTTP ingest answers", [("sum by (status) (rate(vcon_otel_http_requests_total[%s]))" % RI, "{{status}}")], "reqps")
    b.panel("Build", [("vcon_otel_build_info", "{{version}}")], "short", kind="stat", w=24)
    return b


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, board in [("tracers", tracers()), ("chains", chains()), ("bridge-health", health())]:
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(board.json(), f, indent=2)
            f.write("\n")
    print("wrote 3 dashboards")


if __name__ == "__main__":
    main()
