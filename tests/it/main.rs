//! The one integration-test binary. Real servers (Redis with RedisJSON, OTLP receivers, rotel,
//! Prometheus, PostgreSQL) are started on free loopback ports by `support`.

mod support;

mod architecture;
mod audit;
mod audit_crash;
mod budget;
mod bridge;
mod compliance;
mod demo;
mod lifecycle;
mod http_ingest;
mod metrics_bounds;
mod python_e2e;
mod redis_tls;
mod replicas;
mod tracer_failures;
mod self_telemetry;
mod snapshots;
mod tracers;
