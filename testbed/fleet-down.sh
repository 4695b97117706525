#!/usr/bin/env bash
# Stop every host testbed/fleet-up.sh started (and only those: pids from .build/fleet/*.pid),
# remove their network namespaces, veths and, when no host is left, the bridge.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd); top=$(cd "$here/.." && pwd)
fname=${FLEET_NAME:-sim}
fleet=${VGPU_BUILD_DIR:-$top/.build}/fleet-$fname
[ -d "$fleet" ] || exit 0
for pidf in "$fleet"/*.pid; do
  [ -e "$pidf" ] || continue
  name=$(basename "$pidf" .pid); pid=$(cat "$pidf")
  if kill -0 "$pid" 2>/dev/null && grep -q systemd-nspawn "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid"             # nspawn forwards a clean poweroff to the host's systemd
  fi
done
for pidf in "$fleet"/*.pid; do
  [ -e "$pidf" ] || continue
  name=$(basename "$pidf" .pid); pid=$(cat "$pidf")
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null && grep -q systemd-nspawn "/proc/$pid/cmdline" 2>/dev/null; then
    kill -KILL "$pid"
  fi
  ip netns del "$name" 2>/dev/null || true
  ip link del "v-$name" 2>/dev/null || true
  rm -f "$pidf" "$fleet/$name.hostname" "$fleet/$name.hosts"
done
ip link show "br-vgpu-$fname" >/dev/null 2>&1 && ip link del "br-vgpu-$fname"
rm -f "$top/inventories/$fname/hosts.ini"
exit 0
