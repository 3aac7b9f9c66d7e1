#!/busybox/sh
# Tilt's process restarter (development images only; busybox sh from distroless :debug).
#   restart.sh BINARY [ARGS...]   run BINARY, and run it again whenever it is signalled
#   restart.sh --signal           (live_update, after syncing a new binary) stop the running one
pidfile=/tmp/tilt-service.pid
if [ "$1" = "--signal" ]; then
	touch /tmp/tilt-restart
	[ -f "$pidfile" ] && kill -TERM "$(cat "$pidfile")" 2>/dev/null
	exit 0
fi
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
while :; do
	"$@" &
	child=$!
	echo "$child" 2>/dev/null > "$pidfile" || true
	wait "$child"
	status=$?
	# A stop asked for by --signal: start the new binary. Otherwise exit as the service did.
	[ -f /tmp/tilt-restart ] || exit "$status"
	rm -f /tmp/tilt-restart
done
