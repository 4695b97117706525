"""Simulator: the NVIDIA driver gate of Ollama 0.30+, the v0.30-era discovery logs
per level, and the shim knobs / bad builds behind them.

Real processes, like test_simulator.py (whose helpers this reuses): a release
tarball extracted into a temp prefix, `ollama serve` on a free port, the shims
found by the real dynamic loader.  Every log line asserted here names the
upstream line it mirrors as path:line@tag (ollama/ollama sources).
"""
import json
import os
import subprocess
import sys
import tarfile
import time

import pytest

from test_simulator import (BUILD, NAME, RAM, SIMSRC, assert_line, bad, compute_lines, is_gpu, libdir, lines_with, link,
                            msgs, prefix_factory, readelf, serve, shim, sim, slog_lines)  # noqa: F401

NEW = "0.32.15"   # new gate (discover/cuda_compat.go:21-77@v0.32.15, same as @v0.30.11)
OLD = "0.30.1"    # old gate (discover/cuda_compat.go:10-45@v0.30.1)


def nvml535():
    return bad(BUILD, "libvgpu-nvml-driver535.so")


def gpu_prefix(prefix_factory, version=NEW):
    p = prefix_factory(version)
    link(shim(BUILD), libdir(p))
    return p


def source(pairs):
    return dict(pairs).get("source")


def level_lines(log, level):
    return [p for p in slog_lines(log) if dict(p).get("level") == level]


def cpu_line(log):
    # discover/types.go:50@v0.32.15 (the CPU "inference compute" call)
    c = compute_lines(log)
    assert len(c) == 1, log
    assert_line(c[0], 'time=X level=INFO source=X msg="inference compute" id=cpu library=cpu compute="" name=cpu '
                      'description=cpu libdirs=ollama driver="" pci_id="" type="" total=<RAM> available=<RAM>')
    return c[0]


GPU_V12 = ('time=X level=INFO source=X msg="inference compute" id=0 filter_id=0 library=CUDA compute=%s name=CUDA0 '
           'description="' + NAME + '" libdirs=ollama,cuda_v12 driver=12.8 pci_id=0000:00:05.0 type=discrete '
           'total="79.6 GiB" available="79.1 GiB"')


# ---------------------------------------------------------------------------
# the new gate (0.30.11+)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["preload", "link"])
def test_new_gate_drops_cuda_on_driver_535(prefix_factory, how):
    """NVML says 535, the bundled runtime is libcudart.so.12.8.90 -> every CUDA device
    is dropped: "550 or newer" (discover/cuda_compat.go:64-67@v0.32.15), CPU mode"""
    p = gpu_prefix(prefix_factory)
    env = {}
    if how == "preload":
        env["LD_PRELOAD"] = nvml535()
    else:   # a libnvidia-ml.so.1 on the runner's library path (lib/ollama is first in LD_LIBRARY_PATH)
        os.symlink(nvml535(), os.path.join(libdir(p), "libnvidia-ml.so.1"))
    r = serve(p, env)
    assert r.rc == 0, r.log
    warn = lines_with(r.log, "NVIDIA driver too old")
    assert len(warn) == 1, r.log
    assert_line(warn[0], 'time=X level=WARN source=X msg="NVIDIA driver too old" device="%s" compute=9.0 '
                         'driver=535 required_driver="550 or newer"' % NAME)
    assert source(warn[0]) == "cuda_compat.go:65"
    cpu_line(r.log)
    # and nothing else above INFO but the gate's line
    assert [dict(x)["msg"] for x in level_lines(r.log, "WARN")] == ["NVIDIA driver too old"]


def test_new_gate_without_nvml_warns_and_keeps_gpu(prefix_factory):
    """no libnvidia-ml.so.1 anywhere -> driver major 0 -> WARN, devices kept
    (discover/cuda_compat.go:37-41@v0.32.15)"""
    r = serve(gpu_prefix(prefix_factory))
    w = lines_with(r.log, "could not verify NVIDIA driver compatibility for CUDA")
    assert len(w) == 1
    assert_line(w[0], 'time=X level=WARN source=X msg="could not verify NVIDIA driver compatibility for CUDA"')
    assert source(w[0]) == "cuda_compat.go:39"
    assert_line(compute_lines(r.log)[0], GPU_V12 % "9.0")
    assert msgs(r.log).index("could not verify NVIDIA driver compatibility for CUDA") < \
        msgs(r.log).index("inference compute")


@pytest.mark.parametrize("driver", ["570.133.20", "580.65.06"])
def test_new_gate_keeps_gpu_on_570_and_newer(prefix_factory, driver):
    """driver >= 570 keeps every device (discover/cuda_compat.go:54-56@v0.32.15)"""
    r = serve(gpu_prefix(prefix_factory), {"LD_PRELOAD": shim(BUILD, "libvgpu-nvml.so"),
                                           "VGPU_SIM_NVIDIA_DRIVER": driver})
    assert not level_lines(r.log, "WARN"), r.log
    assert_line(compute_lines(r.log)[0], GPU_V12 % "9.0")


@pytest.mark.parametrize("cc,gpu", [("6.1", False), ("8.6", True)])
def test_new_gate_565_drops_only_old_compute(prefix_factory, cc, gpu):
    """550 <= driver < 570 with runtime 12.8: only compute < 7 goes, "570 or newer"
    (discover/cuda_compat.go:69-72@v0.32.15)"""
    r = serve(gpu_prefix(prefix_factory), {"LD_PRELOAD": shim(BUILD, "libvgpu-nvml.so"),
                                           "VGPU_SIM_NVIDIA_DRIVER": "565.57.01", "VGPU_SIM_CC": cc})
    warn = lines_with(r.log, "NVIDIA driver too old")
    if gpu:
        assert not warn
        assert_line(compute_lines(r.log)[0], GPU_V12 % cc)
    else:
        assert_line(warn[0], 'time=X level=WARN source=X msg="NVIDIA driver too old" device="%s" compute=6.1 '
                             'driver=565 required_driver="570 or newer"' % NAME)
        assert source(warn[0]) == "cuda_compat.go:70"
        cpu_line(r.log)


def test_new_gate_needs_the_runtime_file_name(prefix_factory):
    """without libcudart.so.12.* in cuda_v12 the runtime version is the dir name, 12.0
    (discover/llama_server.go:425-428@v0.32.15), and 12.0 gates nothing
    (discover/cuda_compat.go:46-56@v0.32.15): GPU mode even on 535"""
    p = gpu_prefix(prefix_factory)
    v12 = os.path.join(libdir(p), "cuda_v12")
    for n in os.listdir(v12):
        if n.startswith("libcudart.so"):
            os.unlink(os.path.join(v12, n))
    r = serve(p, {"LD_PRELOAD": nvml535()})
    assert not lines_with(r.log, "NVIDIA driver too old")
    assert_line(compute_lines(r.log)[0], GPU_V12 % "9.0")


def test_new_gate_only_judges_cuda_v12(prefix_factory):
    """filterOldCUDADriver runs on the cuda_v12 first pass only
    (discover/runner.go:119-121@v0.32.15): with a CUDA 13 driver the cuda_v13 copy survives"""
    r = serve(gpu_prefix(prefix_factory), {"LD_PRELOAD": nvml535(), "VGPU_SIM_DRIVER": "13.0"})
    assert len(lines_with(r.log, "NVIDIA driver too old")) == 1
    c = dict(compute_lines(r.log)[0])
    assert (c["library"], c["libdirs"], c["driver"]) == ("CUDA", "ollama,cuda_v13", "13.0")


# ---------------------------------------------------------------------------
# the old gate (0.30.0-0.30.10)
# ---------------------------------------------------------------------------


def test_old_gate_ignores_compute_7_and_newer(prefix_factory):
    """0.30.1 checks only compute major < 7 (discover/cuda_compat.go:11-24@v0.30.1):
    535 with compute 9.0 stays GPU, no warning"""
    r = serve(gpu_prefix(prefix_factory, OLD), {"LD_PRELOAD": nvml535()})
    assert not level_lines(r.log, "WARN"), r.log
    assert_line(compute_lines(r.log)[0], GPU_V12 % "9.0")


def test_old_gate_drops_old_compute_on_535(prefix_factory):
    """discover/cuda_compat.go:35-43@v0.30.1"""
    r = serve(gpu_prefix(prefix_factory, OLD), {"LD_PRELOAD": nvml535(), "VGPU_SIM_CC": "6.1"})
    warn = lines_with(r.log, "NVIDIA driver too old")
    assert_line(warn[0], 'time=X level=WARN source=X msg="NVIDIA driver too old" device="%s" compute=6.1 '
                         'driver=535 required_driver="570 or newer"' % NAME)
    assert source(warn[0]) == "cuda_compat.go:38"
    cpu_line(r.log)


def test_old_gate_without_nvml(prefix_factory):
    """discover/cuda_compat.go:26-30@v0.30.1: old GPU, no driver major -> WARN, kept"""
    r = serve(gpu_prefix(prefix_factory, OLD), {"VGPU_SIM_CC": "6.1"})
    w = lines_with(r.log, "could not verify NVIDIA driver compatibility for an older NVIDIA GPU")
    assert len(w) == 1 and source(w[0]) == "cuda_compat.go:28"
    assert_line(compute_lines(r.log)[0], GPU_V12 % "6.1")


# ---------------------------------------------------------------------------
# failing drivers: INFO / DEBUG / TRACE in the v0.30 era
# ---------------------------------------------------------------------------

DRIVER_TEXT = ("cuInit", "libcuda", "stub", "unknown error", "CUDA_ERROR", "Error:", "native GPU discovery",
               "undefined symbol", "cannot open shared object")


def assert_quiet_cpu(log):
    """at INFO a failing driver is only the CPU line: the subprocess output goes to
    io.Discard (discover/llama_server.go:167-172@v0.32.15), the native probe's
    failure is DEBUG (discover/native_probe.go:254-263@v0.32.15)"""
    cpu_line(log)
    for text in DRIVER_TEXT:
        assert text not in log, (text, log)


@pytest.mark.parametrize("build", ["libcuda-stub.so", "libvgpu-cuda-err999.so", "libvgpu-cuda-zero.so"])
def test_bad_builds_cpu_and_quiet(prefix_factory, build):
    p = prefix_factory(NEW)
    link(bad(BUILD, build), libdir(p))
    r = serve(p)
    assert r.rc == 0
    assert_quiet_cpu(r.log)
    assert not level_lines(r.log, "WARN")


def test_hang_build_times_out_to_cpu(prefix_factory):
    """cuInit never returns: the watchdog (discover/runner.go:583-585@v0.32.15), the
    INFO failure (:522) and the discovery goroutine's own WARN
    (discover/llama_server.go:129-131@v0.32.15); then CPU"""
    p = prefix_factory(NEW)
    link(bad(BUILD, "libvgpu-cuda-hang.so"), libdir(p))
    t0 = time.time()
    r = serve(p, {"OLLAMA_SIM_DISCOVERY_TIMEOUT": "0.5"})
    assert time.time() - t0 < 5
    assert_quiet_cpu(r.log)
    v12 = "[%s %s/cuda_v12]" % (libdir(p), libdir(p))
    wd = [x for x in lines_with(r.log, "llama-server GPU discovery watchdog timed out")
          if dict(x)["OLLAMA_LIBRARY_PATH"] == v12]
    assert_line(wd[0], 'time=X level=WARN source=X msg="llama-server GPU discovery watchdog timed out" '
                       'OLLAMA_LIBRARY_PATH="%s" extra_envs=map[] error="context deadline exceeded"' % v12)
    assert source(wd[0]) == "runner.go:584"
    fail = [x for x in lines_with(r.log, "failure during llama-server GPU discovery")
            if dict(x)["OLLAMA_LIBRARY_PATH"] == v12]
    assert_line(fail[0], 'time=X level=INFO source=X msg="failure during llama-server GPU discovery" '
                         'OLLAMA_LIBRARY_PATH="%s" extra_envs=map[] error="context deadline exceeded" detail=""' % v12)
    assert source(fail[0]) == "runner.go:522"
    tw = [x for x in lines_with(r.log, "llama-server discovery: timed out waiting for server startup")
          if dict(x)["libDirs"] == v12]
    assert_line(tw[0], 'time=X level=WARN source=X msg="llama-server discovery: timed out waiting for server startup" '
                       'error="context deadline exceeded" libDirs="%s" lines_captured=0' % v12)
    assert source(tw[0]) == "llama_server.go:130"
    assert "timed out" in r.log and "cuInit" not in r.log


@pytest.mark.parametrize("build,stderr", [
    ("libcuda-stub.so", "ggml_cuda_init: failed to initialize CUDA: CUDA driver is a stub library\n"
                        "load_backend: loaded CUDA backend from {v12}/libggml-cuda.so\n"
                        "Error: cuInit failed: 34\n"),
    ("libvgpu-cuda-err999.so", "ggml_cuda_init: failed to initialize CUDA: unknown error\n"
                               "load_backend: loaded CUDA backend from {v12}/libggml-cuda.so\n"
                               "Error: cuInit failed: 999\n"),
    (None, "load_backend: failed to load {v12}/libggml-cuda.so: libcuda.so.1: cannot open shared object file: "
           "No such file or directory\n"
           "Error: dlopen libcuda.so.1: libcuda.so.1: cannot open shared object file: No such file or directory; "
           "dlopen libcuda.so: libcuda.so: cannot open shared object file: No such file or directory\n"),
])
def test_debug_shows_the_native_probe_failure(prefix_factory, build, stderr):
    """OLLAMA_DEBUG=1: logNativeProbeFailure (discover/native_probe.go:259@v0.32.15) with
    the gpu-discover subprocess's exit error and stderr: ggml's backend loader
    (ml/backend/ggml/ggml/src/ggml-backend-reg.cpp:283,318@v0.13.5), ggml_cuda_init
    (ml/backend/ggml/ggml/src/ggml-cuda/ggml-cuda.cu:247@v0.13.5), then cobra's
    "Error: " + probeCUDADriverLinux's error (discover/native_probe_linux.go:250-287@v0.32.15)"""
    p = prefix_factory(NEW)
    if build:
        link(bad(BUILD, build), libdir(p))
    r = serve(p, {"OLLAMA_DEBUG": "1"})
    v12 = os.path.join(libdir(p), "cuda_v12")
    dirs = "[%s %s]" % (libdir(p), v12)
    fails = [x for x in lines_with(r.log, "native GPU discovery failed") if dict(x)["libDirs"] == dirs]
    assert len(fails) == 1, r.log
    assert [k for k, _ in fails[0]] == ["time", "level", "source", "msg", "error", "stderr", "libDirs"]
    f = dict(fails[0])
    assert (f["level"], f["source"], f["error"]) == ("DEBUG", "native_probe.go:259", "exit status 1")
    assert f["stderr"] == stderr.format(v12=v12)
    # the DEBUG lines of that first pass, in upstream's order
    # (discover/llama_server.go:121,52 and discover/runner.go:494@v0.32.15)
    mine = [dict(x) for x in slog_lines(r.log) if dirs in (dict(x).get("libDirs"), dict(x).get("OLLAMA_LIBRARY_PATH"))]
    assert [(x["msg"], x["source"]) for x in mine] == [
        ("llama-server discovery: stopped subprocess after collecting GPU info", "llama_server.go:121"),
        ("native GPU discovery failed", "native_probe.go:259"),
        ("llama-server device discovery took", "llama_server.go:52"),
        ("bootstrap discovery took", "runner.go:494")]
    assert mine[0]["exit"] == "unknown"   # killed after system_info: ExitCode() -1 (llm/exit_status.go@v0.32.15)
    assert "backend library failed to initialize" not in r.log and "runner exited" not in r.log
    cpu_line(r.log)


def test_zero_devices_is_not_a_native_failure(prefix_factory):
    """cuInit ok, 0 devices: probeCUDADriverLinux returns no devices and no error, so
    gpu-discover succeeds (discover/native_probe_linux.go:156-167@v0.32.15): no DEBUG failure"""
    p = prefix_factory(NEW)
    link(bad(BUILD, "libvgpu-cuda-zero.so"), libdir(p))
    r = serve(p, {"OLLAMA_DEBUG": "1"})
    assert not lines_with(r.log, "native GPU discovery failed")
    cpu_line(r.log)


def test_trace_passes_subprocess_output_through(prefix_factory):
    """OLLAMA_DEBUG=2: logutil.Trace "running llama-server for discovery"
    (discover/llama_server.go:71@v0.32.15) and the subprocesses' own output on stderr
    (llamaServerDiscoveryOutput, :167-172)"""
    p = prefix_factory(NEW)
    link(bad(BUILD, "libvgpu-cuda-err999.so"), libdir(p))
    r = serve(p, {"OLLAMA_DEBUG": "2"})
    v12 = os.path.join(libdir(p), "cuda_v12")
    tr = [x for x in lines_with(r.log, "running llama-server for discovery")
          if dict(x)["libDirs"] == "[%s %s]" % (libdir(p), v12)]
    assert_line(tr[0], 'time=X level=TRACE source=X msg="running llama-server for discovery" cmd=%s/llama-server '
                       'libDirs="[%s %s]"' % (libdir(p), libdir(p), v12))
    assert source(tr[0]) == "llama_server.go:71"
    raw = [x for x in r.log.splitlines() if not x.startswith("time=")]
    assert "ggml_cuda_init: failed to initialize CUDA: unknown error" in raw
    assert "Error: cuInit failed: 999" in raw
    assert "Available devices:" in raw


def test_crashing_runner_v030(prefix_factory):
    """a runner killed by SIGBUS: Kill fails (already gone) -> DEBUG "server startup exited"
    (discover/llama_server.go:124), WARN no system_info (:135-138), --list-devices fails
    (:150,152-154), INFO failure (discover/runner.go:522@v0.32.15)"""
    p = prefix_factory(NEW)
    link(bad(BUILD, "libvgpu-cuda-truncated.so"), libdir(p))
    r = serve(p, {"OLLAMA_DEBUG": "1"})
    dirs = "[%s %s/cuda_v12]" % (libdir(p), libdir(p))
    ex = [x for x in lines_with(r.log, "llama-server discovery: server startup exited") if dict(x)["libDirs"] == dirs]
    assert_line(ex[0], 'time=X level=DEBUG source=X msg="llama-server discovery: server startup exited" '
                       'error="signal: bus error" exit=unknown libDirs="%s"' % dirs)
    si = [x for x in lines_with(r.log, "llama-server discovery: system_info line not found in output - CUDA "
                                       "architecture filtering will be disabled. If GPU inference fails, this may "
                                       "indicate an incompatible llama-server version.")
          if dict(x)["libDirs"] == dirs]
    assert dict(si[0])["level"] == "WARN" and source(si[0]) == "llama_server.go:135"
    fail = [x for x in lines_with(r.log, "failure during llama-server GPU discovery")
            if dict(x)["OLLAMA_LIBRARY_PATH"] == dirs]
    assert_line(fail[0], 'time=X level=INFO source=X msg="failure during llama-server GPU discovery" '
                         'OLLAMA_LIBRARY_PATH="%s" extra_envs=map[] '
                         'error="llama-server --list-devices failed: signal: bus error" detail=""' % dirs)
    cpu_line(r.log)


# ---------------------------------------------------------------------------
# Vulkan sees the device too (VGPU_SIM_VULKAN_DEVICES)
# ---------------------------------------------------------------------------


def test_vulkan_only_when_the_gate_drops_cuda(prefix_factory):
    """the gate drops the CUDA device; Vulkan's copy has no rival left
    (discover/runner.go:209-249@v0.32.15) -> GPU mode with library=Vulkan"""
    r = serve(gpu_prefix(prefix_factory), {"LD_PRELOAD": nvml535(), "VGPU_SIM_VULKAN_DEVICES": "1"})
    assert lines_with(r.log, "NVIDIA driver too old")
    c = compute_lines(r.log)
    assert len(c) == 1
    # discover/types.go:32@v0.32.15; Vulkan: compute/driver 0.0 (no CC, no CUDA driver)
    assert_line(c[0], 'time=X level=INFO source=X msg="inference compute" id=0 filter_id=0 library=Vulkan '
                      'compute=0.0 name=Vulkan0 description="%s" libdirs=ollama,vulkan driver=0.0 '
                      'pci_id=0000:00:05.0 type=discrete total="79.6 GiB" available="79.1 GiB"' % NAME)


def test_cuda_preferred_over_vulkan_duplicate(prefix_factory):
    """same PCI id, different library: ml.DeviceInfo.Compare -> DuplicateDevice, CUDA
    kept (ml/device.go:451-470,677-686@v0.32.15), DEBUG "dropping duplicate device"
    (discover/runner.go:235@v0.32.15)"""
    p = gpu_prefix(prefix_factory)
    r = serve(p, {"LD_PRELOAD": shim(BUILD, "libvgpu-nvml.so"), "VGPU_SIM_VULKAN_DEVICES": "1",
                  "OLLAMA_DEBUG": "1"})
    assert_line(compute_lines(r.log)[0], GPU_V12 % "9.0")
    d = lines_with(r.log, "dropping duplicate device")
    assert_line(d[0], 'time=X level=DEBUG source=X msg="dropping duplicate device" id=0 library=Vulkan compute=0.0 '
                      'name=Vulkan0 description="%s" libdirs=%s,%s/vulkan driver=0.0 pci_id=0000:00:05.0 '
                      'type=discrete total="79.6 GiB" available="79.1 GiB"' % (NAME, libdir(p), libdir(p)))
    assert source(d[0]) == "runner.go:235"


# ---------------------------------------------------------------------------
# build outputs: tarball runtime files, bad builds, C entry points
# ---------------------------------------------------------------------------


def test_tarball_ships_cuda_runtime_names(sim):
    with tarfile.open(os.path.join(sim, "ollama-%s-linux-amd64.tgz" % NEW)) as t:
        m = dict((x.name, x) for x in t.getmembers())
    assert m["lib/ollama/cuda_v12/libcudart.so.12"].issym()
    assert m["lib/ollama/cuda_v12/libcudart.so.12"].linkname == "libcudart.so.12.8.90"
    assert m["lib/ollama/cuda_v12/libcudart.so.12.8.90"].isfile()
    assert m["lib/ollama/cuda_v13/libcudart.so.13"].linkname == "libcudart.so.13.0.96"
    assert sorted(n.split("/")[2] for n, x in m.items() if x.isdir() and n.count("/") == 2) == \
        ["cuda_v12", "cuda_v13", "vulkan"]
    with tarfile.open(os.path.join(sim, "ollama-0.5.7-linux-amd64.tgz")) as t:
        m57 = dict((x.name, x) for x in t.getmembers())
    # 0.5.7: the CUDA runtimes flat in lib/ollama (make/gpu.make:12,76-78@v0.5.7), no cuda_vNN dirs
    assert m57["lib/ollama/libcudart.so.12"].linkname == "libcudart.so.12.4.127"
    assert not [n for n in m57 if n.startswith("lib/ollama/cuda_v")]
    assert "[libcudart.so.12]" in readelf(os.path.join(sim, "ggml", "cudart", "libcudart.so.12.8.90"), "-d")


def exported(path):
    syms = readelf(path, "--dyn-syms")
    return set(x.split()[-1] for x in syms.splitlines() if " FUNC " in x and " GLOBAL " in x and " UND " not in x)


def test_bad_build_elf_facts(sim):
    good = exported(shim(sim))
    assert exported(bad(sim, "libcuda-stub.so")) == good
    for b in ("libcuda-stub.so", "libvgpu-cuda-err999.so", "libvgpu-cuda-zero.so", "libvgpu-cuda-hang.so"):
        d = readelf(bad(sim, b), "-d")
        assert "[libcuda.so.1]" in d and "INIT" not in d, b
    assert "[libnvidia-ml.so.1]" in readelf(bad(sim, "libvgpu-nvml-driver535.so"), "-d")
    need = {"nvmlInit_v2", "nvmlShutdown", "nvmlSystemGetDriverVersion", "nvmlDeviceGetCount_v2"}
    assert need <= exported(shim(sim, "libvgpu-nvml.so")) and need <= exported(bad(sim, "libvgpu-nvml-driver535.so"))


CUDA_PROBE = r"""
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1], mode=2)
I, P = ctypes.c_int, ctypes.byref
out = {"init": lib.cuInit(0)}
v = I(-1); out["version_rc"] = lib.cuDriverGetVersion(P(v)); out["version"] = v.value
n = I(-1); out["count_rc"] = lib.cuDeviceGetCount(P(n)); out["count"] = n.value
d = I(-1); out["get_rc"] = lib.cuDeviceGet(P(d), 0)
name = ctypes.create_string_buffer(128); out["name_rc"] = lib.cuDeviceGetName(name, 128, 0); out["name"] = name.value.decode()
tot = ctypes.c_size_t(0); out["mem_rc"] = lib.cuDeviceTotalMem_v2(P(tot), 0); out["total"] = tot.value
for a in (75, 76):
    x = I(-1); out["attr%d_rc" % a] = lib.cuDeviceGetAttribute(P(x), a, 0); out["attr%d" % a] = x.value
pci = ctypes.create_string_buffer(32); out["pci_rc"] = lib.cuDeviceGetPCIBusId(pci, 32, 0); out["pci"] = pci.value.decode()
print(json.dumps(out))
"""


def cuda_probe(path, timeout=30, **env):
    e = {"PATH": "/usr/bin:/bin"}
    e.update(env)
    r = subprocess.run([sys.executable, "-c", CUDA_PROBE, path], env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_reference_shim_answers_the_probe_calls(sim):
    """the calls probeCUDADriverLinux makes (discover/native_probe_linux.go:255-331@v0.32.15)"""
    o = cuda_probe(shim(sim))
    assert o["init"] == 0 and o["version"] == 12080 and o["count"] == 1
    assert (o["get_rc"], o["name_rc"], o["mem_rc"], o["attr75_rc"], o["attr76_rc"], o["pci_rc"]) == (0,) * 6
    assert (o["name"], o["total"], o["attr75"], o["attr76"], o["pci"]) == (NAME, 81559 << 20, 9, 0, "0000:00:05.0")


def test_stub_build_returns_34_everywhere(sim):
    """CUDA_ERROR_STUB_LIBRARY = 34 (cuda.h)"""
    o = cuda_probe(bad(sim, "libcuda-stub.so"))
    assert set(v for k, v in o.items() if k == "init" or k.endswith("_rc")) == {34}


def test_err999_build(sim):
    o = cuda_probe(bad(sim, "libvgpu-cuda-err999.so"))
    assert o["init"] == 999 and o["count_rc"] == 3   # CUDA_ERROR_UNKNOWN, then NOT_INITIALIZED


def test_zero_build(sim):
    o = cuda_probe(bad(sim, "libvgpu-cuda-zero.so"))
    assert (o["init"], o["count_rc"], o["count"], o["get_rc"]) == (0, 0, 0, 101)


def test_hang_build_blocks_and_dies_by_sigkill(sim):
    code = "import ctypes,sys; ctypes.CDLL(sys.argv[1]).cuInit(0); print('returned')"
    p = subprocess.Popen([sys.executable, "-c", code, bad(sim, "libvgpu-cuda-hang.so")], stdout=subprocess.PIPE,
                         env={"PATH": "/usr/bin:/bin"})
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(timeout=0.5)
    finally:
        p.kill()
    assert p.wait(timeout=5) == -9 and p.stdout.read() == b""
    p.stdout.close()
    t0 = time.time()
    o = cuda_probe(bad(sim, "libvgpu-cuda-hang.so"), VGPU_SIM_INIT_DELAY_MS="50")   # the knob still wins
    assert o["init"] == 0 and time.time() - t0 < 5


NVML_PROBE = r"""
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
buf = ctypes.create_string_buffer(80); small = ctypes.create_string_buffer(4); n = ctypes.c_uint(99)
out = {"early_shutdown": lib.nvmlShutdown(), "early_count": lib.nvmlDeviceGetCount_v2(ctypes.byref(n)),
       "init": lib.nvmlInit_v2(), "ver_rc": lib.nvmlSystemGetDriverVersion(buf, ctypes.c_uint(80)),
       "small_rc": lib.nvmlSystemGetDriverVersion(small, ctypes.c_uint(4)),
       "count_rc": lib.nvmlDeviceGetCount_v2(ctypes.byref(n))}
out["version"] = buf.value.decode(); out["count"] = n.value; out["shutdown"] = lib.nvmlShutdown()
print(json.dumps(out))
"""


@pytest.mark.parametrize("build,env,version", [
    ("libvgpu-nvml.so", {}, "570.133.20"),
    ("bad/libvgpu-nvml-driver535.so", {}, "535.104.05"),
    ("bad/libvgpu-nvml-driver535.so", {"VGPU_SIM_NVIDIA_DRIVER": "550.54.15"}, "550.54.15"),
])
def test_nvml_driver_version(sim, build, env, version):
    """NVML return codes: 1 UNINITIALIZED, 7 INSUFFICIENT_SIZE (nvml.h)"""
    e = {"PATH": "/usr/bin:/bin"}
    e.update(env)
    r = subprocess.run([sys.executable, "-c", NVML_PROBE, os.path.join(sim, "shim", build)], env=e,
                       stdout=subprocess.PIPE, universal_newlines=True, timeout=30)
    o = json.loads(r.stdout)
    assert (o["early_shutdown"], o["early_count"], o["init"], o["ver_rc"], o["small_rc"], o["count_rc"],
            o["shutdown"]) == (1, 1, 0, 0, 7, 0, 0)
    assert o["version"] == version and o["count"] == 1


# ---------------------------------------------------------------------------
# the simulator's own pieces
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simmod():
    import importlib.util
    spec = importlib.util.spec_from_file_location("ollama_sim_gate", os.path.join(SIMSRC, "ollama", "ollama.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("version,gate,sources", [
    ("0.13.5", None, "0.13.5"), ("0.29.9", None, "0.24.0"), ("0.30.0", "old", "0.30.1"),
    ("0.30.10", "old", "0.30.1"), ("0.30.11", "new", "0.30.11"), ("0.32.14", "new", "0.30.11"),
    ("0.32.15", "new", "0.32.15"),
    ("0.33.0-rc2", "new", "0.32.15")])
def test_gate_is_a_profile_feature(simmod, version, gate, sources):
    p = simmod.Profile(version)
    assert p.cuda_driver_gate == gate and p.source_key() == sources


@pytest.mark.parametrize("text,major", [("535.104.05", 535), (" 570.133.20\n", 570), ("580", 580), ("", 0),
                                        ("abc.1", 0), ("5x5.1", 0)])
def test_parse_nvidia_driver_major(simmod, text, major):
    """parseNVIDIADriverMajor (discover/native_probe_platform.go:121-132@v0.32.15); errors -> 0"""
    assert simmod.parse_nvidia_driver_major(text) == major


def test_cuda_runtime_version(simmod, tmp_path):
    """cudaRuntimeVersion (discover/llama_server.go:400-435@v0.32.15)"""
    d = tmp_path / "cuda_v12"
    d.mkdir()
    assert simmod.cuda_runtime_version([str(d)]) == (12, 0)
    (d / "libcudart.so.12").write_bytes(b"")
    assert simmod.cuda_runtime_version([str(d)]) == (12, 0)
    (d / "libcudart.so.12.8.90").write_bytes(b"")
    assert simmod.cuda_runtime_version([str(tmp_path), str(d)]) == (12, 8)
    assert simmod.cuda_runtime_version([str(tmp_path)]) is None


def test_new_release_has_its_own_sources(simmod):
    """0.32.15 has a source= for every line 0.30.1 prints, plus the new gate's;
    spot values read at the tag (server/routes.go:1951,2008, discover/runner.go:522)"""
    new, old = simmod.SOURCES["0.32.15"], simmod.SOURCES["0.30.1"]
    assert set(old) - {"gate_570"} <= set(new) and {"gate_550", "gate_570", "gate_unverified"} <= set(new)
    assert (new["config"], new["listen"], new["failure"], new["gate_550"]) == \
        ("routes.go:1951", "routes.go:2008", "runner.go:522", "cuda_compat.go:65")


def test_ctx_error_knob_fails_ollama_but_not_the_probe_calls(prefix_factory):
    """VGPU_SIM_CTX_ERROR=2: a host side that refuses contexts. The backend's cuCtxCreate fails, so Ollama ends on
    the CPU line - while everything the doctor's live probe calls (it creates no context: that would allocate
    memory on the host GPU) still answers, which is what remediate's history is there for."""
    from ansible.module_utils.vgpu_probe import run_probe
    p = gpu_prefix(prefix_factory, version="0.13.5")
    r = serve(p, {"VGPU_SIM_CTX_ERROR": "2"})
    assert r.rc == 0, r.log
    assert [dict(c)["library"] for c in compute_lines(r.log)] == ["cpu"], r.log
    probe = run_probe([libdir(p), os.path.join(libdir(p), "cuda_v12")],
                      {"PATH": "/usr/bin:/bin", "VGPU_SIM_CTX_ERROR": "2"}, timeout=5)
    assert probe["ok"] is True and probe["cuda"]["devices"][0]["name"] == NAME, probe
