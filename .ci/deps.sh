#!/usr/bin/env bash
# deps.sh WHAT PACKAGE...
#
# Makes sure Go is on PATH and the Debian packages named are installed,
# installing the missing ones with apt-get (through sudo when not root).
# WHAT names the group in messages, e.g. "build dependencies".
#
# Quiet when everything is present, so `make run` and `make test` can call
# it every time; only what is missing is installed.
set -euo pipefail

if (($# < 1)); then
	echo "usage: $0 WHAT [PACKAGE...]" >&2
	exit 2
fi
what=$1
shift

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! command -v go >/dev/null 2>&1; then
	want=$(awk '$1 == "go" { print $2; exit }' "$repo_root/go.mod" 2>/dev/null || true)
	echo "Go is not installed (or not on PATH). Postroom needs Go ${want:-(see go.mod)} or newer:" >&2
	echo "install it from https://go.dev/dl/ and make sure 'go version' works, then run make again." >&2
	exit 1
fi

(($# == 0)) && exit 0

missing=()
for pkg in "$@"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	if [[ $status != "install ok installed" ]]; then
		missing+=("$pkg")
	fi
done
((${#missing[@]} == 0)) && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "Missing $what: ${missing[*]}" >&2
	echo "This is not a Debian-style system (no apt-get); install the equivalents with your package manager." >&2
	exit 1
fi

if ((EUID == 0)); then
	as_root=()
	echo "Installing $what with apt-get: ${missing[*]}"
else
	if ! command -v sudo >/dev/null 2>&1; then
		echo "Missing $what: ${missing[*]}" >&2
		echo "Install them as root: apt-get install ${missing[*]}" >&2
		exit 1
	fi
	as_root=(sudo)
	# Said before sudo asks for a password, so the prompt is not a surprise.
	echo "Installing $what with sudo apt-get: ${missing[*]}"
fi

# noninteractive: CI runs without a terminal, and a package asking a
# question (tzdata, keyboard layout) would hang the run.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
