//! The `vcon-otel` command: parse arguments, load config, run, exit codes.
//!
//! Exit codes of `run` and `check-config` (sysexits.h; `Class::exit_code` in `stream::connect`):
//! 0 success; 1 other runtime failure; 69 a module Redis needs is not loaded (EX_UNAVAILABLE);
//! 75 Redis not reachable in time, `check-config --connect` only (EX_TEMPFAIL); 76 TLS handshake or
//! certificate check failed (EX_PROTOCOL); 77 credentials refused, or a command refused by the
//! Redis ACL (EX_NOPERM); 78 invalid configuration (EX_CONFIG).

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use vcon_otel::stream::connect::{ConnectError, Refusal};
use vcon_otel::{config, demo, Bridge, Listeners};

#[derive(Parser)]
#[command(name = "vcon-otel", version, about = "vCon Server tracer events -> OpenTelemetry traces and Prometheus metrics")]
struct Cli {
    /// Log format on stderr: `text` or `json` (also VCON_OTEL_LOG_FORMAT). Level from RUST_LOG (default info).
    #[arg(long, global = true, env = "VCON_OTEL_LOG_FORMAT", default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge: Redis stream -> span trees -> OTLP, with /metrics on the admin listener.
    ///
    /// Start-up first checks Redis (connection, TLS, credentials, RedisJSON, the ACL rules; see
    /// `check-config --connect`); a permanent problem stops it within about a second, with a message
    /// naming the key to fix. An unreachable Redis is waited for (not ready meanwhile).
    /// Exit codes: 0 stopped by SIGINT/SIGTERM; 1 other failure; 69 RedisJSON not loaded; 76 TLS
    /// handshake or certificate check failed; 77 Redis refused the credentials or the ACL refused a
    /// command; 78 invalid configuration.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Admin listener (overrides admin.addr).
        #[arg(long)]
        admin_addr: Option<SocketAddr>,
    },
    /// Check a configuration file: every problem with its key path and a hint; exit 78 if any.
    /// With --connect, also run the start-up checks against Redis that `run` makes, then stop
    /// (exit codes as `run`'s, and 75 when Redis is not reachable within --timeout-secs).
    CheckConfig {
        file: PathBuf,
        /// Connect to Redis and check TLS, credentials, RedisJSON and the ACL rules (nothing is written).
        #[arg(long)]
        connect: bool,
        /// With --connect: how long to retry an unreachable Redis.
        #[arg(long, default_value_t = 10, requires = "connect")]
        timeout_secs: u64,
    },
    /// Simulated conserver through the real pipeline, printing each span tree; exports over OTLP
    /// too when OTEL_EXPORTER_OTLP_ENDPOINT is set. Needs no outside service. With --redis-url it
    /// writes the records into a Redis stream instead, as the Python tracer module does, for a
    /// bridge (`vcon-otel run`) to export.
    Demo {
        #[arg(long, default_value = "127.0.0.1:9464")]
        admin_addr: SocketAddr,
        /// vCons to process, then exit (0 = until Ctrl-C).
        #[arg(long, default_value_t = 0)]
        vcons: u64,
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Pause between two vCons of one worker, in milliseconds.
        #[arg(long, default_value_t = 250)]
        pace_ms: u64,
        /// Close runs without an ending record after this many seconds.
        #[arg(long, default_value_t = 5)]
        idle_timeout_secs: u64,
        /// Do not print span trees (metrics and OTLP only).
        #[arg(long)]
        quiet: bool,
        /// Write the records into this Redis (with RedisJSON) instead of the in-process pipeline;
        /// --admin-addr, --idle-timeout-secs and --quiet then do not apply.
        #[arg(long)]
        redis_url: Option<String>,
        /// The stream to append to (the bridge's stream.key).
        #[arg(long, default_value = "vcon_otel:events", requires = "redis_url")]
        stream: String,
        /// Cap the stream with XADD MAXLEN ~ N (default: no cap, as the Python producer).
        #[arg(long, requires = "redis_url")]
        maxlen: Option<u64>,
    },
    /// Print `Vcon.hash` (SHA-256, as vCon Server computes it) and the sha512 token of stored vCons.
    /// Exit 0 when every file hashed, 1 when any could not be read or parsed.
    Hash {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the canonical bytes that are hashed (Python's `json.dumps` of the normalized vCon).
        #[arg(long)]
        canonical: bool,
    },
    /// Check a vCon against the audit log: is its hash the last recorded step's, and is every run's
    /// hash chain intact and terminated? Exit 0 yes; 1 the vCon does not match; 2 a chain is broken
    /// or a record altered (the first such record is named); 3 no record of this vCon; 4 a run's end
    /// is not proven (no terminal record covers its last steps); 64 unreadable input or key.
    Verify {
        #[arg(long)]
        vcon: PathBuf,
        /// Audit log file(s); rotated siblings (FILE.1, FILE.2, …) are read too, oldest first.
        #[arg(long = "audit-log", required = true)]
        audit_log: Vec<PathBuf>,
        /// The vCon UUID to look for (default: the document's "uuid").
        #[arg(long)]
        vcon_uuid: Option<String>,
        /// Check every record's MAC with the key in this environment variable.
        #[arg(long, conflicts_with = "hmac_key_file")]
        hmac_key_env: Option<String>,
        /// Check every record's MAC with the key in this file.
        #[arg(long)]
        hmac_key_file: Option<PathBuf>,
    },
    /// Print the trace and span IDs of a run (docs/events.md, "Identities").
    Ids {
        #[arg(long)]
        vcon_uuid: String,
        #[arg(long)]
        run: String,
        /// Link indexes to print span IDs for.
        #[arg(long, value_delimiter = ',')]
        links: Vec<i64>,
    },
}

/// Logs on stderr, and the bridge's own spans when `self_telemetry` is enabled (on this thread,
/// before any runtime). The guard flushes those spans when shut down; `None` when it cannot be built.
fn init_logs(format: &str, self_telemetry: Option<&config::SelfTelemetry>) -> Option<vcon_otel::telemetry::Guard> {
    match vcon_otel::telemetry::init(format, self_telemetry) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

fn load(path: &PathBuf) -> Result<config::Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let raw = config::parse(&text).map_err(|p| format!("{}:\n{p}", path.display()))?;
    config::validate(raw, &|k| std::env::var(k).ok()).map_err(|p| format!("{}:\n{p}", path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file, connect, timeout_secs } => match load(&file) {
            Ok(c) => {
                if c.export.is_none() {
                    eprintln!("{}: export.endpoint: no OTLP endpoint configured (hint: set export.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)", file.display());
                    return ExitCode::from(78);
                }
                if connect {
                    let _logs = init_logs(&cli.log_format, None);
                    return runtime().block_on(check_connect(&file, &c, std::time::Duration::from_secs(timeout_secs)));
                }
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::from(78)
            }
        },
        Command::Hash { files, canonical } => hash(files, canonical),
        Command::Verify { vcon, audit_log, vcon_uuid, hmac_key_env, hmac_key_file } => {
            use vcon_otel::compliance::seal::KeySource;
            let key = hmac_key_env.map(KeySource::Env).or(hmac_key_file.map(KeySource::File));
            verify(vcon, audit_log, vcon_uuid, key)
        }
        Command::Ids { vcon_uuid, run, links } => {
            use vcon_otel::ids::{span_id, trace_id, SpanRole};
            println!("trace_id {}", hex::encode(trace_id(&vcon_uuid, &run)));
            println!("root     {}", hex::encode(span_id(&vcon_uuid, &run, SpanRole::Root)));
            for i in links {
                println!("link {i:<3} {}", hex::encode(span_id(&vcon_uuid, &run, SpanRole::Link(i))));
            }
            ExitCode::SUCCESS
        }
        Command::Run { config: path, admin_addr } => {
            let mut cfg = match load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(78);
                }
            };
            let Some(logs) = init_logs(&cli.log_format, cfg.self_telemetry.as_ref()) else { return ExitCode::from(78) };
            if let Some(a) = admin_addr {
                cfg.admin_addr = a;
            }
            let code = runtime().block_on(run(cfg));
            logs.shutdown();
            code
        }
        Command::Demo { admin_addr, vcons, workers, pace_ms, idle_timeout_secs, quiet, redis_url, stream, maxlen } => {
            let _logs = init_logs(&cli.log_format, None);
            let opts = demo::Options { vcons, workers, pace: std::time::Duration::from_millis(pace_ms) };
            if let Some(url) = redis_url {
                return runtime().block_on(demo::run_into_redis(&url, &stream, maxlen, opts));
            }
            runtime().block_on(demo::run(admin_addr, opts, idle_timeout_secs, quiet))
        }
    }
}

/// `vcon-otel hash`: exit 0 when every file hashed, 1 when any could not be read or parsed.
fn hash(files: Vec<PathBuf>, canonical: bool) -> ExitCode {
    let mut ok = true;
    for f in files {
        if canonical {
            use std::io::Write;
            match std::fs::read(&f).map_err(|e| e.to_string()).and_then(|b| vcon_otel::compliance::canonical_bytes(&b).map_err(|e| e.to_string())) {
                Ok(bytes) => {
                    let _ = std::io::stdout().write_all(&bytes);
                    println!();
                }
                Err(e) => {
                    eprintln!("{}: {e}", f.display());
                    ok = false;
                }
            }
            continue;
        }
        match std::fs::read(&f).map_err(|e| e.to_string()).and_then(|b| vcon_otel::compliance::vcon_hash_with_sha512(&b).map_err(|e| e.to_string())) {
            Ok(h) => println!("{}  {}  {}", h.sha256_hex, h.sha512_token.unwrap_or_default(), f.display()),
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                ok = false;
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `vcon-otel verify`: exit codes as documented on the command.
fn verify(vcon: PathBuf, audit_log: Vec<PathBuf>, vcon_uuid: Option<String>, key: Option<vcon_otel::compliance::seal::KeySource>) -> ExitCode {
    use vcon_otel::compliance::verify::verify;
    let key = match key.map(|k| k.load()).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let bytes = match std::fs::read(&vcon) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", vcon.display());
            return ExitCode::from(64);
        }
    };
    match verify(&bytes, &audit_log, vcon_uuid.as_deref(), key.as_ref()) {
        Ok(v) => {
            println!("{}", verdict_text(&v));
            ExitCode::from(v.exit_code())
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(64)
        }
    }
}

/// What `verify` prints for a verdict (the first line says it; the rest say what was not proven).
fn verdict_text(v: &vcon_otel::compliance::verify::Verdict) -> String {
    use vcon_otel::compliance::verify::{Keying, Verdict};
    match v {
        Verdict::Ok { runs, steps, repeats, keying } => {
            let mut s = format!("ok: the vCon matches the last recorded step; {runs} run(s), {steps} step(s), every chain intact and terminated");
            if *repeats > 0 {
                s += &format!("; {repeats} identical repeated record(s) (re-delivery after a crash) counted once");
            }
            s += match keying {
                Keying::Checked => "\nkeyed: every record's MAC verified",
                Keying::NotChecked => "\nnot proven: the records carry MACs but no key was given (--hmac-key-env/--hmac-key-file), so a consistently rewritten chain would not be detected",
                Keying::Unkeyed => "\nnot proven: the log is not keyed, so a consistently rewritten chain (every later record recomputed) cannot be detected; set hmac_key_env or hmac_key_file on the audit_log tracer",
            };
            s
        }
        Verdict::VconMismatch { expected, actual, record } => format!("MISMATCH: the vCon hashes to {actual}, the last recorded step ({record}) says {expected}"),
        Verdict::ChainBroken { at, record_id, why } => format!("BROKEN at {at} (record {record_id}): {why}"),
        Verdict::Unterminated { run, steps, covered, last } => match covered {
            None => format!("UNTERMINATED: run {run} has {steps} intact step(s) but no terminal record after {last}: the run is still open, or its last record(s) were deleted"),
            Some(n) => format!("UNTERMINATED: run {run} has {steps} intact step(s) but its terminal record covers {n}: written by a process that missed the later steps after a crash, or steps were added"),
        },
        Verdict::NoRecords => "no audit record names this vCon".into(),
    }
}

/// `vcon-otel run`: build (exit 78 on a configuration problem), bind, run, drain.
async fn run(cfg: config::Config) -> ExitCode {
    let admin_addr = cfg.admin_addr;
    let ingest_addr = cfg.http_ingest.as_ref().map(|h| h.addr);
    let bridge = match Bridge::build(cfg) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(78);
        }
    };
    let admin = match tokio::net::TcpListener::bind(admin_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("admin.addr={admin_addr}: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ingest = match ingest_addr {
        Some(a) => match vcon_otel::ingest::http::bind(a) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("http_ingest.addr={a}: cannot listen: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    match bridge.run(Listeners { admin: Some(admin), ingest }, vcon_otel::bridge::shutdown_signal()).await {
        Ok(report) if report.is_clean() => ExitCode::SUCCESS,
        Ok(report) => {
            eprintln!("stages still running at the end of shutdown_grace_secs: {}", report.missed.join(", "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "bridge failed");
            eprintln!("{e}");
            match e.downcast_ref::<Refusal>() {
                Some(r) => ExitCode::from(r.class.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// `vcon-otel check-config --connect`: the start-up checks of `run`, then stop.
async fn check_connect(file: &std::path::Path, c: &config::Config, timeout: std::time::Duration) -> ExitCode {
    use vcon_otel::bridge::preflight;
    let (_never_tx, mut never) = tokio::sync::watch::channel(false);
    match preflight::check(&preflight::Plan::of(c), &mut never, Some(timeout)).await {
        Ok(redis) => {
            let json = if c.redis.snapshots { ", RedisJSON loaded" } else { "" };
            let tls = if redis.is_tls() { "over TLS" } else { "without TLS" };
            println!("{}: ok; {} reached {tls} as user '{}'{json}; the ACL allows every command checked", file.display(), redis.shown(), redis.user());
            ExitCode::SUCCESS
        }
        Err(ConnectError::Refused(r)) => {
            eprintln!("{}: {r}", file.display());
            ExitCode::from(r.class.exit_code())
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}
