"""The producer's Redis connection: TLS, credentials, and errors explained by the option to fix.

Options (the tracer's options, or the hooks' ``VCON_OTEL_HOOKS_OPTIONS``; see docs/conserver.md):

``redis_url``
    ``redis://[user[:password]@]host:port[/db]``, or ``rediss://…`` for TLS. The user is an ACL user
    (``config/redis-acl/producer.acl``). ``ssl_*`` query parameters are refused: TLS is configured
    with the ``tls_*`` options only, so certificate checks cannot be switched off by a URL.
``redis_password_env`` / ``redis_password_file``
    The password from an environment variable, or from a file (a mounted Kubernetes secret; trailing
    newline removed), instead of in the URL. At most one of the three places may hold a password. The
    file is read again at every new connection, so a rotated secret is picked up on reconnect.
``tls_ca_file``
    PEM file of the CA(s) that signed the server's certificate, trusted *in addition to* the system
    roots (redis-py always loads those). Without it, only the system roots.
``tls_cert_file`` / ``tls_key_file``
    Client certificate and key (PEM) for mutual TLS (``tls-auth-clients yes``). The key may be in the
    certificate file.
``tls_insecure_skip_verify``
    ``true`` turns off the checks of the server's certificate and host name. Logged as an ERROR once
    per process. Must be a JSON boolean.

With ``rediss://`` the server's certificate chain *and* host name are checked (redis-py 4.6 does not
check the host name by default; this module turns it on). ``tls_*`` options with a ``redis://`` URL
are an error, not silently ignored. Every problem found here raises :class:`ConfigError`, whose
message names the option; :func:`explain` turns a Redis or TLS failure into the option to fix.
Nothing here ever puts a password into a message.
"""
import inspect
import logging
import os
import ssl
import threading
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple, Union

import redis
from redis.credentials import CredentialProvider

from ._record import Options

logger = logging.getLogger("vcon_otel")

TLS_OPTIONS = ("tls_ca_file", "tls_cert_file", "tls_key_file", "tls_insecure_skip_verify")
# The options that make one client differ from another.
CLIENT_OPTIONS = ("redis_url", "socket_timeout", "redis_password_env", "redis_password_file") + TLS_OPTIONS
ACL_RULES = "config/redis-acl/producer.acl"

_clients: Dict[Tuple[str, ...], redis.Redis] = {}
_lock = threading.Lock()
_insecure_logged = [False]


class ConfigError(redis.exceptions.RedisError):
    """A producer option is wrong; the message names it. A RedisError, so that redis-py closes a
    half-open connection when it comes from the credential provider during connect."""


class _Credentials(CredentialProvider):
    """(user, password) read at every new connection: from the environment or a file."""

    def __init__(self, username: Optional[str], env: Optional[str] = None, path: Optional[str] = None) -> None:
        self.username, self.env, self.path = username, env, path

    def password(self) -> str:
        if self.env:
            v = os.environ.get(self.env)
            if not v:
                raise ConfigError("redis_password_env: the environment variable %s is not set or empty" % self.env)
            return v
        try:
            with open(str(self.path), encoding="utf-8") as f:
                v = f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError("redis_password_file: cannot read %s: %s" % (self.path, getattr(e, "strerror", None) or type(e).__name__))
        if not v:
            raise ConfigError("redis_password_file: %s is empty" % self.path)
        return v

    def get_credentials(self) -> Union[Tuple[str], Tuple[str, str]]:
        p = self.password()
        return (self.username, p) if self.username else (p,)


def _readable(opts: Options, name: str) -> Optional[str]:
    path = opts.get(name)
    if path is None:
        return None
    if not isinstance(path, str) or not path:
        raise ConfigError("%s must be a file path (a string), not %r" % (name, path))
    if not os.access(path, os.R_OK):
        raise ConfigError("%s: cannot read %s (%s)" % (name, path, "no such file" if not os.path.exists(path) else "permission denied"))
    return path


def _skip_client_setinfo() -> Dict[str, None]:
    """redis-py >= 5 sends CLIENT SETINFO at every connect: a command the producer's ACL user does
    not need (denied, and logged in ACL LOG, on Redis >= 7.2). Turned off where redis-py allows it."""
    params = inspect.signature(redis.Redis.__init__).parameters
    if "driver_info" in params:
        return {"driver_info": None}
    if "lib_name" in params:
        return {"lib_name": None, "lib_version": None}
    return {}


_NO_SETINFO = _skip_client_setinfo()


def password_source(opts: Options) -> Optional[str]:
    """Where the password comes from, for messages: an option name (never the password)."""
    if opts.get("redis_password_env"):
        return "redis_password_env (%s)" % opts["redis_password_env"]
    if opts.get("redis_password_file"):
        return "redis_password_file (%s)" % opts["redis_password_file"]
    u = urllib.parse.urlsplit(str(opts.get("redis_url") or ""))
    return "the password in redis_url" if u.password is not None else None


def _url_and_auth(opts: Options) -> Tuple[str, Dict[str, Any]]:
    """The URL without credentials when they come from elsewhere, and the connection kwargs for them."""
    url = opts.get("redis_url")
    if not isinstance(url, str) or not url:
        raise ConfigError("redis_url must be a URL string (redis://… or rediss://…), not %r" % (url,))
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("redis_url: scheme %r is not redis://, rediss:// (TLS) or unix://" % u.scheme)
    bad = [k for k in urllib.parse.parse_qs(u.query) if k.startswith("ssl")]
    if bad:
        raise ConfigError("redis_url: the query parameter %s is not accepted; use the options tls_ca_file, tls_cert_file, tls_key_file, "
                          "tls_insecure_skip_verify" % bad[0])
    env, path = opts.get("redis_password_env"), opts.get("redis_password_file")
    for name, v in (("redis_password_env", env), ("redis_password_file", path)):
        if v is not None and (not isinstance(v, str) or not v):
            raise ConfigError("%s must be a non-empty string, not %r" % (name, v))
    given = [n for n, v in (("redis_url", u.password), ("redis_password_env", env), ("redis_password_file", path)) if v]
    if len(given) > 1:
        raise ConfigError("the Redis password is given in %s: give it in one place only" % " and ".join(given))
    if not env and not path:
        return url, {}
    if u.scheme == "unix":
        raise ConfigError("redis_password_env/redis_password_file work with redis:// and rediss:// URLs; for unix:// put ?password= in the URL")
    creds = _Credentials(urllib.parse.unquote(u.username) if u.username else None, env=env, path=_readable(opts, "redis_password_file"))
    creds.password()  # fail now, naming the option, rather than at the first connect
    netloc = u.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(u._replace(netloc=netloc)), {"credential_provider": creds}


def _tls_kwargs(opts: Options, scheme: str) -> Dict[str, Any]:
    insecure = opts.get("tls_insecure_skip_verify", False)
    if not isinstance(insecure, bool):
        raise ConfigError("tls_insecure_skip_verify must be true or false (a JSON boolean), not %r" % (insecure,))
    given = [n for n in TLS_OPTIONS if opts.get(n) not in (None, False)]
    if scheme != "rediss":
        if given:
            raise ConfigError("%s is set but redis_url is not rediss://: use rediss://host:port for TLS, or remove %s" % (given[0], given[0]))
        return {}
    kw: Dict[str, Any] = {}
    if insecure:
        kw.update(ssl_cert_reqs="none", ssl_check_hostname=False)
        if not _insecure_logged[0]:
            _insecure_logged[0] = True
            logger.error("vcon_otel: tls_insecure_skip_verify is true: the Redis server's certificate and host name are NOT checked, so anyone "
                         "on the network path can read and change what this process sends. Set tls_ca_file and remove tls_insecure_skip_verify.")
    else:
        kw.update(ssl_cert_reqs="required", ssl_check_hostname=True)
    ca = _readable(opts, "tls_ca_file")
    if ca:
        kw["ssl_ca_certs"] = ca
    cert, key = _readable(opts, "tls_cert_file"), _readable(opts, "tls_key_file")
    if key and not cert:
        raise ConfigError("tls_key_file is set without tls_cert_file: give the client certificate too")
    if cert:
        kw["ssl_certfile"] = cert
        if key:
            kw["ssl_keyfile"] = key
    return kw


def make_client(opts: Options) -> redis.Redis:
    """A new redis.Redis for `opts` (raises ConfigError naming the option)."""
    url, kw = _url_and_auth(opts)
    kw.update(_tls_kwargs(opts, urllib.parse.urlsplit(url).scheme))
    kw.update(_NO_SETINFO)
    t = opts.get("socket_timeout")
    return redis.Redis.from_url(url, socket_timeout=t, socket_connect_timeout=t, **kw)


def client(opts: Options) -> redis.Redis:
    """The process's client for these options (one connection pool per distinct option set)."""
    key = tuple(repr(opts.get(k)) for k in CLIENT_OPTIONS)
    c = _clients.get(key)
    if c is None:
        with _lock:
            c = _clients.get(key)
            if c is None:
                c = _clients[key] = make_client(opts)
    return c


def _chain(e: Optional[BaseException]) -> List[BaseException]:
    seen: List[BaseException] = []
    while e is not None and e not in seen and len(seen) < 8:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def explain(e: BaseException, opts: Options) -> Optional[str]:
    """What to change for failure `e`, naming the option; None for an outage (Redis down, timeout)."""
    if isinstance(e, ConfigError):
        return None  # its message names the option already
    msg = " ".join(str(x) for x in _chain(e))
    up = msg.upper()
    tls = urllib.parse.urlsplit(str(opts.get("redis_url") or "")).scheme == "rediss"
    user = urllib.parse.urlsplit(str(opts.get("redis_url") or "")).username or "default"
    # A large first command from an unauthenticated client is refused as a protocol error.
    if isinstance(e, redis.exceptions.AuthenticationError) or any(w in up for w in ("WRONGPASS", "NOAUTH", "UNAUTHENTICATED")):
        src = password_source(opts)
        if src and ("WRONGPASS" in up or "INVALID USERNAME-PASSWORD" in up):
            return "Redis refused user %r with the password from %s: fix that password, or the user name in redis_url" % (user, src)
        return ("Redis requires a password: set redis_password_env or redis_password_file (or put it in redis_url), and the ACL user "
                "name in redis_url (redis://USER@host:port)")
    if "NOPERM" in up or "NO PERMISSIONS" in up or "USER EXECUTING THE SCRIPT CAN'T" in up:
        return ("the Redis ACL user %r may not run this command or touch this key: give it the rules in %s (docs/operations.md, "
                "'Redis ACL rules'), adapted if you changed stream" % (user, ACL_RULES))
    if any(isinstance(x, ssl.SSLCertVerificationError) for x in _chain(e)) or "CERTIFICATE_VERIFY_FAILED" in up:
        if "MISMATCH" in up:
            return "the server's certificate does not name the host in redis_url: connect by a name or IP in its subjectAltName"
        if opts.get("tls_ca_file"):
            return "the server's certificate is not signed by a CA in tls_ca_file (%s): set tls_ca_file to the CA that signed it" % opts["tls_ca_file"]
        return "the server's certificate is not signed by a system root CA: set tls_ca_file to the CA (PEM) that signed it"
    if "CERTIFICATE_REQUIRED" in up:
        return "the server requires a client certificate (tls-auth-clients yes): set tls_cert_file and tls_key_file"
    # Without a client certificate, the server's refusal reaches the client as the alert above, an
    # EOF or a reset, depending on timing.
    closed = any(isinstance(x, (ssl.SSLEOFError, ConnectionResetError)) for x in _chain(e)) or "RESET BY PEER" in up or "CLOSED BY SERVER" in up
    if tls and closed and not opts.get("tls_cert_file"):
        return ("the server closed the TLS connection: if it requires client certificates (tls-auth-clients yes), "
                "set tls_cert_file and tls_key_file")
    if tls and ("UNKNOWN_CA" in up or "BAD_CERTIFICATE" in up or "CERTIFICATE_UNKNOWN" in up or "DECRYPT_ERROR" in up):
        return "the server refused the client certificate in tls_cert_file: use one signed by a CA the server trusts (its tls-ca-cert-file)"
    if tls and ("HANDSHAKE OPERATION TIMED OUT" in up or "WRONG_VERSION_NUMBER" in up or "WRONG VERSION NUMBER" in up):
        return "no TLS handshake with the server: is the port in redis_url its tls-port? For a plain port use redis://"
    if tls and any(isinstance(x, ssl.SSLError) for x in _chain(e)) and ("PEM" in up or "KEY_VALUES_MISMATCH" in up):
        return "tls_cert_file / tls_key_file cannot be loaded: PEM files of one certificate and its key are needed"
    if not tls and "RESET BY PEER" in up:
        return "the server reset the connection: if the port in redis_url is a TLS port, use rediss://"
    return None
