#!/usr/bin/env bash
# Build the Debian systemd root filesystem used by every test instance, once:
#  - .build/rootfs-<suite>/           for the systemd-nspawn ssh fleet
#  - podman image localhost/vgpu-sim-<suite>   for Molecule (podman driver)
# Re-running is cheap: each step is skipped when its output exists.
# usage: testbed/build-image.sh [bookworm|trixie]
set -euo pipefail
suite=${1:-bookworm}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
build=${VGPU_BUILD_DIR:-$top/.build}
rootfs=$build/rootfs-$suite
# the image is tagged with this script's hash: change the recipe and a new image is built
recipe=$(sha256sum "$here/build-image.sh" | cut -c1-12)
image=localhost/vgpu-sim-$suite:$recipe
mkdir -p "$build"

# The mirror comes from this machine's apt sources (deb822 or one-line format).
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 || true)
[ -n "$mirror" ] || mirror=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian

# ssh key the controller uses to reach fleet hosts
[ -f "$build/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C vgpu-testbed -f "$build/id_ed25519"

if [ "$(cat "$rootfs/.vgpu-image-done" 2>/dev/null)" != "$recipe" ]; then
  rm -rf "$rootfs.tmp"
  start=$(date +%s)
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,python3,dbus,openssh-server,iproute2,procps \
    "$suite" "$rootfs.tmp" "$mirror" >"$build/debootstrap-$suite.log" 2>&1 \
    || { echo "debootstrap $suite failed, see $build/debootstrap-$suite.log" >&2; exit 1; }
  r=$rootfs.tmp
  : > "$r/etc/machine-id"
  mkdir -p "$r/root/.ssh" && chmod 700 "$r/root/.ssh"
  cp "$build/id_ed25519.pub" "$r/root/.ssh/authorized_keys"
  # containers and nspawn hosts have no real consoles or udev; keep boot quiet and fast
  for u in systemd-udevd.service systemd-udev-trigger.service getty@tty1.service \
           console-getty.service systemd-networkd-wait-online.service apt-daily.timer \
           apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$r/etc/systemd/system/$u"
  done
  # sshd: keys only, fast logins
  printf 'PermitRootLogin prohibit-password\nUseDNS no\nPasswordAuthentication no\n' > "$r/etc/ssh/sshd_config.d/vgpu.conf"
  # keep journald small (many hosts on one machine)
  mkdir -p "$r/etc/systemd/journald.conf.d"
  printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' > "$r/etc/systemd/journald.conf.d/vgpu.conf"
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
  echo "$recipe" > "$r/.vgpu-image-done"
  rm -rf "$rootfs" && mv "$r" "$rootfs"
  echo "rootfs $suite built in $(( $(date +%s) - start ))s: $(du -sh "$rootfs" | cut -f1)"
fi

if command -v podman >/dev/null && ! podman image exists "$image"; then
  tar -C "$rootfs" -c . | podman import -q - "$image" >/dev/null
  podman tag "$image" "localhost/vgpu-sim-$suite:latest"
  echo "podman image $image imported"
elif command -v podman >/dev/null; then
  podman tag "$image" "localhost/vgpu-sim-$suite:latest"
fi
