//! vcon-otel: makes vCon Server's tracer system observable with OpenTelemetry and Prometheus.
//!
//! # Layout
//! The data path reads top to bottom (`docs/architecture.md` says who may import whom):
//! - [`stream`]     the spine: consumer groups, the at-least-once contract, acks, dead letters.
//! - [`enrich`]     decode + compliance snapshot fetch and hash + chain naming, for every consumer.
//! - [`assemble`]   records -> spans (pure); holds the open runs and closes idle ones.
//! - [`export`]     the OTLP/gRPC and OTLP/HTTP clients, batching, retries, acknowledgement.
//! - [`tracers`]    hosted tracer modules, each the second kind of user of the spine.
//! - [`bridge`]     builds and runs the stages; drains them on shutdown.
//!
//! Beside the flow: [`config`] (YAML -> `validate()` -> [`config::Config`]), [`event`] (the record
//! schema and its one decoder), [`ingest`] (`POST /v1/events`), [`retry`] (failure classes and
//! backoff for every network call), [`compliance`] (`Vcon.hash`, hash chain, audit log), [`ids`]
//! (deterministic IDs), [`metrics`], [`admin`], [`health`], [`otlp`], [`clock`], [`tls`], [`demo`],
//! [`telemetry`] (the process's logs and the bridge's own spans, `self_telemetry:`).

pub mod admin;
pub mod assemble;
pub mod bridge;
pub mod clock;
pub mod compliance;
pub mod config;
pub mod demo;
pub mod enrich;
pub mod event;
pub mod export;
pub mod health;
pub mod ids;
pub mod ingest;
pub mod metrics;
pub mod otlp;
pub mod retry;
pub mod stream;
pub mod telemetry;
pub mod tls;
pub mod tracers;

pub use bridge::{Bridge, DrainReport, Listeners};
