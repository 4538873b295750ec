#!/usr/bin/env bash
# Installs the Debian packages the stack and its tests use, when they are missing:
#   influxdb (1.x server for local runs and tests), snmpd + snmp (SNMP agent and C tools),
#   mosquitto + mosquitto-clients (a second MQTT broker and its CLI clients), fping (the poller's ICMP probes:
#   Debian installs /usr/bin/fping with cap_net_raw+ep, so the poller's non-root service user can run it);
#   with --tests, chromium and the X server and tools of the x11 activity source's tests, and nftables (the
#   probe tests drop a share of ICMP echoes inside a network namespace they create) and python3 (their
#   userspace delay line between two TUN devices, tests/helpers/netns.ts); with --bench, the peers bench:snmp
#   measures.
# Used by .ci/run and by the quickstart, so both install the same things the same way.
set -euo pipefail

PACKAGES=(influxdb snmpd snmp mosquitto mosquitto-clients fping)
# `install-deps.sh --tests`: also Debian's Chromium (the overview page's browser test drives it with
# playwright-core; nothing downloads a browser) and a small CJK font, so its screenshots show the Chinese text;
# Xvfb and the X tools the x11 activity source runs (xprintidle, xdotool, xset from x11-xserver-utils, xprop from
# x11-utils), for tests/agents/sources/x11.test.ts; Mono's C# compiler and Windows Forms, which compile the Windows
# helper's C# as Add-Type would on Windows (tests/agents/sources/windows.test.ts).
# `install-deps.sh --bench`: the peers `npm run bench:snmp` measures in the same run as our poller: collectd's
# daemon and plugins (collectd-core, whose snmp plugin uses libsnmp40 from the snmp package; not the `collectd`
# metapackage and its recommends) and Prometheus' snmp_exporter; util-linux's `taskset` (Essential on Debian, listed
# so a slimmed image says so), with which bench:ingest pins influxd to one core and the rest to the other. The flags combine (`--tests --bench`).
for flag in "$@"; do
  case "$flag" in
    --tests)
      PACKAGES+=(chromium fonts-wqy-microhei xvfb xdotool xprintidle x11-xserver-utils x11-utils)
      PACKAGES+=(mono-mcs libmono-system-windows-forms4.0-cil)
      PACKAGES+=(nftables python3-minimal)
      ;;
    --bench) PACKAGES+=(collectd-core libsnmp40 prometheus-snmp-exporter util-linux) ;;
    *) echo "install-deps.sh: unknown flag $flag (known: --tests, --bench)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi

echo "installing Debian packages: ${missing[*]}"
# Debian's maintainer scripts would start these as system services listening on default ports; the project
# starts its own instances on loopback, so forbid service starts for the duration of the install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod +x "$policy"
  created_policy=1
fi
trap '[ "$created_policy" = 1 ] && "${SUDO[@]}" rm -f "$policy"' EXIT

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
