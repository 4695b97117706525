"""pytest plugin and helpers shared by the role scenarios' testinfra tests.

Each scenario's molecule.yml loads it with PYTEST_PLUGINS=vgpu_testlib (this directory on PYTHONPATH):
its `host` fixture replaces testinfra's with a podman-backed one, `ansible_host` keeps the Ansible-backed
one, and tests import the helpers below.
"""
import os
import re

import pytest
import testinfra

PROJECT_DIR = os.environ.get(
    "MOLECULE_PROJECT_DIRECTORY", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
)
SHIM_BUILD = os.path.join(PROJECT_DIR, ".build", "sim", "shim")
UNIT = "ollama.service"
# where vgpu_test_* helpers leave records on the instance (outside every managed path)
RECORD_DIR = "/var/lib/vgpu-test"


@pytest.fixture(scope="module")
def host(_testinfra_host):
    """The instance through `podman exec`: the ansible:// backend costs about a second per command."""
    return testinfra.get_host("podman://" + _testinfra_host.backend.host)


@pytest.fixture(scope="module")
def ansible_host(_testinfra_host):
    """The same instance through Ansible (for host.ansible(<module>) and inventory variables)."""
    return _testinfra_host


def shim_sha256s():
    """{relative path: sha256} from the reference shim build's SHA256SUMS."""
    sums = {}
    with open(os.path.join(SHIM_BUILD, "SHA256SUMS")) as f:
        for line in f:
            m = re.match(r"^([0-9a-f]{64}) [ *](\S+)$", line.strip())
            if m:
                sums[m.group(2)] = m.group(1)
    return sums


def sha256(host, path):
    return host.check_output("sha256sum %s", path).split()[0]


def realpath(host, path):
    return host.check_output("realpath -e %s", path)


def service_state(host, unit=UNIT):
    """{InvocationID, MainPID, ExecMainStartTimestamp, ActiveState, NRestarts} of the unit."""
    out = host.check_output(
        "systemctl show -p InvocationID,MainPID,ExecMainStartTimestamp,ActiveState,NRestarts %s", unit)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def recorded_states(host):
    """Service states written by molecule/shared/record_service.yml, oldest first."""
    path = RECORD_DIR + "/service-states"
    if not host.file(path).exists:
        return []
    states = []
    for line in host.file(path).content_string.splitlines():
        states.append(dict(kv.split("=", 1) for kv in line.split("\t") if "=" in kv))
    return states


def proc_environ(host, pid):
    raw = host.check_output("tr '\\0' '\\n' < /proc/%s/environ", pid)
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


def current_journal(host, unit=UNIT):
    inv = host.check_output("systemctl show -p InvocationID --value %s", unit)
    assert inv, "%s has no invocation: is it running?" % unit
    return host.check_output("journalctl -q --no-pager -o cat _SYSTEMD_INVOCATION_ID=%s", inv)


def installed_ollama_version(host):
    return host.check_output("/usr/local/bin/ollama --version").split()[-1]


def gpu_mode(ansible_host, timeout=60):
    """The ollama_gpu_mode module's verdict on the current start (expect=any: never fails by itself)."""
    return ansible_host.ansible("ollama_gpu_mode", "expect=any timeout=%d" % timeout, check=False)
