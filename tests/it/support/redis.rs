//! A real Redis on a free port, killed on drop: plain with RedisJSON ([`RedisServer::start`]), or as
//! production runs it ([`RedisServer::start_with`]): TLS only (`--port 0 --tls-port`, certificates
//! made with `openssl` by [`Certs::make`]), optionally requiring client certificates, a password on
//! the `default` user and ACL users from an ACL file ([`acl_file`]), with or without RedisJSON.

use super::{env_path, free_port, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `default` user's password on servers started with [`Options::admin_password`].
pub const ADMIN_PASSWORD: &str = "admin-Pw-7c2e";

/// PEM files in a temporary directory: `ca` signed `server` (for IP 127.0.0.1) and `client`;
/// `other_ca` signed nothing the server uses. EC keys; the extensions strict verifiers want.
pub struct Certs {
    _dir: tempfile::TempDir,
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Certs {
    pub fn make() -> Certs {
        let tmp = super::temp_dir();
        let d = tmp.path().to_path_buf();
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(&d).output().expect("openssl (scripts/install-test-deps.sh installs it)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        for ca in ["ca", "other_ca"] {
            let (key, pem, subj) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN=vcon-otel test {ca}"));
            let mut a = vec!["req", "-x509"];
            a.extend(ec);
            a.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
            a.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            run(&a);
        }
        for (name, usage, san) in [("server", "serverAuth", "subjectAltName=IP:127.0.0.1\n"), ("client", "clientAuth", "")] {
            let ext = format!("{san}authorityKeyIdentifier=keyid\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n");
            std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
            let (key, csr, pem, extf, subj) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"), format!("/CN={name}"));
            let mut a = vec!["req"];
            a.extend(ec);
            a.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            run(&a);
            run(&["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", &pem, "-days", "2", "-extfile", &extf]);
        }
        let p = |n: &str| d.join(n);
        Certs {
            ca: p("ca.pem"),
            other_ca: p("other_ca.pem"),
            server_cert: p("server.pem"),
            server_key: p("server.key"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
            dir: d,
            _dir: tmp,
        }
    }
}

/// The rules of `config/redis-acl/NAME.acl`: one per non-comment line, in order.
pub fn acl_rules(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/redis-acl").join(format!("{name}.acl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

/// An ACL file as `docs/operations.md` describes it: the `default` user with [`ADMIN_PASSWORD`] and
/// all rights, then one line per user: `user NAME on #<sha256 of the password> RULES…`.
pub fn acl_file(dir: &Path, users: &[(&str, &str, Vec<String>)]) -> PathBuf {
    use sha2::Digest;
    let mut text = format!("user default on >{ADMIN_PASSWORD} ~* &* +@all\n");
    for (name, password, rules) in users {
        text += &format!("user {name} on #{} {}\n", hex::encode(sha2::Sha256::digest(password.as_bytes())), rules.join(" "));
    }
    let path = dir.join("users.acl");
    std::fs::write(&path, text).unwrap();
    path
}

/// How a server runs.
#[derive(Clone, Default)]
pub struct Options {
    /// Load RedisJSON.
    pub json: bool,
    /// Serve TLS only, with `certs` (server certificate, `ca` as the CA for client certificates).
    pub tls: Option<TlsOptions>,
    /// Users from this ACL file (it must define `default` with [`ADMIN_PASSWORD`]).
    pub aclfile: Option<PathBuf>,
    /// `requirepass` [`ADMIN_PASSWORD`] (without an ACL file).
    pub admin_password: bool,
}

#[derive(Clone)]
pub struct TlsOptions {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The test's own (admin) connection's client certificate.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// `--tls-auth-clients yes` (else `no`).
    pub auth_clients: bool,
}

impl TlsOptions {
    pub fn from(c: &Certs, auth_clients: bool) -> TlsOptions {
        TlsOptions {
            ca: c.ca.clone(),
            server_cert: c.server_cert.clone(),
            server_key: c.server_key.clone(),
            client_cert: c.client_cert.clone(),
            client_key: c.client_key.clone(),
            auth_clients,
        }
    }
}

pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    opts: Options,
}

impl RedisServer {
    /// Plain, with RedisJSON, no password.
    pub fn start() -> RedisServer {
        RedisServer::start_with(Options { json: true, ..Options::default() })
    }

    pub fn start_with(opts: Options) -> RedisServer {
        for _ in 0..5 {
            let mut s = RedisServer::stopped(opts.clone());
            if s.spawn() {
                return s;
            }
        }
        panic!("redis-server did not start on any free port");
    }

    /// A server with a port chosen but not started yet ([`RedisServer::restart`] starts it).
    pub fn stopped(opts: Options) -> RedisServer {
        RedisServer { port: free_port(), child: None, opts }
    }

    fn args(&self) -> Vec<String> {
        let port = self.port.to_string();
        let mut a: Vec<String> = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"].map(String::from).to_vec();
        match &self.opts.tls {
            Some(t) => {
                a.extend(["--port".into(), "0".into(), "--tls-port".into(), port]);
                for (k, v) in [("--tls-cert-file", &t.server_cert), ("--tls-key-file", &t.server_key), ("--tls-ca-cert-file", &t.ca)] {
                    a.extend([k.to_string(), v.display().to_string()]);
                }
                a.extend(["--tls-auth-clients".into(), if t.auth_clients { "yes" } else { "no" }.into()]);
            }
            None => a.extend(["--port".into(), port]),
        }
        if let Some(f) = &self.opts.aclfile {
            a.extend(["--aclfile".into(), f.display().to_string()]);
        }
        if self.opts.admin_password {
            a.extend(["--requirepass".into(), ADMIN_PASSWORD.into()]);
        }
        if self.opts.json {
            a.extend(["--loadmodule".into(), env_path("VCON_OTEL_REJSON").display().to_string()]);
        }
        a
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new(env_path("VCON_OTEL_REDIS_SERVER")).args(self.args()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn redis-server");
        self.child = Some(child);
        let ok = wait_until(Duration::from_secs(5), || self.conn_opt().is_some());
        if !ok {
            self.stop();
        }
        ok
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the test's own connection (the `default` user, with its password if any).
    pub fn url(&self) -> String {
        let auth = if self.opts.aclfile.is_some() || self.opts.admin_password { format!(":{ADMIN_PASSWORD}@") } else { String::new() };
        let scheme = if self.opts.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://{auth}127.0.0.1:{}", self.port)
    }

    /// A URL naming `user` (no password), for the bridge and the producer.
    pub fn user_url(&self, user: &str) -> String {
        let scheme = if self.opts.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://{user}@127.0.0.1:{}", self.port)
    }

    fn conn_opt(&self) -> Option<redis::Connection> {
        let client = match &self.opts.tls {
            Some(t) => {
                vcon_otel::tls::install_crypto_provider();
                let certs = redis::TlsCertificates {
                    client_tls: Some(redis::ClientTlsConfig { client_cert: std::fs::read(&t.client_cert).ok()?, client_key: std::fs::read(&t.client_key).ok()? }),
                    root_cert: Some(std::fs::read(&t.ca).ok()?),
                };
                redis::Client::build_with_tls(self.url(), certs).ok()?
            }
            None => redis::Client::open(self.url()).ok()?,
        };
        let mut c = client.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
        redis::cmd("PING").query::<String>(&mut c).ok()?;
        Some(c)
    }

    /// A blocking connection for test set-up and assertions (the `default` user).
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

    /// Stops (if running) and starts again on the same port, with the same options (contents are
    /// lost: no persistence; users from an ACL file are read again).
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "redis-server did not (re)start on port {}", self.port);
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

    /// How often the server ran `command` (lower case, e.g. `xautoclaim`), from `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(&mut self.conn()).expect("INFO");
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    /// `ACL LOG` entries: what the server refused (empty when nothing was).
    pub fn acl_log(&self) -> Vec<redis::Value> {
        redis::cmd("ACL").arg("LOG").query(&mut self.conn()).expect("ACL LOG")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
