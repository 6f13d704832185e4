#!/usr/bin/env bash
# Peer: Debian's Postfix as a plain relay (apt-get install postfix; nothing is built).
#
#   peers/postfix.sh start RELAY_PORT SINK_PORT   # prints the master PID once listening
#   peers/postfix.sh stop                         # postfix stop + kill leftovers by PID
#
# Postfix listens on 127.0.0.1:RELAY_PORT only and relays everything to
# [127.0.0.1]:SINK_PORT. Config and queue live in a private directory
# ($STATE, default /tmp/postroom-bench/postfix), wiped on each start; the
# system's /etc/postfix is never touched. Must run as root (Postfix drops to
# the 'postfix' user itself). Extra main.cf settings: POSTFIX_EXTRA="k=v k=v".
set -euo pipefail
STATE=${STATE:-/tmp/postroom-bench/postfix}
ETC=$STATE/etc

stop() {
  [ -f "$ETC/main.cf" ] || return 0
  postfix -c "$ETC" stop >/dev/null 2>&1 || true
  # A master that outlives 'postfix stop' (and its children): kill by PID,
  # after checking that the PID still is that Postfix master.
  local pidf=$STATE/spool/pid/master.pid m
  [ -s "$pidf" ] || return 0
  m=$(tr -dc 0-9 < "$pidf")
  for _ in $(seq 50); do ismaster "$m" || break; sleep 0.1; done
  if ismaster "$m"; then kill -9 $(ps -o pid= --ppid "$m") "$m" 2>/dev/null || true; fi
  rm -f "$pidf"
}
ismaster() { [ -n "$1" ] && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q '^/usr/lib/postfix/sbin/master'; }

start() {
  local relay_port=$1 sink_port=$2
  stop
  # A relay port still answering (the last peer on its way out, or some
  # other program) would be taken for ours having started.
  for _ in $(seq 50); do (: </dev/tcp/127.0.0.1/"$relay_port") 2>/dev/null || break; sleep 0.1; done
  if (: </dev/tcp/127.0.0.1/"$relay_port") 2>/dev/null; then
    echo "port $relay_port is in use by another program; not starting postfix" >&2; return 1
  fi
  rm -rf "$STATE"; mkdir -p "$ETC" "$STATE/spool" "$STATE/data"
  chown postfix "$STATE/data"
  cat > "$ETC/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $STATE/spool
data_directory = $STATE/data
maillog_file = $STATE/maillog
maillog_file_prefixes = $STATE
myhostname = relay-bench.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$sink_port
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
alias_maps =
alias_database =
local_transport = error:local delivery disabled
default_destination_concurrency_limit = 20
biff = no
EOF
  local kv; for kv in ${POSTFIX_EXTRA:-}; do echo "${kv%%=*} = ${kv#*=}" >> "$ETC/main.cf"; done
  # Debian's master.cf with the public smtpd moved to 127.0.0.1:RELAY_PORT
  # and chroot switched off (the private spool has no chroot jail files).
  awk -v port="$relay_port" '
    /^smtp[ \t]+inet/ { $1 = "127.0.0.1:" port }
    /^[a-z0-9.:]+[ \t]+(inet|unix|unix-dgram|fifo|pass)[ \t]/ { $5 = "n" }
    { print }' /etc/postfix/master.cf > "$ETC/master.cf"
  postfix -c "$ETC" check >/dev/null 2>&1 || true   # creates missing queue dirs
  postfix -c "$ETC" start >/dev/null 2>&1
  for _ in $(seq 100); do
    if [ -s "$STATE/spool/pid/master.pid" ] && (: </dev/tcp/127.0.0.1/"$relay_port") 2>/dev/null; then
      tr -dc 0-9 < "$STATE/spool/pid/master.pid"; echo; return 0
    fi
    sleep 0.1
  done
  echo "postfix did not come up; see $STATE/maillog" >&2; stop; return 1
}

case "${1:-}" in
  start) start "${2:?RELAY_PORT}" "${3:?SINK_PORT}" ;;
  stop) stop ;;
  *) echo "usage: $0 start RELAY_PORT SINK_PORT | stop" >&2; exit 2 ;;
esac
