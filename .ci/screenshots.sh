#!/usr/bin/env bash
# screenshots.sh [OUTDIR]
#
# Takes the README's screenshots from the real desktop app under Xvfb:
# OUTDIR/screenshot-{dashboard,queue,settings,users,browse,wizard}.png
# (default docs/).
#
# It fills a data directory the way an office would: `postroom serve`
# takes mail from swaks and delivers it to .ci/fake-mx.py, which accepts
# some, greylists outlook.com and refuses unknown users, so the queue holds
# sent, retrying, returned, held and scheduled mail. Then it opens the
# window on that directory, clicks through the tabs with xdotool and
# saves each window with ImportMagick's import. The wizard is shot from a
# second, empty data directory.
#
# Needs Xvfb, xdotool, xwininfo, imagemagick, swaks and python3. Not part of
# `make test` (that is .ci/smoke.sh); run it after changing the screens.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-docs}
mkdir -p "$out"
out=$(cd "$out" && pwd)
GO=${GO:-go}
# A real locale: Fyne complains about "C".
export LANG=en_GB.UTF-8 LC_ALL=

for tool in Xvfb xdotool xwininfo import swaks python3; do
	command -v "$tool" >/dev/null || {
		echo "screenshots: $tool is not installed" >&2
		exit 1
	}
done

work=$(mktemp -d)
pids=()
cleanup() {
	# Only what this script started, by id, newest first.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
# Fyne remembers things (the file picker's view and last folder) in the
# user's config directory; the pictures must not depend on them.
export XDG_CONFIG_HOME=$work/config

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "screenshots: nothing listens on port $1" >&2
	exit 1
}

echo "screenshots: building the desktop app"
CGO_ENABLED=1 "$GO" build -tags migrated_fynedo -o "$work/postroom" .
bin=$work/postroom

mx_port=$(free_port)
python3 .ci/fake-mx.py "$mx_port" &
pids+=($!)
wait_port "$mx_port"

smtp_port=$(free_port)
data=$work/data
mkdir "$data"
{
	cat <<TOML
hostname = "relay.acme-shop.example"

[listen]
address = "127.0.0.1"
port = $smtp_port
auth_without_tls = true               # the copier and the bookkeeping program log in from here

[access]
trusted_networks = ["127.0.0.0/8", "::1/128", "192.168.1.0/24"]

[delivery]
retry_initial = "25m"
retry_max = "4h"
TOML
	for domain in gmail.com outlook.com yahoo.com web.de acme-shop.example supplier.example; do
		printf '\n[[delivery.routes]]\ndomain = "%s"\nhost = "127.0.0.1:%s"\n' "$domain" "$mx_port"
	done
} >"$work/settings.toml"
"$bin" config import "$work/settings.toml" --data "$data"
"$bin" user add scanner --data "$data" <<<"copier-secret-2026"
"$bin" user add bookkeeping --data "$data" <<<"ledger-secret-2026"
"$bin" user quota scanner 20 100 --data "$data" >/dev/null

"$bin" serve --data "$data" >"$work/serve.log" 2>&1 &
serve=$!
pids+=($serve)
wait_port "$smtp_port"

send() { # FROM TO SUBJECT BODY [USER PASSWORD]
	local auth=()
	(($# == 6)) && auth=(--auth PLAIN --auth-user "$5" --auth-password "$6")
	swaks --silent 2 --server "127.0.0.1:$smtp_port" --from "$1" --to "$2" \
		--header "Subject: $3" --body "$4" "${auth[@]}" >/dev/null
}
n=0
for who in anna.schmidt@gmail.com j.miller@yahoo.com lena.k@web.de orders@supplier.example m.rossi@gmail.com; do
	n=$((n + 1))
	send invoices@acme-shop.example "$who" "Invoice 2026-$((140 + n))" \
		"Dear customer,

please find attached invoice 2026-$((140 + n)) for your order of last week.
Payment is due within 14 days.

Kind regards,
Acme Shop accounts"
done
for who in tom.becker@outlook.com sara.ng@outlook.com p.novak@outlook.com; do
	send invoices@acme-shop.example "$who" "Your order has shipped" \
		"Hello,

your order is on its way and should arrive within two working days.

Acme Shop"
done
send invoices@acme-shop.example old.bob@web.de "Statement for November" "Hello Bob,

your statement for November is attached."
for doc in "delivery note" "signed contract"; do
	send scanner@acme-shop.example office@acme-shop.example "Scan from copier: $doc" "Scanned document attached." \
		scanner copier-secret-2026
done
send bookkeeping@acme-shop.example orders@supplier.example "Purchase order 1067" "Please deliver 40 boxes of A4 paper." \
	bookkeeping ledger-secret-2026
send invoices@acme-shop.example d.wagner@outlook.com "Reminder: invoice 2026-118" "Hello,

this is a friendly reminder that invoice 2026-118 is now due."
send invoices@acme-shop.example k.jones@outlook.com "Newsletter December" "Our December offers are here."

# Let the first attempts end: the serve log says each one.
for _ in $(seq 100); do
	left=$("$bin" queue list --json --data "$data" | python3 -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin) if r["state"] in ("queued","sending")))')
	((left == 0)) && break
	sleep 0.2
done
ids=$("$bin" queue list --json --data "$data" | python3 -c '
import json, sys
rows = json.load(sys.stdin)
def first(pred):
    for r in rows:
        if pred(r):
            return r["id"]
print(first(lambda r: r["recipient"] == "k.jones@outlook.com"), first(lambda r: r["recipient"] == "d.wagner@outlook.com"))')
read -r held scheduled <<<"$ids"
"$bin" queue hold "$held" --data "$data"
"$bin" queue schedule "$scheduled" "$(date -d 'tomorrow 08:00' --iso-8601=seconds)" --data "$data"
kill "$serve"
wait "$serve" 2>/dev/null || true

# shellcheck source=.ci/xvfb.sh
. .ci/xvfb.sh
rc=0
start_xvfb "$work" "$work/xvfb.log" || rc=$?
pids+=("$xvfb_pid")
((rc == 0)) || exit 1

# window TITLE: the id of the window with that title, once it is drawn.
window() {
	local id=
	for _ in $(seq 120); do
		id=$(xdotool search --name "^$1\$" 2>/dev/null | head -n1 || true)
		[[ -n $id ]] && break
		sleep 0.5
	done
	[[ -n $id ]] || {
		echo "screenshots: no window \"$1\"" >&2
		exit 1
	}
	sleep 3 # the first frames
	echo "$id"
}
click() { # WINDOW X Y: a click at a point of the window
	xdotool mousemove --window "$1" "$2" "$3" click 1
	sleep 1.5
}
shot() { # WINDOW NAME
	import -window "$1" "$out/screenshot-$2.png"
	echo "screenshots: $out/screenshot-$2.png"
}

"$bin" --data "$data" >"$work/app.log" 2>&1 &
pids+=($!)
main=$(window Postroom)
shot "$main" dashboard
click "$main" 131 21 # the Queue tab
click "$main" 420 176 # a row: the mail returned to its sender
shot "$main" queue
click "$main" 202 21 # the Settings tab
click "$main" 254 62 # its Delivery page
shot "$main" settings
click "$main" 400 62 # its Users page
shot "$main" users
# The certificate picker, opened from a certificate path typed in (it
# starts in that file's folder). Nothing is applied.
mkdir "$work/certs"
for f in relay.acme-shop.example.pem relay.acme-shop.example.key old-2025.pem notes.txt; do
	echo "placeholder" >"$work/certs/$f"
done
click "$main" 332 62 # the Security page
click "$main" 640 250 # the certificate file's entry
xdotool type --delay 5 "$work/certs/relay.acme-shop.example.pem"
click "$main" 1075 250 # its Browse… button
click "$main" 480 350 # the certificate in the picker's list
shot "$main" browse

mkdir "$work/empty"
"$bin" --data "$work/empty" >"$work/wizard.log" 2>&1 &
pids+=($!)
wizard=$(window "Set up Postroom")
click "$wizard" 19 178 # "Through my email provider"
click "$wizard" ${WIZ_X:-400} ${WIZ_Y:-216} # the provider list
click "$wizard" ${WIZ_X:-400} ${WIZ_OPT_Y:-252} # its first entry
shot "$wizard" wizard
