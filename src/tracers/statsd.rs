//! `statsd`: the seeds' metrics tracer over UDP — a counter per event
//! (`{prefix}.events.{event}:1|c`), timings for paired events (`{prefix}.duration.link:MS|ms` from a
//! link's start to its end, `{prefix}.duration.chain:MS|ms` for a run), and `{prefix}.errors.total`.

use super::{Build, Built, Delivered, Step, Tracer};
use crate::retry::{Failure, Reason};
use futures::future::BoxFuture;
use crate::event::EventKind;
use serde::Deserialize;

/// Options of the `statsd` module: where to send, and the metric name prefix.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    8125
}
fn default_prefix() -> String {
    "vcon".into()
}

pub struct Statsd {
    cfg: Config,
    socket: std::net::UdpSocket,
}

impl Statsd {
    pub fn new(cfg: Config) -> Result<Statsd, String> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Statsd { cfg, socket })
    }

    /// The lines one record produces.
    pub fn lines(&self, step: &Step<'_>) -> Vec<String> {
        let r = step.record;
        let p = &self.cfg.prefix;
        let event = super::webhook::Webhook::event_type(step);
        let mut out = vec![format!("{p}.events.{event}:1|c")];
        let ms = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e6;
        match r.event {
            EventKind::TracerCall if r.link_index.unwrap_or(-1) >= 0 => {
                if let Some(s) = r.start_ns {
                    out.push(format!("{p}.duration.link:{:.3}|ms", ms(s, r.ts_ns)));
                }
            }
            EventKind::LinkComplete | EventKind::LinkError | EventKind::StorageComplete | EventKind::StorageError => {
                if let Some(s) = r.start_ns {
                    let base = if r.event.as_str().starts_with("link") { "link" } else { "storage" };
                    out.push(format!("{p}.duration.{base}:{:.3}|ms", ms(s, r.ts_ns)));
                }
            }
            _ => {}
        }
        if r.ends_run() {
            if let Some(s) = r.run_start_ns {
                out.push(format!("{p}.duration.chain:{:.3}|ms", ms(s, r.ts_ns)));
            }
        }
        if event.ends_with("_error") {
            out.push(format!("{p}.errors.total:1|c"));
        }
        out
    }

    fn send(&self, step: &Step<'_>) -> Result<Delivered, Failure> {
        let addr = format!("{}:{}", self.cfg.host, self.cfg.port);
        let payload = self.lines(step).join("\n");
        self.socket.send_to(payload.as_bytes(), &addr).map_err(|e| Failure::retryable(Reason::Transport, format!("UDP send to {addr}: {e}")))?;
        Ok(Delivered::default())
    }
}

impl Tracer for Statsd {
    fn handle<'a>(&'a mut self, steps: &'a [Step<'a>]) -> BoxFuture<'a, Result<Delivered, Failure>> {
        let r = self.send(&steps[0]);
        Box::pin(std::future::ready(r))
    }
}

impl Build for Config {
    fn build(self) -> Result<Built, String> {
        Ok(Built::Consumer(Box::new(Statsd::new(self)?)))
    }
}
