//! The process's own telemetry: the `tracing` subscriber (structured logs on stderr, filtered by
//! `RUST_LOG`) and, when `self_telemetry.enabled`, the bridge's own spans exported through the
//! OpenTelemetry SDK (`tracing-opentelemetry` + `opentelemetry-otlp`).
//!
//! Kept apart from the vCon traces on purpose: those are built and sent by the bridge's own OTLP
//! client (`crate::export`) to `export.endpoint` with the conserver's `service.name`; these go
//! through the SDK to `self_telemetry.endpoint` with resource `service.name = vcon-otel`,
//! `service.instance.id` = the consumer name and `service.version`. Nothing is shared: not the
//! pipeline, not the endpoint, not the headers (the SDK exporter would add
//! `OTEL_EXPORTER_OTLP_HEADERS`, which carry the vCon backend's credentials; they are removed from
//! every request, see [`own_headers_only`]).
//!
//! Costs: the bridge's spans are `DEBUG` spans of the `vcon_otel` targets. With self-telemetry off
//! (the default) and `RUST_LOG` at `info`, no layer wants them, so `tracing` never builds them (a
//! cached per-call-site check; their fields are not evaluated). With it on, only the OpenTelemetry
//! layer sees them; the log output does not change.
//!
//! Loops: exporting spans makes the exporter's crates (tonic, h2, hyper, tower, reqwest, the
//! OpenTelemetry crates themselves) emit `tracing` data, and the SDK does not suppress it
//! (opentelemetry-rust #2877). The OpenTelemetry layer takes only the `vcon_otel` targets and
//! refuses those crates explicitly ([`accepts`]), so an export never traces itself.
//!
//! Threads: the batch span processor runs on its own thread, built here on the main thread before
//! the bridge's runtime exists. Its gRPC exporter needs a Tokio runtime for its connection tasks;
//! it gets a one-thread runtime of its own that nothing else uses, so a busy or single-threaded
//! bridge runtime can never stall it (opentelemetry-rust #2715). The HTTP exporter uses a blocking
//! client on that processor thread. When the processor's queue (2048 spans, `OTEL_BSP_MAX_QUEUE_SIZE`)
//! is full, new spans are dropped (the SDK logs it); the data path never waits for self-telemetry.

use crate::config::{SelfProtocol, SelfTelemetry};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tracing::Level;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The resource `service.name` of the bridge's own spans (fixed: the bridge is one service).
pub const SERVICE_NAME: &str = "vcon-otel";

/// Targets whose data never reaches the OpenTelemetry layer: the exporter's transport and the
/// OpenTelemetry crates (an export would otherwise trace itself), and the Redis client.
pub const EXPORTER_TARGETS: &[&str] = &["h2", "hyper", "tonic", "tower", "reqwest", "opentelemetry", "redis", "rustls"];

/// How long the exit flush may take.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Whether the OpenTelemetry layer takes a span or event: the bridge's own spans (`DEBUG` and
/// above) and its events at `INFO` and above (they become span events, and an `ERROR` event marks
/// its span failed), never anything of [`EXPORTER_TARGETS`].
pub fn accepts(target: &str, level: Level, is_span: bool) -> bool {
    if EXPORTER_TARGETS.iter().any(|t| target.starts_with(t)) {
        return false;
    }
    let ours = target == "vcon_otel" || target.starts_with("vcon_otel::");
    ours && level <= if is_span { Level::DEBUG } else { Level::INFO }
}

/// Holds the self-telemetry pipeline; [`Guard::shutdown`] flushes it (dropping does too).
#[derive(Default)]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
    /// The gRPC exporter's runtime; outlives the provider.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Guard {
    /// Exports what is queued (within 5 s), then stops the processor and its runtime. Call it after
    /// the bridge's runtime has ended, outside any runtime.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown_with_timeout(SHUTDOWN_DEADLINE) {
                tracing::warn!(error = %e, "self-telemetry: spans still queued at exit were not exported");
            }
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs the process's subscriber: logs on stderr as `text` or `json` with the `RUST_LOG`
/// filter (default `info`), plus the OpenTelemetry layer when `self_telemetry` is given. Call once,
/// on the main thread, before any Tokio runtime starts. Errors name the config key.
pub fn init(log_format: &str, self_telemetry: Option<&SelfTelemetry>) -> anyhow::Result<Guard> {
    let env_filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let mut guard = Guard::default();
    let tracer = match self_telemetry {
        Some(cfg) => {
            let (provider, runtime) = build_provider(cfg)?;
            let tracer = provider.tracer(SERVICE_NAME);
            guard = Guard { provider: Some(provider), runtime };
            Some(tracer)
        }
        None => None,
    };
    subscriber(log_format, env_filter, BoxMakeWriter::new(std::io::stderr), tracer).try_init()?;
    if let Some(c) = self_telemetry {
        tracing::info!(endpoint = %c.endpoint, protocol = ?c.protocol, sampler_ratio = c.sampler_ratio, service.instance.id = %c.instance_id, "self-telemetry: exporting the bridge's own spans as service vcon-otel");
    }
    Ok(guard)
}

/// The subscriber [`init`] installs: the log layer under `env_filter`, and with a `tracer` the
/// OpenTelemetry layer under [`accepts`]. Without a tracer, a `DEBUG` span is enabled only when
/// `env_filter` asks for it.
pub fn subscriber(log_format: &str, env_filter: tracing_subscriber::EnvFilter, writer: BoxMakeWriter, tracer: Option<SdkTracer>) -> impl tracing::Subscriber + Send + Sync {
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt = if log_format == "json" { fmt.json().boxed() } else { fmt.boxed() };
    let otel = tracer.map(|t| {
        let filter = tracing_subscriber::filter::filter_fn(|m| accepts(m.target(), *m.level(), m.is_span())).with_max_level_hint(tracing::level_filters::LevelFilter::DEBUG);
        tracing_opentelemetry::layer().with_tracer(t).with_threads(false).with_filter(filter)
    });
    tracing_subscriber::registry().with(fmt.with_filter(env_filter)).with(otel)
}

/// The tracer provider: parent-based ratio sampler, the resource, a batch processor.
fn build_provider(cfg: &SelfTelemetry) -> anyhow::Result<(SdkTracerProvider, Option<tokio::runtime::Runtime>)> {
    let (exporter, runtime) = build_exporter(cfg).map_err(|e| anyhow::anyhow!("self_telemetry.endpoint={}: cannot build the exporter: {e}", cfg.endpoint))?;
    let resource = Resource::builder_empty()
        .with_service_name(SERVICE_NAME)
        .with_attributes([KeyValue::new("service.instance.id", cfg.instance_id.clone()), KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
        .with_detector(Box::new(opentelemetry_sdk::resource::TelemetryResourceDetector))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sampler_ratio))))
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build();
    Ok((provider, runtime))
}

fn build_exporter(cfg: &SelfTelemetry) -> anyhow::Result<(opentelemetry_otlp::SpanExporter, Option<tokio::runtime::Runtime>)> {
    crate::tls::install_crypto_provider();
    // Every setting the SDK would otherwise read from OTEL_EXPORTER_OTLP_* is given explicitly.
    match cfg.protocol {
        SelfProtocol::Grpc => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("self-telemetry").enable_all().build()?;
            let _in_rt = rt.enter();
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(cfg.endpoint.clone())
                .with_timeout(cfg.timeout)
                .with_compression(opentelemetry_otlp::Compression::Gzip)
                .with_interceptor(own_headers_only as fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>);
            if cfg.endpoint.starts_with("https://") {
                b = b.with_tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots());
            }
            let exporter = b.build()?;
            drop(_in_rt);
            Ok((exporter, Some(rt)))
        }
        SelfProtocol::HttpProtobuf => {
            let client = reqwest::blocking::Client::builder().timeout(cfg.timeout).build()?;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(cfg.endpoint.clone())
                .with_timeout(cfg.timeout)
                .with_compression(opentelemetry_otlp::Compression::Gzip)
                .with_http_client(OwnHeaders(client))
                .build()?;
            Ok((exporter, None))
        }
    }
}

/// gRPC: drops the metadata the SDK added from `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` (meant for
/// the vCon export), keeping only its `user-agent`.
pub fn own_headers_only(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let agent = req.metadata().get("user-agent").cloned();
    *req.metadata_mut() = tonic::metadata::MetadataMap::new();
    if let Some(a) = agent {
        req.metadata_mut().insert("user-agent", a);
    }
    Ok(req)
}

/// HTTP: the blocking client on the processor's thread, sending only the protocol's own headers.
#[derive(Debug)]
struct OwnHeaders(reqwest::blocking::Client);

/// The headers an OTLP/HTTP request keeps; every other one came from `OTEL_EXPORTER_OTLP_HEADERS`.
const HTTP_HEADERS_KEPT: &[&str] = &["content-type", "content-encoding", "user-agent"];

/// Removes every header but [`HTTP_HEADERS_KEPT`].
pub fn strip_http_headers(headers: &mut http::HeaderMap) {
    let drop: Vec<http::HeaderName> = headers.keys().filter(|k| !HTTP_HEADERS_KEPT.contains(&k.as_str())).cloned().collect();
    for k in drop {
        headers.remove(k);
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OwnHeaders {
    async fn send_bytes(&self, mut request: http::Request<bytes::Bytes>) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        strip_http_headers(request.headers_mut());
        self.0.send_bytes(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exporters_own_targets_are_filtered_out_of_the_otel_layer() {
        for t in ["h2", "h2::codec::framed_write", "hyper", "hyper_util::client::legacy::pool", "tonic::transport::channel", "tower::buffer::worker", "reqwest::connect", "opentelemetry", "opentelemetry_sdk", "opentelemetry-otlp", "opentelemetry_http", "redis::aio", "rustls::client"] {
            for level in [Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG, Level::TRACE] {
                assert!(!accepts(t, level, true), "span of {t} at {level}");
                assert!(!accepts(t, level, false), "event of {t} at {level}");
            }
        }
    }

    #[test]
    fn the_bridges_debug_spans_and_info_events_are_taken_nothing_else() {
        assert!(accepts("vcon_otel::export", Level::DEBUG, true));
        assert!(accepts("vcon_otel::stream::group", Level::INFO, true));
        assert!(!accepts("vcon_otel::export", Level::TRACE, true));
        assert!(accepts("vcon_otel::export", Level::WARN, false));
        assert!(!accepts("vcon_otel::export", Level::DEBUG, false), "per-event debug logs stay out of spans");
        assert!(!accepts("vcon_otel_other", Level::INFO, true));
        assert!(!accepts("tokio_postgres::query", Level::INFO, true));
    }

    /// The spans the bridge's stages create: `DEBUG` spans of its own modules.
    fn stage_spans() -> Vec<tracing::Span> {
        vec![
            tracing::debug_span!(target: "vcon_otel::export", "export", vcon_otel.export.spans = 4),
            tracing::debug_span!(target: "vcon_otel::enrich", "enrich", messaging.batch.message_count = 4),
            tracing::debug_span!(target: "vcon_otel::stream::group", "receive"),
        ]
    }

    fn quiet_logs() -> BoxMakeWriter {
        BoxMakeWriter::new(std::io::sink)
    }

    #[test]
    fn with_self_telemetry_off_the_bridges_spans_are_never_built() {
        for format in ["text", "json"] {
            let off = subscriber(format, tracing_subscriber::EnvFilter::new("info"), quiet_logs(), None);
            tracing::subscriber::with_default(off, || {
                assert!(stage_spans().iter().all(tracing::Span::is_disabled), "a stage span was built with self-telemetry off ({format})");
            });
        }
    }

    /// Collects the names of the spans that reach the OpenTelemetry SDK.
    #[derive(Debug, Default, Clone)]
    struct Collected(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl opentelemetry_sdk::trace::SpanProcessor for Collected {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
        fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
            self.0.lock().unwrap().push(span.name.into_owned());
        }
        fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
    }

    #[test]
    fn with_self_telemetry_on_only_the_bridges_spans_reach_the_sdk() {
        let got = Collected::default();
        let provider = SdkTracerProvider::builder().with_span_processor(got.clone()).build();
        let on = subscriber("text", tracing_subscriber::EnvFilter::new("info"), quiet_logs(), Some(provider.tracer(SERVICE_NAME)));
        tracing::subscriber::with_default(on, || {
            assert!(stage_spans().iter().all(|s| !s.is_disabled()), "a stage span was not built with self-telemetry on");
            drop(tracing::info_span!(target: "h2::codec", "h2 poll").entered());
            drop(tracing::info_span!(target: "opentelemetry_sdk", "sdk export").entered());
            drop(tracing::info_span!(target: "tonic::transport", "tonic call").entered());
            assert!(tracing::trace_span!(target: "vcon_otel::export", "detail").is_disabled());
        });
        let mut names = got.0.lock().unwrap().clone();
        names.sort();
        assert_eq!(names, ["enrich", "export", "receive"]);
    }

    #[test]
    fn grpc_metadata_from_the_vcon_exporters_variables_is_dropped() {
        let mut req = tonic::Request::new(());
        req.metadata_mut().insert("authorization", "Bearer vcon-backend".parse().unwrap());
        req.metadata_mut().insert("x-scope-orgid", "tenant-1".parse().unwrap());
        req.metadata_mut().insert("user-agent", "OTel-OTLP-Exporter-Rust".parse().unwrap());
        let req = own_headers_only(req).unwrap();
        let keys: Vec<String> = req.metadata().keys().map(|k| format!("{k:?}")).collect();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(req.metadata().get("user-agent").unwrap(), "OTel-OTLP-Exporter-Rust");
    }

    #[test]
    fn http_headers_from_the_vcon_exporters_variables_are_dropped() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer vcon-backend".parse().unwrap());
        h.insert("content-type", "application/x-protobuf".parse().unwrap());
        h.insert("content-encoding", "gzip".parse().unwrap());
        strip_http_headers(&mut h);
        let mut keys: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["content-encoding", "content-type"]);
    }
}
