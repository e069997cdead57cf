//! `webhook`: the seeds' external audit service — one JSON record per event, `POST`ed with bearer
//! auth. Retries on 5xx, 429 and connection errors honour `Retry-After`.

use super::{Build, Built, Delivered, Step, Tracer};
use crate::retry::{self, Failure};
use futures::future::BoxFuture;
use crate::event::EventKind;
use serde::Deserialize;
use serde_json::json;

/// Options of the `webhook` module.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Where each record (or batch) is `POST`ed.
    pub url: String,
    #[serde(default)]
    pub api_key: Option<String>,
    /// Environment variable holding the API key (instead of `api_key`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "default_system")]
    pub system_id: String,
    /// `false` (default): one request per record, body = the record. `true`: one request per read
    /// of the stream (up to 64 records), body = a JSON array of records.
    #[serde(default)]
    pub batch: bool,
}

fn default_system() -> String {
    "vcon-server".into()
}

pub struct Webhook {
    cfg: Config,
    key: Option<String>,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(cfg: Config) -> Webhook {
        crate::tls::install_crypto_provider();
        let key = cfg.api_key.clone().or_else(|| cfg.api_key_env.as_ref().and_then(|v| std::env::var(v).ok()));
        Webhook { cfg, key, http: reqwest::Client::new() }
    }

    /// The seed event name of a record (`tracer_call` maps to `chain_start` before the first link
    /// and to `link_complete` after a link).
    pub fn event_type(step: &Step<'_>) -> &'static str {
        match (step.record.event, step.record.link_index) {
            (EventKind::TracerCall, Some(-1)) => "chain_start",
            (EventKind::TracerCall, _) => "link_complete",
            (e, _) => e.as_str(),
        }
    }

    fn body(&self, step: &Step<'_>) -> serde_json::Value {
        let r = step.record;
        let entity = match r.event {
            EventKind::TracerCall => r.in_vcon_uuid.clone(),
            _ => r.out_vcon_uuid.clone(),
        }
        .unwrap_or_else(|| r.vcon_uuid.clone());
        json!({
            "system_id": self.cfg.system_id,
            "entity_id": entity,
            "entity_type": "vcon",
            "event_type": Self::event_type(step),
            "timestamp": crate::clock::rfc3339(r.ts_ns),
            "run": r.run,
            "chain": step.chain,
            "link": r.link_name(),
            "link_index": r.link_index,
            "hashes": step.hash.map(|h| json!({"vcon_sha256": h.sha256_hex})),
        })
    }

    /// One request: the record, or (with `batch`) an array of the records.
    async fn deliver(&self, steps: &[Step<'_>]) -> Result<Delivered, Failure> {
        let body = if self.cfg.batch {
            serde_json::Value::Array(steps.iter().map(|s| self.body(s)).collect())
        } else {
            self.body(&steps[0])
        };
        let mut req = self.http.post(&self.cfg.url).json(&body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let what = format!("POST {}", self.cfg.url);
        let resp = req.send().await.map_err(|e| Failure::from_reqwest_target(&e, &what))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            Ok(Delivered { attributes: vec![("http.response.status_code".into(), status.to_string())], skipped: false })
        } else {
            Err(Failure::from_http_status(status, retry::retry_after(resp.headers()), &what))
        }
    }
}

impl Tracer for Webhook {
    fn batches(&self) -> bool {
        self.cfg.batch
    }

    fn handle<'a>(&'a mut self, steps: &'a [Step<'a>]) -> BoxFuture<'a, Result<Delivered, Failure>> {
        Box::pin(self.deliver(steps))
    }
}

impl Build for Config {
    fn build(self) -> Result<Built, String> {
        Ok(Built::Consumer(Box::new(Webhook::new(self))))
    }
}
