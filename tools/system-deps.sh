#!/bin/sh
# The programs `make test` needs from the system rather than from pip or npm:
# redis-server (the cluster tests start a real one), haproxy and ip (the machines
# lab puts HAProxy in front of nodes in network namespaces), chromium and
# chromedriver (the browser tests drive a headless chromium), node and npm (the
# interop tests run socket.io's own client and server). All but node and npm are
# installed here, as Debian packages, only as root on a system with apt-get;
# otherwise what is missing is named, with how to get it, and the exit status is 1.
set -u

missing() {
	for program in "$@"; do
		command -v "$program" >/dev/null 2>&1 || printf '%s ' "$program"
	done
}

package() {
	case "$1" in
	ip) echo iproute2 ;;
	chromedriver) echo chromium-driver ;;
	*) echo "$1" ;;
	esac
}

installable=$(missing redis-server haproxy ip chromium chromedriver)
if [ -n "$installable" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
then
	packages=""
	for program in $installable; do
		packages="$packages $(package "$program")"
	done
	echo "installing$packages (Debian packages) for the cluster, machines and browser tests"
	# shellcheck disable=SC2086 # one word per package
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages
fi

absent=$(missing redis-server haproxy ip chromium chromedriver node npm)
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
	*" haproxy "* | *" ip "*)
		printf '  haproxy, ip: the machines tests put HAProxy in front of nodes, each in its\n'
		printf '  own network namespace (Linux, as root)\n'
		printf '    Debian/Ubuntu: sudo apt-get install haproxy iproute2\n'
		printf '    Fedora: sudo dnf install haproxy iproute\n'
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
