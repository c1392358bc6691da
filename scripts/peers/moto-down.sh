#!/usr/bin/env bash
# A copy of the team's ../shared/peers/moto-down.sh, used when that folder is not beside
# the checkout (a CI machine may have only the project). Keep them the same.
# moto-down.sh [PORT]  - stop the moto server that moto-up.sh started on PORT, idempotently.
# Only the PID recorded in the pid file is signalled (and only if it is a moto process);
# nothing is killed by name. Exit 0 when no server of ours is left on that port.
set -euo pipefail

PORT="${1:-${MOTO_PORT:-5000}}"
STATE="${MOTO_STATE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/peers/moto-run}"
PIDFILE="$STATE/moto-$PORT.pid"
log() { echo "moto-down: $*" >&2; }

[[ "$PORT" =~ ^[0-9]+$ ]] || { log "bad port '$PORT'"; exit 1; }
if [[ ! -f "$PIDFILE" ]]; then
  log "nothing to stop on port $PORT (no pid file)"; exit 0
fi
PID="$(cat "$PIDFILE" 2>/dev/null || true)"
if [[ -z "$PID" || ! -r "/proc/$PID/cmdline" ]] \
   || ! tr '\0' ' ' <"/proc/$PID/cmdline" | grep -q 'moto'; then
  log "pid '$PID' is not a running moto server; removing stale pid file"
  rm -f "$PIDFILE"; exit 0
fi

kill -TERM "$PID" 2>/dev/null || true
for _ in $(seq 1 100); do          # up to 10 s for a clean exit
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$PID" 2>/dev/null; then
  log "pid $PID ignored SIGTERM; sending SIGKILL"
  kill -KILL "$PID" 2>/dev/null || true
  sleep 0.2
fi
rm -f "$PIDFILE"
log "stopped pid $PID (port $PORT)"
