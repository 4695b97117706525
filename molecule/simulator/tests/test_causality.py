"""Causality of the Ollama simulator on a real systemd instance.

The tests run in file order and change the instance step by step; each restart is judged only by
the journal lines of the service's *current* invocation."""
import json
import time

import pytest

UNIT = "ollama.service"
CUDA_V12_LINK = "/usr/local/lib/ollama/cuda_v12/libcuda.so.1"
DROPIN = "/etc/systemd/system/ollama.service.d/vgpu.conf"


def current_log(host):
    inv = host.check_output("systemctl show -p InvocationID --value %s", UNIT)
    assert inv, "ollama.service has no invocation: is it running?"
    return host.check_output("journalctl -q --no-pager -o cat _SYSTEMD_INVOCATION_ID=%s", inv)


def verdict_lines(host, timeout=30):
    """Wait for the current start's 'inference compute' lines (the simulator's verdict)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        log = current_log(host)
        lines = [l for l in log.splitlines() if 'msg="inference compute"' in l]
        if lines:
            return lines, log
        time.sleep(0.2)
    pytest.fail("no inference compute line within %ss; log so far:\n%s" % (timeout, current_log(host)))


def restart(host):
    # these tests restart faster than systemd's default start limit (5 in 10 s) allows
    host.run_expect([0], "systemctl daemon-reload && systemctl reset-failed %s", UNIT)
    host.run_expect([0], "systemctl restart %s", UNIT)
    return verdict_lines(host)


def is_gpu(lines):
    return any("library=cpu" not in l and "id=cpu" not in l for l in lines)


def api(host, method, path, body=None):
    code = (
        "import json,sys,urllib.request as u;"
        "d=sys.argv[3].encode() if len(sys.argv)>3 else None;"
        "r=u.urlopen(u.Request('http://127.0.0.1:11434'+sys.argv[2],data=d,method=sys.argv[1]),timeout=20);"
        "print(r.read().decode())"
    )
    args = [method, path] + ([json.dumps(body)] if body is not None else [])
    out = host.check_output("python3 -c %s " + " ".join(["%s"] * len(args)), code, *args)
    return json.loads(out)


def wait_api(host, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if host.run("python3 -c 'import urllib.request as u; u.urlopen(\"http://127.0.0.1:11434/api/version\", timeout=2)'").rc == 0:
            return
        time.sleep(0.2)
    pytest.fail("Ollama API did not answer within %ss" % timeout)


def test_installed_like_upstream(host):
    assert host.file("/usr/local/bin/ollama").mode == 0o755
    assert host.file("/usr/local/lib/ollama/cuda_v12/libggml-cuda.so").exists
    assert host.user("ollama").exists and host.group("ollama").exists
    unit = host.file("/etc/systemd/system/ollama.service").content_string
    assert "ExecStart=/usr/local/bin/ollama serve" in unit and "User=ollama" in unit
    assert host.service("ollama").is_running


def test_gpu_mode_through_link_and_preload(host):
    lines, log = restart(host)
    assert is_gpu(lines), log
    assert any("library=CUDA" in l and 'description="NVIDIA vH100 80GB HBM3"' in l and "libdirs=ollama,cuda_v12" in l for l in lines), lines
    assert "Listening on 127.0.0.1:11434 (version" in log and 'msg="server config"' in log
    # the runner really had the shim mapped by the loader: the service process has the preloaded NVML shim
    pid = host.check_output("systemctl show -p MainPID --value %s", UNIT)
    maps = host.check_output("cat /proc/%s/maps", pid)
    assert "/usr/lib64/libvgpu-nvml.so" in maps


def test_api_generate_loads_on_gpu(host):
    wait_api(host)
    assert "version" in api(host, "GET", "/api/version")
    reply = api(host, "POST", "/api/generate", {"model": "llama3.2:1b", "prompt": "hi", "stream": False})
    assert reply["done"] is True and reply["response"]
    models = api(host, "GET", "/api/ps")["models"]
    assert models and models[0]["size_vram"] > 0


def test_removing_the_cuda_v12_link_gives_cpu(host):
    host.run_expect([0], "rm -f %s", CUDA_V12_LINK)
    lines, log = restart(host)
    assert not is_gpu(lines), log
    assert any("id=cpu library=cpu" in l for l in lines)
    wait_api(host)
    api(host, "POST", "/api/generate", {"model": "llama3.2:1b", "prompt": "hi", "stream": False})
    assert api(host, "GET", "/api/ps")["models"][0]["size_vram"] == 0


def test_preloading_the_cuda_shim_alone_gives_gpu(host):
    # no libcuda.so.1 link anywhere: the loader matches the preloaded object's SONAME
    host.run_expect([0], "printf '[Service]\\nEnvironment=\"LD_PRELOAD=/usr/lib64/libvgpu-cuda.so\"\\n' > %s", DROPIN)
    lines, log = restart(host)
    assert is_gpu(lines), log


def test_shim_without_cuinit_gives_cpu(host):
    host.run_expect([0], "printf '[Service]\\nEnvironment=\"LD_PRELOAD=/usr/lib64/libvgpu-nvml.so\"\\n' > %s", DROPIN)
    host.run_expect([0], "ln -sfn /usr/lib64/libvgpu-cuda-nocuinit.so %s", CUDA_V12_LINK)
    lines, log = restart(host)
    assert not is_gpu(lines), log


def test_unreadable_shim_gives_cpu(host):
    host.run_expect([0], "ln -sfn /usr/lib64/libvgpu-cuda.so %s", CUDA_V12_LINK)
    lines, log = restart(host)
    assert is_gpu(lines), log                      # control: readable shim -> GPU
    host.run_expect([0], "chmod 0600 /usr/lib64/libvgpu-cuda.so")   # User=ollama can no longer open it
    try:
        lines, log = restart(host)
        assert not is_gpu(lines), log
    finally:
        host.run_expect([0], "chmod 0755 /usr/lib64/libvgpu-cuda.so")


def test_upgrade_wipes_lib_dir_and_keeps_dropin(host):
    assert host.file(CUDA_V12_LINK).is_symlink
    before = host.check_output("systemctl show -p InvocationID --value %s", UNIT)
    host.run_expect([0], "systemctl reset-failed %s", UNIT)
    host.run_expect([0], "sh /var/cache/ollama-sim/install.sh /var/cache/ollama-sim/ollama-0.30.1-linux-amd64.tgz")
    assert not host.file(CUDA_V12_LINK).exists
    assert host.file(DROPIN).exists
    assert host.check_output("systemctl show -p InvocationID --value %s", UNIT) != before
    lines, log = verdict_lines(host)
    assert "(version 0.30.1)" in log
    assert not is_gpu(lines), log                  # the links went with the old tree
    wait_api(host)
    assert api(host, "GET", "/api/version")["version"] == "0.30.1"
