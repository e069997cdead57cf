//! rotel (`rotel-agent`, an OpenTelemetry collector written in Rust, from PyPI) as an independent
//! OTLP receiver: gRPC and HTTP on free loopback ports, printing every received span in its
//! "detailed" debug format, which [`Rotel::spans`] parses.

use super::{env_path, free_port, wait_until};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Rotel {
    child: Child,
    pub grpc_port: u16,
    pub http_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A span as rotel printed it.
#[derive(Debug, Clone, Default)]
pub struct RotelSpan {
    pub trace_id: String,
    pub parent_id: String,
    pub span_id: String,
    pub name: String,
    pub kind: String,
    pub attributes: HashMap<String, String>,
}

impl Rotel {
    pub fn start() -> Rotel {
        let dir = super::temp_dir();
        let log = dir.path().join("rotel.log");
        let (grpc_port, http_port) = (free_port(), free_port());
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env_path("VCON_OTEL_ROTEL"))
            .args(["start", "--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
            .args(["--exporter", "blackhole", "--debug-log", "traces", "--debug-log-verbosity", "detailed"])
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn rotel-agent");
        let r = Rotel { child, grpc_port, http_port, log, _dir: dir };
        assert!(
            wait_until(Duration::from_secs(15), || std::net::TcpStream::connect(("127.0.0.1", grpc_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok()),
            "rotel did not start: {}",
            r.output()
        );
        r
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every span printed so far.
    pub fn spans(&self) -> Vec<RotelSpan> {
        parse(&self.output())
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(line: &str, name: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix(name)?;
    Some(rest.trim_start().strip_prefix(':')?.trim().to_string())
}

/// Parses rotel's detailed trace debug output.
pub fn parse(text: &str) -> Vec<RotelSpan> {
    let mut spans = Vec::new();
    let mut cur: Option<RotelSpan> = None;
    let mut in_attrs = false;
    for line in text.lines() {
        if line.starts_with("Span #") || line.starts_with("ResourceSpans #") {
            spans.extend(cur.take());
            in_attrs = false;
            if line.starts_with("Span #") {
                cur = Some(RotelSpan::default());
            }
            continue;
        }
        let Some(s) = cur.as_mut() else { continue };
        if let Some(v) = field(line, "Trace ID") {
            s.trace_id = v;
        } else if let Some(v) = field(line, "Parent ID") {
            s.parent_id = v;
        } else if line.trim_start().starts_with("ID ") || line.trim_start().starts_with("ID:") {
            s.span_id = field(line, "ID").unwrap_or_default();
        } else if let Some(v) = field(line, "Name") {
            s.name = v;
        } else if let Some(v) = field(line, "Kind") {
            s.kind = v;
        } else if line == "Attributes:" {
            in_attrs = true;
        } else if line == "Events:" || line == "Links:" || line.starts_with("Status") {
            in_attrs = false;
        } else if in_attrs && line.starts_with("     -> ") {
            let kv = &line["     -> ".len()..];
            if let Some((k, v)) = kv.split_once(": ") {
                let v = v.find('(').map(|i| v[i + 1..v.len() - 1].to_string()).unwrap_or_else(|| v.to_string());
                s.attributes.insert(k.to_string(), v);
            }
        }
    }
    spans.extend(cur);
    spans
}
