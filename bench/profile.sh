#!/usr/bin/env bash
# profile.sh: a load run with a CPU profile of the relay, to see where the
# time goes before optimising. Builds postroom with -tags pprof (pprof.go:
# net/http/pprof on POSTROOM_PPROF), starts it like run-peer.sh does, takes
# a PROFSECS (default 8) CPU profile and a heap profile mid-run.
#
#   N=6000 SIZE=4096 bench/profile.sh [OUT]   # then: go tool pprof -top OUT.bin OUT
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${1:-/tmp/postroom-cpu.prof}
export N=${N:-6000} SIZE=${SIZE:-4096} CONC=${CONC:-20}
export RELAY_PORT=${RELAY_PORT:-27025} SINK_PORT=${SINK_PORT:-27026} STATE=${STATE:-/tmp/postroom-bench/profile}
PPROF=127.0.0.1:${PPROF_PORT:-27060}
(cd "$ROOT" && CGO_ENABLED=0 ${GO:-go} build -tags headless,migrated_fynedo,pprof -o "$OUT.bin" .)
pid=$(POSTROOM_PPROF=$PPROF POSTROOM_BIN=$OUT.bin "$HERE/peers/postroom.sh" start "$RELAY_PORT" "$SINK_PORT")
trap '"$HERE/peers/postroom.sh" stop' EXIT
RELAY_PID=$pid "$HERE/relay-bench.sh" > "$OUT.load" 2>&1 &
load=$!
sleep 1
curl -fsS -o "$OUT" "http://$PPROF/debug/pprof/profile?seconds=${PROFSECS:-8}"
curl -fsS -o "$OUT.heap" "http://$PPROF/debug/pprof/heap"
wait "$load" || true
grep -v '^RESULT' "$OUT.load"
echo "profiles: $OUT (CPU), $OUT.heap (heap; -sample_index=alloc_space for allocations), binary $OUT.bin"
