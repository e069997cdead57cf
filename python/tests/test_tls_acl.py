"""The producer against a production-like Redis: TLS with client certificates required, a password
on the default user, and an ACL user limited to exactly the rules of config/redis-acl/producer.acl.
Every record is delivered through TLS as that user; every misconfiguration is one clear logged error
naming the option to fix, never an exception into the conserver (unless dlq_vcon_on_error)."""
import json
import logging
import os
import shutil
import subprocess

import pytest
import redis

import conserver_sim as sim
from secure_redis import ROOT, acl_rules
from vcon_otel import _connect, _emit, hooks, tracer

USER, PASSWORD = "vcon-otel-producer", "pr0ducer-S3cret"
STREAM = "vcon_otel:events"


@pytest.fixture(autouse=True)
def fresh_logging(monkeypatch):
    monkeypatch.setattr(_emit, "_last_log", [-1e18])
    monkeypatch.setattr(_emit, "_down_until", {})


def password_file(tmp_path, content=PASSWORD + "\n"):
    f = tmp_path / "redis-password"
    f.write_text(content)
    return str(f)


def producer_opts(secure, tmp_path, monkeypatch, how):
    """Options for the ACL user with the password from `how`: env, file, url (TLS) or plain."""
    if how == "env":
        monkeypatch.setenv("VCON_OTEL_TEST_REDIS_PASSWORD", PASSWORD)
        return secure.tls_opts(redis_url=secure.tls_url(USER), redis_password_env="VCON_OTEL_TEST_REDIS_PASSWORD")
    if how == "file":
        return secure.tls_opts(redis_url=secure.tls_url(USER), redis_password_file=password_file(tmp_path))
    if how == "url":
        return secure.tls_opts(redis_url=secure.tls_url(USER, PASSWORD))
    return {"redis_url": secure.plain_url(USER, PASSWORD)}


def run_everything(secure, opts, rounds=2):
    """Every kind of call the producer makes: tracer only, tracer and hooks, hooks only; the script
    (after a script-cache flush, so SCRIPT LOAD runs as this user too) with snapshots within the
    budget, swaps, prev_run reads, held-back records, DLQ reprocessing, egress, two threads.
    Returns the stats delta and the records written."""
    secure.client.script_flush()
    hooks.options = dict(opts, stream=STREAM)
    before = tracer.stats()
    for name in ("three_links", "swap", "halt", "link_error", "dlq_reprocess", "egress"):
        for use_hooks, use_tracer in ((False, True), (True, True), (True, False)):
            sim.run_scenario(secure.client, opts["redis_url"], name, use_hooks, STREAM, options=opts, tracer=use_tracer)
    sim.run_scenario(secure.client, opts["redis_url"], "two_threads", False, STREAM, rounds=rounds, options=opts)
    after = tracer.stats()
    recs = [json.loads(f[b"r"]) for _id, f in secure.client.xrange(STREAM)]
    return {k: after[k] - before[k] for k in after}, recs


@pytest.mark.parametrize("how", ["env", "file", "url", "plain"])
def test_every_record_is_delivered_as_the_acl_user(secure, tmp_path, monkeypatch, caplog, how):
    secure.add_user(USER, PASSWORD, acl_rules("producer"))
    opts = producer_opts(secure, tmp_path, monkeypatch, how)
    with caplog.at_level(logging.ERROR, logger="vcon_otel"):
        delta, recs = run_everything(secure, opts)
    assert [r.getMessage() for r in caplog.records if r.name == "vcon_otel"] == []
    assert delta["failed"] == delta["skipped"] == delta["errors"] == 0
    assert delta["sent"] == len(recs) > 50
    # the snapshots are real copies (COPY of vcon:*), indexed for the budget (ZADD); prev_run came
    # from the pointers (GET), spliced by the script or added to a held-back record
    snaps = [r["compliance"]["snapshot"] for r in recs if "snapshot" in r.get("compliance", {})]
    assert len(snaps) > 40 and all(secure.client.json().get(k)["uuid"] for k in snaps)
    assert secure.client.zcard("vcon_otel:snaps") == len(snaps)
    assert sum(1 for r in recs if "prev_run" in r) >= 6  # dlq_reprocess and egress, in each mode
    assert secure.acl_log() == [], "the producer ran a command or touched a key its rules deny"
    if how != "plain":
        clients = secure.client.client_list()
        assert any(c.get("user") == USER for c in clients)


def test_each_producer_acl_rule_is_needed(secure, tmp_path, monkeypatch, caplog):
    rules = acl_rules("producer")
    assert len(rules) == len(set(rules)) >= 16
    for i, rule in enumerate(rules):
        user = "p%d" % i
        secure.add_user(user, PASSWORD, rules[:i] + rules[i + 1:])
        opts = secure.tls_opts(redis_url=secure.tls_url(user, PASSWORD), retry_after=0)
        monkeypatch.setattr(_emit, "_last_log", [-1e18])
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="vcon_otel"):
            delta, _ = run_everything(secure, opts, rounds=1)
        assert delta["failed"] > 0, "without %r every call still succeeded: the rule is not needed" % rule
        logged = " ".join(r.getMessage() for r in caplog.records if r.name == "vcon_otel")
        assert "config/redis-acl/producer.acl" in logged and repr(user) in logged, logged
        secure.client.delete(STREAM)


def test_the_documented_acl_loader_applies_the_rule_file(secure, tmp_path):
    """docs/operations.md: `grep -v '^#' FILE | xargs redis-cli … ACL SETUSER USER reset on "#SHA256"`."""
    cli = shutil.which("redis-cli") or os.path.join(os.path.dirname(os.environ["VCON_OTEL_REDIS_SERVER"]), "redis-cli")
    c = secure.certs
    script = ('hash=$(printf %s "$PRODUCER_PASSWORD" | sha256sum | cut -d" " -f1)\n'
              'grep -v "^#" config/redis-acl/producer.acl | xargs "$CLI" --tls --cacert "$CA" --cert "$CERT" --key "$KEY" '
              '-h 127.0.0.1 -p "$PORT" ACL SETUSER vcon-otel-producer reset on "#$hash"\n')
    env = dict(os.environ, PRODUCER_PASSWORD=PASSWORD, REDISCLI_AUTH="admin-Pw-4f1c", CLI=cli, CA=c.ca, CERT=c.client_cert,
               KEY=c.client_key, PORT=str(secure.tls_port))
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "OK", out.stdout + out.stderr
    delta, recs = run_everything(secure, secure.tls_opts(redis_url=secure.tls_url(USER), redis_password_file=password_file(tmp_path)), rounds=1)
    assert delta["failed"] == 0 and delta["sent"] == len(recs)


def test_the_bridge_acl_file_is_accepted_by_redis(secure):
    secure.add_user("vcon-otel-bridge", PASSWORD, acl_rules("bridge"))
    info = secure.client.acl_getuser("vcon-otel-bridge")
    assert info["enabled"]


def test_the_hooks_take_tls_and_credentials_from_their_environment_variable(secure, tmp_path, monkeypatch):
    secure.add_user(USER, PASSWORD, acl_rules("producer"))
    opts = secure.tls_opts(redis_url=secure.tls_url(USER), redis_password_file=password_file(tmp_path), stream=STREAM)
    monkeypatch.setenv("VCON_OTEL_HOOKS_OPTIONS", json.dumps(opts))
    monkeypatch.setattr(hooks, "options", hooks._env_options())
    c = sim.Conserver(secure.client, {}, sim.links_for(secure.client), hooks=True, storages=sim.storages_for(secure.client))
    before = tracer.stats()
    vcon = sim.make_vcon(secure.client)
    assert c.handle("in", vcon, {"name": "c", "links": ["tag", "swap", "tag2"]}) is None
    recs = [json.loads(f[b"r"]) for _id, f in secure.client.xrange(STREAM)]
    assert [r["event"] for r in recs] == ["chain_start", "link_complete", "link_complete", "link_complete", "chain_complete"]
    assert tracer.stats()["failed"] == before["failed"]


def test_rediss_without_tls_ca_file_uses_the_system_roots(secure, monkeypatch):
    # OpenSSL's system trust store is the file named by SSL_CERT_FILE when it is set.
    monkeypatch.setenv("SSL_CERT_FILE", secure.certs.ca)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    opts = secure.tls_opts(redis_url=secure.tls_url(password="admin-Pw-4f1c"))
    del opts["tls_ca_file"]
    vcon = sim.make_vcon(secure.client)
    before = tracer.stats()
    assert tracer.run(vcon, vcon, "otel", ["a"], -1, opts) is True
    assert tracer.stats()["sent"] == before["sent"] + 1 and secure.client.xlen(STREAM) == 1


# --- misconfigurations: one clear error naming the option -------------------------------------------

def _wrong_password(s, tmp):
    return s.tls_opts(redis_url=s.tls_url(USER), redis_password_file=password_file(tmp, "not-the-password\n"))


CASES = {
    "wrong password": (_wrong_password, "the password from redis_password_file"),
    "no password": (lambda s, tmp: s.tls_opts(redis_url=s.tls_url()), "set redis_password_env or redis_password_file"),
    "wrong CA": (lambda s, tmp: s.tls_opts(redis_url=s.tls_url(USER, PASSWORD), tls_ca_file=s.certs.other_ca),
                 "not signed by a CA in tls_ca_file"),
    "no client certificate": (lambda s, tmp: {"redis_url": s.tls_url(USER, PASSWORD), "tls_ca_file": s.certs.ca},
                              "set tls_cert_file and tls_key_file"),
    "host not in the certificate": (lambda s, tmp: s.tls_opts(redis_url=s.tls_url(USER, PASSWORD, host="localhost")),
                                    "subjectAltName"),
    "plain URL on the TLS port": (lambda s, tmp: {"redis_url": "redis://%s:%s@127.0.0.1:%d" % (USER, PASSWORD, s.tls_port)},
                                  "use rediss://"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_misconfiguration_is_one_clear_error_naming_the_option(secure, tmp_path, caplog, case):
    make, expected = CASES[case]
    secure.add_user(USER, PASSWORD, acl_rules("producer"))
    opts = dict(make(secure, tmp_path), retry_after=0, socket_timeout=0.5)
    hooks.options = opts
    before = tracer.stats()
    with caplog.at_level(logging.ERROR, logger="vcon_otel"):
        for i in range(4):
            assert tracer.run("u", "u", "otel", ["a", "b", "c"], i - 1, opts) is True
        assert hooks.before_processing("u", {"name": "c", "links": ["a"]}, {}) == "u"
        hooks.after_processing("u", {"name": "c"}, {}, error=None)
    assert tracer.stats()["failed"] - before["failed"] == 6
    logged = [r.getMessage() for r in caplog.records if r.name == "vcon_otel"]
    assert len(logged) == 1 and expected in logged[0], logged
    assert PASSWORD not in logged[0] and "admin-Pw" not in logged[0]
    with pytest.raises(redis.RedisError):
        tracer.run("u", "u", "otel", ["a"], -1, dict(opts, dlq_vcon_on_error=True))


def test_option_errors_name_the_option_and_never_raise(secure, tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("VCON_OTEL_UNSET_PASSWORD", raising=False)
    tls = secure.tls_url(USER)
    cases = [
        ({"redis_url": secure.plain_url(USER), "tls_ca_file": secure.certs.ca}, "tls_ca_file is set but redis_url is not rediss://"),
        (secure.tls_opts(redis_url=tls, tls_insecure_skip_verify="true"), "tls_insecure_skip_verify must be true or false"),
        (secure.tls_opts(redis_url=secure.tls_url(USER, PASSWORD), redis_password_file=password_file(tmp_path)),
         "given in redis_url and redis_password_file"),
        (secure.tls_opts(redis_url=tls, redis_password_env="VCON_OTEL_UNSET_PASSWORD"), "VCON_OTEL_UNSET_PASSWORD is not set"),
        (secure.tls_opts(redis_url=tls, redis_password_file=str(tmp_path / "missing")), "redis_password_file: cannot read"),
        (secure.tls_opts(redis_url=tls, redis_password_file=password_file(tmp_path), tls_ca_file=str(tmp_path / "ca.pem")),
         "tls_ca_file: cannot read"),
        (secure.tls_opts(redis_url=tls + "?ssl_cert_reqs=none", redis_password_file=password_file(tmp_path)),
         "ssl_cert_reqs is not accepted"),
        (secure.tls_opts(redis_url=tls, redis_password_file=password_file(tmp_path), tls_cert_file=None), "tls_key_file is set without"),
    ]
    for opts, expected in cases:
        monkeypatch.setattr(_emit, "_last_log", [-1e18])
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="vcon_otel"):
            assert tracer.run("u", "u", "otel", ["a"], -1, dict(opts, retry_after=0)) is True
        logged = " ".join(r.getMessage() for r in caplog.records if r.name == "vcon_otel")
        assert expected in logged and "ConfigError" in logged, (expected, logged)
        assert PASSWORD not in logged
    assert secure.client.xlen(STREAM) == 0


def test_insecure_skip_verify_delivers_and_logs_one_error_per_process(secure, caplog, monkeypatch):
    monkeypatch.setattr(_connect, "_insecure_logged", [False])
    secure.add_user(USER, PASSWORD, acl_rules("producer"))
    vcon = sim.make_vcon(secure.client)
    with caplog.at_level(logging.ERROR, logger="vcon_otel"):
        for ca in (secure.certs.other_ca, None):  # two clients: a wrong CA, no CA (system roots)
            opts = secure.tls_opts(redis_url=secure.tls_url(USER, PASSWORD), tls_ca_file=ca, tls_insecure_skip_verify=True)
            for i in range(3):
                tracer.run(vcon, vcon, "otel", ["a", "b"], i - 1, opts)
    assert secure.client.xlen(STREAM) == 6
    logged = [r.getMessage() for r in caplog.records if r.name == "vcon_otel"]
    assert len(logged) == 1 and "tls_insecure_skip_verify is true" in logged[0] and "NOT checked" in logged[0]
