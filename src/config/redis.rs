//! `redis:`: where the stream lives and how the bridge reaches it — the URL (with an ACL user), the
//! password's source (so no secret needs to be in the file), TLS, and which start-up checks apply.
//!
//! Validation is pure: the password's environment variable is read through the `env` passed in;
//! files (`password_file`, `tls.*`) are only checked for being named consistently here and are read
//! when the bridge connects (`bridge::preflight`), where an unreadable one is a configuration error.

use super::{nullable, Problem};
use ::redis::IntoConnectionInfo;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    /// `redis://[user[:password]@]host:port[/db]`, `rediss://…` for TLS, or `unix:///path`;
    /// default `REDIS_URL`, else `redis://127.0.0.1:6379`. The user is an ACL user (not a secret).
    pub url: Option<String>,
    /// The name of an environment variable holding the password (of the URL's user, else of
    /// `default`). At most one of this, `password_file` and a password in `url`.
    pub password_env: Option<String>,
    /// A file holding the password (e.g. a mounted Kubernetes secret); one trailing newline is
    /// ignored. Read once at start-up.
    pub password_file: Option<PathBuf>,
    /// TLS for `rediss://` URLs.
    #[serde(deserialize_with = "nullable")]
    pub tls: RawRedisTls,
    /// Records may name compliance snapshots, which the bridge reads with `JSON.GET`: start-up then
    /// checks that the RedisJSON module is loaded and `JSON.GET` is allowed. `false` when no
    /// producer sends snapshots (its `snapshot` option is `none`). Default `true`.
    pub snapshots: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedisTls {
    /// PEM CA certificate(s) that signed the server's certificate; only these are trusted.
    /// Default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS (`tls-auth-clients yes`); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// `true`: do not check the server's certificate at all (chain, name, expiry). Anyone on the
    /// network path can then read and change the stream; logged as an ERROR at start. Tests only.
    pub insecure_skip_verify: bool,
}

/// A secret value: never printed (`Debug` and `Display` show `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the password comes from (when not in the URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `redis.password_env`: the variable's name and the value it had at validation.
    Env { var: String, value: Secret },
    /// `redis.password_file`, read when connecting.
    File(PathBuf),
}

/// `redis.tls` after validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

/// `redis:` after validation.
#[derive(Debug, Clone)]
pub struct Redis {
    pub url: String,
    pub password: Option<PasswordSource>,
    pub tls: RedisTls,
    /// Check RedisJSON (and `JSON.GET`) at start-up.
    pub snapshots: bool,
}

/// `redis:` -> [`Redis`]; problems are pushed to `p` (the returned value is then unused).
pub(super) fn resolve(raw: RawRedis, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Redis {
    let mut bad = |path: &str, message: String, hint: &str| p.push(Problem { path: path.into(), message, hint: hint.into() });
    let url = raw.url.or_else(|| env("REDIS_URL")).unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let parsed = if url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://") {
        url.as_str().into_connection_info().map_err(|e| e.to_string())
    } else {
        Err("not a Redis URL".into())
    };
    let (tls_url, url_password) = match &parsed {
        Ok(info) => (matches!(info.addr(), ::redis::ConnectionAddr::TcpTls { .. }), info.redis_settings().password().is_some()),
        Err(e) => {
            bad("redis.url", format!("{:?}: {e}", without_userinfo(&url)), "write redis://[user@]host:6379[/db], or rediss://… for TLS");
            (url.starts_with("rediss://"), false)
        }
    };
    let password = match (raw.password_env, raw.password_file) {
        (Some(_), Some(_)) => {
            bad("redis.password_env", "and redis.password_file are both set".into(), "keep one password source");
            None
        }
        (Some(var), None) => match env(&var) {
            Some(v) if !v.is_empty() => Some(PasswordSource::Env { var, value: Secret(v) }),
            _ => {
                bad("redis.password_env", format!("the environment variable {var} is not set or empty"), "set it, or name the variable that holds the password");
                None
            }
        },
        (None, Some(f)) => Some(PasswordSource::File(f)),
        (None, None) => None,
    };
    if password.is_some() && url_password {
        bad("redis.url", "has a password, and redis.password_env or redis.password_file is set too".into(), "remove the password from redis.url (keep the user name)");
    }
    let t = raw.tls;
    let tls = RedisTls { ca_file: t.ca_file, cert_file: t.cert_file, key_file: t.key_file, insecure_skip_verify: t.insecure_skip_verify };
    let any_tls = tls.ca_file.is_some() || tls.cert_file.is_some() || tls.key_file.is_some() || tls.insecure_skip_verify;
    if any_tls && !tls_url {
        bad("redis.tls", "is set, but redis.url is not a rediss:// URL".into(), "use rediss://host:port for TLS, or remove redis.tls");
    }
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        let (set, missing) = if tls.cert_file.is_some() { ("cert_file", "key_file") } else { ("key_file", "cert_file") };
        bad(&format!("redis.tls.{missing}"), format!("is missing while redis.tls.{set} is set"), "mutual TLS needs both the client certificate and its key");
    }
    if tls.insecure_skip_verify && tls.ca_file.is_some() {
        bad("redis.tls.ca_file", "has no effect with redis.tls.insecure_skip_verify: true".into(), "remove one of them (keep ca_file to check the server)");
    }
    Redis { url, password, tls, snapshots: raw.snapshots.unwrap_or(true) }
}

/// The URL with any `user:password@` replaced by `…@`, for messages.
fn without_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}…{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str, env: &[(&str, &str)]) -> Result<Redis, Vec<String>> {
        let raw: RawRedis = serde_saphyr::from_str(yaml).unwrap();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut p = Vec::new();
        let r = resolve(raw, &|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()), &mut p);
        if p.is_empty() { Ok(r) } else { Err(p.iter().map(|p| p.to_string()).collect()) }
    }

    #[test]
    fn the_password_comes_from_the_environment_and_is_never_printed() {
        let r = run("url: rediss://bridge@r:6380\npassword_env: PW\ntls: {ca_file: /ca.pem}\n", &[("PW", "s3cret")]).unwrap();
        assert_eq!(r.password, Some(PasswordSource::Env { var: "PW".into(), value: Secret("s3cret".into()) }));
        assert!(!format!("{r:?}").contains("s3cret"));
        assert!(r.snapshots);
        assert_eq!(r.tls.ca_file, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn inconsistent_settings_are_problems_naming_their_keys() {
        let e = run("url: redis://bridge:pw@r:6379\npassword_env: PW\npassword_file: /pw\n", &[]).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("redis.password_env: and redis.password_file are both set"), "{e:?}");
        let e = run("url: redis://bridge:pw@r:6379\npassword_file: /pw\n", &[]).unwrap_err();
        assert!(e[0].starts_with("redis.url: has a password"), "{e:?}");
        assert!(!e[0].contains(":pw@"), "the password is not repeated: {e:?}");
        let e = run("url: redis://r:6379\npassword_env: PW\ntls: {cert_file: /c.pem}\n", &[]).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("redis.password_env: the environment variable PW is not set"), "{e:?}");
        assert!(e[1].starts_with("redis.tls: is set, but redis.url is not a rediss:// URL"), "{e:?}");
        assert!(e[2].starts_with("redis.tls.key_file: is missing"), "{e:?}");
        let e = run("url: rediss://r:6380\ntls: {ca_file: /ca.pem, insecure_skip_verify: true}\n", &[]).unwrap_err();
        assert!(e[0].starts_with("redis.tls.ca_file: has no effect"), "{e:?}");
        let e = run("url: \"redis://:s3cret@r:notaport\"\n", &[]).unwrap_err();
        assert!(e[0].starts_with("redis.url:") && !e[0].contains("s3cret"), "{e:?}");
    }
}
