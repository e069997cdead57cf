//! vcon-otel: makes vCon Server's tracer system observable with OpenTelemetry and Prometheus.
//!
//! # Layout
//! The data path reads top to bottom:
//! - [`config`]     YAML configuration: serde types -> `validate()` (pure) -> [`config::Config`].
//! - [`event`]      the event record schema (v1) and its decoding, with precise rejection reasons.
//! - [`ingest`]     sources: the Redis stream consumer group and `POST /v1/events`.
//! - [`ids`]        deterministic trace and span IDs derived from the vCon UUID and the run.
//! - [`assemble`]   records -> spans; holds the open runs and closes idle ones.
//! - [`export`]     OTLP/gRPC and OTLP/HTTP clients with batching, retries and acknowledgement.
//! - [`compliance`] vCon Server's `Vcon.hash`, the per-run hash chain, the audit log.
//! - [`metrics`]    every metric in one place, on an owned registry.
//! - [`admin`]      `/metrics`, `/healthz`, `/readyz`.
//! - [`demo`]       an in-process simulated conserver producing the same records as `python/`.
//! - [`pipeline`]   wires the stages together: `run(config, shutdown)`.

pub mod compliance;
