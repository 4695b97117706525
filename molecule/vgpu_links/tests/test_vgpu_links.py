"""vgpu_links after converge (shim + links) and idempotence, with Ollama 0.5.7 (cuda_v11, cuda_v12)."""
import pytest

from vgpu_testlib import gpu_mode, installed_ollama_version, ollama_backends, realpath

OLLAMA = "/usr/local/lib/ollama"
FIVE_PLACES = ["/usr/lib64", "/usr/local/lib", OLLAMA, OLLAMA + "/cuda_v12", OLLAMA + "/cuda_v13"]
TARGETS = {"libcuda.so.1": "/usr/lib64/libvgpu-cuda.so", "libnvidia-ml.so.1": "/usr/lib64/libvgpu-nvml.so"}


@pytest.fixture(scope="module")
def backends(host):
    return ollama_backends(installed_ollama_version(host))


@pytest.fixture(scope="module")
def link_dirs(host, backends):
    """The five places that exist, plus every cuda_v* dir of the installed release."""
    dirs = [d for d in FIVE_PLACES if host.file(d).is_directory]
    return dirs + [OLLAMA + "/" + b for b in backends if OLLAMA + "/" + b not in dirs]


def test_installed_release_is_the_one_without_cuda_v13(host, backends):
    assert installed_ollama_version(host) == "0.5.7"
    assert backends == ["cuda_v11", "cuda_v12"]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_link_resolves_to_the_shim(host, link_dirs, name):
    assert len(link_dirs) == 5, link_dirs      # /usr/lib64, /usr/local/lib, ollama, cuda_v12, cuda_v11
    for d in link_dirs:
        path = "%s/%s" % (d, name)
        assert host.file(path).is_symlink, "%s is not a symlink" % path
        assert realpath(host, path) == TARGETS[name], path


def test_nothing_invented_for_backends_this_release_lacks(host, backends):
    present = sorted(host.check_output("cd %s && ls -d cuda_v* 2>/dev/null || true", OLLAMA).split())
    assert present == backends
    assert not host.file(OLLAMA + "/cuda_v13").exists


def test_no_backups_or_stray_copies(host, link_dirs):
    for d in link_dirs:
        assert host.run("ls -A %s | grep -c vgpu-backup", d).stdout.strip() == "0", d


@pytest.mark.parametrize("backend", ["cuda_v11", "cuda_v12"])
def test_runner_loader_resolves_libcuda_to_the_shim(host, backend):
    # what Ollama's runner does: its own lib dirs first on LD_LIBRARY_PATH, then dlopen libggml-cuda.so,
    # whose DT_NEEDED libcuda.so.1 the loader must resolve to the shim
    out = host.check_output(
        "LD_LIBRARY_PATH=%s/%s:%s ldd %s/%s/libggml-cuda.so", OLLAMA, backend, OLLAMA, OLLAMA, backend)
    line = [l for l in out.splitlines() if l.strip().startswith("libcuda.so.1 ")]
    assert line, out
    resolved = line[0].split("=>")[1].split("(")[0].strip()
    assert realpath(host, resolved) == TARGETS["libcuda.so.1"], out


def test_service_restarted_onto_the_links_runs_on_the_gpu(ansible_host):
    # the running server's discovery ran before the links existed; the role restarts it once they change
    verdict = gpu_mode(ansible_host)
    assert verdict["mode"] == "gpu", verdict
    assert verdict["ollama_version"] == "0.5.7"
