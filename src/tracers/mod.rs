//! Hosted tracer modules: the seeds' tracers, run by the bridge instead of inline in the conserver.
//!
//! Each configured tracer (`tracers: {NAME: {module, options}}`) is a second user of the stream
//! spine (`crate::stream`): its own **consumer group** (`vcon-otel:tracer:{NAME}`) is its bounded,
//! durable queue, read → enriched (`crate::enrich`) → delivered → acknowledged by its [`runner`]. A
//! slow or failing tracer only lags its own group, never the OTLP export or the other tracers; a
//! collector outage never stops a tracer either (its outcome spans are offered to the exporter
//! without waiting: when the export queue is full they are dropped and counted,
//! `vcon_otel_spans_dropped_total{reason="export_queue_full"}`). An entry is acknowledged in the
//! tracer's group only after the tracer delivered it (or gave up after its retries, counted and
//! optionally DLQ'd), so a bridge crash loses nothing.
//!
//! Modules are registered once, in the [`modules!`] list below: a module is a file with a `Config`
//! (serde; its doc comments are the option docs) implementing [`Build`], and a type implementing
//! [`Tracer`]. Adding one is that file plus one line in the list. The `audit_log` module is the
//! exception that is not a consumer: the main pipeline writes it, because its records carry the
//! hash chain the assembler computes.

pub mod audit_log;
pub mod give_up;
pub mod jlinc;
pub mod postgres;
pub mod runner;
pub mod statsd;
pub mod webhook;

use crate::compliance::StepHash;
use crate::event::Record;
use crate::retry::{Failure, Policy};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

/// What a tracer sees of one record.
pub struct Step<'a> {
    pub record: &'a Record,
    /// `Vcon.hash` of the step's vCon state, when known.
    pub hash: Option<&'a StepHash>,
    /// `Vcon.hash` of the document the step was given (the run's previous step), only when the
    /// module asked for it ([`Tracer::wants_given`]) and the step record knows it.
    pub given: Option<&'a StepHash>,
    /// The stored vCon text of the snapshot (only for modules that ask, [`Tracer::needs_vcon`]).
    pub vcon_json: Option<&'a [u8]>,
    /// The chain name, from the record or the conserver's config.
    pub chain: Option<&'a str>,
}

/// A delivered invocation: attributes for the outcome span (e.g. the JLINC event id).
#[derive(Debug, Default)]
pub struct Delivered {
    pub attributes: Vec<(String, String)>,
    /// The module has nothing to do for this record (no span, not counted).
    pub skipped: bool,
}

/// A running hosted tracer module.
pub trait Tracer: Send {
    /// Whether one invocation takes all the records of one read (else exactly one).
    fn batches(&self) -> bool {
        false
    }

    /// Whether the module needs the stored vCon text, not just its hash.
    fn needs_vcon(&self) -> bool {
        false
    }

    /// Whether delivering `r` needs [`Step::given`] (one step-record read per such record).
    fn wants_given(&self, _r: &Record) -> bool {
        false
    }

    /// One delivery attempt for `steps`; never retries itself (the runner does, with the tracer's
    /// policy, and bounds it with `timeout_secs`). Classify failures by what was seen: a transport
    /// error or 5xx is retryable, 429 throttled, a 4xx or a bad answer permanent.
    fn handle<'a>(&'a mut self, steps: &'a [Step<'a>]) -> BoxFuture<'a, Result<Delivered, Failure>>;
}

/// What a module's configuration builds into.
pub enum Built {
    /// A consumer of its own group.
    Consumer(Box<dyn Tracer>),
    /// The audit log, written by the main pipeline.
    AuditLog(crate::compliance::audit_log::Settings),
}

/// A module's configuration: checked without I/O at config time, built at start-up.
pub trait Build {
    /// Checks what serde cannot (value ranges, identifiers); the message names the option.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
    fn build(self) -> Result<Built, String>;
}

/// Options every hosted tracer takes besides its module's own (flattened into `options:`).
#[derive(Debug, Clone, Deserialize)]
pub struct Common {
    /// Seconds one delivery attempt may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Attempts per record before giving up (retryable failures only).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_ms: u64,
    /// On final failure, push the vCon UUID to the conserver's `DLQ:{ingress_list}`.
    #[serde(default)]
    pub dlq_vcon_on_error: bool,
    /// The ingress list for DLQ pushes when the record does not name one (tracer-only producers).
    #[serde(default)]
    pub dlq_ingress_list: Option<String>,
}

fn default_timeout() -> u64 {
    10
}
fn default_attempts() -> u32 {
    5
}
fn default_initial_backoff() -> u64 {
    200
}
fn default_max_backoff() -> u64 {
    30_000
}

impl Common {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }

    pub fn policy(&self) -> Policy {
        let initial = Duration::from_millis(self.initial_backoff_ms);
        Policy { initial, max: Duration::from_millis(self.max_backoff_ms).max(initial), max_attempts: Some(self.max_attempts.max(1)) }
    }
}

/// A module's options: the common ones and the module's own, side by side under `options:`.
#[derive(Debug, Clone, Deserialize)]
pub struct Options<C> {
    #[serde(flatten)]
    pub common: Common,
    #[serde(flatten)]
    pub module: C,
}

/// The field names a struct's `Deserialize` asks for, read by a deserializer that only listens.
fn fields_of<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(self, _: &'static str, fields: &'static [&'static str], _: V) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// Declares the hosted modules: `"name" => Variant(module::Config)`, one line each.
macro_rules! modules {
    ($($name:literal => $variant:ident($config:ty)),* $(,)?) => {
        /// A tracer's `module` and `options`, as configured.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(tag = "module", content = "options")]
        pub enum ModuleConfig {
            $(#[serde(rename = $name)] $variant(Options<$config>),)*
        }

        /// Every module name, for messages.
        pub const MODULES: &[&str] = &[$($name),*];

        impl ModuleConfig {
            pub fn module(&self) -> &'static str {
                match self { $(ModuleConfig::$variant(_) => $name,)* }
            }
            pub fn common(&self) -> &Common {
                match self { $(ModuleConfig::$variant(o) => &o.common,)* }
            }
            /// Checks the options without I/O: the module's own rules.
            pub fn check(&self) -> Result<(), String> {
                match self { $(ModuleConfig::$variant(o) => o.module.check(),)* }
            }

            /// Every option `module` takes (the common ones included); `None` for no such module.
            pub fn options_of(module: &str) -> Option<Vec<&'static str>> {
                match module {
                    $($name => Some([fields_of::<Common>(), fields_of::<$config>()].concat()),)*
                    _ => None,
                }
            }

            /// Parses `{module, options}`: an unknown option is named first (a typo usually also
            /// leaves a required option missing), then serde's own errors, then [`Build::check`].
            pub fn parse(module: &str, options: &serde_json::Map<String, serde_json::Value>) -> Result<ModuleConfig, String> {
                let known = Self::options_of(module).ok_or_else(|| format!("{module:?} is not a module"))?;
                if let Some(k) = options.keys().find(|k| !known.contains(&k.as_str())) {
                    return Err(format!("unknown field `{k}`"));
                }
                let v = serde_json::json!({"module": module, "options": options});
                let m = serde_json::from_value::<ModuleConfig>(v).map_err(|e| e.to_string())?;
                m.check()?;
                Ok(m)
            }
            pub fn build(self) -> Result<Built, String> {
                match self { $(ModuleConfig::$variant(o) => o.module.build(),)* }
            }
        }
    };
}

modules! {
    "audit_log" => AuditLog(audit_log::Config),
    "webhook" => Webhook(webhook::Config),
    "statsd" => Statsd(statsd::Config),
    "jlinc" => Jlinc(jlinc::Config),
    "postgres" => Postgres(postgres::Config),
}

/// A configured hosted tracer, ready to run.
pub struct Hosted {
    pub name: String,
    pub module: &'static str,
    pub tracer: Box<dyn Tracer>,
    pub common: Common,
    /// Chains this tracer runs for; empty = every chain (as upstream).
    pub chains: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(module: &str, v: serde_json::Value) -> Result<ModuleConfig, String> {
        ModuleConfig::parse(module, v.as_object().unwrap())
    }

    #[test]
    fn modules_are_keyed_by_name_with_common_options_flattened() {
        let m = parse("webhook", serde_json::json!({"url": "http://x", "timeout_secs": 3})).unwrap();
        assert_eq!((m.module(), m.common().timeout_secs, m.common().max_attempts), ("webhook", 3, 5));
        let e = parse("webhook", serde_json::json!({"url": "http://x", "retries": 3})).unwrap_err();
        assert_eq!(e, "unknown field `retries`");
        assert_eq!(parse("audit_log", serde_json::json!({"pth": "x"})).unwrap_err(), "unknown field `pth`");
        assert!(parse("nope", serde_json::json!({})).unwrap_err().contains("not a module"));
        assert!(ModuleConfig::options_of("jlinc").unwrap().contains(&"data_store_api_url"));
        assert!(ModuleConfig::options_of("jlinc").unwrap().contains(&"dlq_vcon_on_error"));
    }
}
