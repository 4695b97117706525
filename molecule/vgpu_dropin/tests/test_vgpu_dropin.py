"""vgpu_dropin after converge (shim, links, drop-in) and idempotence, Ollama 0.13.5.

The preload instance gets LD_PRELOAD, the library_path instance (group library_path) the loader-path
variables; both must end in GPU mode, restarted exactly once by converge and not by the second run."""
import pytest

from vgpu_testlib import current_journal, gpu_mode, proc_environ, recorded_states, service_state

DROPIN = "/etc/systemd/system/ollama.service.d/vgpu.conf"
PRELOAD = "/usr/lib64/libvgpu-cuda.so:/usr/lib64/libvgpu-nvml.so"
LIBRARY_PATH = "/opt/vgpu/lib:/usr/local/lib/ollama/cuda_v12:/usr/local/lib/ollama"


@pytest.fixture(scope="module")
def expected_env(ansible_host):
    if "library_path" in ansible_host.ansible.get_variables().get("group_names", []):
        return {"LD_PRELOAD": None, "LD_LIBRARY_PATH": LIBRARY_PATH, "OLLAMA_LIBRARY_PATH": LIBRARY_PATH,
                "OLLAMA_LLM_LIBRARY": "cuda_v12"}
    return {"LD_PRELOAD": PRELOAD, "LD_LIBRARY_PATH": None, "OLLAMA_LIBRARY_PATH": None,
            "OLLAMA_LLM_LIBRARY": None}


def unit_environment(host):
    out = host.check_output("systemctl show -p Environment --value ollama.service")
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def test_dropin_is_ours_and_alone(host):
    f = host.file(DROPIN)
    assert f.is_file and not f.is_symlink
    assert (f.mode, f.user, f.group) == (0o644, "root", "root")
    assert f.content_string.startswith("# Managed by Ansible")
    assert host.check_output("ls -A /etc/systemd/system/ollama.service.d") == "vgpu.conf"


def test_systemd_has_the_environment(host, expected_env):
    env = unit_environment(host)
    for name, value in expected_env.items():
        assert env.get(name) == value, (name, env)


def test_running_process_has_the_environment(host, expected_env):
    state = service_state(host)
    assert state["ActiveState"] == "active"
    env = proc_environ(host, state["MainPID"])
    for name, value in expected_env.items():
        assert env.get(name) == value, (name, env)


def test_preloaded_shims_are_mapped(host, expected_env):
    if not expected_env["LD_PRELOAD"]:
        pytest.skip("library_path layout: nothing is preloaded")
    maps = host.check_output("cat /proc/%s/maps", service_state(host)["MainPID"])
    for lib in expected_env["LD_PRELOAD"].split(":"):
        assert lib in maps


def test_converge_restarted_once_and_the_second_run_not_at_all(host):
    states = recorded_states(host)
    assert len(states) == 2, states            # before converge, after converge
    before, after = states
    now = service_state(host)
    assert after["InvocationID"] != before["InvocationID"], "converge did not restart the service"
    for key in ("InvocationID", "MainPID", "ExecMainStartTimestamp"):
        assert now[key] == after[key], "the idempotence run restarted the service (%s)" % key
    # server starts logged since the cursor taken before converge: exactly one
    starts = host.check_output(
        "journalctl -q --no-pager -o cat --after-cursor=%s _SYSTEMD_UNIT=ollama.service | grep -c 'msg=\"Listening on' || true",
        before["cursor"])
    assert starts == "1", starts


def test_current_start_is_in_gpu_mode_by_the_module(ansible_host):
    verdict = gpu_mode(ansible_host)
    assert verdict["mode"] == "gpu", verdict
    assert verdict["ollama_version"] == "0.13.5"
    assert [d["library"] for d in verdict["devices"]] and all(d["library"] == "CUDA" for d in verdict["devices"])


def test_current_start_logs_cuda_inference_compute(host):
    compute = [l for l in current_journal(host).splitlines() if 'msg="inference compute"' in l]
    assert compute and all("library=CUDA" in l for l in compute), compute
