#!/usr/bin/env bash
# tray-smoke.sh BINARY TRAYHOST OUTDIR
#
# Checks the tray menu of the real desktop app as a desktop panel sees it.
# Starts a virtual X server, imports settings into a new data directory
# (so the main window opens, not the setup wizard), and runs TRAYHOST
# (built from .ci/trayhost) inside a private D-Bus session bus
# (dbus-run-session). TRAYHOST owns org.kde.StatusNotifierWatcher, starts
# BINARY, reads its menu over com.canonical.dbusmenu and clicks through it:
# see .ci/trayhost/main.go for the checks. The app's output goes to
# OUTDIR/tray-app.log.
#
# Needs Xvfb, xwininfo (x11-utils), dbus-run-session (Debian package dbus) and
# python3 (to find a free port and, through libX11, to press the window's
# close button without a window manager).
set -euo pipefail

if (($# != 3)); then
	echo "usage: $0 BINARY TRAYHOST OUTDIR" >&2
	exit 2
fi
binary=$1
trayhost=$2
outdir=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

for tool in Xvfb xwininfo dbus-run-session python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "tray-smoke: $tool is not installed (apt-get install xvfb x11-utils dbus python3)" >&2
		exit 1
	fi
done
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

work=$(mktemp -d)
xvfb_pid=
cleanup() {
	# Only the Xvfb started here is stopped, by its id; trayhost stops the
	# app it started, and dbus-run-session its bus.
	if [[ -n $xvfb_pid ]] && kill -0 "$xvfb_pid" 2>/dev/null; then
		kill "$xvfb_pid" 2>/dev/null || true
		wait "$xvfb_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=.ci/xvfb.sh
. "$here/xvfb.sh"
start_xvfb "$work" "$outdir/tray-xvfb.log" || exit 1
# A real locale: Fyne complains about "C".
export LANG=en_GB.UTF-8 LC_ALL=

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir "$work/data"
# Mail for example.net would go to the discard port; sending is paused
# before any is sent, so it stays queued.
cat >"$work/settings.toml" <<TOML
hostname = "relay.example.com"

[listen]
address = "127.0.0.1"
port = $port

[[delivery.routes]]
domain = "example.net"
host = "127.0.0.1:9"
TOML
"$binary" config import "$work/settings.toml" --data "$work/data" >/dev/null

# No outer session bus may leak in: dbus-run-session sets its own address.
unset DBUS_SESSION_BUS_ADDRESS
dbus-run-session -- "$trayhost" -app "$binary" -data "$work/data" -smtp "127.0.0.1:$port" \
	-log "$outdir/tray-app.log" -close-window "python3 $here/wm-close.py"
