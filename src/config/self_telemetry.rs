//! `self_telemetry:`: the bridge's own work as traces (read, enrich, export, ack, hosted tracer
//! deliveries, the idle-run sweep), sent by the OpenTelemetry SDK to an endpoint of their own.
//! Off by default. Built by `crate::telemetry`.
//!
//! Only the file configures it; the standard variables that would otherwise apply are not read for
//! these spans, by choice: `OTEL_EXPORTER_OTLP_*` configure the vCon export (so its endpoint, and
//! its headers with the backend's credentials, never reach this pipeline), and `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_TRACES_SAMPLER(_ARG)` are often set for a whole deployment
//! (the conserver's own SDK reads them) and would rename or resample the bridge's spans: the service
//! name is fixed (`vcon-otel`), the ratio is `sampler_ratio`. The batch processor's own `OTEL_BSP_*`
//! variables (schedule delay, queue size, batch size), which nothing else here reads, are honoured.
//! `OTEL_SDK_DISABLED=true` turns self-telemetry off whatever the file says (the SDK is all it
//! configures here; the vCon export does not use the SDK).

use super::Problem;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSelfTelemetry {
    /// Export the bridge's own spans (default false).
    pub enabled: bool,
    /// `http(s)://host:port` of an OTLP receiver; required when enabled. For `http/protobuf`,
    /// `/v1/traces` is appended unless the URL already ends with it.
    pub endpoint: Option<String>,
    /// `grpc` (default) or `http/protobuf`.
    pub protocol: Option<String>,
    /// Share of root spans kept, 0.0 to 1.0 (default 0.01); a child follows its parent's decision.
    pub sampler_ratio: Option<f64>,
    /// Per-request timeout of the exporter in seconds (default 10).
    pub timeout_secs: Option<u64>,
}

/// Transport of the self-telemetry exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfProtocol {
    Grpc,
    HttpProtobuf,
}

/// Validated settings; present only when enabled.
#[derive(Debug, Clone)]
pub struct SelfTelemetry {
    /// Full URL: for HTTP including `/v1/traces`.
    pub endpoint: String,
    pub protocol: SelfProtocol,
    pub sampler_ratio: f64,
    pub timeout: Duration,
    /// Resource `service.instance.id`: the consumer name (`stream.consumer`), unique per replica.
    pub instance_id: String,
}

/// `None` when disabled (in the file, or by `OTEL_SDK_DISABLED=true`). `instance_id` is the
/// resolved `stream.consumer`.
pub(super) fn resolve(raw: RawSelfTelemetry, instance_id: &str, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<SelfTelemetry> {
    let mut bad = |path: &str, message: String, hint: &str| p.push(Problem { path: path.into(), message, hint: hint.into() });
    let protocol = match raw.protocol.as_deref().unwrap_or("grpc") {
        "grpc" => SelfProtocol::Grpc,
        "http/protobuf" => SelfProtocol::HttpProtobuf,
        other => {
            bad("self_telemetry.protocol", format!("{other:?} is not supported"), "use grpc or http/protobuf");
            SelfProtocol::Grpc
        }
    };
    let ratio = raw.sampler_ratio.unwrap_or(0.01);
    if !(0.0..=1.0).contains(&ratio) {
        bad("self_telemetry.sampler_ratio", format!("{ratio} is not between 0 and 1"), "write e.g. 0.01 (one root span in a hundred) or 1.0 (all)");
    }
    let timeout = raw.timeout_secs.unwrap_or(10);
    if timeout == 0 {
        bad("self_telemetry.timeout_secs", "must be greater than 0".into(), "remove the key to use the default (10)");
    }
    let sdk_disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !raw.enabled || sdk_disabled {
        return None;
    }
    let Some(endpoint) = raw.endpoint else {
        bad(
            "self_telemetry.endpoint",
            "is required when self_telemetry.enabled is true".into(),
            "write the OTLP receiver for the bridge's own spans, e.g. http://localhost:4317; it is never taken from OTEL_EXPORTER_OTLP_ENDPOINT",
        );
        return None;
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        bad("self_telemetry.endpoint", format!("{endpoint:?} has no http:// or https:// scheme"), "write e.g. http://localhost:4317 (gRPC) or http://localhost:4318 (HTTP)");
    }
    let endpoint = match protocol {
        SelfProtocol::HttpProtobuf if !endpoint.trim_end_matches('/').ends_with("/v1/traces") => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint,
    };
    Some(SelfTelemetry { endpoint, protocol, sampler_ratio: ratio, timeout: Duration::from_secs(timeout), instance_id: instance_id.to_string() })
}

#[cfg(test)]
mod tests {
    use super::super::{parse, validate, Problems};
    use super::*;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<super::super::Config, Problems> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        validate(parse(yaml).unwrap(), &move |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn off_by_default_even_when_the_otlp_variables_are_set() {
        let c = load("stream: {consumer: b1}\n", &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]).unwrap();
        assert!(c.self_telemetry.is_none());
        assert!(c.export.is_some(), "the variable configures the vCon export");
    }

    #[test]
    fn enabled_takes_its_own_endpoint_a_low_default_ratio_and_the_consumer_as_instance() {
        let c = load("stream: {consumer: bridge-7}\nself_telemetry: {enabled: true, endpoint: \"http://otel:4318/\", protocol: http/protobuf}\n", &[]).unwrap();
        let s = c.self_telemetry.unwrap();
        assert_eq!(s.endpoint, "http://otel:4318/v1/traces");
        assert_eq!(s.protocol, SelfProtocol::HttpProtobuf);
        assert_eq!(s.sampler_ratio, 0.01);
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!(s.instance_id, "bridge-7");
    }

    #[test]
    fn enabled_without_an_endpoint_is_a_problem_and_the_vcon_endpoint_is_not_borrowed() {
        let e = load("self_telemetry: {enabled: true}\n", &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].path, "self_telemetry.endpoint");
        assert!(e.0[0].hint.contains("never taken from OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");
    }

    #[test]
    fn bad_values_are_named_with_their_key_paths() {
        let e = load("self_telemetry: {enabled: true, endpoint: \"otel:4317\", protocol: http/json, sampler_ratio: 1.5, timeout_secs: 0}\n", &[]).unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["self_telemetry.protocol", "self_telemetry.sampler_ratio", "self_telemetry.timeout_secs", "self_telemetry.endpoint"], "{e}");
        assert_eq!(e.0[1].to_string(), "self_telemetry.sampler_ratio: 1.5 is not between 0 and 1 (hint: write e.g. 0.01 (one root span in a hundred) or 1.0 (all))");
    }

    #[test]
    fn otel_sdk_disabled_turns_it_off() {
        let yaml = "self_telemetry: {enabled: true, endpoint: \"http://otel:4317\"}\n";
        assert!(load(yaml, &[("OTEL_SDK_DISABLED", "TRUE")]).unwrap().self_telemetry.is_none());
        assert!(load(yaml, &[("OTEL_SDK_DISABLED", "false")]).unwrap().self_telemetry.is_some());
    }

    #[test]
    fn an_unknown_key_is_rejected() {
        let e = parse("self_telemetry: {enabled: true, endpont: \"http://x:4317\"}\n").unwrap_err();
        assert!(e.to_string().contains("endpont"), "{e}");
    }
}
