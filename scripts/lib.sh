# Shared by the scripts (source it: `. "$(dirname "$0")/../lib.sh"`): free loopback ports, and
# background processes started, recorded by process ID and stopped by that ID only -- never by
# name, so a script never stops a process it did not start (another bridge, Redis or Prometheus
# on the same machine keeps running).
#
#   free_port                  prints a TCP port that is free on 127.0.0.1
#   start LOG CMD [ARGS...]    runs CMD in the background, stdout and stderr to LOG; records its
#                              PID (last started: $LAST_PID)
#   start_split OUT ERR CMD..  the same with stdout to OUT and stderr to ERR
#   stop PID                   TERM, up to 5 s to exit, then KILL; PID is forgotten
#   stop_all                   stops every recorded PID, last started first
#   wait_port PORT [SECS]      until something accepts connections on 127.0.0.1:PORT (default 30 s);
#                              returns 1 on timeout
#   wait_http URL [SECS]       until URL answers 2xx (curl -sf); returns 1 on timeout
#   wait_scraped PORT [SECS]   until the Prometheus on 127.0.0.1:PORT has scraped a target that is
#                              up (default 60 s); returns 1 on timeout
#   work_dir VAR               creates a temporary directory into variable VAR; stop_all removes it
#
# `stop_all` runs on exit (a trap on EXIT set when this file is sourced); a script with its own
# EXIT trap calls stop_all from it.

LIB_PIDS=()
LIB_DIRS=()
LAST_PID=

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local log=$1; shift
  start_split "$log" "$log" "$@"
}

start_split() {
  local out=$1 err=$2; shift 2
  if [ "$out" = "$err" ]; then "$@" > "$out" 2>&1 & else "$@" > "$out" 2> "$err" & fi
  LAST_PID=$!
  LIB_PIDS+=("$LAST_PID")
}

stop() {
  local pid=$1 i
  kill "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
  local kept=() p
  for p in "${LIB_PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  LIB_PIDS=("${kept[@]}")
}

stop_all() {
  local i
  for ((i = ${#LIB_PIDS[@]} - 1; i >= 0; i--)); do stop "${LIB_PIDS[$i]}"; done
  local d
  for d in "${LIB_DIRS[@]}"; do rm -rf "$d"; done
  LIB_DIRS=()
}

wait_port() {
  local port=$1 secs=${2:-30} i
  for ((i = 0; i < secs * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "wait_port: nothing accepts connections on 127.0.0.1:$port after ${secs}s" >&2
  return 1
}

wait_http() {
  local url=$1 secs=${2:-30} i
  for ((i = 0; i < secs * 5; i++)); do
    curl -sf "$url" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "wait_http: $url does not answer after ${secs}s" >&2
  return 1
}

wait_scraped() {
  local port=$1 secs=${2:-60} i
  for ((i = 0; i < secs * 2; i++)); do
    curl -sf "http://127.0.0.1:$port/api/v1/targets" 2>/dev/null | grep -q '"health":"up"' && return 0
    sleep 0.5
  done
  echo "wait_scraped: the Prometheus on 127.0.0.1:$port has no target up after ${secs}s" >&2
  return 1
}

work_dir() {
  local d
  d=$(mktemp -d)
  LIB_DIRS+=("$d")
  printf -v "$1" '%s' "$d"
}

trap stop_all EXIT
