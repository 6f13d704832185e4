#!/usr/bin/env bash
# fuzz.sh: runs every Fuzz* target in the module for $FUZZTIME (default 30s)
# each, one after another (go test -fuzz takes one target in one package at
# a time). New failing inputs land in the package's testdata/fuzz/<Name>/;
# check them in with the fix.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

go=${GO:-go}
fuzztime=${FUZZTIME:-30s}

# `go test -list` prints a package's matching test names, then its "ok" line.
targets=$("$go" test -run '^$' -list '^Fuzz' ./... | awk '
	/^Fuzz/ { names[n++] = $1; next }
	/^ok[ \t]/ { for (i = 0; i < n; i++) print $2, names[i]; n = 0 }
')

if [[ -z $targets ]]; then
	echo "No fuzz targets found."
	exit 0
fi

while read -r pkg name; do
	echo "==> $pkg $name ($fuzztime)"
	"$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
done <<<"$targets"
