#!/bin/sh
# The programs `make test` needs from the system rather than from pip or npm:
# redis-server (the cluster tests start a real one), chromium and chromedriver (the
# browser tests drive a headless chromium), node and npm (the interop tests run
# socket.io's own client and server). The Debian packages of the first three are
# installed here only as root on a system with apt-get; otherwise what is missing
# is named, with how to get it, and the exit status is 1.
set -u

missing() {
	for program in "$@"; do
		command -v "$program" >/dev/null 2>&1 || printf '%s ' "$program"
	done
}

# The Debian package of each program that may be installed here.
packages=""
for program in redis-server chromium chromedriver; do
	if [ -n "$(missing "$program")" ]; then
		case $program in
		chromedriver) packages="$packages chromium-driver" ;;
		*) packages="$packages $program" ;;
		esac
	fi
done
if [ -n "$packages" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
then
	echo "installing$packages (Debian packages) for the cluster and browser tests"
	# shellcheck disable=SC2086  # one word per package
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages
fi

absent=$(missing redis-server chromium chromedriver node npm)
[ -z "$absent" ] && exit 0
absent=${absent% }

{
	printf 'make test needs programs that are not installed (not on PATH): %s\n' "$absent"
	case " $absent " in
	*" redis-server "*)
		printf '  redis-server: the cluster tests start a real Redis\n'
		printf '    Debian/Ubuntu: sudo apt-get install redis-server\n'
		printf '    macOS: brew install redis    Fedora: sudo dnf install redis\n'
		;;
	esac
	case " $absent " in
	*" chromium "* | *" chromedriver "*)
		printf '  chromium, chromedriver: the browser tests drive a headless chromium\n'
		printf '    Debian/Ubuntu: sudo apt-get install chromium chromium-driver\n'
		printf '    macOS: brew install chromium chromedriver    Fedora: sudo dnf install chromium chromedriver\n'
		;;
	esac
	case " $absent " in
	*" node "* | *" npm "*)
		printf "  node, npm: the interop tests run socket.io's own client and server\n"
		printf '    Debian/Ubuntu: sudo apt-get install nodejs npm\n'
		printf '    macOS: brew install node    Fedora: sudo dnf install nodejs npm\n'
		printf '    elsewhere: https://nodejs.org\n'
		;;
	esac
} >&2
exit 1
