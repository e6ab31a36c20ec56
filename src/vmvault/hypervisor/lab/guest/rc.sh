#!/bin/sh
# vmvault lab guest: early boot, run once by busybox init (installed as /etc/init.d/rcS).
#
# There is no udev: devtmpfs gives the device nodes, modules are insmod'ed in the order the
# image builder computed (/lib/modules/*.order), and the /dev/virtio-ports/<name> links that
# qemu-ga looks for are made here from sysfs. Data disks are mounted by device (vda, vdb).
# The variant (kernel parameter vmvault.variant=...) selects the workload started at the end.
PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /run/lab

variant=standard
name=lab-guest
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        vmvault.variant=*) variant=${arg#vmvault.variant=} ;;
        vmvault.name=*) name=${arg#vmvault.name=} ;;
    esac
done
echo "$variant" > /run/lab/variant
hostname "$name"
read -r up _ < /proc/uptime
echo "LABGUEST-INIT name=$name variant=$variant uptime=$up"

load_modules() {
    [ -f "$1" ] || return 0
    while read -r mod; do
        insmod "/lib/modules/$mod.ko" 2>/dev/null || echo "LABGUEST-WARN insmod $mod failed"
    done < "$1"
}
load_modules /lib/modules/boot.order
[ "$variant" = passthrough ] && load_modules /lib/modules/scsi.order

wait_dev() {
    i=0
    while [ ! -b "$1" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    [ -b "$1" ]
}
mkdir -p /data /data2
for pair in vda:/data vdb:/data2; do
    dev=/dev/${pair%%:*}
    dir=${pair#*:}
    if wait_dev "$dev"; then
        mount -t ext4 "$dev" "$dir" || echo "LABGUEST-ERROR cannot mount $dev on $dir"
    else
        echo "LABGUEST-ERROR no device $dev"
    fi
done

mkdir -p /dev/virtio-ports
for port in /sys/class/virtio-ports/vport*; do
    [ -r "$port/name" ] || continue
    ln -sf "/dev/${port##*/}" "/dev/virtio-ports/$(cat "$port/name")"
done

mkdir -p /etc/qemu/fsfreeze-hook.d
case "$variant" in
    writer) setsid /usr/lib/lab/writer </dev/null >/dev/console 2>&1 & ;;
    app-hook)
        ln -sf /usr/lib/lab/app-hook /etc/qemu/fsfreeze-hook.d/10-app
        setsid /usr/lib/lab/app </dev/null >/dev/console 2>&1 &
        ;;
esac

read -r up _ < /proc/uptime
echo "LABGUEST-READY name=$name variant=$variant uptime=$up"
