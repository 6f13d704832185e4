#!/usr/bin/env bash
# run-peer.sh PEER [RUNS]: RUNS (default 3) fresh runs of relay-bench.sh
# against peers/PEER.sh, then the medians.
#
#   N=2000 SIZE=4096 CONC=20 ./run-peer.sh postfix 3
#   POSTROOM_BIN=$PWD/postroom N=2000 SIZE=102400 ./run-peer.sh postroom 3
#   ./run-peer.sh none 3          # no relay: smtp-source straight into smtp-sink
#
# Each run starts the peer on a wiped queue (peers/PEER.sh start RELAY_PORT
# SINK_PORT prints its PID), calls `sync` so the previous run's writeback does
# not leak in, measures, and stops the peer again, even on error or Ctrl-C.
# RESULT lines are appended to $OUT when set. Ports default to 27025/27026:
# below the range Linux hands out to outgoing connections (32768-60999),
# where a port may be taken by some other program's connection at any time.
set -uo pipefail
PEER=${1:?usage: run-peer.sh PEER|none [RUNS]} RUNS=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
export N=${N:-2000} SIZE=${SIZE:-4096} CONC=${CONC:-20}
export RELAY_PORT=${RELAY_PORT:-27025} SINK_PORT=${SINK_PORT:-27026}
[ "$PEER" = none ] && RELAY_PORT=$SINK_PORT
stop_peer() { [ "$PEER" = none ] || "$HERE/peers/$PEER.sh" stop; }
trap stop_peer EXIT
trap 'exit 130' INT TERM
results=()
for r in $(seq "$RUNS"); do
  pid=
  if [ "$PEER" != none ]; then
    pid=$("$HERE/peers/$PEER.sh" start "$RELAY_PORT" "$SINK_PORT") || exit 1
  fi
  sync
  line=$(RELAY_PID=$pid LABEL="$PEER#$r" "$HERE/relay-bench.sh" | tee /dev/stderr | grep '^RESULT')
  stop_peer
  [ -n "$line" ] || { echo "run $r produced no result" >&2; exit 1; }
  results+=("$line")
  [ -n "${OUT:-}" ] && echo "$line peer=$PEER" >> "$OUT"
done
# Medians over the runs (a field that is '-' is shown as '-').
printf '%s\n' "${results[@]}" | awk -v peer="$PEER" -v runs="$RUNS" '
  function med(k,   n, i, j, t, v) { n = 0
    for (i = 1; i <= NR; i++) if (val[i, k] != "-") v[++n] = val[i, k] + 0
    if (!n) return "-"
    for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
  { for (i = 2; i <= NF; i++) { split($i, kv, "="); val[NR, kv[1]] = kv[2] }; if (val[NR, "ok"] != 1) bad++ }
  END {
    printf "SUMMARY peer=%s size=%s n=%s c=%s runs=%d failed=%d accept_mps_median=%s e2e_mps_median=%s relay_cpu_s_median=%s busy_pct_median=%s steal_pct_median=%s vmhwm_kb_median=%s tree_rss_kb_median=%s tree_pss_kb_median=%s\n",
      peer, val[1, "size"], val[1, "n"], val[1, "c"], runs, bad, med("accept_mps"), med("e2e_mps"), med("relay_cpu_s"), med("busy_pct"), med("steal_pct"), med("vmhwm_kb"), med("tree_rss_kb"), med("tree_pss_kb") }'
