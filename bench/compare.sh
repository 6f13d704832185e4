#!/usr/bin/env bash
# compare.sh: Postroom against Postfix, side by side, the runs interleaved
# (postfix, postroom, postfix, postroom, ...) so that both see the same
# machine: on a shared, noisy box only a ratio measured in one go means
# anything. Prints every run, then per size the medians and the ratio.
#
#   POSTROOM_BIN=$PWD/postroom RUNS=3 SIZES="4096 102400" bench/compare.sh
#   DKIM=ed25519 ...   Postroom signs (Postfix, which cannot, does not)
#
# Needs root (the Postfix peer) and Debian's postfix package for
# smtp-source and smtp-sink. N, CONC, ports: see relay-bench.sh and
# run-peer.sh.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${RUNS:-3} SIZES=${SIZES:-4096 102400} PEERS=${PEERS:-postfix postroom}
: "${POSTROOM_BIN:?set POSTROOM_BIN to a built postroom binary}"
export POSTROOM_BIN
OUT=$(mktemp /tmp/postroom-compare.XXXXXX); trap 'rm -f "$OUT"' EXIT
for size in $SIZES; do
  for r in $(seq "$RUNS"); do
    for peer in $PEERS; do
      SIZE=$size OUT=$OUT "$HERE/run-peer.sh" "$peer" 1 2>&1 | grep -E '^(  relay|[a-z]+#)' | sed "s/#1:/ run $r:/"
    done
  done
done
echo
# Medians per size and peer, then Postroom / Postfix.
awk '
  function med(list,   n, v, i, j, t) { n = split(list, v, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
  { delete f; for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    k = f["size"] SUBSEP f["peer"]; sizes[f["size"]] = 1; runs[k]++; bad[k] += (f["ok"] != 1)
    e2e[k] = e2e[k] " " f["e2e_mps"]; acc[k] = acc[k] " " f["accept_mps"]
    if (f["relay_cpu_s"] != "-") cpu[k] = cpu[k] " " (1000 * f["relay_cpu_s"] / f["n"])
    if (f["tree_rss_kb"] != "-") rss[k] = rss[k] " " f["tree_rss_kb"] }
  END {
    for (s in sizes) {
      for (p in runs) { split(p, sp, SUBSEP); if (sp[1] != s) continue
        k = p; m[k] = med(e2e[k])
        printf "MEDIAN size=%s peer=%s runs=%d failed=%d e2e_mps=%.0f accept_mps=%.0f cpu_ms_per_msg=%.2f peak_rss_mb=%.1f\n",
          s, sp[2], runs[k], bad[k], m[k], med(acc[k]), med(cpu[k]), med(rss[k]) / 1024 }
      a = s SUBSEP "postroom"; b = s SUBSEP "postfix"
      if ((a in m) && (b in m) && m[b] > 0) printf "RATIO size=%s postroom/postfix e2e = %.2f\n", s, m[a] / m[b]
    }
  }' "$OUT"
