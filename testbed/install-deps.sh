#!/usr/bin/env bash
# Install everything the demo and the tests need on a fresh Debian 12 machine (run as root):
# Debian packages for the test instances and the shim build, and the Python venv (./venv).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
need=()
for p in debootstrap podman runc systemd-container iproute2 openssh-client gcc make libc6-dev \
         python3-venv ca-certificates; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Every systemd test instance (podman container or nspawn host) takes about 8 inotify instances from
# one machine-wide limit; Debian's 128 stops at ~12 instances ("Too many open files" at boot).
if [ "$(sysctl -n fs.inotify.max_user_instances)" -lt 1024 ]; then
  sysctl -qw fs.inotify.max_user_instances=1024
fi
# podman: runc and explicit ulimits (see testbed/containers.conf); exported by the Makefile too
py=/usr/bin/python3
if [ ! -x "$top/venv/bin/ansible-playbook" ] || ! cmp -s "$top/requirements.txt" "$top/venv/.requirements.txt"; then
  [ -x "$top/venv/bin/python" ] || "$py" -m venv "$top/venv"
  "$top/venv/bin/pip" install -q --disable-pip-version-check -r "$top/requirements.txt"
  cp "$top/requirements.txt" "$top/venv/.requirements.txt"
fi
echo "dependencies ready: $("$top/venv/bin/ansible" --version | head -n1)"
