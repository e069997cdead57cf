//! One hosted tracer's loop: its own consumer group on the event stream, decode, hash, invoke with
//! timeout and retries, DLQ on final failure when asked, outcome span, acknowledge.

use super::{Hosted, Step, TracerError};
use crate::assemble::{FinishedSpan, Output, StepHash};
use crate::event::{self, Compliance, EventKind, Record};
use crate::ids::{self, SpanRole};
use crate::ingest::redis_stream::{self, Entry};
use crate::metrics::{Metrics, TracerLabel};
use crate::otlp::{kv_int, kv_str, span, status, Span, Status};
use redis::aio::ConnectionManager;
use redis::streams::StreamReadReply;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// What every runner shares.
#[derive(Clone)]
pub struct Shared {
    pub stream: String,
    pub consumer: String,
    pub chains_by_links: Arc<HashMap<Vec<String>, String>>,
    pub spans: mpsc::Sender<Output>,
    pub metrics: Arc<Metrics>,
}

/// The consumer group of a hosted tracer. A new group starts at the stream's end (`$`): a tracer
/// added later does not replay history.
pub fn group(name: &str) -> String {
    format!("vcon-otel:tracer:{name}")
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Creates the tracer's consumer group at the stream's end if it does not exist.
pub async fn ensure_group(conn: &mut ConnectionManager, stream: &str, name: &str) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP").arg("CREATE").arg(stream).arg(group(name)).arg("$").arg("MKSTREAM").query_async(conn).await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Runs until `stop` turns true.
pub async fn run(mut t: Hosted, mut conn: ConnectionManager, mut reader: ConnectionManager, sh: Shared, mut stop: watch::Receiver<bool>) {
    let g = group(&t.name);
    if let Err(e) = ensure_group(&mut conn, &sh.stream, &t.name).await {
        tracing::error!(tracer = %t.name, error = %e, "cannot create the tracer's consumer group");
    }
    let label = TracerLabel { tracer: sh.metrics.tracers.admit(&t.name) };
    let mut cursor: Option<String> = Some("0".into());
    let mut last_depth = Instant::now() - Duration::from_secs(10);
    while !*stop.borrow() {
        if last_depth.elapsed() >= Duration::from_secs(2) {
            last_depth = Instant::now();
            if let Some(d) = depth(&mut conn, &sh.stream, &g).await {
                sh.metrics.tracer_queue_depth.get_or_create(&label).set(d);
            }
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&g).arg(&sh.consumer).arg("COUNT").arg(64);
        if cursor.is_none() {
            cmd.arg("BLOCK").arg(1000);
        }
        cmd.arg("STREAMS").arg(&sh.stream).arg(cursor.as_deref().unwrap_or(">"));
        let reply: redis::RedisResult<Option<StreamReadReply>> = tokio::select! {
            r = cmd.query_async(&mut reader) => r,
            _ = stop.changed() => break,
        };
        let entries: Vec<Entry> = match reply {
            Ok(r) => r.map(redis_stream::entries).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(tracer = %t.name, error = %e, "XREADGROUP failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                cursor = Some("0".into());
                continue;
            }
        };
        if cursor.is_some() {
            cursor = entries.last().map(|e| e.id.clone());
        }
        // Records this tracer handles, with their snapshot; malformed ones are the main pipeline's
        // to dead-letter, records of other chains are not this tracer's.
        let mut work = Vec::new();
        for e in &entries {
            let Some(r) = e.payload.as_deref().and_then(|p| event::decode(p).ok()) else { continue };
            let chain = r.chain.clone().or_else(|| r.links.as_ref().and_then(|l| sh.chains_by_links.get(l).cloned()));
            if !t.chains.is_empty() && !chain.as_ref().is_some_and(|c| t.chains.contains(c)) {
                continue;
            }
            let (hash, text) = snapshot(&mut conn, &r).await;
            work.push(Prepared { record: r, hash, text, chain });
        }
        if t.module.batches() {
            if !work.is_empty() {
                process(&mut t, &mut conn, &sh, &work, &mut stop).await;
            }
        } else {
            for w in &work {
                process(&mut t, &mut conn, &sh, std::slice::from_ref(w), &mut stop).await;
            }
        }
        if !entries.is_empty() {
            let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
            let acked: redis::RedisResult<i64> = redis::cmd("XACK").arg(&sh.stream).arg(&g).arg(&ids).query_async(&mut conn).await;
            if let Err(err) = acked {
                tracing::warn!(tracer = %t.name, error = %err, "XACK failed; the entries will be delivered again");
            }
        }
    }
}

async fn depth(conn: &mut ConnectionManager, stream: &str, g: &str) -> Option<i64> {
    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(conn).await.ok()?;
    let mine = groups.into_iter().find(|m| matches!(m.get("name"), Some(redis::Value::BulkString(b)) if b == g.as_bytes()))?;
    let int = |k: &str| match mine.get(k) {
        Some(redis::Value::Int(i)) => *i,
        _ => 0,
    };
    Some(int("lag") + int("pending"))
}

async fn snapshot(conn: &mut ConnectionManager, r: &Record) -> (Option<StepHash>, Option<Vec<u8>>) {
    match &r.compliance {
        Some(Compliance::Sha256(h)) => (Some(StepHash { sha256_hex: h.clone(), sha512_token: None, counts: None }), None),
        Some(Compliance::Snapshot(key)) => {
            let text: Option<Vec<u8>> = redis::cmd("JSON.GET").arg(key).query_async(conn).await.ok().flatten();
            let hash = text.as_deref().and_then(|t| crate::compliance::vcon_hash(t).ok()).map(|h| StepHash {
                sha256_hex: h.sha256_hex,
                sha512_token: None,
                counts: Some(h.counts),
            });
            (hash, text)
        }
        None => (None, None),
    }
}

/// A record ready for the tracer.
struct Prepared {
    record: Record,
    hash: Option<StepHash>,
    text: Option<Vec<u8>>,
    chain: Option<String>,
}

/// One invocation (with retries) for `work`: one record, or a batch for batching modules.
async fn process(t: &mut Hosted, conn: &mut ConnectionManager, sh: &Shared, work: &[Prepared], stop: &mut watch::Receiver<bool>) {
    let steps: Vec<Step<'_>> = work
        .iter()
        .map(|w| Step { record: &w.record, hash: w.hash.as_ref(), vcon_json: w.text.as_deref(), chain: w.chain.as_deref() })
        .collect();
    let started_ns = now_ns();
    let mut attempts = 0u32;
    let result = loop {
        attempts += 1;
        let t0 = Instant::now();
        let res = match tokio::time::timeout(t.common.timeout, t.module.handle(&steps)).await {
            Ok(r) => r,
            Err(_) => Err(TracerError::Retryable { detail: format!("no answer within {:?}", t.common.timeout), delay: None }),
        };
        let took = t0.elapsed().as_secs_f64();
        match res {
            Ok(d) if d.skipped => return,
            Ok(d) => {
                sh.metrics.tracer_call(&t.name, "bridge", "ok", took);
                break Ok(d);
            }
            Err(TracerError::Retryable { detail, delay }) => {
                let outcome = if detail.starts_with("no answer within") { "timeout" } else { "error" };
                sh.metrics.tracer_call(&t.name, "bridge", outcome, took);
                if attempts >= t.common.max_attempts || *stop.borrow() {
                    break Err((outcome, detail));
                }
                sh.metrics.tracer_retries.get_or_create(&TracerLabel { tracer: sh.metrics.tracers.admit(&t.name) }).inc();
                let wait = delay.unwrap_or_else(|| crate::export::backoff(attempts - 1, t.common.initial_backoff, t.common.max_backoff));
                tracing::debug!(tracer = %t.name, attempt = attempts, error = %detail, "tracer call failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(TracerError::Permanent { detail }) => {
                sh.metrics.tracer_call(&t.name, "bridge", "error", took);
                break Err(("error", detail));
            }
        }
    };
    for w in work {
        let r = &w.record;
        if let Err((_, detail)) = &result {
            tracing::warn!(tracer = %t.name, module = t.module.module_name(), run = %r.run, attempts, error = %detail, "hosted tracer gave up on a record");
            if t.common.dlq_vcon_on_error {
                dlq(t, conn, sh, r).await;
            }
        }
        let _ = sh.spans.send(Output::Span(outcome_span(t, r, started_ns, attempts, &result))).await;
    }
}

/// Pushes the vCon the run began with to the conserver's `DLQ:{ingress_list}` (as the conserver
/// does with the UUID it popped).
async fn dlq(t: &Hosted, conn: &mut ConnectionManager, sh: &Shared, r: &Record) {
    let Some(list) = r.ingress_list.clone().or_else(|| t.common.dlq_ingress_list.clone()) else {
        tracing::error!(tracer = %t.name, "dlq_vcon_on_error: the record names no ingress list and dlq_ingress_list is not set; cannot DLQ");
        return;
    };
    let pushed: redis::RedisResult<i64> = redis::cmd("RPUSH").arg(format!("DLQ:{list}")).arg(&r.vcon_uuid).query_async(conn).await;
    match pushed {
        Ok(_) => {
            sh.metrics.dlq_pushes.get_or_create(&TracerLabel { tracer: sh.metrics.tracers.admit(&t.name) }).inc();
        }
        Err(e) => tracing::error!(tracer = %t.name, error = %e, "cannot push to DLQ:{list}"),
    }
}

fn outcome_span(t: &Hosted, r: &Record, start: u64, attempts: u32, result: &Result<super::Delivered, (&'static str, String)>) -> FinishedSpan {
    let parent = match r.event {
        EventKind::TracerCall if r.link_index.unwrap_or(-1) >= 0 => SpanRole::Link(r.link_index.unwrap_or(0)),
        EventKind::LinkComplete | EventKind::LinkError => SpanRole::Link(r.link_index.unwrap_or(0)),
        EventKind::StorageComplete | EventKind::StorageError => SpanRole::Storage(r.storage.as_deref().unwrap_or("")),
        _ => SpanRole::Root,
    };
    let seq = r.seq.unwrap_or(r.ts_ns);
    let end = now_ns().max(start);
    let outcome = match result {
        Ok(_) => "ok",
        Err((o, _)) => o,
    };
    let mut attrs = vec![
        kv_str("vcon.uuid", r.vcon_uuid.clone()),
        kv_str("vcon.run.id", r.run.clone()),
        kv_str("vcon.tracer.name", t.name.clone()),
        kv_str("vcon.tracer.module", t.module.module_name()),
        kv_str("vcon.tracer.outcome", outcome),
        kv_int("vcon.tracer.attempts", attempts as i64),
    ];
    let mut event_attrs = vec![kv_str("outcome", outcome)];
    let mut st = None;
    match result {
        Ok(d) => {
            for (k, v) in &d.attributes {
                attrs.push(kv_str(k, v.clone()));
                event_attrs.push(kv_str(k, v.clone()));
            }
        }
        Err((_, detail)) => {
            st = Some(Status { code: status::StatusCode::Error as i32, message: detail.clone() });
            event_attrs.push(kv_str("error", detail.clone()));
        }
    }
    let s = Span {
        trace_id: ids::trace_id(&r.vcon_uuid, &r.run).to_vec(),
        span_id: ids::span_id(&r.vcon_uuid, &r.run, SpanRole::Tracer(&t.name, seq)).to_vec(),
        parent_span_id: ids::span_id(&r.vcon_uuid, &r.run, parent).to_vec(),
        flags: 0x101,
        name: format!("tracer {}", t.name),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: attrs,
        events: vec![span::Event { time_unix_nano: end, name: "tracer.outcome".into(), attributes: event_attrs, dropped_attributes_count: 0 }],
        status: st,
        ..Default::default()
    };
    FinishedSpan { span: s, producer: r.producer.clone(), acks: vec![], root_of: None }
}
