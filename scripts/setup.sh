#!/usr/bin/env bash
# Install what ZoneWatch needs on Debian 12, idempotently: Debian packages, then a virtualenv (.venv) with
# the project's extras. Run as root, or as a user with sudo.
#   scripts/setup.sh demo   only what the demo needs (no Debian services: it simulates them)
#   scripts/setup.sh dev    everything the whole test suite needs (default)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-dev}
case "$mode" in demo|dev) ;; *) echo "usage: $0 [demo|dev]" >&2; exit 2 ;; esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: run as root, or install sudo" >&2; exit 1; }
    SUDO=sudo
fi

# Real services the integration tests start (each on its own free loopback port, never the system one).
test_packages=(mosquitto mosquitto-clients snmpd snmp victoria-metrics prometheus-alertmanager iproute2 libpcap0.8)
# The QoS source's network test: a carrier's DNS server (dnsmasq, the binary alone).
test_packages+=(dnsmasq-base)
# Headless Chromium and its WebDriver: the report's test opens the HTML report and checks a screenshot.
test_packages+=(chromium chromium-driver)
# systemd-analyze: the install test verifies the units deploy/install.sh writes (nothing is started).
test_packages+=(systemd)
# libfaketime: the probe-health test runs an agent whose clock is ten minutes ahead (faketime -f +10m).
test_packages+=(faketime)
# gpsd: the walk survey's test reads a recorded NMEA walk through a real gpsd (fed on a pty).
test_packages+=(gpsd)
packages=()
# Leaflet: the coverage map embeds Debian's copy (coverage-map and the report need it at run time, the demo too).
packages+=(libjs-leaflet)
python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
[ "$mode" = dev ] && packages+=("${test_packages[@]}")

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The demo: the agent and the collector it runs, and its own extra (simulated devices, live table, its report).
extras=$([ "$mode" = dev ] && echo dev || echo "agent,collector,demo")
# Installed again when pyproject.toml changes, or when a top-level package comes or goes (an editable install
# knows only the packages there were when it was made).
packages_now=$(ls -d -- */__init__.py 2>/dev/null | cksum | cut -d' ' -f1)
stamp=".venv/.installed-$extras-$packages_now"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing Python packages (.[$extras]) into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[$extras]"
    touch "$stamp"
fi
