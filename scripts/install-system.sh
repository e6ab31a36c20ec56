#!/usr/bin/env bash
# Install the Debian packages vmvault needs, idempotently (nothing happens when all are there).
set -euo pipefail
PKGS=(
  qemu-system-x86 qemu-utils qemu-guest-agent libvirt-daemon-system libvirt-clients
  python3-libvirt python3-libnbd python3-venv busybox-static e2fsprogs nbdkit libnbd-bin
  qemu-block-extra gzip kmod
  ceph-mon ceph-osd radosgw ceph-common
  zbar-tools
  postgresql-15  # the catalog of many-host deployments: `vmvault lab catalog up` (docs/deployment.md)
  chromium chromium-driver  # the web console's browser tests and screenshots (headless)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"
fi
