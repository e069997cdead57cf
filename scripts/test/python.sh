#!/usr/bin/env bash
# Python tests of the conserver integration (python/), against a real Redis with RedisJSON.
# Needs the variables of ${VCON_OTEL_CACHE:-$HOME/.cache/vcon-otel}/env.sh (written by
# scripts/install-test-deps.sh; scripts/test.sh runs both).
#
# Runs pytest with $VCON_OTEL_PYTHON (Python 3.11), then, when pyenv has Python 3.12 and 3.13,
# again with each of them in a small cached venv (pytest; redis-py 4.6.0, the version vCon Server
# pins, on 3.12 and the current 8.1.0 on 3.13; the main venv has 5.2.1) into which the package is
# installed with `pip install ./python` -- which also checks the packaging. VCON_OTEL_PY_EXTRA=0
# skips the extra versions. Before that, mypy --strict checks the package's type hints.
# Exits non-zero on any failure; "no tests collected" is a failure.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${VCON_OTEL_CACHE:-$HOME/.cache/vcon-otel}
if [ -z "${VCON_OTEL_PYTHON:-}" ] && [ -f "$CACHE/env.sh" ]; then
  # shellcheck disable=SC1091
  . "$CACHE/env.sh"
fi
for v in VCON_OTEL_PYTHON VCON_OTEL_REDIS_SERVER VCON_OTEL_REJSON; do
  [ -n "${!v:-}" ] || { echo "test-python: $v is not set; run scripts/test.sh (it installs the test dependencies)" >&2; exit 2; }
done

failed=0
run_pytest() { # run_pytest LABEL PYTHON
  echo "--- python tests with $1 ($("$2" -c 'import sys; print(sys.version.split()[0])'))"
  (cd "$root/python" && "$2" -m pytest -q -p no:cacheprovider tests)
  local rc=$?
  if [ "$rc" -eq 5 ]; then echo "test-python: no tests collected with $1" >&2; rc=1; fi
  [ "$rc" -eq 0 ] || { echo "test-python: FAILED with $1" >&2; failed=1; }
}

# Type hints: the package (and the drop-in hook modules) must pass mypy --strict, checked
# against the main venv's redis-py (5.2.1 ships its own types; 4.6.0 does not).
echo "--- mypy --strict python/vcon_otel python/conserver_hooks"
if ! "$VCON_OTEL_PYTHON" -m mypy --version >/dev/null 2>&1; then
  echo "test-python: mypy is not in the venv of VCON_OTEL_PYTHON: run scripts/install-test-deps.sh" >&2; failed=1
elif ! (cd "$root/python" && "$VCON_OTEL_PYTHON" -m mypy --strict --python-version 3.11 --cache-dir /dev/null vcon_otel conserver_hooks); then
  echo "test-python: FAILED mypy" >&2; failed=1
fi

run_pytest "VCON_OTEL_PYTHON" "$VCON_OTEL_PYTHON"

if [ "${VCON_OTEL_PY_EXTRA:-1}" != 0 ] && command -v pyenv >/dev/null; then
  # 3.12 with redis-py 4.6.0: what vCon Server itself pins (pyproject.toml) and runs on.
  # 3.13 with the current redis-py (TLS host-name checks on by default, HELLO, driver_info).
  for ver_redis in 3.12:4.6.0 3.13:8.1.0; do
    ver=${ver_redis%%:*}; redis_ver=${ver_redis#*:}
    base=$(pyenv prefix "$(pyenv versions --bare | grep -E "^${ver//./\\.}(\.[0-9]+)?$" | sort -V | tail -1)" 2>/dev/null)/bin/python3
    if [ ! -x "$base" ]; then echo "test-python: no Python $ver in pyenv, skipped"; continue; fi
    venv="$CACHE/py$ver-redis$redis_ver-venv"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pytest, redis' 2>/dev/null; then
      rm -rf "$venv"
      if ! { "$base" -m venv "$venv" && "$venv/bin/pip" install -q "pytest==8.3.4" "redis==$redis_ver"; } >"$CACHE/py$ver-venv.log" 2>&1; then
        echo "test-python: cannot create a Python $ver venv (see $CACHE/py$ver-venv.log), skipped"
        continue
      fi
    fi
    # The package as a user installs it (no deps: redis is already there).
    if ! "$venv/bin/pip" install -q --no-deps --force-reinstall "$root/python" >"$CACHE/py$ver-install.log" 2>&1; then
      echo "test-python: pip install ./python failed with Python $ver" >&2; cat "$CACHE/py$ver-install.log" >&2; failed=1; continue
    fi
    (cd / && "$venv/bin/python" -c 'import vcon_otel.tracer, vcon_otel.hooks, conserver_hooks.hook, conserver_hooks.after_link_hook') \
      || { echo "test-python: the installed package does not import with Python $ver" >&2; failed=1; }
    rm -rf "$root/python/build" "$root/python/vcon_otel.egg-info"
    run_pytest "Python $ver, redis-py $redis_ver" "$venv/bin/python"
  done
fi
exit "$failed"
