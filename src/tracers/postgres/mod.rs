//! `postgres`: the seeds' database audit trail — one row per event in a PostgreSQL table that is
//! created if missing. Statements are parameterized; the table name is validated as an identifier
//! (`[A-Za-z_][A-Za-z0-9_]*`, optionally `schema.table`) and quoted, never interpolated raw. Rows are
//! written in batches (one transaction per batch, a multi-row INSERT), idempotent on redelivery
//! (`record_id` is unique: `{run}:{seq}`). A lost connection (server restart) is a retryable failure:
//! the next attempt reconnects, and the entries stay unacknowledged until the batch is committed.
//!
//! TLS ([`tls`]): `sslmode` disable / prefer / require / verify-ca / verify-full with `ssl_ca_file`
//! or the system roots, also from the URL's `sslmode`/`sslrootcert`. A failure that waiting does not
//! cure (certificate refused, no TLS on the server, authentication or `pg_hba.conf` refusal) is a
//! permanent failure: the runner gives up on the batch instead of retrying it as an outage, counts it
//! by reason and logs it as an ERROR at most once a minute (`tracers::give_up`).

pub mod tls;

use super::{Build, Built, Delivered, Step, Tracer};
use crate::retry::{Failure, Reason};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// `postgres://user:password@host:port/database[?sslmode=…&sslrootcert=…]` (or `url_env` naming
    /// a variable holding it). A key=value connection string works too, without sslmode/sslrootcert.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default = "default_table")]
    pub table: String,
    /// `disable` (default), `prefer`, `require`, `verify-ca` or `verify-full`, as libpq's sslmode.
    #[serde(default)]
    pub sslmode: Option<tls::SslMode>,
    /// PEM file of the CA that signed the server's certificate (`system`: the system roots, also
    /// the default for verify-ca/verify-full). Requires `sslmode`.
    #[serde(default)]
    pub ssl_ca_file: Option<PathBuf>,
}

fn default_table() -> String {
    "vcon_events".into()
}

/// Whether `t` is a plain identifier or `schema.table` of plain identifiers.
pub fn valid_table(t: &str) -> bool {
    let ident = |s: &str| {
        let mut c = s.chars();
        matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_') && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_') && s.len() <= 63
    };
    let parts: Vec<&str> = t.split('.').collect();
    (parts.len() == 1 || parts.len() == 2) && parts.iter().all(|p| ident(p))
}

pub struct Postgres {
    target: tls::Target,
    table: String,
    client: Option<tokio_postgres::Client>,
}

impl Postgres {
    pub fn new(cfg: Config) -> Result<Postgres, String> {
        let url = cfg.url.clone().or_else(|| cfg.url_env.as_ref().and_then(|v| std::env::var(v).ok())).ok_or("url (or url_env) is required")?;
        cfg.check()?;
        let table = cfg.table.split('.').map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(".");
        let target = tls::target(&url, cfg.sslmode, cfg.ssl_ca_file.as_deref())?;
        Ok(Postgres { target, table, client: None })
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, Failure> {
        let t = &self.target;
        let client = match &t.tls {
            None => {
                let (client, connection) = t.config.connect(tokio_postgres::NoTls).await.map_err(|e| tls::classify_connect(&e, t))?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
            }
            Some(make) => {
                let (client, connection) = t.config.connect(make.clone()).await.map_err(|e| tls::classify_connect(&e, t))?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
            }
        };
        Ok(client)
    }

    async fn client(&mut self) -> Result<&tokio_postgres::Client, Failure> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let client = self.connect().await?;
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {} (id BIGSERIAL PRIMARY KEY, record_id TEXT NOT NULL UNIQUE, vcon_uuid TEXT NOT NULL, \
                 run TEXT NOT NULL, event TEXT NOT NULL, chain TEXT, link TEXT, link_index INTEGER, ts TIMESTAMPTZ NOT NULL, \
                 content_sha256 TEXT, metadata JSONB NOT NULL)",
                self.table
            );
            client.batch_execute(&ddl).await.map_err(|e| classify(&e, "CREATE TABLE"))?;
            self.client = Some(client);
        }
        Ok(self.client.as_ref().expect("connected above"))
    }

    /// Writes one row per step in one transaction.
    async fn write(&mut self, steps: &[Step<'_>]) -> Result<Delivered, Failure> {
        if steps.is_empty() {
            return Ok(Delivered { skipped: true, ..Default::default() });
        }
        let table = self.table.clone();
        let rows: Vec<(String, String, String, String, Option<String>, Option<String>, Option<i32>, std::time::SystemTime, Option<String>, serde_json::Value)> = steps
            .iter()
            .map(|s| {
                let r = s.record;
                (
                    format!("{}:{}", r.run, r.seq.unwrap_or(r.ts_ns)),
                    r.vcon_uuid.clone(),
                    r.run.clone(),
                    super::webhook::Webhook::event_type(s).to_string(),
                    s.chain.map(str::to_string),
                    r.link_name().map(str::to_string),
                    r.link_index.map(|i| i as i32),
                    std::time::UNIX_EPOCH + std::time::Duration::from_nanos(r.ts_ns),
                    s.hash.map(|h| h.sha256_hex.clone()),
                    serde_json::json!({"source": "vcon-otel", "in_vcon_uuid": r.in_vcon_uuid, "out_vcon_uuid": r.out_vcon_uuid,
                        "error": r.error.as_ref().map(|e| e.error_type.clone())}),
                )
            })
            .collect();
        let client = self.client().await?;
        let mut sql = format!("INSERT INTO {table} (record_id, vcon_uuid, run, event, chain, link, link_index, ts, content_sha256, metadata) VALUES ");
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let b = i * 10;
            sql.push_str(&format!(
                "{}(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                if i > 0 { ", " } else { "" },
                b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10
            ));
            params.extend([&row.0 as &(dyn tokio_postgres::types::ToSql + Sync), &row.1, &row.2, &row.3, &row.4, &row.5, &row.6, &row.7, &row.8, &row.9]);
        }
        sql.push_str(" ON CONFLICT (record_id) DO NOTHING");
        let result = client.execute(sql.as_str(), &params).await;
        match result {
            Ok(n) => Ok(Delivered { attributes: vec![("db.rows_inserted".into(), n.to_string())], skipped: false }),
            Err(e) => {
                let err = classify(&e, "INSERT");
                self.client = None;
                Err(err)
            }
        }
    }
}

/// Connection problems and server shutdowns are retryable; constraint or syntax errors are not.
pub(crate) fn classify(e: &tokio_postgres::Error, what: &str) -> Failure {
    let retryable = e.is_closed()
        || e.as_db_error().is_none()
        || e.code().is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57") || c.code().starts_with("53"));
    if retryable {
        Failure::retryable(Reason::Transport, format!("{what}: {e}"))
    } else {
        Failure::permanent(Reason::Rejected, format!("{what}: {e}"))
    }
}

impl Tracer for Postgres {
    fn batches(&self) -> bool {
        true
    }

    fn handle<'a>(&'a mut self, steps: &'a [Step<'a>]) -> BoxFuture<'a, Result<Delivered, Failure>> {
        Box::pin(self.write(steps))
    }
}

impl Build for Config {
    /// The table name, and the TLS settings (sslmode and CA consistent between the options and
    /// the URL, when the URL is given or `url_env`'s variable is set). The CA file is read at build.
    fn check(&self) -> Result<(), String> {
        if !valid_table(&self.table) {
            return Err(format!("table {:?} is not an identifier (letters, digits, _; optionally schema.table)", self.table));
        }
        let url = self.url.clone().or_else(|| self.url_env.as_ref().and_then(|v| std::env::var(v).ok())).unwrap_or_else(|| "postgres://localhost/postgres".into());
        tls::check(&url, self.sslmode, self.ssl_ca_file.as_deref())
    }

    fn build(self) -> Result<Built, String> {
        Ok(Built::Consumer(Box::new(Postgres::new(self)?)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_identifiers_are_accepted_as_table_names() {
        for ok in ["vcon_events", "audit.vcon_events", "_t1"] {
            assert!(super::valid_table(ok), "{ok}");
        }
        for bad in ["vcon events", "t; DROP TABLE x", "1t", "a.b.c", "\"t\"", ""] {
            assert!(!super::valid_table(bad), "{bad}");
        }
    }
}
