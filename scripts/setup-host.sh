#!/bin/sh
# Install the host packages pyoci's demo and tests need (Debian/Ubuntu, as root). Quick when all are present.
set -eu
pkgs="busybox-static runc crun libcap-dev libseccomp2 python3-venv python3-dev gcc iproute2 iptables nftables file podman containerd util-linux"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then echo "setup-host: need root to apt-get install:$missing" >&2; exit 1; fi
echo "setup-host: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q $missing >/dev/null
