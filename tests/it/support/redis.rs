//! A real Redis with the RedisJSON module, on a free port, killed on drop.

use super::{env_path, free_port, wait_until};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        for _ in 0..5 {
            let port = free_port();
            let mut s = RedisServer { port, child: None };
            if s.spawn() {
                return s;
            }
        }
        panic!("redis-server did not start on any free port");
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new(env_path("VCON_OTEL_REDIS_SERVER"))
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--loadmodule")
            .arg(env_path("VCON_OTEL_REJSON"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let ok = wait_until(Duration::from_secs(5), || self.conn_opt().is_some());
        if !ok {
            self.stop();
        }
        ok
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn conn_opt(&self) -> Option<redis::Connection> {
        let mut c = redis::Client::open(self.url()).ok()?.get_connection().ok()?;
        redis::cmd("PING").query::<String>(&mut c).ok()?;
        Some(c)
    }

    /// A blocking connection for test set-up and assertions.
    pub fn conn(&self) -> redis::Connection {
        self.conn_opt().expect("redis connection")
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server process by its PID.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let ok = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid} failed");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops and starts again on the same port (contents are lost: no persistence).
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "redis-server did not restart on port {}", self.port);
    }

    /// Appends one record to a stream in field `r`, as producers do.
    pub fn xadd(&self, stream: &str, record: &str) -> String {
        redis::cmd("XADD").arg(stream).arg("*").arg("r").arg(record).query(&mut self.conn()).expect("XADD")
    }

    /// Entries of the group not yet acknowledged.
    /// Entries of the stream not yet delivered to `group` (`XINFO GROUPS` lag; 0 when unknown).
    pub fn lag(&self, stream: &str, group: &str) -> i64 {
        let groups: Vec<std::collections::HashMap<String, redis::Value>> =
            redis::cmd("XINFO").arg("GROUPS").arg(stream).query(&mut self.conn()).unwrap_or_default();
        groups
            .iter()
            .find(|g| matches!(g.get("name"), Some(redis::Value::BulkString(b)) if b == group.as_bytes()))
            .and_then(|g| match g.get("lag") {
                Some(redis::Value::Int(n)) => Some(*n),
                _ => None,
            })
            .unwrap_or(0)
    }

    pub fn pending(&self, stream: &str, group: &str) -> i64 {
        let v: redis::Value = redis::cmd("XPENDING").arg(stream).arg(group).query(&mut self.conn()).expect("XPENDING");
        match v {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => *n,
                _ => 0,
            },
            _ => 0,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
