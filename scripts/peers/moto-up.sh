#!/usr/bin/env bash
# A copy of the team's ../shared/peers/moto-up.sh, used when that folder is not beside
# the checkout (a CI machine may have only the project). Keep them the same.
# moto-up.sh [PORT] [HOST]  - start a moto server on a loopback address, idempotently.
#
# Prints the endpoint URL (and nothing else) on stdout, so:  EP=$(./moto-up.sh 5055)
# Diagnostics go to stderr. Exit 0 when a moto server answers on HOST:PORT afterwards.
#
# Environment (all optional):
#   MOTO_PORT           default port if no argument            (5000)
#   MOTO_HOST           default host if no argument            (127.0.0.1; loopback only)
#   MOTO_VENV           virtualenv holding moto                 (${XDG_CACHE_HOME:-$HOME/.cache}/peers/moto-venv)
#   MOTO_SPEC           pip requirement installed when missing  (moto[server]==5.2.5)
#   MOTO_STATE_DIR      where pid/log files live                (${XDG_CACHE_HOME:-$HOME/.cache}/peers/moto-run)
#   MOTO_START_TIMEOUT  seconds to wait for the server          (60)
#   PYTHON              interpreter used to create the venv     (python3)
# Any other MOTO_* variable (e.g. MOTO_ENABLE_AMI_VALIDATION=true) is passed to the server.
set -euo pipefail

PORT="${1:-${MOTO_PORT:-5000}}"
HOST="${2:-${MOTO_HOST:-127.0.0.1}}"
VENV="${MOTO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/peers/moto-venv}"
SPEC="${MOTO_SPEC:-moto[server]==5.2.5}"
STATE="${MOTO_STATE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/peers/moto-run}"
TIMEOUT="${MOTO_START_TIMEOUT:-60}"
PY="${PYTHON:-python3}"

log() { echo "moto-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if ! [[ "$PORT" =~ ^[0-9]+$ ]] || (( PORT < 1 || PORT > 65535 )); then die "bad port '$PORT'"; fi
case "$HOST" in
  127.*|localhost|::1|\[::1\]) ;;
  *) die "host '$HOST' is not a loopback address; refusing" ;;
esac
URL_HOST="$HOST"; [[ "$HOST" == "::1" ]] && URL_HOST="[::1]"
URL="http://${URL_HOST}:${PORT}"
PIDFILE="$STATE/moto-$PORT.pid"
LOGFILE="$STATE/moto-$PORT.log"
mkdir -p "$STATE"

# serialise concurrent invocations for the same port
exec 9>"$STATE/moto-$PORT.lock"
if command -v flock >/dev/null 2>&1; then flock -w 120 9 || die "another moto-up holds the lock"; fi

# answers URL -> 0 if a moto server responds on /moto-api/data.json with HTTP 200
answers() {
  "$PY" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=2)
    sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}
port_busy() {
  "$PY" - "$HOST" "$PORT" <<'EOF' 2>/dev/null
import socket, sys
host, port = sys.argv[1].strip("[]"), int(sys.argv[2])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam); s.settimeout(1)
sys.exit(0 if s.connect_ex((host, port)) == 0 else 1)
EOF
}
is_our_moto() {  # pid -> 0 if alive and its command line is a moto server
  local pid="$1"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'moto' || return 1
}

# 1. already running (ours)?
if [[ -f "$PIDFILE" ]]; then
  OLDPID="$(cat "$PIDFILE" 2>/dev/null || true)"
  if is_our_moto "$OLDPID"; then
    if answers "$URL"; then
      log "already running (pid $OLDPID)"; echo "$URL"; exit 0
    fi
    log "pid $OLDPID alive but not answering yet; waiting"
  else
    log "removing stale pid file ($OLDPID)"; rm -f "$PIDFILE"; OLDPID=""
  fi
fi

# 2. port held by something else?
if [[ ! -f "$PIDFILE" ]] && port_busy; then
  if answers "$URL"; then
    log "a moto server not started by this script already answers on $URL; using it"
    echo "$URL"; exit 0
  fi
  die "port $PORT on $HOST is in use by something that is not moto"
fi

# 3. install moto if missing
if [[ ! -x "$VENV/bin/moto_server" ]]; then
  log "installing $SPEC into $VENV"
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV" || die "cannot create venv $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$SPEC" >&2 \
    || die "pip install '$SPEC' failed"
  [[ -x "$VENV/bin/moto_server" ]] || die "moto_server missing after install"
fi

# 4. start (unless a live pid from step 1 is still booting)
if [[ ! -f "$PIDFILE" ]]; then
  T0=$(date +%s.%N)
  # no stdin, detached from the terminal, output to the log file
  nohup "$VENV/bin/moto_server" -H "${HOST//[\[\]]/}" -p "$PORT" >"$LOGFILE" 2>&1 </dev/null 9>&- &
  PID=$!
  echo "$PID" >"$PIDFILE"
  log "started pid $PID, log $LOGFILE"
else
  PID="$(cat "$PIDFILE")"; T0=$(date +%s.%N)
fi

# 5. wait until it answers
DEADLINE=$(( $(date +%s) + TIMEOUT ))
until answers "$URL"; do
  if ! kill -0 "$PID" 2>/dev/null; then
    rm -f "$PIDFILE"
    log "server exited during startup; last log lines:"; tail -n 20 "$LOGFILE" >&2 || true
    exit 1
  fi
  (( $(date +%s) < DEADLINE )) || die "no answer from $URL after ${TIMEOUT}s (pid $PID still alive; see $LOGFILE)"
  sleep 0.1
done
log "ready after $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')s"
echo "$URL"
