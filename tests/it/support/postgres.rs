//! A throwaway PostgreSQL on a free port, run as the unprivileged user the install script created
//! (`$VCON_OTEL_PG_USER`; PostgreSQL refuses to run as root), trust authentication on 127.0.0.1.

use super::{env_path, free_port, wait_until};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    user: String,
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
        let user = std::env::var("VCON_OTEL_PG_USER").unwrap_or_else(|_| "vcon-otel-test".into());
        let dir = super::temp_dir();
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
        let pg = Postgres { port: free_port(), data, user, _dir: dir };
        pg.pg_ctl_start();
        pg
    }

    fn pg_ctl_start(&self) {
        let opts = format!("-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off", self.port, self.data.parent().unwrap().display());
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

    /// Runs a query with psql-free plumbing: a blocking tokio-postgres call.
    pub fn query_count(&self, sql: &str) -> i64 {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            c.query_one(sql, &[]).await.map(|row| row.get::<_, i64>(0)).unwrap_or(-1)
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}
