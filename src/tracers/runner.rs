//! One hosted tracer on the spine: read its group → enrich → deliver (timeout, retries, DLQ on
//! final failure when asked) → outcome span (offered, never awaited) → acknowledge.

use super::give_up::GiveUps;
use super::{Delivered, Hosted, Step};
use crate::assemble::{spans, Output};
use crate::enrich::{Enricher, Item};
use crate::metrics::{Metrics, ReasonLabel};
use crate::retry::{self, Attempts, Failure, Reason};
use crate::stream::{Ack, Acker, Group};
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The consumer group of a hosted tracer.
pub fn group(name: &str) -> String {
    format!("vcon-otel:tracer:{name}")
}

/// A hosted tracer wired to its group.
pub struct Runner {
    pub hosted: Hosted,
    pub group: Group,
    pub acker: Acker,
    pub enricher: Enricher,
    /// The exporter's input; outcome spans are offered with `try_send` (dropped and counted when full).
    pub spans: mpsc::Sender<Output>,
    /// For DLQ pushes.
    pub conn: ConnectionManager,
    pub metrics: Arc<Metrics>,
}

/// How one invocation ended.
enum Result_ {
    Delivered(Delivered, u32),
    Failed(Failure, u32),
    /// Shutdown began while retrying: the entries stay pending.
    Stopped,
}

impl Runner {
    /// Runs until `stop` turns true; what is not acknowledged by then is delivered after a restart.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let label = self.metrics.tracer_label(&self.hosted.name);
        let mut last_depth: Option<Instant> = None;
        let mut give_ups = GiveUps::new(&self.hosted.name, self.hosted.module);
        loop {
            if last_depth.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
                last_depth = Some(Instant::now());
                if let Some(d) = self.group.depth().await {
                    self.metrics.tracer_queue_depth.get_or_create(&label).set(d.total());
                }
            }
            let Some(entries) = self.group.read(&mut stop).await else { break };
            if entries.is_empty() {
                continue;
            }
            let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
            let Some(items) = self.enricher.enrich(entries, &mut stop).await else { break };
            // Malformed records are the main pipeline's to dead-letter; other chains are not ours.
            let work: Vec<_> = items
                .into_iter()
                .filter_map(|i| match i {
                    Item::Record(e) => Some(e),
                    Item::Done(_) => None,
                })
                .filter(|e| self.hosted.chains.is_empty() || e.chain.as_ref().is_some_and(|c| self.hosted.chains.contains(c)))
                .collect();
            let asks = given_asks(&*self.hosted.tracer, &work);
            let given = given_hashes(&self.conn, asks).await;
            let steps: Vec<Step<'_>> = work
                .iter()
                .zip(&given)
                .map(|(e, g)| Step { record: &e.record, hash: e.hash.as_ref(), given: g.as_ref(), vcon_json: e.vcon_json.as_deref(), chain: e.chain.as_deref() })
                .collect();
            let groups: Vec<&[Step<'_>]> = if self.hosted.tracer.batches() {
                if steps.is_empty() { vec![] } else { vec![&steps[..]] }
            } else {
                steps.chunks(1).collect()
            };
            let mut stopped = false;
            for g in groups {
                if !self.deliver(g, &mut stop, &mut give_ups).await {
                    stopped = true;
                    break;
                }
            }
            if stopped {
                break;
            }
            let ack = Ack { ids, done: vec![] };
            if !self.acker.ack(&ack, &mut stop).await {
                break;
            }
        }
    }

    /// One invocation (with retries) for `steps`; false when shutdown interrupted it. Records given
    /// up are reported through `give_ups` (counted; one line per interval, `give_up`).
    #[tracing::instrument(name = "tracer.deliver", level = "debug", skip_all, fields(otel.kind = "client", vcon_otel.tracer = %self.hosted.name, vcon_otel.tracer.module = self.hosted.module, messaging.batch.message_count = steps.len(), vcon_otel.tracer.attempts = tracing::field::Empty, vcon_otel.tracer.outcome = tracing::field::Empty, otel.status_code = tracing::field::Empty))]
    async fn deliver(&mut self, steps: &[Step<'_>], stop: &mut watch::Receiver<bool>, give_ups: &mut GiveUps) -> bool {
        let started_ns = crate::clock::now_ns();
        let result = self.invoke(steps, stop).await;
        let (outcome, attempts, delivered, error) = match &result {
            Result_::Stopped => return false,
            Result_::Delivered(d, _) if d.skipped => return true,
            Result_::Delivered(d, n) => ("ok", *n, Some(d), None),
            Result_::Failed(f, n) => (if f.reason() == Reason::Timeout { "timeout" } else { "error" }, *n, None, Some(f.to_string())),
        };
        tracing::Span::current().record("vcon_otel.tracer.outcome", outcome).record("vcon_otel.tracer.attempts", attempts).record("otel.status_code", if error.is_some() { "error" } else { "unset" });
        let end_ns = crate::clock::now_ns();
        if let Result_::Failed(f, n) = &result {
            give_ups.record(f, steps.len(), *n, &self.metrics, Instant::now());
        }
        for s in steps {
            let r = s.record;
            if let Some(e) = &error {
                tracing::debug!(tracer = %self.hosted.name, module = self.hosted.module, run = %r.run, attempts, error = %e, "hosted tracer gave up on a record");
                if self.hosted.common.dlq_vcon_on_error {
                    self.dlq(r).await;
                }
            }
            let attributes = delivered.map(|d| d.attributes.as_slice()).unwrap_or(&[]);
            let t = spans::TracerOutcome {
                tracer: &self.hosted.name,
                module: self.hosted.module,
                outcome,
                attempts,
                attributes,
                error: error.as_deref(),
                start_ns: started_ns,
                end_ns,
            };
            if self.spans.try_send(Output::Span(spans::tracer_outcome(r, &t))).is_err() {
                self.metrics.spans_dropped.get_or_create(&ReasonLabel { reason: "export_queue_full" }).inc();
            }
        }
        true
    }

    async fn invoke(&mut self, steps: &[Step<'_>], stop: &mut watch::Receiver<bool>) -> Result_ {
        let h = &mut self.hosted;
        let metrics = &self.metrics;
        let timeout = h.common.timeout();
        let name = h.name.clone();
        let tracer = &mut h.tracer;
        let mut attempts = Attempts::new(h.common.policy());
        let mut log = |attempt: u32, f: &Failure, _: Duration| {
            metrics.tracer_retries.get_or_create(&metrics.tracer_label(&name)).inc();
            tracing::debug!(tracer = %name, attempt, error = %f, "tracer call failed; retrying");
        };
        let out = loop {
            let t0 = Instant::now();
            let r = match tokio::time::timeout(timeout, tracer.handle(steps)).await {
                Ok(r) => r,
                Err(_) => Err(Failure::timeout(&format!("tracer {name}"), timeout)),
            };
            let outcome = match &r {
                Ok(d) if d.skipped => None,
                Ok(_) => Some("ok"),
                Err(f) if f.reason() == Reason::Timeout => Some("timeout"),
                Err(_) => Some("error"),
            };
            if let Some(o) = outcome {
                metrics.tracer_call(&name, "bridge", o, t0.elapsed().as_secs_f64());
            }
            if let Some(o) = attempts.judge(r, stop, &mut log).await {
                break o;
            }
        };
        match out {
            retry::Outcome::Done { value, attempts } => Result_::Delivered(value, attempts),
            retry::Outcome::GaveUp { failure, attempts } => Result_::Failed(failure, attempts),
            retry::Outcome::Stopped { .. } => Result_::Stopped,
        }
    }

    /// Pushes the vCon the run began with to the conserver's `DLQ:{ingress_list}` (as the conserver
    /// does with the UUID it popped).
    async fn dlq(&mut self, r: &crate::event::Record) {
        let Some(list) = r.ingress_list.clone().or_else(|| self.hosted.common.dlq_ingress_list.clone()) else {
            tracing::error!(tracer = %self.hosted.name, "dlq_vcon_on_error: the record names no ingress list and dlq_ingress_list is not set; cannot DLQ");
            return;
        };
        let pushed: redis::RedisResult<i64> = redis::cmd("RPUSH").arg(format!("DLQ:{list}")).arg(&r.vcon_uuid).query_async(&mut self.conn).await;
        match pushed {
            Ok(_) => {
                self.metrics.dlq_pushes.get_or_create(&self.metrics.tracer_label(&self.hosted.name)).inc();
            }
            Err(e) => tracing::error!(tracer = %self.hosted.name, error = %e, "cannot push to DLQ:{list}"),
        }
    }
}

/// The steps whose previous step's hash the module asks for ([`Tracer::wants_given`]).
fn given_asks(tracer: &dyn super::Tracer, work: &[Box<crate::enrich::Enriched>]) -> Vec<Option<([u8; 16], u64)>> {
    work.iter()
        .map(|e| {
            let r = &e.record;
            r.seq.filter(|_| tracer.wants_given(r)).map(|seq| (r.trace_id, seq))
        })
        .collect()
}

/// The previous step's hash for each ask, from the run's step record.
async fn given_hashes(conn: &ConnectionManager, asks: Vec<Option<([u8; 16], u64)>>) -> Vec<Option<crate::compliance::StepHash>> {
    let mut out = Vec::with_capacity(asks.len());
    for a in asks {
        out.push(match a {
            Some((trace, seq)) => crate::enrich::steps::previous(conn, &trace, seq).await,
            None => None,
        });
    }
    out
}
