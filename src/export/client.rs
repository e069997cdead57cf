//! OTLP trace clients (gRPC and HTTP/protobuf) that report every outcome the protocol can give:
//! accepted, partially accepted (how many spans were rejected, and why), retryable (with the server's
//! delay when it sent one) and permanent.
//!
//! Contract: [`Client::send`] makes one attempt, never retries, and returns within the configured
//! timeout (its own deadline, so an expiry is classified as a timeout, never as "unavailable").
//! Retrying is the caller's job (`export::Stage`, through `retry`).
//!
//! The caller encodes the request once (`export::request`); every attempt sends those bytes (gRPC
//! through [`EncodedCodec`], HTTP as the body, compressed per attempt when configured).

use crate::config::{Compression, Export, Protocol};
use crate::otlp::ExportTraceServiceResponse;
use crate::retry::{Failure, Reason};
use prost::Message;
use std::io::Write;
use std::time::Duration;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The collector took the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Spans the collector rejected in a partial success (0 = all accepted).
    pub rejected_spans: i64,
    pub message: String,
}

/// Why a configured client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("export.{key}: {message}")]
pub struct BuildError {
    key: &'static str,
    message: String,
}

/// One OTLP client.
pub enum Client {
    Grpc {
        client: tonic::client::Grpc<Channel>,
        headers: Vec<(MetadataKey<tonic::metadata::Ascii>, MetadataValue<tonic::metadata::Ascii>)>,
        timeout: Duration,
    },
    Http { client: reqwest::Client, url: String, compression: Compression },
}

impl Client {
    /// Builds a client; connects lazily, so a collector that is down at start-up is not an error.
    pub fn new(cfg: &Export) -> Result<Client, BuildError> {
        crate::tls::install_crypto_provider();
        let read = |key: &'static str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| BuildError { key, message: format!("cannot read {}: {e}", p.display()) })
        };
        match cfg.protocol {
            Protocol::Grpc => {
                let mut ep = Endpoint::from_shared(cfg.endpoint.clone())
                    .map_err(|e| BuildError { key: "endpoint", message: format!("{:?}: {e}", cfg.endpoint) })?
                    .connect_timeout(cfg.timeout);
                if cfg.endpoint.starts_with("https://") || cfg.ca_file.is_some() {
                    let mut tls = ClientTlsConfig::new().with_native_roots();
                    if let Some(ca) = &cfg.ca_file {
                        tls = tls.ca_certificate(Certificate::from_pem(read("tls.ca_file", ca)?));
                    }
                    if let (Some(c), Some(k)) = (&cfg.cert_file, &cfg.key_file) {
                        tls = tls.identity(Identity::from_pem(read("tls.cert_file", c)?, read("tls.key_file", k)?));
                    }
                    ep = ep.tls_config(tls).map_err(|e| BuildError { key: "tls", message: e.to_string() })?;
                }
                let mut client = tonic::client::Grpc::new(ep.connect_lazy()).max_decoding_message_size(16 << 20);
                client = match cfg.compression {
                    Compression::Gzip => client.send_compressed(CompressionEncoding::Gzip),
                    Compression::Zstd => client.send_compressed(CompressionEncoding::Zstd),
                    Compression::None => client,
                };
                let mut headers = Vec::new();
                for (k, v) in &cfg.headers {
                    let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|e| BuildError { key: "headers", message: format!("{k:?}: {e}") })?;
                    let value = MetadataValue::try_from(v.as_str())
                        .map_err(|e| BuildError { key: "headers", message: format!("value of {k:?}: {e}") })?;
                    headers.push((key, value));
                }
                Ok(Client::Grpc { client, headers, timeout: cfg.timeout })
            }
            Protocol::HttpProtobuf => {
                let mut hm = reqwest::header::HeaderMap::new();
                for (k, v) in &cfg.headers {
                    let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| BuildError { key: "headers", message: format!("{k:?}: {e}") })?;
                    let value = reqwest::header::HeaderValue::from_str(v)
                        .map_err(|e| BuildError { key: "headers", message: format!("value of {k:?}: {e}") })?;
                    hm.insert(name, value);
                }
                let mut b = reqwest::Client::builder().timeout(cfg.timeout).default_headers(hm);
                if let Some(ca) = &cfg.ca_file {
                    let cert = reqwest::Certificate::from_pem(&read("tls.ca_file", ca)?)
                        .map_err(|e| BuildError { key: "tls.ca_file", message: e.to_string() })?;
                    b = b.add_root_certificate(cert);
                }
                if let (Some(c), Some(k)) = (&cfg.cert_file, &cfg.key_file) {
                    let mut pem = read("tls.cert_file", c)?;
                    pem.extend(read("tls.key_file", k)?);
                    let id = reqwest::Identity::from_pem(&pem)
                        .map_err(|e| BuildError { key: "tls.cert_file", message: e.to_string() })?;
                    b = b.identity(id);
                }
                let client = b.build().map_err(|e| BuildError { key: "endpoint", message: e.to_string() })?;
                Ok(Client::Http { client, url: cfg.endpoint.clone(), compression: cfg.compression })
            }
        }
    }

    /// One export attempt.
    pub async fn send(&self, body: &bytes::Bytes) -> Result<Accepted, Failure> {
        match self {
            Client::Grpc { client, headers, timeout } => {
                let mut request = tonic::Request::new(body.clone());
                // Tells the server our deadline (grpc-timeout); we enforce it ourselves below.
                request.set_timeout(*timeout);
                for (k, v) in headers.iter() {
                    request.metadata_mut().insert(k.clone(), v.clone());
                }
                let mut client = client.clone();
                match tokio::time::timeout(*timeout, export(&mut client, request)).await {
                    Err(_) => Err(Failure::timeout("OTLP/gRPC export", *timeout)),
                    Ok(Ok(resp)) => Ok(accepted(resp.into_inner())),
                    Ok(Err(status)) => Err(classify_grpc(&status)),
                }
            }
            Client::Http { client, url, compression } => {
                let (body, encoding) = match compression {
                    Compression::None => (body.clone(), None),
                    Compression::Gzip => {
                        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                        enc.write_all(body).and_then(|_| enc.finish()).map(|b| (b.into(), Some("gzip"))).expect("in-memory gzip")
                    }
                    Compression::Zstd => (zstd::bulk::compress(body, 1).expect("in-memory zstd").into(), Some("zstd")),
                };
                let mut rb = client.post(url.as_str()).header("content-type", "application/x-protobuf").body(body);
                if let Some(e) = encoding {
                    rb = rb.header("content-encoding", e);
                }
                let resp = rb.send().await.map_err(|e| Failure::from_reqwest(&e, &format!("POST {url}")))?;
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let bytes = resp.bytes().await.unwrap_or_default();
                classify_http(status, retry_after, &bytes, url)
            }
        }
    }
}

/// `TraceService/Export` with an encoded request (what the generated client does, minus the copy).
async fn export(
    client: &mut tonic::client::Grpc<Channel>,
    request: tonic::Request<bytes::Bytes>,
) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
    client.ready().await.map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    let path = PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    client.unary(request, path, EncodedCodec).await
}

/// Sends bytes already encoded as an `ExportTraceServiceRequest`; decodes the response with prost.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = bytes::Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = EncodedCodec;
    type Decoder = EncodedCodec;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedCodec
    }
}

impl Encoder for EncodedCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: bytes::Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl Decoder for EncodedCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        ExportTraceServiceResponse::decode(src).map(Some).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

fn accepted(resp: ExportTraceServiceResponse) -> Accepted {
    match resp.partial_success {
        Some(p) => Accepted { rejected_spans: p.rejected_spans, message: p.error_message },
        None => Accepted { rejected_spans: 0, message: String::new() },
    }
}

/// Maps an HTTP answer to an outcome (OTLP/HTTP spec: 429, 502, 503, 504 are retryable).
pub fn classify_http(status: u16, retry_after: Option<Duration>, body: &[u8], url: &str) -> Result<Accepted, Failure> {
    match status {
        200..=299 => Ok(ExportTraceServiceResponse::decode(body).map(accepted).unwrap_or(Accepted {
            rejected_spans: 0,
            message: String::new(),
        })),
        429 => Err(Failure::Throttled { delay: retry_after, detail: format!("POST {url}: HTTP 429") }),
        502..=504 => match retry_after {
            Some(_) => Err(Failure::Throttled { delay: retry_after, detail: format!("POST {url}: HTTP {status}") }),
            None => Err(Failure::retryable(Reason::Unavailable, format!("POST {url}: HTTP {status}"))),
        },
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            Err(Failure::permanent(Reason::Rejected, format!("POST {url}: HTTP {status} {text}")))
        }
    }
}

/// `google.rpc.Status` and `google.rpc.RetryInfo`, to read a gRPC server's retry delay.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

fn retry_delay(details: &[u8]) -> Option<Duration> {
    let st = RpcStatus::decode(details).ok()?;
    st.details.iter().find(|d| d.type_url.ends_with("google.rpc.RetryInfo")).and_then(|d| {
        let ri = RetryInfo::decode(d.value.as_slice()).ok()?;
        let pd = ri.retry_delay?;
        Some(Duration::new(pd.seconds.max(0) as u64, pd.nanos.max(0) as u32))
    })
}

/// Maps a gRPC status to an outcome (OTLP/gRPC spec's retryable codes).
///
/// A server's `RetryInfo` delay makes any retryable code `Throttled` with that delay. Transport
/// failures (no connection) reach us as `UNAVAILABLE` or `UNKNOWN` with a transport error as the
/// status' source: retryable, never permanent.
pub fn classify_grpc(status: &tonic::Status) -> Failure {
    use tonic::Code::*;
    let detail = format!("gRPC {:?}: {}", status.code(), status.message());
    let reason = match status.code() {
        Unavailable | Cancelled | Aborted | OutOfRange | DataLoss => Reason::Unavailable,
        DeadlineExceeded => Reason::Timeout,
        ResourceExhausted => Reason::Throttled,
        Unknown if is_transport(status) => Reason::Transport,
        _ => return Failure::permanent(Reason::Rejected, detail),
    };
    match retry_delay(status.details()) {
        Some(d) => Failure::Throttled { delay: Some(d), detail },
        None if reason == Reason::Throttled => Failure::Throttled { delay: None, detail },
        None => Failure::retryable(reason, detail),
    }
}

/// Whether a status wraps a transport error (connection refused, reset, TLS) from the channel.
fn is_transport(status: &tonic::Status) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = src {
        if e.is::<tonic::transport::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        src = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_the_otlp_retry_rules() {
        assert!(matches!(classify_http(503, Some(Duration::from_secs(2)), b"", "u"), Err(Failure::Throttled { delay: Some(d), .. }) if d == Duration::from_secs(2)));
        assert!(matches!(classify_http(429, None, b"", "u"), Err(Failure::Throttled { delay: None, .. })));
        assert_eq!(classify_http(503, None, b"", "u").unwrap_err().reason(), Reason::Unavailable);
        assert!(matches!(classify_http(400, None, b"bad", "u"), Err(Failure::Permanent { .. })));
        assert_eq!(classify_http(200, None, b"", "u").unwrap().rejected_spans, 0);
    }

    #[test]
    fn grpc_retry_info_is_honoured() {
        let ri = RetryInfo { retry_delay: Some(ProtoDuration { seconds: 3, nanos: 0 }) };
        let st = RpcStatus {
            code: 14,
            message: "down".into(),
            details: vec![ProtoAny { type_url: "type.googleapis.com/google.rpc.RetryInfo".into(), value: ri.encode_to_vec() }],
        };
        let status = tonic::Status::with_details(tonic::Code::Unavailable, "down", st.encode_to_vec().into());
        assert!(matches!(classify_grpc(&status), Failure::Throttled { delay: Some(d), .. } if d == Duration::from_secs(3)));
        assert!(matches!(classify_grpc(&tonic::Status::invalid_argument("x")), Failure::Permanent { .. }));
        assert_eq!(classify_grpc(&tonic::Status::deadline_exceeded("late")).reason(), Reason::Timeout);
    }
}
