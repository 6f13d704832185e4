#!/usr/bin/env bash
# Peer: Postroom as a plain relay, driven only through its documented command
# line (shared/DESIGN.md): `postroom serve --data DIR --config FILE`.
#
#   POSTROOM_BIN=/path/to/postroom peers/postroom.sh start RELAY_PORT SINK_PORT   # prints PID once listening
#   peers/postroom.sh stop
#
# Everything goes to [127.0.0.1]:SINK_PORT through a catch-all smarthost
# without TLS or AUTH. State lives in $STATE (default /tmp/postroom-bench/postroom),
# wiped on each start. Extra TOML lines can be appended with POSTROOM_EXTRA
# (they land in the [delivery] table; start a new table to set others).
# DKIM=ed25519 (or rsa2048) signs the mail: a key is made for example.com,
# smtp-source's From domain, before the relay starts.
#
# max_connections_per_ip is raised from its default of 20: smtp-source opens
# its next session as soon as it has read the reply to QUIT, a moment before
# the relay has counted the old connection closed, so with CONC=20 the 21st
# would be refused with a 421 that is no part of what is measured.
set -euo pipefail
STATE=${STATE:-/tmp/postroom-bench/postroom}

stop() {
  [ -s "$STATE/postroom.pid" ] || return 0
  local p; p=$(cat "$STATE/postroom.pid")
  if ours "$p"; then
    kill "$p"
    for _ in $(seq 100); do ours "$p" || break; sleep 0.1; done
    ! ours "$p" || kill -9 "$p"
  fi
  rm -f "$STATE/postroom.pid"
}
# True while PID $1 is the postroom this script started on our data directory.
ours() { tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -qF -- "--data $STATE/data"; }

start() {
  : "${POSTROOM_BIN:?set POSTROOM_BIN to a built postroom binary}"
  local relay_port=$1 sink_port=$2
  stop
  # A relay port still answering (the last peer on its way out, or some
  # other program) would be taken for ours having started.
  for _ in $(seq 50); do (: </dev/tcp/127.0.0.1/"$relay_port") 2>/dev/null || break; sleep 0.1; done
  if (: </dev/tcp/127.0.0.1/"$relay_port") 2>/dev/null; then
    echo "port $relay_port is in use by another program; not starting postroom" >&2; return 1
  fi
  rm -rf "$STATE"; mkdir -p "$STATE/data"
  cat > "$STATE/postroom.toml" <<CONF
hostname = "relay-bench.localdomain"

[listen]
address = "127.0.0.1"
port = $relay_port

[access]
trusted_networks = ["127.0.0.0/8"]

[limits]
max_connections_per_ip = 200

[delivery]
mode = "smarthost"
smarthost = "127.0.0.1:$sink_port"
smarthost_tls = "none"
tls = "none"
queue_scan_interval = "1s"
${POSTROOM_EXTRA:-}
CONF
  if [ -n "${DKIM:-}" ]; then
    "$POSTROOM_BIN" dkim generate example.com --selector bench --algo "$DKIM" --data "$STATE/data" >/dev/null
  fi
  "$POSTROOM_BIN" serve --data "$STATE/data" --config "$STATE/postroom.toml" >"$STATE/postroom.log" 2>&1 &
  echo $! > "$STATE/postroom.pid"
  for _ in $(seq 100); do
    if (: </dev/tcp/127.0.0.1/"$relay_port") 2>/dev/null; then cat "$STATE/postroom.pid"; return 0; fi
    ours "$(cat "$STATE/postroom.pid")" || break
    sleep 0.1
  done
  echo "postroom did not come up; see $STATE/postroom.log" >&2; stop; return 1
}

case "${1:-}" in
  start) start "${2:?RELAY_PORT}" "${3:?SINK_PORT}" ;;
  stop) stop ;;
  *) echo "usage: $0 start RELAY_PORT SINK_PORT | stop" >&2; exit 2 ;;
esac
