//! An OTLP trace receiver (gRPC and HTTP/protobuf, gzip/zstd accepted) that records every request it
//! accepts and answers from a script: scripted answers are used in order, one per request (on
//! either transport), then every request is accepted.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Ok,
    Partial { rejected: i64, message: String },
    /// gRPC UNAVAILABLE (with RetryInfo when a delay is given) / HTTP 503 (with Retry-After).
    Unavailable { retry_after: Option<Duration> },
    /// gRPC RESOURCE_EXHAUSTED / HTTP 429.
    Throttled,
    /// gRPC INVALID_ARGUMENT / HTTP 400.
    Permanent,
}

#[derive(Default)]
struct State {
    script: VecDeque<Answer>,
    accepted: Vec<ExportTraceServiceRequest>,
    answered: Vec<&'static str>,
    /// gRPC request metadata (ASCII entries) or HTTP request headers, per request.
    metadata: Vec<Vec<(String, String)>>,
    /// While set, every request is answered `Unavailable` (a collector outage), script or not.
    down: bool,
}

impl State {
    fn next(&mut self, req: ExportTraceServiceRequest) -> Answer {
        let a = if self.down { Answer::Unavailable { retry_after: None } } else { self.script.pop_front().unwrap_or(Answer::Ok) };
        let name = match &a {
            Answer::Ok => "ok",
            Answer::Partial { .. } => "partial",
            Answer::Unavailable { .. } => "unavailable",
            Answer::Throttled => "throttled",
            Answer::Permanent => "permanent",
        };
        self.answered.push(name);
        if matches!(a, Answer::Ok | Answer::Partial { .. }) {
            self.accepted.push(req);
        }
        a
    }
}

/// A received span with its resource attributes.
#[derive(Debug, Clone)]
pub struct Received {
    pub resource: Vec<KeyValue>,
    pub span: Span,
}

impl Received {
    pub fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }
    pub fn resource_attr(&self, key: &str) -> Option<String> {
        attr(&self.resource, key)
    }
}

pub fn attr(kvs: &[KeyValue], key: &str) -> Option<String> {
    kvs.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    })
}

pub struct Receiver {
    state: Arc<Mutex<State>>,
    grpc_port: u16,
    http_port: u16,
    _rt: tokio::runtime::Runtime,
}

struct Grpc(Arc<Mutex<State>>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(&self, req: tonic::Request<ExportTraceServiceRequest>) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let md: Vec<(String, String)> = req
            .metadata()
            .iter()
            .filter_map(|kv| match kv {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => Some((k.to_string(), v.to_str().unwrap_or("").to_string())),
                _ => None,
            })
            .collect();
        self.0.lock().unwrap().metadata.push(md);
        let answer = self.0.lock().unwrap().next(req.into_inner());
        match answer {
            Answer::Ok => Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None })),
            Answer::Partial { rejected, message } => Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess { rejected_spans: rejected, error_message: message }),
            })),
            Answer::Unavailable { retry_after } => Err(match retry_after {
                None => tonic::Status::unavailable("scripted: unavailable"),
                Some(d) => tonic::Status::with_details(tonic::Code::Unavailable, "scripted: unavailable", retry_info(d).into()),
            }),
            Answer::Throttled => Err(tonic::Status::resource_exhausted("scripted: throttled")),
            Answer::Permanent => Err(tonic::Status::invalid_argument("scripted: permanent")),
        }
    }
}

/// `google.rpc.Status` with a `google.rpc.RetryInfo` detail, as collectors send it.
fn retry_info(d: Duration) -> Vec<u8> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Dur {
        #[prost(int64, tag = "1")]
        seconds: i64,
        #[prost(int32, tag = "2")]
        nanos: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Info {
        #[prost(message, optional, tag = "1")]
        retry_delay: Option<Dur>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Any {
        #[prost(string, tag = "1")]
        type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        value: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct St {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
        #[prost(message, repeated, tag = "3")]
        details: Vec<Any>,
    }
    let info = Info { retry_delay: Some(Dur { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }) };
    St {
        code: 14,
        message: "scripted: unavailable".into(),
        details: vec![Any { type_url: "type.googleapis.com/google.rpc.RetryInfo".into(), value: info.encode_to_vec() }],
    }
    .encode_to_vec()
}

async fn http_export(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<State>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let raw = match headers.get("content-encoding").and_then(|v| v.to_str().ok()) {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out).expect("gzip body");
            out
        }
        Some("zstd") => zstd::decode_all(&body[..]).expect("zstd body"),
        _ => body.to_vec(),
    };
    let req = ExportTraceServiceRequest::decode(raw.as_slice()).expect("protobuf body");
    let md = headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    state.lock().unwrap().metadata.push(md);
    let answer = state.lock().unwrap().next(req);
    let ok = |resp: ExportTraceServiceResponse| {
        ([("content-type", "application/x-protobuf")], resp.encode_to_vec()).into_response()
    };
    match answer {
        Answer::Ok => ok(ExportTraceServiceResponse { partial_success: None }),
        Answer::Partial { rejected, message } => ok(ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess { rejected_spans: rejected, error_message: message }),
        }),
        Answer::Unavailable { retry_after } => {
            let mut r = (axum::http::StatusCode::SERVICE_UNAVAILABLE, "scripted: unavailable").into_response();
            if let Some(d) = retry_after {
                r.headers_mut().insert("retry-after", d.as_secs().to_string().parse().unwrap());
            }
            r
        }
        Answer::Throttled => (axum::http::StatusCode::TOO_MANY_REQUESTS, "scripted: throttled").into_response(),
        Answer::Permanent => (axum::http::StatusCode::BAD_REQUEST, "scripted: permanent").into_response(),
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it (PEM files in `dir`), made with openssl.
pub fn make_tls_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=vcon-otel test CA"]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    run(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"]);
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

/// A listener on a free loopback port, bound here and kept (finding a free port and binding it
/// later, as `super::free_port` must for servers in other processes, races with every other socket).
fn bind(rt: &tokio::runtime::Runtime) -> (tokio::net::TcpListener, u16) {
    let l = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
    let port = l.local_addr().expect("a bound address").port();
    (l, port)
}

impl Receiver {
    /// A gRPC receiver speaking TLS with the given server certificate and key (PEM).
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Receiver {
        let identity = tonic::transport::Identity::from_pem(std::fs::read(cert).unwrap(), std::fs::read(key).unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (grpc, grpc_port) = bind(&rt);
        let s1 = state.clone();
        rt.spawn(async move {
            tonic::transport::Server::builder()
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .expect("TLS config")
                .add_service(TraceServiceServer::new(Grpc(s1)))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc))
                .await
                .expect("gRPC TLS receiver");
        });
        assert!(super::wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(("127.0.0.1", grpc_port)).is_ok()));
        Receiver { state, grpc_port, http_port: 0, _rt: rt }
    }

    pub fn grpcs_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.grpc_port)
    }

    pub fn start(script: Vec<Answer>) -> Receiver {
        let state = Arc::new(Mutex::new(State { script: script.into(), ..Default::default() }));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let ((grpc, grpc_port), (http, http_port)) = (bind(&rt), bind(&rt));
        let s1 = state.clone();
        rt.spawn(async move {
            let svc = TraceServiceServer::new(Grpc(s1))
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
                .max_decoding_message_size(64 << 20);
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc))
                .await
                .expect("gRPC receiver");
        });
        let s2 = state.clone();
        rt.spawn(async move {
            let app = axum::Router::new()
                .route("/v1/traces", axum::routing::post(http_export))
                .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
                .with_state(s2);
            axum::serve(http, app).await.expect("HTTP receiver");
        });
        let r = Receiver { state, grpc_port, http_port, _rt: rt };
        assert!(super::wait_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", r.grpc_port)).is_ok() && std::net::TcpStream::connect(("127.0.0.1", r.http_port)).is_ok()
        }));
        r
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Every span of every accepted request, in arrival order.
    pub fn spans(&self) -> Vec<Received> {
        let st = self.state.lock().unwrap();
        st.accepted
            .iter()
            .flat_map(|req| req.resource_spans.iter())
            .flat_map(|rs| {
                let resource = rs.resource.as_ref().map(|r| r.attributes.clone()).unwrap_or_default();
                rs.scope_spans.iter().flat_map(move |ss| {
                    let resource = resource.clone();
                    ss.spans.iter().map(move |s| Received { resource: resource.clone(), span: s.clone() })
                })
            })
            .collect()
    }

    /// The value of a gRPC metadata entry (or HTTP header) in every request so far.
    pub fn metadata(&self, key: &str) -> Vec<Option<String>> {
        self.state.lock().unwrap().metadata.iter().map(|m| m.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())).collect()
    }

    /// The answer given to each request so far (`ok`, `partial`, `unavailable`, …).
    pub fn answered(&self) -> Vec<&'static str> {
        self.state.lock().unwrap().answered.clone()
    }

    /// Starts (true) or ends (false) an outage: meanwhile every request is answered UNAVAILABLE/503.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    pub fn wait_for_spans(&self, n: usize, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.spans().len() >= n)
    }
}
