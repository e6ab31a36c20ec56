#!/usr/bin/env bash
# Install the Debian packages vmvault needs, idempotently (nothing happens when all are there).
set -euo pipefail
PKGS=(
  qemu-system-x86 qemu-utils qemu-guest-agent libvirt-daemon-system libvirt-clients
  python3-libvirt python3-libnbd python3-venv busybox-static e2fsprogs nbdkit libnbd-bin
  qemu-block-extra gzip kmod
  ceph-mon ceph-osd radosgw ceph-common
  zbar-tools
  python3-guestfs libguestfs-xfs supermin xfsprogs lvm2  # files of xfs/LVM file systems (libguestfs, docs/files.md) and the lab's disk of them
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
# supermin (libguestfs' appliance builder) copies the host's /lib/modules: a container without
# a kernel has none (the appliance's kernel then comes from SUPERMIN_KERNEL, docs/files.md)
[ -d /lib/modules ] || { SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"; $SUDO mkdir -p /lib/modules; }
