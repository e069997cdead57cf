//! `tracers:` and `chains:` — hosted tracer modules in the conserver's shape, checked against the
//! module registry (`crate::tracers::ModuleConfig`: each module owns its typed options).

use super::Problem;
use crate::tracers::{ModuleConfig, MODULES};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawChain {
    pub tracers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTracer {
    pub module: String,
    pub options: Option<serde_json::Value>,
}

/// A hosted tracer after validation (built into a running module by `bridge`).
#[derive(Debug, Clone)]
pub struct HostedConfig {
    pub name: String,
    pub module: ModuleConfig,
    /// Chains it runs for; empty = every chain.
    pub chains: Vec<String>,
}

/// Checks `chains:` against `tracers:` and every tracer's options; returns the consumer tracers and
/// the audit log (at most one), with its name.
pub(super) fn validate(
    tracers: &BTreeMap<String, RawTracer>,
    chains: &BTreeMap<String, RawChain>,
    p: &mut Vec<Problem>,
) -> (Vec<HostedConfig>, Option<(String, crate::compliance::audit_log::Settings)>) {
    for (chain, c) in chains {
        for t in &c.tracers {
            if !tracers.contains_key(t) {
                p.push(Problem {
                    path: format!("chains.{chain}.tracers"),
                    message: format!("{t:?} is not a tracer under tracers:"),
                    hint: format!("define it under tracers: or remove it (defined: {})", tracers.keys().cloned().collect::<Vec<_>>().join(", ")),
                });
            }
        }
    }
    let mut hosted = Vec::new();
    let mut audit = None;
    for (name, t) in tracers {
        let module = if t.module == "vcon_otel.audit_log" { "audit_log" } else { t.module.as_str() };
        if !MODULES.contains(&module) {
            p.push(Problem {
                path: format!("tracers.{name}.module"),
                message: format!("{:?} is not a tracer module this bridge hosts", t.module),
                hint: format!("available: {}", MODULES.join(", ")),
            });
            continue;
        }
        let options = match &t.options {
            None | Some(serde_json::Value::Null) => serde_json::Map::new(),
            Some(serde_json::Value::Object(o)) => o.clone(),
            Some(_) => {
                p.push(Problem { path: format!("tracers.{name}.options"), message: "must be a mapping".into(), hint: "write options: {key: value, ...}".into() });
                continue;
            }
        };
        let m = match ModuleConfig::parse(module, &options) {
            Ok(m) => m,
            Err(message) => {
                p.push(Problem {
                    path: format!("tracers.{name}.options"),
                    message,
                    hint: format!("see docs/tracers.md for the options of {module}; every hosted tracer also takes timeout_secs, max_attempts, initial_backoff_ms, max_backoff_ms, dlq_vcon_on_error, dlq_ingress_list"),
                });
                continue;
            }
        };
        if let ModuleConfig::AuditLog(o) = &m {
            if audit.is_some() {
                p.push(Problem {
                    path: format!("tracers.{name}"),
                    message: "a second audit_log tracer".into(),
                    hint: "configure one audit_log tracer; rotate or ship its file for more copies".into(),
                });
                continue;
            }
            audit = Some((name.clone(), o.module.clone().settings()));
            continue;
        }
        let chains = chains.iter().filter(|(_, c)| c.tracers.contains(name)).map(|(n, _)| n.clone()).collect();
        hosted.push(HostedConfig { name: name.clone(), module: m, chains });
    }
    (hosted, audit)
}
