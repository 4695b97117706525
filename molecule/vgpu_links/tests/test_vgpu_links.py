"""vgpu_links after converge (shim + links) and idempotence, with Ollama 0.5.7 (runners/, no cuda_vNN dirs)."""
import pytest

from vgpu_testlib import gpu_mode, installed_ollama_version, realpath

OLLAMA = "/usr/local/lib/ollama"
FIVE_PLACES = ["/usr/lib64", "/usr/local/lib", OLLAMA, OLLAMA + "/cuda_v12", OLLAMA + "/cuda_v13"]
TARGETS = {"libcuda.so.1": "/usr/lib64/libvgpu-cuda.so", "libnvidia-ml.so.1": "/usr/lib64/libvgpu-nvml.so"}


@pytest.fixture(scope="module")
def link_dirs(host):
    """The five places that exist, plus every cuda_v* dir the installed release has."""
    dirs = [d for d in FIVE_PLACES if host.file(d).is_directory]
    extra = host.check_output("cd %s && ls -d cuda_v* 2>/dev/null || true", OLLAMA).split()
    return dirs + [OLLAMA + "/" + b for b in sorted(extra) if OLLAMA + "/" + b not in dirs]


def test_installed_release_has_no_cuda_dirs(host):
    assert installed_ollama_version(host) == "0.5.7"
    runners = sorted(host.check_output("ls %s/runners", OLLAMA).split())
    assert runners == ["cpu_avx", "cpu_avx2", "cuda_v11_avx", "cuda_v12_avx"]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_link_resolves_to_the_shim(host, link_dirs, name):
    assert link_dirs == ["/usr/lib64", "/usr/local/lib", OLLAMA], link_dirs
    for d in link_dirs:
        path = "%s/%s" % (d, name)
        assert host.file(path).is_symlink, "%s is not a symlink" % path
        assert realpath(host, path) == TARGETS[name], path


def test_nothing_invented_for_backends_this_release_lacks(host):
    present = sorted(host.check_output("cd %s && ls -d cuda_v* 2>/dev/null || true", OLLAMA).split())
    assert present == []
    assert not host.file(OLLAMA + "/cuda_v12").exists and not host.file(OLLAMA + "/cuda_v13").exists


def test_no_backups_or_stray_copies(host, link_dirs):
    for d in link_dirs:
        assert host.run("ls -A %s | grep -c vgpu-backup", d).stdout.strip() == "0", d


def test_in_process_discovery_finds_the_shim(host):
    # what 0.5.7's server does (discover/gpu.go:513-577@v0.5.7): glob lib/ollama, LD_LIBRARY_PATH and the
    # fixed dirs for libcuda.so*, follow each link, dlopen the file by its path - every match is the shim
    out = host.check_output("ls -1 %s/libcuda.so* /usr/lib*/libcuda.so* /usr/local/lib*/libcuda.so* 2>/dev/null"
                            " || true", OLLAMA)
    matches = out.split()
    assert OLLAMA + "/libcuda.so.1" in matches and "/usr/lib64/libcuda.so.1" in matches, out
    assert set(realpath(host, m) for m in matches) == {TARGETS["libcuda.so.1"]}, out


@pytest.mark.parametrize("backend", ["cuda_v11", "cuda_v12"])
def test_model_runner_loader_resolves_libcuda_to_the_shim(host, backend):
    # the model runner of 0.5.7 (its runner dir, then lib/ollama on LD_LIBRARY_PATH) loads
    # libggml_<backend>.so, whose DT_NEEDED libcuda.so.1 the loader must resolve to the shim
    rdir = "%s/runners/%s_avx" % (OLLAMA, backend)
    out = host.check_output("LD_LIBRARY_PATH=%s:%s ldd %s/libggml_%s.so", rdir, OLLAMA, rdir, backend)
    line = [l for l in out.splitlines() if l.strip().startswith("libcuda.so.1 ")]
    assert line, out
    resolved = line[0].split("=>")[1].split("(")[0].strip()
    assert realpath(host, resolved) == TARGETS["libcuda.so.1"], out


def test_service_restarted_onto_the_links_runs_on_the_gpu(ansible_host):
    # the running server's discovery ran before the links existed; the role restarts it once they change
    verdict = gpu_mode(ansible_host)
    assert verdict["mode"] == "gpu", verdict
    assert verdict["ollama_version"] == "0.5.7"
