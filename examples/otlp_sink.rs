//! A minimal OTLP/gRPC trace receiver for benchmarks: accepts everything, counts spans, and prints
//! the running totals to stdout once a second (`spans N hashed H`; `hashed` counts spans carrying
//! `vcon.hash.sha256`).
//!
//! With ARRIVALS_FILE it also records every span's arrival, one line per span:
//! `end_time_unix_nano arrival_unix_nano`, where the arrival is the wall clock when the request
//! reached the handler (before decoding spans one by one). For the bridge's link and root spans the
//! end time is the `ts_ns` of the record that completed the span, so `arrival - end` is the event →
//! collector latency. The file is flushed once a second.
//!
//! Usage: `otlp_sink 127.0.0.1:4317 [ARRIVALS_FILE]`.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Default)]
struct Counts {
    spans: AtomicU64,
    hashed: AtomicU64,
}

struct Sink {
    counts: Arc<Counts>,
    arrivals: Option<Arc<Mutex<std::io::BufWriter<std::fs::File>>>>,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(&self, req: tonic::Request<ExportTraceServiceRequest>) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let arrived = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos() as u64;
        let spans = req.get_ref().resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans);
        let (mut n, mut hashed) = (0u64, 0u64);
        let mut lines = String::new();
        for s in spans {
            n += 1;
            hashed += s.attributes.iter().any(|kv| kv.key == "vcon.hash.sha256") as u64;
            if self.arrivals.is_some() {
                lines.push_str(&format!("{} {arrived}\n", s.end_time_unix_nano));
            }
        }
        if let Some(f) = &self.arrivals {
            f.lock().expect("arrivals file").write_all(lines.as_bytes()).expect("write arrivals");
        }
        self.counts.spans.fetch_add(n, Ordering::Relaxed);
        self.counts.hashed.fetch_add(hashed, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:4317".into()).parse().expect("address");
    let arrivals = args
        .next()
        .map(|p| Arc::new(Mutex::new(std::io::BufWriter::new(std::fs::File::create(&p).expect("create the arrivals file")))));
    let counts = Arc::new(Counts::default());
    let (c, a) = (counts.clone(), arrivals.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            if let Some(a) = &a {
                a.lock().expect("arrivals file").flush().expect("flush arrivals");
            }
            println!("spans {} hashed {}", c.spans.load(Ordering::Relaxed), c.hashed.load(Ordering::Relaxed));
        }
    });
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Sink { counts, arrivals }).max_decoding_message_size(64 << 20))
        .serve(addr)
        .await
        .expect("serve");
}
