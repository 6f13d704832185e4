#!/usr/bin/env bash
# load.sh: the load run of `make bench`. Builds the headless postroom,
# starts `postroom serve` on a fresh temporary data directory relaying to
# Postfix's smtp-sink, drives it with smtp-source, and prints end-to-end
# msg/s, the relay's CPU per message and its peak RSS (relay-bench.sh).
#
#   bench/load.sh                  RUNS=1, SIZE=4096, N=2000, CONC=20
#   RUNS=3 SIZE=102400 bench/load.sh
#   DKIM=ed25519 bench/load.sh     with DKIM signing
#
# For the comparison with Postfix, see compare.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
GO=${GO:-go}
for tool in smtp-source smtp-sink; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "load.sh: $tool not found; it comes with Debian's postfix package. Install it without configuring a mail system:" >&2
    echo '  echo "postfix postfix/main_mailer_type select No configuration" | sudo debconf-set-selections' >&2
    echo '  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix' >&2
    exit 1
  fi
done
BIN=$(mktemp -d /tmp/postroom-load.XXXXXX)
trap 'rm -rf "$BIN"' EXIT
echo "==> building postroom (headless) into $BIN"
(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -tags headless,migrated_fynedo -o "$BIN/postroom" .)
echo "==> load run: N=${N:-2000} SIZE=${SIZE:-4096} CONC=${CONC:-20} RUNS=${RUNS:-1}${DKIM:+ DKIM=$DKIM}"
POSTROOM_BIN=$BIN/postroom STATE=$BIN/state "$HERE/run-peer.sh" postroom "${RUNS:-1}"
