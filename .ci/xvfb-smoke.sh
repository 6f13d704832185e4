#!/usr/bin/env bash
# xvfb-smoke.sh BINARY OUTDIR
#
# Starts the desktop app on a virtual X server, waits for its window, and
# saves a screenshot of the screen as OUTDIR/shot.png (the app's output goes
# to OUTDIR/app.log). This is the "look at the real screen" check: unit tests
# use Fyne's test driver, which never opens an OpenGL window.
#
# Needs Xvfb, xwininfo (x11-utils), ImageMagick's import and identify, and
# Mesa's software OpenGL (libgl1-mesa-dri). Exits non-zero, saying why, when
# the window does not appear within WINDOW_TIMEOUT seconds (default 60).
#
# WINDOW_TITLE (default Postroom) is the title waited for; MIN_COLOURS
# (default 16) is how many colours the screen must show to count as drawn.
set -euo pipefail

if (($# != 2)); then
	echo "usage: $0 BINARY OUTDIR" >&2
	exit 2
fi
binary=$1
outdir=$2
title=${WINDOW_TITLE:-Postroom}
timeout=${WINDOW_TIMEOUT:-60}
min_colours=${MIN_COLOURS:-16}

for tool in Xvfb xwininfo import identify; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "xvfb-smoke: $tool is not installed (apt-get install xvfb x11-utils imagemagick)" >&2
		exit 1
	fi
done
if [[ ! -x $binary ]]; then
	echo "xvfb-smoke: $binary is not an executable file" >&2
	exit 1
fi
mkdir -p "$outdir"
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
outdir=$(cd "$outdir" && pwd)

work=$(mktemp -d)
xvfb_pid=
app_pid=
cleanup() {
	# Only the two processes started here are stopped, by their ids.
	if [[ -n $app_pid ]] && kill -0 "$app_pid" 2>/dev/null; then
		kill "$app_pid" 2>/dev/null || true
		wait "$app_pid" 2>/dev/null || true
	fi
	if [[ -n $xvfb_pid ]] && kill -0 "$xvfb_pid" 2>/dev/null; then
		kill "$xvfb_pid" 2>/dev/null || true
		wait "$xvfb_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=.ci/xvfb.sh
. "$(dirname "${BASH_SOURCE[0]}")/xvfb.sh"
start_xvfb "$work" "$outdir/xvfb.log" || exit 1
echo "xvfb-smoke: Xvfb on $DISPLAY"

# No D-Bus session: the tray is simply absent, as on a desktop without one.
mkdir "$work/data"
"$binary" --data "$work/data" >"$outdir/app.log" 2>&1 &
app_pid=$!

# Poll for the window; the app has no way to announce it. Bounded, and it
# stops early if the app exits.
deadline=$((SECONDS + timeout))
until xwininfo -root -tree 2>/dev/null | grep -qF "\"$title\""; do
	if ! kill -0 "$app_pid" 2>/dev/null; then
		wait "$app_pid" && status=0 || status=$?
		app_pid=
		echo "xvfb-smoke: $binary exited (status $status) before a window titled \"$title\" appeared; its output:" >&2
		tail -n 50 "$outdir/app.log" >&2
		exit 1
	fi
	if ((SECONDS >= deadline)); then
		echo "xvfb-smoke: no window titled \"$title\" appeared within ${timeout}s; app output:" >&2
		tail -n 50 "$outdir/app.log" >&2
		echo "xvfb-smoke: windows on $DISPLAY:" >&2
		xwininfo -root -tree >&2 || true
		exit 1
	fi
	sleep 0.5
done
echo "xvfb-smoke: window \"$title\" is up"

# The window is mapped before its first frame is drawn; wait (bounded) until
# the screen shows more than a handful of colours, i.e. real content.
shot="$outdir/shot.png"
deadline=$((SECONDS + 20))
while :; do
	import -window root "$shot"
	colours=$(identify -format '%k' "$shot")
	((colours > min_colours)) && break
	if ((SECONDS >= deadline)); then
		echo "xvfb-smoke: the window appeared but the screen still shows only $colours colours after 20s; see $shot" >&2
		exit 1
	fi
	sleep 0.5
done
echo "xvfb-smoke: screenshot saved to $shot ($colours colours)"
