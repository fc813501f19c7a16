#!/usr/bin/env bash
# Build the Debian 13 (trixie) VM image the systemd/cgroup v2 suite boots, unless it is cached.
#
#   tests/e2e/vm/build-image.sh        prints the cache directory (kernel, initrd, rootfs.ext4)
#
# The image is keyed by this script's own hash: any change here builds a new one, in
# $LEAKWATCH_VM_CACHE (/var/cache/leakwatch-e2e)/vm-<hash>/. It is made with mmdebstrap from
# apt's configured Debian mirror, then packed into an ext4 file with `mke2fs -d` (nothing is
# mounted on the host; mmdebstrap runs in a private mount namespace). Needs root.
#
# What is in it: systemd as PID 1 (cgroup v2 only: systemd 257 on trixie has no v1), the
# Debian kernel with 9p, the .deb's dependencies (adduser), the tools the suite uses (curl,
# jq, procps, util-linux, iproute2), and one unit, lw-e2e.service, which mounts the 9p share
# tagged `lw` at /mnt/lw, runs /mnt/lw/in/suite.sh and powers the VM off. The suite itself
# comes through the share at each boot, so changing it does not rebuild the image.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true

here=$(cd "$(dirname "$0")" && pwd)
hash=$(sha256sum "$here/build-image.sh" | cut -c1-16)
cache_root=${LEAKWATCH_VM_CACHE:-/var/cache/leakwatch-e2e}
out=$cache_root/vm-$hash
if [ -f "$out/ok" ]; then
    echo "$out"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "build-image.sh: needs root (mmdebstrap, mke2fs)" >&2; exit 1; }

need=()
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v mke2fs >/dev/null 2>&1 || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/build-XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

# The mirror apt is configured with (deb822 or one-line sources), no other host.
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\{0,1\}$/\1/p' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
echo "building the VM image from $mirror into $out" >&2

# The one unit of the image: mount the share, run the suite, power off (even when it fails).
LW_E2E_UNIT='[Unit]
Description=leakwatch e2e suite from the 9p share lw
After=multi-user.target

[Service]
Type=exec
ExecStartPre=/bin/mkdir -p /mnt/lw
ExecStartPre=/bin/mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 lw /mnt/lw
ExecStart=/bin/sh -c "/bin/bash /mnt/lw/in/suite.sh >/mnt/lw/out/suite.log 2>&1; echo $$? >/mnt/lw/out/rc"
ExecStopPost=/bin/systemctl poweroff --no-block
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target'
export LW_E2E_UNIT
packages=linux-image-amd64,systemd-sysv,udev,dbus,adduser,curl,jq,procps,util-linux,iproute2,kmod,ca-certificates
# --mode=root inside a private mount namespace: its /proc, /sys, /dev mounts die with it.
unshare --mount --propagation private \
    mmdebstrap --mode=root --variant=minbase --include="$packages" \
    --customize-hook='echo lw-vm > "$1/etc/hostname"' \
    --customize-hook='echo "root:root" | chroot "$1" chpasswd' \
    --customize-hook='printf "9p\n9pnet\n9pnet_virtio\nvirtio_blk\nvirtio_pci\next4\n" >> "$1/etc/initramfs-tools/modules"' \
    --customize-hook='chroot "$1" update-initramfs -u -k all' \
    --customize-hook='mkdir -p "$1/mnt/lw"' \
    --customize-hook='printf "%s\n" "$LW_E2E_UNIT" > "$1/etc/systemd/system/lw-e2e.service"' \
    --customize-hook='chroot "$1" systemctl enable lw-e2e.service' \
    --customize-hook='chroot "$1" systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true' \
    --customize-hook='printf "/dev/vda / ext4 rw,noatime 0 1\n" > "$1/etc/fstab"' \
    --customize-hook='rm -f "$1"/etc/resolv.conf "$1"/var/cache/apt/archives/*.deb' \
    trixie "$root" "$mirror" >&2

cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
cp "$root"/boot/initrd.img-* "$work/initrd.img"
# An ext4 file made from the tree without mounting it; 2 GiB leaves room for the suite.
mke2fs -q -t ext4 -L lw-root -d "$root" "$work/rootfs.ext4" 2G >&2
# What docs/testing.md's "Tested on" rows quote.
# (Installed ones only: the pattern also matches the kernel's -unsigned name, not installed.)
chroot "$root" dpkg-query -W -f '${db:Status-Abbrev}${Package} ${Version}\n' systemd \
    'linux-image-[0-9]*' | sed -n 's/^ii *//p' >"$work/versions"
rm -rf "$root"
touch "$work/ok"
# One rename: a build that dies midway leaves no half image under $out (and another build
# that got there first wins).
if mv -T "$work" "$out" 2>/dev/null; then
    trap - EXIT
fi
# Images of older versions of this script are of no more use.
for old in "$cache_root"/vm-*; do
    [ "$old" = "$out" ] || rm -rf "$old"
done
echo "$out"
