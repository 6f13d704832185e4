#!/usr/bin/env bash
# smoke.sh: the desktop smoke test `make test` runs last. It builds the
# real cgo app and runs .ci/xvfb-smoke.sh on it: start it on a temporary
# data directory under a virtual X server, wait for its window (the setup
# wizard opens on an empty data directory) and take a screenshot; then
# .ci/tray-smoke.sh clicks through the tray menu from a stand-in panel
# (.ci/trayhost) on a private D-Bus session bus.
#
# It skips, saying why, when Xvfb (or another tool the test needs) is not
# installed, or when PKGS leaves the desktop app out. The screenshot and
# the app's output stay in SMOKE_OUT (default: a new directory under /tmp)
# so a failure can be looked at.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
pkgs=${PKGS:-./...}
case " $pkgs " in
*" ./... "* | *" . "* | *"./gui"*) ;;
*)
	echo "smoke: skipped: PKGS=\"$pkgs\" leaves out the desktop app (run with PKGS=./... to include it)"
	exit 0
	;;
esac
for tool in Xvfb xwininfo import identify; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "smoke: skipped: $tool is not installed, so there is no virtual screen to start the window on (apt-get install xvfb x11-utils imagemagick, or run make test-deps)"
		exit 0
	fi
done

out=${SMOKE_OUT:-$(mktemp -d /tmp/postroom-smoke.XXXXXX)}
mkdir -p "$out"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
# GOFLAGS (exported by the Makefile) carries -tags migrated_fynedo.
echo "smoke: building the desktop app (cgo; a few minutes the first time)"
CGO_ENABLED=1 "$GO" build -o "$build/postroom" .
if ! .ci/xvfb-smoke.sh "$build/postroom" "$out"; then
	echo "smoke: FAILED; the screenshot and the app's output are in $out" >&2
	exit 1
fi
echo "smoke: window passed; screenshot $out/shot.png"

# The tray menu, as a desktop panel sees it over a private D-Bus session.
missing=
for tool in dbus-run-session python3; do
	command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [[ -n $missing ]]; then
	echo "smoke: tray check skipped:$missing not installed, so there is no private D-Bus session to host the tray in (apt-get install dbus python3, or run make test-deps)"
else
	echo "smoke: tray menu check (.ci/trayhost under dbus-run-session)"
	# ./... leaves out dot directories, so vet it here.
	"$GO" vet ./.ci/trayhost
	"$GO" build -o "$build/trayhost" ./.ci/trayhost
	if ! .ci/tray-smoke.sh "$build/postroom" "$build/trayhost" "$out"; then
		echo "smoke: tray check FAILED; the app's output is in $out/tray-app.log" >&2
		exit 1
	fi
fi
echo "smoke: passed"
