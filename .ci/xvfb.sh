# xvfb.sh: sourced by the scripts that open the app on a virtual X server
# (xvfb-smoke.sh, tray-smoke.sh, screenshots.sh).
#
# start_xvfb DIR LOG starts Xvfb, sets xvfb_pid and exports DISPLAY. It
# uses -displayfd, so Xvfb picks a free display number itself and reports
# it once it accepts connections: no race for :99 with another run and no
# guess at when the server is ready. DIR is a scratch directory (for the
# fifo); LOG gets Xvfb's output. Returns non-zero, printing the log, when
# Xvfb has not started within 30 s. The caller stops it (kill $xvfb_pid).
start_xvfb() {
	local dir=$1 log=$2 display=
	mkfifo "$dir/displayfd"
	Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$dir/displayfd" >"$log" 2>&1 &
	xvfb_pid=$!
	if ! read -r -t 30 display <"$dir/displayfd" || [[ -z $display ]]; then
		echo "Xvfb did not start within 30s; its log:" >&2
		cat "$log" >&2
		return 1
	fi
	export DISPLAY=":$display"
}
