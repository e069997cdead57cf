//! The `vcon-otel` binary as a child process, with its output in a file.

use super::{free_port, wait_until};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Bridge {
    child: Option<Child>,
    pub admin_port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_vcon-otel")
}

impl Bridge {
    /// `vcon-otel run --config <yaml>` with the admin listener on a free port; waits for /readyz.
    pub fn run(config_yaml: &str) -> Bridge {
        Bridge::run_with_env(config_yaml, &[])
    }

    /// `run` with extra environment variables for the process.
    pub fn run_with_env(config_yaml: &str, env: &[(&str, &str)]) -> Bridge {
        let dir = super::temp_dir();
        let cfg = dir.path().join("vcon-otel.yml");
        std::fs::write(&cfg, config_yaml).unwrap();
        let admin_port = free_port();
        let log = dir.path().join("bridge.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary())
            .args(["run", "--config", cfg.to_str().unwrap(), "--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .env("RUST_LOG", "info,vcon_otel=debug")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .envs(env.iter().copied())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn vcon-otel");
        let b = Bridge { child: Some(child), admin_port, log, _dir: dir };
        assert!(
            wait_until(Duration::from_secs(20), || b.get("/readyz").is_some_and(|(s, _)| s == 200)),
            "bridge never became ready:\n{}",
            b.output()
        );
        b
    }

    /// Stops the process with SIGKILL: no draining, no flushing.
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        for _ in 0..400 {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok().and_then(|s| s.code())
    }

    /// The process ID while it runs (for /proc readings).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Resident memory of the process in bytes (`VmRSS` of /proc/PID/status).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kb = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()?;
        Some(kb * 1024)
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A plain HTTP/1.0 GET on the admin listener: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.admin_port, path)
    }

    pub fn metrics_text(&self) -> String {
        self.get("/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// The value of a sample whose name and labels contain all of `parts`, e.g.
    /// `metric_value(&["vcon_otel_runs_total{", "outcome=\"complete\""])`.
    pub fn metric_value(&self, parts: &[&str]) -> Option<f64> {
        metric_value(&self.metrics_text(), parts)
    }
}

pub fn metric_value(text: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .reduce(|a, b| a + b)
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill_hard();
    }
}
