import os
import subprocess
import sys
import tempfile
import time

import pytest
import redis

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))


def _need(var):
    v = os.environ.get(var)
    if not v:
        pytest.fail("%s is not set: run the tests with scripts/test.sh, which installs Redis and RedisJSON and sets it" % var)
    return v


class Server:
    def __init__(self):
        from secure_redis import start_on_free_ports
        try:
            start_on_free_ports(self._start)
        except RuntimeError as e:
            pytest.fail(str(e))

    def _start(self):
        from secure_redis import free_port
        self.port = free_port()
        self.url = "redis://127.0.0.1:%d" % self.port
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [_need("VCON_OTEL_REDIS_SERVER"), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--loadmodule", _need("VCON_OTEL_REJSON")],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.client = redis.Redis.from_url(self.url)
        for _ in range(200):
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError("redis-server exited (%s): %s" % (self.proc.returncode, self.log.read().decode(errors="replace")[-2000:]))
            try:
                self.client.ping()
                self.client.execute_command("JSON.SET", "_probe", "$", "1")
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer on port %d within 10 s" % self.port)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def certs():
    from secure_redis import Certs
    c = Certs()
    yield c
    c.cleanup()


@pytest.fixture
def secure(certs):
    """A Redis with TLS (client certificates required), requirepass and RedisJSON."""
    from secure_redis import SecureServer
    try:
        s = SecureServer(_need("VCON_OTEL_REDIS_SERVER"), _need("VCON_OTEL_REJSON"), certs)
    except RuntimeError as e:
        pytest.fail(str(e))
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def clean_state():
    from vcon_otel import _emit, _state, hooks
    _state.clear()
    _emit._down_until.clear()
    hooks.options = {}
    yield
    _state.clear()
