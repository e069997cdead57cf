//! `jlinc`: the JLINC zero-knowledge auditing tracer, speaking the JLINC data-store API exactly as
//! vCon Server's `tracers/jlinc` does (`docs/tracers.md`), plus what upstream lacks: a timeout,
//! status checks, retries with backoff, and `dlq_vcon_on_error` that fires when the API fails.
//!
//! Per tracer call — the record `tracer_call`, or with only the hooks installed the records that
//! stand for one ([`call_index`]: `chain_start` without `tracer` for the pre-chain call, and
//! `link_complete`), so every mode sends N+1 events per run of N links: `POST {data_store_api_url}/api/v1/data/{path}` with
//! `Authorization: Bearer {data_store_api_key}` — `entity/domains/get` once per process (the first
//! domain is used), `entity/get` then `entity/create` for each entity not seen yet (cached),
//! `event/produce` with the step's `Vcon.hash` (or the vCon itself when `hash_event_data` is false).
//!
//! Which document is hashed: `intended` mode, the one the step produced (the step's own hash; with
//! only the hooks, after a UUID swap that is the document the link was given, `vcon.hash.subject =
//! input`, the only one they can see). `upstream` mode, what upstream reads — `vcon:{out_vcon_uuid}`,
//! the UUID before the link — so after a swap the document the link was given: the previous step's
//! hash from the run's step record ([`Step::given`]).

/// The tracer-call index a record stands for, or `None` when it stands for no call.
fn call_index(r: &crate::event::Record) -> Option<i64> {
    match r.event {
        EventKind::TracerCall => Some(r.link_index.unwrap_or(-1)),
        // With a tracer installed, `chain_start` names it and the tracer's own calls are sent.
        EventKind::ChainStart if r.tracer.is_none() => Some(-1),
        EventKind::LinkComplete => r.link_index,
        _ => None,
    }
}

/// A UUID swap the record shows (conserver naming: `in` is the UUID the link returned).
fn swapped(r: &crate::event::Record) -> bool {
    matches!((&r.in_vcon_uuid, &r.out_vcon_uuid), (Some(i), Some(o)) if i != o)
}

use super::{Build, Built, Delivered, Step, Tracer};
use crate::retry::{self, Failure, Reason};
use futures::future::BoxFuture;
use crate::event::EventKind;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;

fn nil() -> String {
    "00000000-0000-0000-0000-000000000000".into()
}
fn yes() -> bool {
    true
}

/// Options (upstream's names; `*_env` read a secret from the environment instead).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub data_store_api_url: String,
    #[serde(default)]
    pub data_store_api_key: Option<String>,
    #[serde(default)]
    pub data_store_api_key_env: Option<String>,
    #[serde(default)]
    pub archive_api_url: String,
    #[serde(default)]
    pub archive_api_key: Option<String>,
    #[serde(default)]
    pub archive_api_key_env: Option<String>,
    pub system_prefix: String,
    /// The nil UUID means general auditing.
    #[serde(default = "nil")]
    pub agreement_id: String,
    /// Send `{"hash": Vcon.hash}` (default) instead of the whole vCon.
    #[serde(default = "yes")]
    pub hash_event_data: bool,
    /// `intended` (default): the sender at link i is links[i]. `upstream`: reproduce vCon Server's
    /// off-by-one (links[i-1], so at i = 0 the *last* link), for audit trails byte-compatible with it.
    #[serde(default)]
    pub sender_mode: Option<String>,
}

pub struct Jlinc {
    cfg: Config,
    key: String,
    archive_key: String,
    http: reqwest::Client,
    domain: Option<String>,
    entities: HashSet<String>,
}

/// Upstream's `_sanitize`: lowercase, then every char outside `[a-z0-9._-]` becomes `_`.
pub fn sanitize(s: &str) -> String {
    s.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect()
}

fn secret(value: &Option<String>, env: &Option<String>) -> String {
    value.clone().or_else(|| env.as_ref().and_then(|v| std::env::var(v).ok())).unwrap_or_default()
}

impl Jlinc {
    pub fn new(cfg: Config) -> Jlinc {
        crate::tls::install_crypto_provider();
        let key = secret(&cfg.data_store_api_key, &cfg.data_store_api_key_env);
        let archive_key = secret(&cfg.archive_api_key, &cfg.archive_api_key_env);
        Jlinc { cfg, key, archive_key, http: reqwest::Client::new(), domain: None, entities: HashSet::new() }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let url = format!("{}/api/v1/data/{path}", self.cfg.data_store_api_url.trim_end_matches('/'));
        let what = format!("POST {url}");
        let resp = self.http.post(&url).bearer_auth(&self.key).json(body).send().await.map_err(|e| Failure::from_reqwest_target(&e, &what))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(Failure::from_http_status(status, retry::retry_after(resp.headers()), &what));
        }
        resp.json::<Value>().await.map_err(|e| Failure::permanent(Reason::Rejected, format!("{what}: the answer is not JSON: {e}")))
    }

    async fn ensure_entity(&mut self, name: &str) -> Result<(), Failure> {
        if self.entities.contains(name) {
            return Ok(());
        }
        let mut e = self.post("entity/get", &json!({"shortName": name})).await?;
        if e.get("didDoc").is_none() {
            e = self.post("entity/create", &json!({"shortName": name})).await?;
        }
        if e.get("didDoc").is_none() {
            return Err(Failure::permanent(Reason::Rejected, format!("JLINC entity {name}: neither found nor created (no didDoc)")));
        }
        self.entities.insert(name.to_string());
        Ok(())
    }

    async fn deliver(&mut self, step: &Step<'_>) -> Result<Delivered, Failure> {
        let r = step.record;
        let Some(i) = call_index(r) else {
            return Ok(Delivered { skipped: true, ..Default::default() });
        };
        let links = r.links.clone().unwrap_or_default();
        let prefix = sanitize(&self.cfg.system_prefix);
        if self.domain.is_none() {
            let domains = self.post("entity/domains/get", &json!({})).await?;
            let first = domains.as_array().and_then(|a| a.first()).and_then(|d| d.as_str()).ok_or_else(|| Failure::permanent(Reason::Rejected, "JLINC entity/domains/get returned no domain"))?;
            self.domain = Some(first.to_string());
        }
        let domain = self.domain.clone().expect("set above");
        let system = format!("{prefix}-system@{domain}");
        self.ensure_entity(&system).await?;
        let entity = |link: &str| format!("{prefix}-{}@{domain}", sanitize(link));
        let upstream = self.cfg.sender_mode.as_deref() == Some("upstream");
        let n = links.len() as i64;
        let sender = if i < 0 {
            system.clone()
        } else if upstream {
            // Python's links[i-1]: at i = 0 that is the last link.
            entity(&links[((i - 1).rem_euclid(n.max(1))) as usize])
        } else {
            entity(&links[i as usize])
        };
        let recipient = if i < n - 1 { entity(&links[(i + 1) as usize]) } else { system.clone() };
        if sender != system {
            self.ensure_entity(&sender).await?;
        }
        if recipient != system {
            self.ensure_entity(&recipient).await?;
        }
        let data = if self.cfg.hash_event_data {
            let (h, which) = if self.wants_given(r) { (step.given, "the previous step's") } else { (step.hash, "this step's") };
            let h = h.ok_or_else(|| {
                Failure::permanent(Reason::Rejected, format!("{which} compliance hash is unknown (no snapshot, or it expired before it was hashed: see vcon.hash.unknown on the link span)"))
            })?;
            json!({"hash": h.sha256_hex})
        } else {
            let text = step.vcon_json.ok_or_else(|| Failure::permanent(Reason::Rejected, "no vCon snapshot for this step"))?;
            serde_json::from_slice::<Value>(text).map_err(|e| Failure::permanent(Reason::Rejected, format!("snapshot is not JSON: {e}")))?
        };
        let body = json!({
            "type": "data",
            "senderShortName": sender,
            "recipientShortName": recipient,
            "agreementId": self.cfg.agreement_id,
            "data": data,
            "meta": {"in_vcon_uuid": r.in_vcon_uuid.as_ref().or(r.out_vcon_uuid.as_ref()).unwrap_or(&r.vcon_uuid),
                     "out_vcon_uuid": r.out_vcon_uuid.as_ref().unwrap_or(&r.vcon_uuid)},
            "archive": {"url": self.cfg.archive_api_url, "key": self.archive_key},
        });
        let resp = self.post("event/produce", &body).await?;
        let event_id = resp.pointer("/created/eventId").and_then(|v| v.as_str()).map(str::to_string);
        let sig = resp.pointer("/processed/auditData/signatures/0/type").and_then(|v| v.as_str()).map(str::to_string);
        let mut d = Delivered::default();
        if let Some(e) = event_id {
            d.attributes.push(("jlinc.event_id".into(), e));
        } else {
            return Err(Failure::permanent(Reason::Rejected, "JLINC event/produce answered without created.eventId"));
        }
        if let Some(s) = sig {
            d.attributes.push(("jlinc.signature_type".into(), s));
        }
        d.attributes.push(("jlinc.sender".into(), sender));
        d.attributes.push(("jlinc.recipient".into(), recipient));
        Ok(d)
    }
}

impl Tracer for Jlinc {
    fn needs_vcon(&self) -> bool {
        !self.cfg.hash_event_data
    }

    fn wants_given(&self, r: &crate::event::Record) -> bool {
        self.cfg.sender_mode.as_deref() == Some("upstream") && self.cfg.hash_event_data && swapped(r) && !r.hash_of_input && call_index(r).is_some()
    }

    fn handle<'a>(&'a mut self, steps: &'a [Step<'a>]) -> BoxFuture<'a, Result<Delivered, Failure>> {
        Box::pin(self.deliver(&steps[0]))
    }
}

impl Build for Config {
    fn check(&self) -> Result<(), String> {
        match self.sender_mode.as_deref() {
            None | Some("intended") | Some("upstream") => Ok(()),
            Some(other) => Err(format!("sender_mode {other:?} is not intended or upstream")),
        }
    }

    fn build(self) -> Result<Built, String> {
        Ok(Built::Consumer(Box::new(Jlinc::new(self))))
    }
}
