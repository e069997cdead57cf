//! A real Prometheus on a free port scraping one target every second, killed on drop; queried
//! through its HTTP API.

use super::bridge::http_get;
use super::{env_path, free_port, wait_until};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Prometheus {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `127.0.0.1:{target_port}/metrics` (job `vcon-otel`) every second.
    pub fn scraping(target_port: u16) -> Prometheus {
        let dir = super::temp_dir();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!("global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n  - job_name: vcon-otel\n    static_configs: [{{targets: [\"127.0.0.1:{target_port}\"]}}]\n"),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(env_path("VCON_OTEL_PROMETHEUS"))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn prometheus");
        let p = Prometheus { child, port, dir };
        assert!(wait_until(Duration::from_secs(20), || p.api("/-/ready").is_some_and(|(s, _)| s == 200)), "prometheus never became ready:\n{}", p.log());
        p
    }

    fn api(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The target's state as `/api/v1/targets` reports it: (health, lastError).
    pub fn target(&self) -> Option<(String, String)> {
        let (_, body) = self.api("/api/v1/targets")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let t = v["data"]["activeTargets"].get(0)?;
        Some((t["health"].as_str()?.to_string(), t["lastError"].as_str().unwrap_or_default().to_string()))
    }

    /// The value of an instant query that returns one sample (e.g. a `count(...)`).
    pub fn query_value(&self, promql: &str) -> Option<f64> {
        let q: String = promql.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        let (_, body) = self.api(&format!("/api/v1/query?query={q}"))?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"].get(0)?["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
