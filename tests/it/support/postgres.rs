//! A throwaway PostgreSQL on a free port, run as the unprivileged user the install script created
//! (`$VCON_OTEL_PG_USER`; PostgreSQL refuses to run as root), trust authentication on 127.0.0.1.
//! [`Postgres::start_tls`] runs it with `ssl = on` and a `pg_hba.conf` that refuses TCP connections
//! without TLS. The test's own queries go through the Unix socket, so they work in both modes.

use super::{env_path, free_port, wait_until};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    user: String,
    /// Extra server settings (`-c name=value`), for TLS.
    settings: String,
    _dir: tempfile::TempDir,
}

fn as_user(user: &str, program: &PathBuf) -> Command {
    if unsafe_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", user, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::init(None)
    }

    /// With `ssl = on`, the given server certificate and key (copied next to the data directory,
    /// key mode 0600 as PostgreSQL requires), and only TLS accepted over TCP (`hostssl` trust,
    /// `hostnossl` reject).
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Postgres {
        Postgres::init(Some((cert, key)))
    }

    fn init(tls: Option<(&std::path::Path, &std::path::Path)>) -> Postgres {
        let user = std::env::var("VCON_OTEL_PG_USER").unwrap_or_else(|_| "vcon-otel-test".into());
        let dir = super::temp_dir();
        let mut settings = String::new();
        if let Some((cert, key)) = tls {
            let (c, k) = (dir.path().join("server.pem"), dir.path().join("server.key"));
            std::fs::copy(cert, &c).unwrap();
            std::fs::copy(key, &k).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
            settings = format!(" -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}", c.display(), k.display());
        }
        if unsafe_is_root() {
            assert!(Command::new("chown").args(["-R", &user]).arg(dir.path()).status().unwrap().success());
        }
        let data = dir.path().join("data");
        let out = as_user(&user, &env_path("VCON_OTEL_INITDB"))
            .arg("-D").arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .expect("initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        if tls.is_some() {
            std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n").unwrap();
        }
        let pg = Postgres { port: free_port(), data, user, settings, _dir: dir };
        pg.pg_ctl_start();
        pg
    }

    fn pg_ctl_start(&self) {
        let opts = format!("-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off{}", self.port, self.data.parent().unwrap().display(), self.settings);
        let out = as_user(&self.user, &env_path("VCON_OTEL_PG_CTL"))
            .arg("-D").arg(&self.data)
            .args(["-o", &opts, "-l"]).arg(self.data.parent().unwrap().join("pg.log"))
            .args(["-w", "start"])
            .output()
            .expect("pg_ctl start");
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        assert!(wait_until(Duration::from_secs(15), || std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()));
    }

    fn stop(&self, mode: &str) {
        let _ = as_user(&self.user, &env_path("VCON_OTEL_PG_CTL")).arg("-D").arg(&self.data).args(["-m", mode, "-w", "stop"]).output();
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: open connections are cut) and starts it on the same port.
    pub fn restart(&self) {
        self.stop("fast");
        self.pg_ctl_start();
    }

    /// Connection settings for the Unix socket (no TLS needed; `local` is trusted in both modes).
    fn socket_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(self.data.parent().unwrap()).port(self.port).user("postgres").dbname("postgres");
        c
    }

    fn block_on<T>(&self, f: impl FnOnce(tokio_postgres::Client) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>>) -> T {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cfg = self.socket_config();
        rt.block_on(async move {
            let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect through the Unix socket");
            tokio::spawn(conn);
            f(c).await
        })
    }

    /// A count query (a blocking tokio-postgres call through the socket); -1 when it fails.
    pub fn query_count(&self, sql: &str) -> i64 {
        let sql = sql.to_string();
        self.block_on(|c| Box::pin(async move { c.query_one(sql.as_str(), &[]).await.map(|row| row.get::<_, i64>(0)).unwrap_or(-1) }))
    }

    /// Runs statements through the socket; panics on error.
    pub fn execute(&self, sql: &str) {
        let sql = sql.to_string();
        self.block_on(|c| Box::pin(async move { c.batch_execute(sql.as_str()).await.expect("batch_execute") }))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}
