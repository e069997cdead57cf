//! The terminal view: prints each finished span tree when its root span arrives.
//!
//! Child spans arrive before their root (they are exported as soon as their step ends), so they
//! wait here, keyed by trace ID, for at most `MAX_WAITING` traces; beyond that the oldest waiting
//! trace is printed without its root.

use crate::otlp::{attr_text, status, ExportTraceServiceRequest, Span};
use std::collections::{HashMap, VecDeque};
use std::io::Write;

const MAX_WAITING: usize = 10_000;
const SHOWN: &[&str] = &[
    "vcon.uuid", "vcon.run.outcome", "vcon.link.index", "vcon.link.outcome", "vcon.uuid.before", "vcon.uuid.after",
    "vcon.uuid.final", "vcon.hash.sha256", "error.type",
];

/// Collects spans and prints complete trees to a writer (stdout by default).
pub struct Terminal {
    waiting: HashMap<Vec<u8>, Vec<Span>>,
    order: VecDeque<Vec<u8>>,
    out: Box<dyn Write + Send>,
}

impl Default for Terminal {
    fn default() -> Self {
        Terminal::new(Box::new(std::io::stdout()))
    }
}

impl Terminal {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Terminal { waiting: HashMap::new(), order: VecDeque::new(), out }
    }

    /// Takes the spans of one request; prints every tree whose root is now known.
    pub fn show(&mut self, req: &ExportTraceServiceRequest) {
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let is_root = s.parent_span_id.is_empty();
                    if !self.waiting.contains_key(&s.trace_id) {
                        self.order.push_back(s.trace_id.clone());
                    }
                    self.waiting.entry(s.trace_id.clone()).or_default().push(s.clone());
                    if is_root {
                        let spans = self.waiting.remove(&s.trace_id).unwrap_or_default();
                        self.print(&spans);
                    }
                }
            }
        }
        while self.waiting.len() > MAX_WAITING {
            if let Some(t) = self.order.pop_front() {
                if let Some(spans) = self.waiting.remove(&t) {
                    self.print(&spans);
                }
            }
        }
        if self.order.len() > 2 * MAX_WAITING {
            let waiting = &self.waiting;
            self.order.retain(|t| waiting.contains_key(t));
        }
    }

    fn print(&mut self, spans: &[Span]) {
        let mut text = String::new();
        let root = spans.iter().find(|s| s.parent_span_id.is_empty());
        let mut children: Vec<&Span> = spans.iter().filter(|s| !s.parent_span_id.is_empty()).collect();
        children.sort_by_key(|s| (s.start_time_unix_nano, s.end_time_unix_nano));
        text.push_str(&format!("trace {}\n", hex::encode(&spans[0].trace_id)));
        if let Some(r) = root {
            text.push_str(&line(r, ""));
        } else {
            text.push_str("  (root span not seen)\n");
        }
        for (i, c) in children.iter().enumerate() {
            let branch = if i + 1 == children.len() { "└─ " } else { "├─ " };
            text.push_str(&line(c, branch));
        }
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

fn line(s: &Span, branch: &str) -> String {
    let ms = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6;
    let err = s.status.as_ref().is_some_and(|st| st.code == status::StatusCode::Error as i32);
    let attrs: Vec<String> = SHOWN
        .iter()
        .filter_map(|k| s.attributes.iter().find(|kv| kv.key == *k))
        .map(|kv| {
            let v = attr_text(kv);
            let v = if kv.key.starts_with("vcon.hash") { format!("{}…", &v[..v.len().min(12)]) } else { v };
            format!("{}={}", kv.key, v)
        })
        .collect();
    let events: Vec<&str> = s.events.iter().map(|e| e.name.as_str()).collect();
    format!(
        "  {branch}{} [{ms:.1} ms]{} {}{}\n",
        s.name,
        if err { " ERROR" } else { "" },
        attrs.join(" "),
        if events.is_empty() { String::new() } else { format!(" events={}", events.join(",")) }
    )
}
