#!/usr/bin/env bash
# The demo on the simulated fleet (after `make fleet`): install the Ollama simulator on every host the
# way upstream's installer does, show that it starts in CPU mode, run site.yml, and print each host's
# verdict from Ollama's own log.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd); cd "$top"
export PATH=$top/venv/bin:$PATH ANSIBLE_CONFIG=$top/ansible.cfg
inv=inventories/sim/hosts.ini
[ -f "$inv" ] || { echo "no simulated fleet: run 'make fleet N=3' first" >&2; exit 2; }

echo "== 1. install Ollama (simulator ${SIM_VERSION:-default version}) on every host"
ansible-playbook -i "$inv" testbed/install-simulator.yml ${SIM_VERSION:+-e sim_version=$SIM_VERSION}

echo "== 2. before provisioning: what Ollama's log says"
ansible-playbook -i "$inv" playbooks/verify.yml -e gpu_mode_expect=any || true

echo "== 3. site.yml: shim, links, drop-in, restart, GPU assertion"
ansible-playbook -i "$inv" site.yml

echo "== 4. after provisioning: verify.yml (read-only)"
ansible-playbook -i "$inv" playbooks/verify.yml
