"""A real Redis (with RedisJSON) as production runs it: TLS with client certificates required, a
password on the default user, ACL users made from the rule files in config/redis-acl/. Test
certificates are made with openssl: a CA, a server certificate for IP 127.0.0.1, a client
certificate, and a second CA that signed nothing the server uses."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import redis

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ADMIN_PASSWORD = "admin-Pw-4f1c"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_on_free_ports(start, attempts=5):
    """Calls `start()` (a server start that picks its ports with free_port and raises RuntimeError
    with the server's output when it exits) until it works: a free port can be taken by another
    process before the server binds it, and then it is started again on new ports."""
    for attempt in range(attempts):
        try:
            return start()
        except RuntimeError as e:
            if "Address already in use" not in str(e) or attempt == attempts - 1:
                raise


def acl_rules(name):
    """The rules of config/redis-acl/NAME.acl: one per non-comment line, in order."""
    with open(os.path.join(ROOT, "config", "redis-acl", name + ".acl"), encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


class Certs:
    """PEM files in a temporary directory: ca, other_ca, server_cert/key, client_cert/key."""

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="vcon-otel-tls-")
        d = self.dir = self._dir.name
        openssl = shutil.which("openssl")
        if not openssl:
            raise RuntimeError("openssl is not installed (scripts/install-test-deps.sh installs it)")

        def run(*args):
            subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ("ca", "other_ca"):
            # Python 3.13 verifies strictly (VERIFY_X509_STRICT): CAs need these extensions.
            run("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2", "-subj", "/CN=vcon-otel test " + ca,
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        for name, usage, san in (("server", "serverAuth", "subjectAltName=IP:127.0.0.1\n"), ("client", "clientAuth", "")):
            with open(os.path.join(d, name + ".ext"), "w") as f:
                f.write(san + "authorityKeyIdentifier=keyid\nbasicConstraints=CA:FALSE\n"
                        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n" % usage)
            run("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
            run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext")
        p = lambda n: os.path.join(d, n)  # noqa: E731
        self.ca, self.other_ca = p("ca.pem"), p("other_ca.pem")
        self.server_cert, self.server_key = p("server.pem"), p("server.key")
        self.client_cert, self.client_key = p("client.pem"), p("client.key")

    def cleanup(self):
        self._dir.cleanup()


class SecureServer:
    """redis-server with a plain port and a TLS port (`tls-auth-clients yes`), `requirepass` on the
    default user, RedisJSON loaded. `client` is the conserver's own (admin) connection over TLS."""

    def __init__(self, server_bin, rejson, certs):
        start_on_free_ports(lambda: self._start(server_bin, rejson, certs))

    def _start(self, server_bin, rejson, certs):
        self.certs = certs
        self.port, self.tls_port = free_port(), free_port()
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [server_bin, "--bind", "127.0.0.1", "--port", str(self.port), "--tls-port", str(self.tls_port),
             "--tls-cert-file", certs.server_cert, "--tls-key-file", certs.server_key, "--tls-ca-cert-file", certs.ca,
             "--tls-auth-clients", "yes", "--requirepass", ADMIN_PASSWORD, "--save", "", "--appendonly", "no",
             "--loadmodule", rejson],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.client = redis.Redis(host="127.0.0.1", port=self.tls_port, password=ADMIN_PASSWORD, ssl=True,
                                  ssl_ca_certs=certs.ca, ssl_certfile=certs.client_cert, ssl_keyfile=certs.client_key)
        for _ in range(200):
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited (%s): %s" % (self.proc.returncode, self.output()))
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer on TLS port %d within 10 s" % self.tls_port)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def add_user(self, name, password, rules):
        """`ACL SETUSER name reset on >password rules…` (the way docs/operations.md applies a rule file)."""
        self.client.execute_command("ACL", "SETUSER", name, "reset", "on", ">" + password, *rules)

    def tls_url(self, user=None, password=None, host="127.0.0.1"):
        return self._url("rediss", self.tls_port, user, password, host)

    def plain_url(self, user=None, password=None):
        return self._url("redis", self.port, user, password, "127.0.0.1")

    @staticmethod
    def _url(scheme, port, user, password, host):
        auth = ""
        if user or password:
            auth = (user or "") + (":" + password if password else "") + "@"
        return "%s://%s%s:%d" % (scheme, auth, host, port)

    def tls_opts(self, **extra):
        """Producer options for mutual TLS with the test CA."""
        o = {"tls_ca_file": self.certs.ca, "tls_cert_file": self.certs.client_cert, "tls_key_file": self.certs.client_key}
        o.update(extra)
        return o

    def acl_log(self):
        return self.client.execute_command("ACL", "LOG")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
