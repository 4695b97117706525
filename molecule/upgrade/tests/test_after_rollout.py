"""Final state after the rollout (rolling_upgrade.yml): what the status lines said is what is on disk.

vgpu-upg1-preload   upgraded to 0.30.1, links re-made in every backend directory, GPU
vgpu-upg2-sabotaged upgraded, state re-applied, its foreign drop-in left in place (the toolkit reports
                    other drop-ins, it never edits them), the running server has CUDA_VISIBLE_DEVICES=-1
vgpu-upg3-scoped    untouched by the rollout: only its own layout's links, no staged artifacts"""
SHIM = "/usr/lib64/libvgpu-cuda.so"
BACKENDS = ["/usr/local/lib/ollama", "/usr/local/lib/ollama/cuda_v12", "/usr/local/lib/ollama/cuda_v13"]


def name(host):
    return host.backend.name


def version(host):
    return host.check_output("/usr/local/bin/ollama --version 2>&1 | sed -n 's/.*version is //p' | tail -n1")


def running_environ(host):
    pid = host.check_output("systemctl show -p MainPID --value ollama.service")
    return host.check_output("tr '\\0' '\\n' < /proc/%s/environ", pid).splitlines()


def test_every_host_runs_the_new_release(host):
    assert version(host) == "0.30.1"
    assert host.service("ollama").is_running
    assert not host.file("/etc/ld.so.preload").exists


def test_links_in_every_backend_directory(host):
    for d in BACKENDS:
        assert host.check_output("readlink %s/libcuda.so.1", d) == SHIM, d


def test_the_rollout_touched_exactly_the_hosts_it_reached(host):
    staged = host.file("/var/cache/ollama-upgrade/ollama-0.30.1-linux-amd64.tgz").exists
    assert staged == (name(host) != "vgpu-upg3-scoped")


def test_the_sabotaged_host_is_left_as_reported(host):
    dropins = host.check_output("ls /etc/systemd/system/ollama.service.d").split()
    env = running_environ(host)
    if name(host) == "vgpu-upg2-sabotaged":
        assert dropins == ["vgpu.conf", "zz-local.conf"]
        assert "CUDA_VISIBLE_DEVICES=-1" in env
    else:
        assert dropins == ["vgpu.conf"]
        assert not any(e.startswith("CUDA_VISIBLE_DEVICES=") for e in env)
