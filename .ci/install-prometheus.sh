#!/bin/sh
# install-prometheus.sh installs Debian's prometheus package, which provides
# /usr/bin/prometheus and /usr/bin/promtool for the grafana/ tests (promtool
# check/test rules and the real-Prometheus dashboard test).
#
# Idempotent and quick when both binaries already exist. The package's own
# service is never left running: it would bind :9090 and scrape nothing we
# care about. Tests start their own Prometheus on a free loopback port.
set -eu

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi

# policy-rc.d exit code 101 tells invoke-rc.d not to start services during
# the install, which works with or without systemd (containers often have
# systemctl but no running systemd). We only add it if none exists, and
# remove only our own.
policy=/usr/sbin/policy-rc.d
ours=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
	ours=1
fi
cleanup() {
	if [ "$ours" -eq 1 ]; then
		$SUDO rm -f "$policy"
	fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null

# Belt and braces: if a service manager started it anyway, stop and disable it.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	$SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if [ -f /run/prometheus.pid ]; then
	$SUDO kill "$(cat /run/prometheus.pid)" 2>/dev/null || true
fi
if command -v pgrep >/dev/null 2>&1; then
	# Only the Debian daemon runs as user "prometheus"; our tests run as us.
	for pid in $(pgrep -u prometheus -x prometheus 2>/dev/null || true); do
		$SUDO kill "$pid" 2>/dev/null || true
	done
fi

command -v prometheus >/dev/null
command -v promtool >/dev/null
