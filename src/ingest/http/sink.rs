//! Where accepted records go: [`RedisSink`] appends them to the event stream. The trait exists so the
//! answer logic can be tested without a server; the bridge always uses [`RedisSink`].

use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use serde_json::value::RawValue;
use std::time::Duration;

/// Makes records durable; `Ok` only once every record is stored.
pub trait Sink: Send + Sync + 'static {
    fn append<'a>(&'a self, records: &'a [&'a RawValue]) -> BoxFuture<'a, Result<(), String>>;
}

/// `XADD <stream> * r <record>` per record, in one pipeline, bounded by `timeout`. A timeout or
/// error may leave some records written: the producer's retry then duplicates them, which the
/// bridge's deterministic span IDs make harmless (the same span is exported twice).
pub struct RedisSink {
    pub conn: ConnectionManager,
    pub stream: String,
    pub timeout: Duration,
}

impl Sink for RedisSink {
    fn append<'a>(&'a self, records: &'a [&'a RawValue]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            for r in records {
                pipe.cmd("XADD").arg(&self.stream).arg("*").arg("r").arg(r.get()).ignore();
            }
            let mut conn = self.conn.clone();
            match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within http_ingest.redis_timeout_ms={}", self.timeout.as_millis())),
            }
        })
    }
}
