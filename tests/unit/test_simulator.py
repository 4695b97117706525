"""Ollama simulator + reference shim: build, log format per era, causality, HTTP API, installer.

Real processes on this machine: each test installs a tarball into a temp prefix
(<prefix>/bin/ollama, <prefix>/lib/ollama) and runs `ollama serve` on a free
loopback port.  GPU mode must come only from the dynamic loader resolving
libcuda.so.1 to a library that answers the CUDA driver API.
"""
import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIMSRC = os.path.join(REPO, "simulator")
BUILD = os.path.join(os.environ.get("VGPU_BUILD_DIR") or os.path.join(REPO, ".build"), "sim")

UUID = "GPU-8a3c5f1e-2b7d-4e90-9c61-5d2f7a0b3e48"
NAME = "NVIDIA vH100 80GB HBM3"
RAM = "<RAM>"   # placeholder: any HumanBytes2 value
NOBODY = 65534


# ---------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sim():
    if not shutil.which(os.environ.get("CC", "gcc")):
        pytest.skip("gcc not installed: cannot build the reference shim")
    r = subprocess.run(["bash", os.path.join(SIMSRC, "build.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert r.returncode == 0, r.stdout
    return BUILD


def shim(sim_dir, name="libvgpu-cuda.so"):
    return os.path.join(sim_dir, "shim", name)


def bad(sim_dir, name):
    return os.path.join(sim_dir, "shim", "bad", name)


def install(sim_dir, version, where=None):
    """extract the release tarball into a fresh prefix, like install.sh does into /usr/local"""
    prefix = tempfile.mkdtemp(prefix="ollama-sim-", dir=where or "/tmp")
    os.chmod(prefix, 0o755)
    extract(os.path.join(sim_dir, "ollama-%s-linux-amd64.tgz" % version), prefix)
    return prefix


def extract(tgz, dest):
    with tarfile.open(tgz) as t:
        if hasattr(tarfile, "fully_trusted_filter"):
            t.extractall(dest, filter="fully_trusted")  # our own tarball; keep modes like tar(1)
        else:
            t.extractall(dest)


@pytest.fixture
def prefix_factory(sim):
    made = []

    def make(version="0.13.5"):
        p = install(sim, version)
        made.append(p)
        return p

    yield make
    for p in made:
        shutil.rmtree(p, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path, timeout=2.0):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.status, r.read().decode()


def post(port, path, body, timeout=10.0):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode()


class Run(object):
    pass


def serve(prefix, env=None, as_nobody=False, during=None, timeout=20.0):
    """Start <prefix>/bin/ollama serve, wait until the API answers (discovery is
    done by then), call during(port), SIGTERM it.  Returns a Run with log (stderr),
    out (stdout), rc, port, startup (seconds), result of during."""
    port = free_port()
    e = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": prefix,
         "OLLAMA_HOST": "127.0.0.1:%d" % port, "OLLAMA_MODELS": os.path.join(prefix, "models"),
         "LANG": "C.UTF-8"}
    e.update(env or {})
    cmd = [os.path.join(prefix, "bin", "ollama"), "serve"]
    if as_nobody:
        cmd = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups"] + cmd
    errf = tempfile.TemporaryFile()
    outf = tempfile.TemporaryFile()
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=e, stdout=outf, stderr=errf, stdin=subprocess.DEVNULL)
    run = Run()
    run.port = port
    run.result = None
    run.startup = None
    try:
        while time.time() - t0 < timeout and proc.poll() is None:
            try:
                get(port, "/api/version", timeout=0.5)
                run.startup = time.time() - t0
                break
            except Exception:
                time.sleep(0.02)
        if run.startup is not None and during is not None:
            run.result = during(port)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            run.rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            run.rc = proc.wait()
    errf.seek(0)
    outf.seek(0)
    run.log = errf.read().decode("utf-8", "replace")
    run.out = outf.read().decode("utf-8", "replace")
    return run


PAIR = re.compile(r'(?:"((?:[^"\\]|\\.)*)"|([^\s="]+))=(?:"((?:[^"\\]|\\.)*)"|(\S*))')


def parse(line):
    """independent slog text parser: [(key, value), ...]"""
    out = []
    for m in PAIR.finditer(line):
        k = json.loads('"%s"' % m.group(1)) if m.group(1) is not None else m.group(2)
        v = json.loads('"%s"' % m.group(3)) if m.group(3) is not None else m.group(4)
        out.append((k, v))
    return out


def slog_lines(log):
    return [parse(line) for line in log.splitlines() if line.startswith("time=")]


def msgs(log):
    return [dict(p).get("msg") for p in slog_lines(log)]


def lines_with(log, msg):
    return [p for p in slog_lines(log) if dict(p).get("msg") == msg]


def assert_line(actual_pairs, expected_text):
    """field for field; time= and source= values ignored; <RAM> matches any HumanBytes2"""
    exp = parse(expected_text)
    assert [k for k, _ in actual_pairs] == [k for k, _ in exp]
    for (k, v), (_, ev) in zip(actual_pairs, exp):
        if k in ("time", "source"):
            continue
        if ev == RAM:
            assert re.match(r"^\d+(\.\d)? (B|KiB|MiB|GiB)$", v), (k, v)
        else:
            assert v == ev, (k, v, ev)


def compute_lines(log):
    return lines_with(log, "inference compute")


def is_gpu(log):
    c = compute_lines(log)
    assert c, log
    return dict(c[-1]).get("library") not in ("cpu",)


def link(target, where):
    os.symlink(target, os.path.join(where, "libcuda.so.1"))


def libdir(prefix):
    return os.path.join(prefix, "lib", "ollama")


# ---------------------------------------------------------------------------
# build outputs
# ---------------------------------------------------------------------------


def readelf(path, opt):
    if not shutil.which("readelf"):
        pytest.skip("readelf not installed")
    return subprocess.run(["readelf", opt, "-W", path], stdout=subprocess.PIPE,
                          universal_newlines=True).stdout


def test_build_outputs(sim):
    for rel in ("shim/libvgpu-cuda.so", "shim/libvgpu-nvml.so", "shim/libvgpu-cudart.so", "shim/SHA256SUMS",
                "shim/bad/libvgpu-cuda-nocuinit.so", "shim/bad/libvgpu-cuda-aarch64.so",
                "shim/bad/libvgpu-cuda-elf32.so", "shim/bad/libvgpu-cuda-truncated.so",
                "shim/bad/libcuda.so.535.104.05", "shim/bad/libvgpu-cuda-interpose.so",
                "shim/bad/libvgpu-nvml-needs-cuda.so", "shim/bad/libvgpu-nvml-driver535.so",
                "shim/bad/libcuda-stub.so", "shim/bad/libvgpu-cuda-err999.so", "shim/bad/libvgpu-cuda-zero.so",
                "shim/bad/libvgpu-cuda-hang.so", "install.sh", "ollama-sim-upgrade"):
        assert os.path.isfile(os.path.join(sim, rel)), rel
    for v in FIDELITY_RELEASES:
        assert os.path.isfile(os.path.join(sim, "ollama-%s-linux-amd64.tgz" % v))
    r = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=os.path.join(sim, "shim"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert r.returncode == 0, r.stdout
    assert len(r.stdout.splitlines()) == 15


def test_build_is_idempotent(sim):
    t0 = time.time()
    r = subprocess.run(["bash", os.path.join(SIMSRC, "build.sh")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    assert r.returncode == 0 and "up to date" in r.stdout
    assert time.time() - t0 < 5


def test_tarball_layout(sim):
    """the layout rows of the fidelity table are checked with the other rows (test_fidelity_row);
    here: ownership, modes, the baked-in release"""
    with tarfile.open(os.path.join(sim, "ollama-0.13.5-linux-amd64.tgz")) as t:
        assert t.getmember("bin/ollama").mode & 0o111
        assert all(m.uid == 0 and m.gid == 0 for m in t.getmembers())
    with tarfile.open(os.path.join(sim, "ollama-0.30.1-linux-amd64.tgz")) as t:
        body = t.extractfile("bin/ollama").read().decode()
    assert body.startswith("#!/usr/bin/python3\n")
    assert 'VERSION = "0.30.1"' in body and "FIDELITY_SOURCES = json.loads(" in body


def test_elf_facts(sim):
    d = readelf(shim(sim), "-d")
    assert "(SONAME)" in d and "[libcuda.so.1]" in d
    assert "INIT" not in d and "FINI" not in d, "the shim must not have constructors"
    assert "[libnvidia-ml.so.1]" in readelf(shim(sim, "libvgpu-nvml.so"), "-d")
    cuda = readelf(os.path.join(sim, "ggml", "cuda_v12", "libggml-cuda.so"), "-d")
    assert "Shared library: [libcuda.so.1]" in cuda
    assert "RPATH" not in cuda and "RUNPATH" not in cuda
    syms = readelf(shim(sim), "--dyn-syms")
    exported = set(line.split()[-1] for line in syms.splitlines()
                   if " FUNC " in line and " GLOBAL " in line and " UND " not in line)
    need = {"cuInit", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetAttribute",
            "cuDeviceGetName", "cuDeviceGetUuid", "cuDeviceGetUuid_v2", "cuDeviceTotalMem_v2",
            "cuMemGetInfo_v2", "cuCtxCreate_v3", "cuCtxCreate_v2", "cuCtxDestroy", "cuCtxDestroy_v2",
            "cuDeviceGetPCIBusId", "cuGetProcAddress_v2", "cuGetErrorString"}
    assert need <= exported
    assert all(s.startswith("cu") for s in exported), exported - set(s for s in exported if s.startswith("cu"))
    nocuinit = readelf(bad(sim, "libvgpu-cuda-nocuinit.so"), "--dyn-syms")
    assert " cuInit" not in nocuinit
    inter = readelf(bad(sim, "libvgpu-cuda-interpose.so"), "--dyn-syms")
    assert re.search(r"FUNC +GLOBAL +DEFAULT +\d+ dlopen", inter)
    with open(bad(sim, "libvgpu-cuda-aarch64.so"), "rb") as f:
        h = f.read(20)
    assert h[4] == 2 and h[18] == 183
    with open(bad(sim, "libvgpu-cuda-elf32.so"), "rb") as f:
        assert f.read(5)[4] == 1
    assert os.path.getsize(bad(sim, "libvgpu-cuda-truncated.so")) == 4096
    with open(bad(sim, "libcuda.so.535.104.05"), "rb") as f:
        blob = f.read()
    assert b"libcuda.so.535.104.05" in blob and b"NVIDIA" in blob and b"nvidia" in blob


# ---------------------------------------------------------------------------
# the shim, straight through the driver API (fresh process each time)
# ---------------------------------------------------------------------------

PROBE = r"""
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1], mode=2)
out = {}
out["init"] = lib.cuInit(0)
v = ctypes.c_int(); lib.cuDriverGetVersion(ctypes.byref(v)); out["driver"] = v.value
n = ctypes.c_int(-1); out["count_rc"] = lib.cuDeviceGetCount(ctypes.byref(n)); out["count"] = n.value
if out["init"] == 0 and n.value > 0:
    name = ctypes.create_string_buffer(128); lib.cuDeviceGetName(name, 128, 0); out["name"] = name.value.decode()
    pci = ctypes.create_string_buffer(32); lib.cuDeviceGetPCIBusId(pci, 32, 0); out["pci"] = pci.value.decode()
    mem = ctypes.c_size_t(); lib.cuDeviceTotalMem_v2(ctypes.byref(mem), 0); out["total"] = mem.value
    free = ctypes.c_size_t(); tot = ctypes.c_size_t()
    out["meminfo_noctx"] = lib.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(tot))
    ctx = ctypes.c_void_p(); out["ctx"] = lib.cuCtxCreate_v3(ctypes.byref(ctx), None, 0, 0, 0)
    out["meminfo"] = lib.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(tot)); out["free"] = free.value
    lib.cuCtxDestroy(ctx)
    maj = ctypes.c_int(); lib.cuDeviceGetAttribute(ctypes.byref(maj), 75, 0); out["major"] = maj.value
fn = ctypes.c_void_p(); st = ctypes.c_int(-1)
out["gpa"] = lib.cuGetProcAddress_v2(b"cuDeviceTotalMem", ctypes.byref(fn), 12080, 0, ctypes.byref(st))
out["gpa_same"] = fn.value == ctypes.cast(lib.cuDeviceTotalMem_v2, ctypes.c_void_p).value
out["gpa_missing"] = lib.cuGetProcAddress_v2(b"cuNoSuchThing", ctypes.byref(fn), 12080, 0, ctypes.byref(st))
s = ctypes.c_char_p(); lib.cuGetErrorString(100, ctypes.byref(s)); out["err100"] = s.value.decode()
print(json.dumps(out))
"""


def probe(path, **env):
    e = {"PATH": "/usr/bin:/bin"}
    e.update(env)
    r = subprocess.run([sys.executable, "-c", PROBE, path], env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_shim_driver_api(sim):
    o = probe(shim(sim))
    assert o["init"] == 0 and o["count"] == 1 and o["driver"] == 12080
    assert o["name"] == NAME and o["pci"] == "0000:00:05.0" and o["major"] == 9
    assert o["total"] == 81559 << 20 and o["free"] == 80995 << 20
    assert o["meminfo_noctx"] == 201 and o["ctx"] == 0 and o["meminfo"] == 0
    assert o["gpa"] == 0 and o["gpa_same"] and o["gpa_missing"] == 500
    assert o["err100"] == "no CUDA-capable device is detected"


@pytest.mark.parametrize("cvd,count", [("-1", 0), ("", 0), ("0", 1), ("GPU-8a3c", 1), ("GPU-ffff", 0),
                                       ("0,1", 1), ("1,0", 0)])
def test_shim_cuda_visible_devices(sim, cvd, count):
    o = probe(shim(sim), CUDA_VISIBLE_DEVICES=cvd)
    if count:
        assert o["init"] == 0 and o["count"] == count
    else:
        assert o["init"] == 100 and o["count_rc"] == 3


def test_shim_env_knobs(sim):
    o = probe(shim(sim), VGPU_SIM_NAME="vA10", VGPU_SIM_CC="8.6", VGPU_SIM_TOTAL_MIB="24576",
              VGPU_SIM_FREE_MIB="24000", VGPU_SIM_DRIVER="12.4", VGPU_SIM_PCI_ID="0000:01:00.0",
              VGPU_SIM_DEVICE_COUNT="2")
    assert (o["name"], o["major"], o["total"], o["free"], o["driver"], o["pci"], o["count"]) == \
        ("vA10", 8, 24576 << 20, 24000 << 20, 12040, "0000:01:00.0", 2)
    assert probe(shim(sim), VGPU_SIM_DEVICE_COUNT="0")["init"] == 100
    t0 = time.time()
    probe(shim(sim), VGPU_SIM_INIT_DELAY_MS="300")
    assert time.time() - t0 >= 0.3


def test_fake_nvidia_driver_fails_like_the_real_one(sim):
    o = probe(bad(sim, "libcuda.so.535.104.05"))
    assert o["init"] == 100 and o["count_rc"] == 3


def test_loading_the_shim_runs_nothing(sim):
    """dlopen alone must not read the environment or sleep (no constructors)"""
    code = "import ctypes,sys,time; t=time.time(); ctypes.CDLL(sys.argv[1]); print(time.time()-t)"
    r = subprocess.run([sys.executable, "-c", code, shim(sim)], env={"VGPU_SIM_INIT_DELAY_MS": "2000"},
                       stdout=subprocess.PIPE, universal_newlines=True)
    assert float(r.stdout) < 0.5


def test_nvml_needs_cuda_fails_alone(sim):
    code = "import ctypes,sys; ctypes.CDLL(sys.argv[1])"
    r = subprocess.run([sys.executable, "-c", code, bad(sim, "libvgpu-nvml-needs-cuda.so")],
                       stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode != 0 and "undefined symbol: cuDeviceGetCount" in r.stderr
    code = "import ctypes,sys; ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL); ctypes.CDLL(sys.argv[2])"
    r = subprocess.run([sys.executable, "-c", code, shim(sim), bad(sim, "libvgpu-nvml-needs-cuda.so")])
    assert r.returncode == 0


# ---------------------------------------------------------------------------
# log lines per era (literal, field for field)
# ---------------------------------------------------------------------------

GPU_LINES = {
    "0.3.6": 'time=X level=INFO source=X msg="inference compute" id=%s library=cuda compute=9.0 driver=12.8 '
             'name="%s" total="79.6 GiB" available="79.1 GiB"' % (UUID, NAME),
    "0.5.7": 'time=X level=INFO source=X msg="inference compute" id=%s library=cuda variant=v12 compute=9.0 '
             'driver=12.8 name="%s" total="79.6 GiB" available="79.1 GiB"' % (UUID, NAME),
    "0.11.4": 'time=X level=INFO source=X msg="inference compute" id=%s library=cuda variant=v12 compute=9.0 '
              'driver=12.8 name="%s" total="79.6 GiB" available="79.1 GiB"' % (UUID, NAME),
    "0.12.6": 'time=X level=INFO source=X msg="inference compute" id=%s library=CUDA compute=9.0 '
              'name=CUDA0 description="%s" libdirs=ollama,cuda_v12 driver=12.8 pci_id=0000:00:05.0 '
              'type=discrete total="79.6 GiB" available="79.1 GiB"' % (UUID, NAME),
    "0.13.5": 'time=X level=INFO source=X msg="inference compute" id=%s filter_id="" library=CUDA compute=9.0 '
              'name=CUDA0 description="%s" libdirs=ollama,cuda_v12 driver=12.8 pci_id=0000:00:05.0 '
              'type=discrete total="79.6 GiB" available="79.1 GiB"' % (UUID, NAME),
    "0.30.1": 'time=X level=INFO source=X msg="inference compute" id=0 filter_id=0 library=CUDA compute=9.0 '
              'name=CUDA0 description="%s" libdirs=ollama,cuda_v12 driver=12.8 pci_id=0000:00:05.0 '
              'type=discrete total="79.6 GiB" available="79.1 GiB"' % NAME,
}
GPU_LINES["0.32.15"] = GPU_LINES["0.30.11"] = GPU_LINES["0.30.1"]   # discover/types.go:32 unchanged 0.30.1 -> 0.32.15
GPU_LINES["0.24.0"] = GPU_LINES["0.13.5"]                           # discover/types.go:42 @v0.13.5 and @v0.24.0
CPU_LINES = {
    "0.3.6": 'time=X level=INFO source=X msg="inference compute" id=0 library=cpu compute="" driver=0.0 name="" '
             'total=<RAM> available=<RAM>',
    "0.5.7": 'time=X level=INFO source=X msg="inference compute" id=0 library=cpu variant=avx2 compute="" '
             'driver=0.0 name="" total=<RAM> available=<RAM>',
    "0.11.4": 'time=X level=INFO source=X msg="inference compute" id=0 library=cpu variant="" compute="" '
              'driver=0.0 name="" total=<RAM> available=<RAM>',
    "0.13.5": 'time=X level=INFO source=X msg="inference compute" id=cpu library=cpu compute="" name=cpu '
              'description=cpu libdirs=ollama driver="" pci_id="" type="" total=<RAM> available=<RAM>',
    "0.30.1": 'time=X level=INFO source=X msg="inference compute" id=cpu library=cpu compute="" name=cpu '
              'description=cpu libdirs=ollama driver="" pci_id="" type="" total=<RAM> available=<RAM>',
}
CPU_LINES["0.32.15"] = CPU_LINES["0.30.11"] = CPU_LINES["0.24.0"] = CPU_LINES["0.12.6"] = CPU_LINES["0.30.1"]
# every INFO message of a start, in order ("Listening" and "Dynamic LLM libraries" checked apart)
GPU_MSGS = {
    "0.3.6": ["total blobs: 0", "total unused blobs removed: 0", "LISTEN", "extracting embedded files",
              "Dynamic LLM libraries [cpu cpu_avx cpu_avx2 cuda_v11]", "looking for compatible GPUs",
              "inference compute"],
    "0.5.7": ["total blobs: 0", "total unused blobs removed: 0", "LISTEN", "Dynamic LLM libraries",
              "looking for compatible GPUs", "inference compute"],
    "0.11.4": ["server config", "total blobs: 0", "total unused blobs removed: 0", "LISTEN",
               "looking for compatible GPUs", "inference compute"],
    "0.13.5": ["server config", "total blobs: 0", "total unused blobs removed: 0", "LISTEN",
               "discovering available GPUs...",
               "experimental Vulkan support disabled.  To enable, set OLLAMA_VULKAN=1",
               "starting runner", "starting runner", "starting runner", "inference compute"],
    "0.12.6": ["server config", "total blobs: 0", "total unused blobs removed: 0", "LISTEN",
               "discovering available GPUs...", "inference compute"],
    "0.24.0": ["server config", "Ollama cloud disabled: false", "total blobs: 0", "total unused blobs removed: 0",
               "LISTEN", "discovering available GPUs...",
               "experimental Vulkan support disabled.  To enable, set OLLAMA_VULKAN=1",
               "starting runner", "starting runner", "starting runner", "inference compute",
               "vram-based default context"],
    "0.30.1": ["server config", "Ollama cloud disabled: false", "total blobs: 0", "total unused blobs removed: 0",
               "LISTEN", "discovering available GPUs...", "inference compute", "vram-based default context"],
    # no libnvidia-ml.so.1 here: the new driver gate warns and keeps the device
    # (discover/cuda_compat.go:37-41@v0.32.15)
    "0.32.15": ["server config", "Ollama cloud disabled: false", "total blobs: 0", "total unused blobs removed: 0",
                "LISTEN", "discovering available GPUs...", "could not verify NVIDIA driver compatibility for CUDA",
                "inference compute", "vram-based default context"],
}
GPU_MSGS["0.30.11"] = GPU_MSGS["0.32.15"]
CPU_TAIL = {
    "0.3.6": ["looking for compatible GPUs", "no compatible GPUs were discovered", "inference compute"],
    "0.5.7": ["looking for compatible GPUs", "no compatible GPUs were discovered", "inference compute"],
    "0.11.4": ["looking for compatible GPUs", "no compatible GPUs were discovered", "inference compute"],
    "0.13.5": ["starting runner", "starting runner", "inference compute", "entering low vram mode"],
    "0.12.6": ["discovering available GPUs...", "inference compute", "entering low vram mode"],
    "0.24.0": ["starting runner", "starting runner", "inference compute", "vram-based default context"],
    "0.30.1": ["discovering available GPUs...", "inference compute", "vram-based default context"],
    "0.30.11": ["discovering available GPUs...", "inference compute", "vram-based default context"],
    "0.32.15": ["discovering available GPUs...", "inference compute", "vram-based default context"],
}


def norm(ms, version):
    return ["LISTEN" if m.startswith("Listening on 127.0.0.1:") and m.endswith("(version %s)" % version) else m
            for m in ms]


@pytest.mark.parametrize("version", sorted(GPU_LINES))
def test_era_gpu_lines(prefix_factory, version):
    p = prefix_factory(version)
    r = serve(p, scenario_env("gpu", p))   # the shim as <dir>/libcuda.so.1, <dir> in LD_LIBRARY_PATH
    assert r.rc == 0, r.log
    assert norm(msgs(r.log), version) == GPU_MSGS[version], r.log
    c = compute_lines(r.log)
    assert len(c) == 1
    assert_line(c[0], GPU_LINES[version])
    assert r.startup < 3.0, "discovery too slow: %.2fs" % r.startup


@pytest.mark.parametrize("version", sorted(CPU_LINES))
def test_era_cpu_lines(prefix_factory, version):
    p = prefix_factory(version)
    r = serve(p)
    assert r.rc == 0, r.log
    ms = norm(msgs(r.log), version)
    if version == "0.11.4" and ms[-1] == "entering low vram mode":
        ms.pop()  # 0.11.x counts system RAM as "vram" on CPU hosts: fires below 20 GiB of RAM
    assert ms[-len(CPU_TAIL[version]):] == CPU_TAIL[version], r.log
    assert_line(compute_lines(r.log)[0], CPU_LINES[version])
    if version == "0.13.5":
        assert_line(lines_with(r.log, "entering low vram mode")[0],
                    'time=X level=INFO source=X msg="entering low vram mode" "total vram"="0 B" threshold="20.0 GiB"')
    if version in ("0.24.0", "0.30.1", "0.30.11", "0.32.15"):
        assert_line(lines_with(r.log, "vram-based default context")[0],
                    'time=X level=INFO source=X msg="vram-based default context" total_vram="0 B" default_num_ctx=4096')


def test_old_server_config_format(prefix_factory):
    r = serve(prefix_factory("0.5.7"), {"CUDA_VISIBLE_DEVICES": "-1", "OLLAMA_LLM_LIBRARY": "cuda"})
    first = r.log.splitlines()[0]
    assert re.match(r'^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d routes\.go:1187: INFO server config env="map\[', first), first
    assert "CUDA_VISIBLE_DEVICES:-1 " in first and "OLLAMA_LLM_LIBRARY:cuda " in first
    assert_line(lines_with(r.log, "Dynamic LLM libraries")[0],
                'time=X level=INFO source=X msg="Dynamic LLM libraries" runners="[cpu cpu_avx cpu_avx2 cuda_v11_avx cuda_v12_avx]"')


def test_server_config_reflects_env(prefix_factory):
    p = prefix_factory("0.13.5")
    r = serve(p, {"CUDA_VISIBLE_DEVICES": "0", "OLLAMA_DEBUG": "1", "OLLAMA_LLM_LIBRARY": "cuda_v12"})
    env = dict(lines_with(r.log, "server config")[0])["env"]
    assert env.startswith("map[CUDA_VISIBLE_DEVICES:0 ")
    for frag in ("OLLAMA_DEBUG:DEBUG ", "OLLAMA_LLM_LIBRARY:cuda_v12 ", "OLLAMA_HOST:http://127.0.0.1:%d " % r.port,
                 "OLLAMA_MODELS:%s/models " % p):
        assert frag in env
    keys = [kv.split(":", 1)[0] for kv in re.sub(r"\[[^\]]*\]", "", env[len("map["):-1]).split()]
    assert "OLLAMA_ORIGINS" in keys and "no_proxy" in keys
    assert keys == sorted(keys)


def test_small_gpu_still_enters_low_vram_mode(prefix_factory):
    """the trap: low vram mode on a real (small) GPU is not a CPU signal"""
    p = prefix_factory("0.13.5")
    link(shim(BUILD), libdir(p))
    r = serve(p, {"VGPU_SIM_TOTAL_MIB": "16384"})
    assert is_gpu(r.log)
    assert_line(lines_with(r.log, "entering low vram mode")[0],
                'time=X level=INFO source=X msg="entering low vram mode" "total vram"="16.0 GiB" threshold="20.0 GiB"')


def test_era_override(prefix_factory):
    p = prefix_factory("0.13.5")
    link(shim(BUILD), libdir(p))
    r = serve(p, {"OLLAMA_SIM_LOG_ERA": "variant"})
    assert_line(compute_lines(r.log)[0], GPU_LINES["0.5.7"])


# ---------------------------------------------------------------------------
# causality
# ---------------------------------------------------------------------------


def test_links_in_every_dir_gpu_none_cpu(prefix_factory):
    p = prefix_factory()
    assert not is_gpu(serve(p).log)
    link(shim(BUILD), libdir(p))
    assert is_gpu(serve(p).log)


@pytest.mark.parametrize("name", ["libvgpu-cuda-nocuinit.so", "libvgpu-cuda-aarch64.so", "libvgpu-cuda-elf32.so",
                                  "libvgpu-cuda-truncated.so", "libcuda.so.535.104.05"])
def test_broken_shim_behind_link_gives_cpu(prefix_factory, name):
    p = prefix_factory()
    link(bad(BUILD, name), libdir(p))
    r = serve(p, {"OLLAMA_DEBUG": "1"})
    assert r.rc == 0
    assert not is_gpu(r.log)


def test_nocuinit_reason_is_the_loader(prefix_factory):
    """0.12.4-0.29: the runner's output reaches the log only at TRACE (discover/runner.go:431-434@v0.13.5)
    and ggml_backend_load_all_from_path is silent about a backend that fails to load
    (ggml-backend-reg.cpp:625-629@v0.13.5): the loader's reason is in no log line at any level;
    0.30's native probe is not silent, at TRACE"""
    p = prefix_factory()
    link(bad(BUILD, "libvgpu-cuda-nocuinit.so"), libdir(p))
    p30 = prefix_factory("0.30.1")
    link(bad(BUILD, "libvgpu-cuda-nocuinit.so"), libdir(p30))
    assert "undefined symbol: cuInit" in serve(p30, {"OLLAMA_DEBUG": "2"}).log
    for level in ("2", "1", ""):
        quiet = serve(p, {"OLLAMA_DEBUG": level})
        assert "undefined symbol" not in quiet.log, level
        assert "backend library failed" not in quiet.log and "runner exited without" not in quiet.log


def test_nocuinit_in_process_era_says_so_at_info(prefix_factory):
    """before 0.12.4 the server dlsym()s cuInit itself: INFO with the dlerror
    (gpu_info_nvcuda.c:53-56@v0.5.7 -> discover/gpu.go:630@v0.5.7)"""
    p = prefix_factory("0.5.7")
    link(bad(BUILD, "libvgpu-cuda-nocuinit.so"), libdir(p))
    r = serve(p)
    line = dict([x for x in slog_lines(r.log) if (dict(x).get("msg") or "").startswith("Unable to load cudart")][0])
    real = os.path.realpath(bad(BUILD, "libvgpu-cuda-nocuinit.so"))
    assert line["msg"] == "Unable to load cudart library %s: symbol lookup for cuInit failed: %s: undefined symbol: " \
                          "cuInit" % (real, real)
    assert line["level"] == "INFO" and not is_gpu(r.log)


def test_real_driver_lookalike_old_era_says_no_devices(prefix_factory):
    """0.3.6 searches LD_LIBRARY_PATH and the fixed globs, never lib/ollama (gpu/gpu.go:467-527@v0.3.6),
    and logs the symlink-resolved path"""
    p = prefix_factory("0.3.6")
    env = scenario_env("nodev", p)
    r = serve(p, env)
    line = lines_with(r.log, "no nvidia devices detected")[0]
    assert dict(line)["library"] == os.path.realpath(bad(BUILD, "libcuda.so.535.104.05"))
    assert not is_gpu(r.log)


def test_in_process_era_tries_the_next_library(prefix_factory):
    """a real-driver look-alike first does not shadow the shim before 0.12.4: the loop goes on
    (loadNVCUDAMgmt, discover/gpu.go:604-640@v0.5.7)"""
    p = prefix_factory("0.5.7")
    link(bad(BUILD, "libcuda.so.535.104.05"), libdir(p))
    env = scenario_env("gpu", p)
    r = serve(p, env)
    assert lines_with(r.log, "no nvidia devices detected by library %s"
                      % os.path.realpath(bad(BUILD, "libcuda.so.535.104.05")))
    assert is_gpu(r.log)


def test_old_era_ignores_lib_ollama_before_0_3_14(prefix_factory):
    p = prefix_factory("0.3.6")
    os.makedirs(libdir(p), exist_ok=True)
    link(shim(BUILD), libdir(p))
    assert not is_gpu(serve(p).log)
    assert is_gpu(serve(p, {"LD_LIBRARY_PATH": libdir(p)}).log)


def test_unreadable_shim_as_service_user(prefix_factory):
    if not shutil.which("setpriv") or os.geteuid() != 0:
        pytest.skip("needs root and setpriv")
    p = prefix_factory()
    copy = os.path.join(p, "libvgpu-cuda.so")
    shutil.copy(shim(BUILD), copy)
    os.chmod(copy, 0o600)
    link(copy, libdir(p))
    r = serve(p, as_nobody=True)
    assert r.rc == 0, r.log
    assert not is_gpu(r.log)
    os.chmod(copy, 0o644)
    assert is_gpu(serve(p, as_nobody=True).log)
    assert is_gpu(serve(p).log)


@pytest.mark.parametrize("version,gpu", [("0.13.5", True), ("0.30.1", True), ("0.5.7", False), ("0.11.4", False)])
def test_ld_preload_without_links(prefix_factory, version, gpu):
    """0.12.4+: the preloaded shim (SONAME libcuda.so.1) satisfies libggml-cuda.so's DT_NEEDED.
    Before: discovery only dlopen()s libcuda.so* files it globs, so a preload alone is CPU mode"""
    p = prefix_factory(version)
    r = serve(p, {"LD_PRELOAD": "%s:%s" % (shim(BUILD), shim(BUILD, "libvgpu-nvml.so"))})
    assert is_gpu(r.log) == gpu


def test_ld_preload_nvml_shim_order(prefix_factory):
    p = prefix_factory()
    alone = serve(p, {"LD_PRELOAD": bad(BUILD, "libvgpu-nvml-needs-cuda.so")})
    assert alone.rc == 127 and "undefined symbol: cuDeviceGetCount" in alone.log
    both = serve(p, {"LD_PRELOAD": "%s:%s" % (shim(BUILD), bad(BUILD, "libvgpu-nvml-needs-cuda.so"))})
    assert is_gpu(both.log)


def test_ld_preload_missing_file(prefix_factory):
    p = prefix_factory()
    r = serve(p, {"LD_PRELOAD": "/nonexistent/libvgpu-cuda.so"})
    assert "cannot be preloaded" in r.log
    assert not is_gpu(r.log)


def test_interposing_shim_still_answers(prefix_factory):
    """documented behaviour: the dlopen/dlsym forwarders do not break discovery here"""
    p = prefix_factory()
    assert is_gpu(serve(p, {"LD_PRELOAD": bad(BUILD, "libvgpu-cuda-interpose.so")}).log)


@pytest.mark.parametrize("value,gpu", [("cuda", False), ("cuda_v12", True), ("cuda_v13", False)])
def test_llm_library(prefix_factory, value, gpu):
    p = prefix_factory()
    link(shim(BUILD), libdir(p))
    r = serve(p, {"OLLAMA_LLM_LIBRARY": value})
    assert is_gpu(r.log) == gpu
    if gpu:
        assert dict(compute_lines(r.log)[0])["libdirs"] == "ollama," + value


@pytest.mark.parametrize("value", ["-1", ""])
def test_cuda_visible_devices_hides(prefix_factory, value):
    p = prefix_factory()
    link(shim(BUILD), libdir(p))
    r = serve(p, {"CUDA_VISIBLE_DEVICES": value})
    assert not is_gpu(r.log)
    warned = lines_with(r.log, "user overrode visible devices")
    assert bool(warned) == bool(value)


def test_driver_too_old_for_cuda_v13_picks_v12(prefix_factory):
    p = prefix_factory()
    link(shim(BUILD), libdir(p))
    assert dict(compute_lines(serve(p).log)[0])["libdirs"] == "ollama,cuda_v12"
    r = serve(p, {"VGPU_SIM_DRIVER": "13000"})
    c = dict(compute_lines(r.log)[0])
    assert c["libdirs"] == "ollama,cuda_v13" and c["driver"] == "13.0"
    assert not is_gpu(serve(p, {"VGPU_SIM_DRIVER": "11080"}).log)


def test_discovery_timeout(prefix_factory):
    p = prefix_factory()
    link(shim(BUILD), libdir(p))
    t0 = time.time()
    r = serve(p, {"VGPU_SIM_INIT_DELAY_MS": "5000", "OLLAMA_SIM_DISCOVERY_TIMEOUT": "0.5"})
    assert time.time() - t0 < 4
    fails = lines_with(r.log, "failure during GPU discovery")
    assert len(fails) == 2
    assert_line(fails[0], 'time=X level=INFO source=X msg="failure during GPU discovery" '
                          'OLLAMA_LIBRARY_PATH="[%s %s/cuda_v12]" extra_envs=map[] '
                          'error="failed to finish discovery before timeout"' % (libdir(p), libdir(p)))
    assert not is_gpu(r.log)
    assert msgs(r.log).index("failure during GPU discovery") < msgs(r.log).index("inference compute")


def test_discovery_timeout_v030(prefix_factory):
    p = prefix_factory("0.30.1")
    link(shim(BUILD), libdir(p))
    r = serve(p, {"VGPU_SIM_INIT_DELAY_MS": "5000", "OLLAMA_SIM_DISCOVERY_TIMEOUT": "0.5"})
    assert lines_with(r.log, "failure during llama-server GPU discovery")
    assert not is_gpu(r.log)


def test_runner_env_order_real_driver_shadows(prefix_factory):
    """runners get LD_LIBRARY_PATH=lib/ollama:lib/ollama/cuda_vNN:<inherited>: a real
    driver in lib/ollama wins over the shim in cuda_v12 (DRIVER_SHADOW)"""
    p = prefix_factory()
    link(bad(BUILD, "libcuda.so.535.104.05"), libdir(p))
    link(shim(BUILD), os.path.join(libdir(p), "cuda_v12"))
    assert not is_gpu(serve(p).log)
    os.unlink(os.path.join(libdir(p), "libcuda.so.1"))
    assert is_gpu(serve(p).log)


def test_library_path_strategy(prefix_factory):
    p = prefix_factory()
    vg = os.path.join(p, "opt-vgpu-lib")
    os.mkdir(vg)
    link(shim(BUILD), vg)
    env = {"LD_LIBRARY_PATH": "%s:%s/cuda_v12:%s" % (vg, libdir(p), libdir(p)),
           "OLLAMA_LIBRARY_PATH": "%s:%s/cuda_v12:%s" % (vg, libdir(p), libdir(p)),
           "OLLAMA_LLM_LIBRARY": "cuda_v12"}
    r = serve(p, env)
    assert is_gpu(r.log)
    assert not is_gpu(serve(p, {"OLLAMA_LLM_LIBRARY": "cuda_v12"}).log)


def test_runner_sees_service_environment(prefix_factory):
    p = prefix_factory()
    link(shim(BUILD), libdir(p))
    r = serve(p, {"VGPU_SIM_NAME": "vL4 from the unit"})
    assert dict(compute_lines(r.log)[0])["description"] == "vL4 from the unit"


def test_upgrade_drops_links(sim, prefix_factory):
    """the new release has other dirs and no links: back to CPU"""
    p = prefix_factory("0.5.7")
    link(shim(sim), libdir(p))
    assert is_gpu(serve(p).log)
    shutil.rmtree(libdir(p))
    extract(os.path.join(sim, "ollama-0.13.5-linux-amd64.tgz"), p)
    assert sorted(os.listdir(libdir(p))) == ["cuda_v12", "cuda_v13", "libggml-base.so", "libggml-cpu-x64.so",
                                             "vulkan"]
    assert not is_gpu(serve(p).log)


# ---------------------------------------------------------------------------
# HTTP API and CLI
# ---------------------------------------------------------------------------


def api_session(port):
    out = {"root": get(port, "/"), "version": get(port, "/api/version"), "tags": get(port, "/api/tags")}
    out["gen"] = post(port, "/api/generate", {"model": "llama3.2", "prompt": "hi", "stream": False})
    out["ps"] = get(port, "/api/ps")
    return out


@pytest.mark.parametrize("gpu", [True, False])
def test_http_api(prefix_factory, gpu):
    p = prefix_factory()
    if gpu:
        link(shim(BUILD), libdir(p))
    r = serve(p, during=api_session)
    assert r.rc == 0
    res = r.result
    assert res["root"] == (200, "Ollama is running")
    assert json.loads(res["version"][1]) == {"version": "0.13.5"}
    assert json.loads(res["tags"][1]) == {"models": []}
    gen = json.loads(res["gen"][1])
    assert gen["done"] is True and gen["done_reason"] == "stop" and gen["response"]
    assert gen["model"] == "llama3.2:latest"
    models = json.loads(res["ps"][1])["models"]
    assert len(models) == 1
    m = models[0]
    assert set(m) >= {"name", "model", "size", "size_vram", "digest", "details", "expires_at"}
    assert (m["size_vram"] > 0) == gpu and (m["size_vram"] == 0) == (not gpu)
    assert "offloaded %d/29 layers to GPU" % (29 if gpu else 0) in msgs(r.log)
    gin = [line for line in r.out.splitlines() if line.startswith("[GIN]")]
    assert len(gin) == 6  # serve() polled /api/version once
    assert re.match(r'^\[GIN\] \d{4}/\d\d/\d\d - \d\d:\d\d:\d\d \| 200 \| +\S+ \|       127\.0\.0\.1 \| '
                    r'GET      "/api/version"$', gin[0]), gin[0]
    assert gin[4].endswith('| POST     "/api/generate"')


def test_cli_version_and_ps(prefix_factory):
    p = prefix_factory()
    link(shim(BUILD), libdir(p))
    exe = os.path.join(p, "bin", "ollama")

    def cli(port):
        env = {"OLLAMA_HOST": "127.0.0.1:%d" % port, "PATH": "/usr/bin:/bin"}
        run = subprocess.run([exe, "run", "llama3.2", "hello"], env=env, stdout=subprocess.PIPE,
                             universal_newlines=True)
        ps = subprocess.run([exe, "ps"], env=env, stdout=subprocess.PIPE, universal_newlines=True)
        v = subprocess.run([exe, "-v"], env=env, stdout=subprocess.PIPE, universal_newlines=True)
        return run.stdout, ps.stdout, v.stdout

    r = serve(p, during=cli)
    run_out, ps_out, v_out = r.result
    assert "simulated vGPU" in run_out
    assert ps_out.splitlines()[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert "100% GPU" in ps_out.splitlines()[1]
    assert v_out == "ollama version is 0.13.5\n"
    down = subprocess.run([exe, "--version"], env={"OLLAMA_HOST": "127.0.0.1:%d" % free_port()},
                          stdout=subprocess.PIPE, universal_newlines=True)
    assert down.stdout == ("Warning: could not connect to a running Ollama instance\n"
                           "Warning: client version is 0.13.5\n")


def test_sigterm_exits_zero_during_discovery(prefix_factory):
    p = prefix_factory()
    link(shim(BUILD), libdir(p))
    port = free_port()
    proc = subprocess.Popen([os.path.join(p, "bin", "ollama"), "serve"], stderr=subprocess.PIPE,
                            env={"OLLAMA_HOST": "127.0.0.1:%d" % port, "VGPU_SIM_INIT_DELAY_MS": "5000",
                                 "OLLAMA_MODELS": os.path.join(p, "m"), "PATH": "/usr/bin:/bin"})
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    proc.stderr.close()


def test_port_in_use(prefix_factory):
    p = prefix_factory()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = subprocess.run([os.path.join(p, "bin", "ollama"), "serve"], stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=10,
                           env={"OLLAMA_HOST": "127.0.0.1:%d" % port, "PATH": "/usr/bin:/bin"})
    finally:
        s.close()
    assert r.returncode == 1
    assert r.stderr == "Error: listen tcp 127.0.0.1:%d: bind: address already in use\n" % port


# ---------------------------------------------------------------------------
# installer (in a temp root: OLLAMA_SIM_ROOT)
# ---------------------------------------------------------------------------

UNIT = """[Unit]
Description=Ollama Service
After=network-online.target

[Service]
ExecStart=/usr/local/bin/ollama serve
User=ollama
Group=ollama
Restart=always
RestartSec=3
Environment="PATH=%s"

[Install]
WantedBy=default.target
"""


def test_install_and_upgrade_in_temp_root(sim, tmp_path):
    root = str(tmp_path / "root")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "OLLAMA_SIM_ROOT": root}

    def inst(version):
        r = subprocess.run(["sh", os.path.join(sim, "install.sh"),
                            os.path.join(sim, "ollama-%s-linux-amd64.tgz" % version)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        assert r.returncode == 0, r.stdout
        return r.stdout

    inst("0.5.7")
    lib = os.path.join(root, "usr/local/lib/ollama")
    assert sorted(os.listdir(os.path.join(lib, "runners"))) == ["cpu_avx", "cpu_avx2", "cuda_v11_avx", "cuda_v12_avx"]
    os.symlink("/usr/lib64/libvgpu-cuda.so", os.path.join(lib, "libcuda.so.1"))
    dropin = os.path.join(root, "etc/systemd/system/ollama.service.d")
    os.makedirs(dropin)
    with open(os.path.join(dropin, "vgpu.conf"), "w") as f:
        f.write('[Service]\nEnvironment="LD_PRELOAD=/usr/lib64/libvgpu-cuda.so"\n')
    with open(os.path.join(root, "etc/systemd/system/ollama.service"), "a") as f:
        f.write("# local edit\n")
    out = inst("0.13.5")
    assert "Cleaning up old version" in out
    assert sorted(os.listdir(lib)) == ["cuda_v12", "cuda_v13", "libggml-base.so", "libggml-cpu-x64.so", "vulkan"]
    assert not os.path.lexists(os.path.join(lib, "libcuda.so.1"))
    with open(os.path.join(root, "etc/systemd/system/ollama.service")) as f:
        assert f.read() == UNIT % env["PATH"]
    with open(os.path.join(dropin, "vgpu.conf")) as f:
        assert "LD_PRELOAD" in f.read()
    exe = os.path.join(root, "usr/local/bin/ollama")
    assert os.stat(exe).st_mode & stat.S_IXUSR
    v = subprocess.run([exe, "-v"], stdout=subprocess.PIPE, universal_newlines=True,
                       env={"OLLAMA_HOST": "127.0.0.1:%d" % free_port()})
    assert "client version is 0.13.5" in v.stdout
    up = subprocess.run([os.path.join(sim, "ollama-sim-upgrade"), "0.30.1"], env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert up.returncode == 0, up.stdout
    with open(exe) as f:
        assert 'VERSION = "0.30.1"' in f.read()


# ---------------------------------------------------------------------------
# Go formatting helpers of the simulator itself
# ---------------------------------------------------------------------------


_SIMULATOR_MODULE = []


def simulator_module():
    """simulator/ollama/ollama.py imported once (its functions are pure; Profile reads the environment when
    it is built)"""
    if not _SIMULATOR_MODULE:
        _SIMULATOR_MODULE.append(_load_file("ollama_sim", os.path.join(SIMSRC, "ollama", "ollama.py")))
    return _SIMULATOR_MODULE[0]


@pytest.fixture(scope="module")
def simmod():
    return simulator_module()


def test_go_formatting(simmod):
    m = simmod
    assert m.human_bytes2(0) == "0 B"
    assert m.human_bytes2(512 << 20) == "512.0 MiB"
    assert m.human_bytes2(81559 << 20) == "79.6 GiB"
    assert m.human_bytes2(20 << 30) == "20.0 GiB"
    assert m.slog_str("") == '""' and m.slog_str("a b") == '"a b"' and m.slog_str("x=y") == '"x=y"'
    assert m.slog_str("plain") == "plain" and m.slog_str('q"') == '"q\\""' and m.slog_str("a\nb") == '"a\\nb"'
    assert m.slog_str({"b": "", "a": 1}) == '"map[a:1 b:]"'
    assert m.slog_str({}) == "map[]"
    assert m.slog_str(["/a", "/b"]) == '"[/a /b]"'
    assert m.go_duration(1234567) == "1.234567ms" and m.go_duration(1500) == "1.5\u00b5s"
    assert m.go_duration(61500000000) == "1m1.5s" and m.go_duration(300 * 10 ** 9) == "5m0s"
    assert m.go_duration(7200 * 10 ** 9) == "2h0m0s"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$", m.slog_time())


@pytest.mark.parametrize("version,era", [("0.1.35", "v0.3"), ("0.3.7", "v0.3"), ("0.3.8", "variant"),
                                         ("0.12.3", "variant"), ("0.12.4", "v0.12"), ("0.29.9", "v0.12"),
                                         ("0.30.0", "v0.30"), ("0.33.0-rc1", "v0.30")])
def test_eras(simmod, version, era):
    assert simmod.era_of(version) == era


def test_host_parsing(simmod, monkeypatch):
    cases = {"": ("http", "127.0.0.1", 11434), "0.0.0.0": ("http", "0.0.0.0", 11434),
             ":8080": ("http", "", 8080), "http://10.0.0.1:9000": ("http", "10.0.0.1", 9000),
             "https://example.org": ("https", "example.org", 443), "[::1]:1234": ("http", "::1", 1234)}
    for value, want in cases.items():
        monkeypatch.setenv("OLLAMA_HOST", value)
        assert simmod.parse_host()[:3] == want, value


@pytest.mark.parametrize("version,default", [("0.5.7", "0"), ("0.9.6", "0"), ("0.9.7", "1"), ("0.10.0", "1"),
                                             ("0.13.5", "1")])
def test_num_parallel_default_follows_upstream(simmod, monkeypatch, version, default):
    """Uint("OLLAMA_NUM_PARALLEL", 0) envconfig/config.go:222@v0.9.6; 1 at :222@v0.10.0 (changed in v0.9.7-rc0)."""
    monkeypatch.delenv("OLLAMA_NUM_PARALLEL", raising=False)
    assert simmod.server_env_map(simmod.Profile(version))["OLLAMA_NUM_PARALLEL"] == default


# ---------------------------------------------------------------------------
# the fidelity table (simulator/fidelity.json): every row checked against the simulator
# ---------------------------------------------------------------------------

def _load_file(name, path):
    """import a file as a module without putting its directory on sys.path (module_utils/ would shadow
    library/'s modules of the same name for other tests)"""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fidelity = _load_file("sim_fidelity", os.path.join(SIMSRC, "fidelity.py"))   # stdlib only

FIDELITY = fidelity.load()
FIDELITY_RELEASES = fidelity.releases(FIDELITY)
_SCENARIO_LINK = {"gpu": "libvgpu-cuda.so", "nodev": "bad/libcuda.so.535.104.05", "err999": "bad/libvgpu-cuda-err999.so",
                  "nocuinit": "bad/libvgpu-cuda-nocuinit.so", "elf32": "bad/libvgpu-cuda-elf32.so",
                  "zero": "bad/libvgpu-cuda-zero.so", "crash": "bad/libvgpu-cuda-truncated.so", "cpu": None,
                  "vulkan": None}


def scenario_env(name, prefix):
    """the environment (and links under <prefix>/links) of a scenario named in fidelity.json"""
    base = name.rsplit("_", 1)[0] if name.endswith(("_debug", "_trace")) else name
    links = os.path.join(prefix, "links")
    env = {}
    target = _SCENARIO_LINK.get(base, "libvgpu-cuda.so")
    if target:
        os.makedirs(links, exist_ok=True)
        if not os.path.lexists(os.path.join(links, "libcuda.so.1")):
            os.symlink(os.path.join(BUILD, "shim", target), os.path.join(links, "libcuda.so.1"))
        env["LD_LIBRARY_PATH"] = links
    env.update({
        "ctx": {"VGPU_SIM_CTX_ERROR": "2"}, "oldgpu": {"VGPU_SIM_CC": "3.5"}, "small": {"VGPU_SIM_TOTAL_MIB": "16384"},
        "cvd": {"CUDA_VISIBLE_DEVICES": "-1"}, "llmlib": {"OLLAMA_LLM_LIBRARY": "cuda_v12"},
        "llmlib_load": {"OLLAMA_LLM_LIBRARY": "cuda_v99"}, "v13": {"VGPU_SIM_DRIVER": "13000"},
        "timeout": {"VGPU_SIM_INIT_DELAY_MS": "5000", "OLLAMA_SIM_DISCOVERY_TIMEOUT": "0.5"},
        "gate": {"LD_PRELOAD": bad(BUILD, "libvgpu-nvml-driver535.so")},
        "gateold": {"VGPU_SIM_CC": "6.1", "LD_PRELOAD": bad(BUILD, "libvgpu-nvml-driver535.so")},
        "gate565": {"VGPU_SIM_CC": "6.1", "LD_PRELOAD": shim(BUILD, "libvgpu-nvml.so"),
                    "VGPU_SIM_NVIDIA_DRIVER": "565.57.01"},
        "gatenonvml": {"VGPU_SIM_CC": "6.1"}, "vulkan": {"VGPU_SIM_VULKAN_DEVICES": "1"},
        "merge": {"VGPU_SIM_VULKAN_DEVICES": "1"}}.get(base, {}))
    if name.endswith("_debug"):
        env["OLLAMA_DEBUG"] = "1"
    if name.endswith("_trace"):
        env["OLLAMA_DEBUG"] = "2"
    return env


_RUNS = {}


def scenario_run(release, name):
    """one `ollama serve` of the release in the scenario, shared by every row that names it"""
    key = (release, name)
    if key not in _RUNS:
        p = install(BUILD, release)
        try:
            during = None
            if name == "llmlib_load":
                during = lambda port: post(port, "/api/generate", {"model": "m", "prompt": "hi", "stream": False})
            _RUNS[key] = serve(p, scenario_env(name, p), during=during)
        finally:
            shutil.rmtree(p, ignore_errors=True)
    return _RUNS[key]


@functools.lru_cache(maxsize=None)
def _template_re(msg):
    return re.compile("^%s$" % re.sub(r"%[-+# 0-9.]*[a-zA-Z]", lambda m: ".*", re.escape(msg).replace("\\%", "%")))


def check_log_row(row):
    if row["when"] is None:
        # a line upstream prints that no reference setup can produce: the simulator must still
        # know it (same key), and the table must say why it is not exercised
        with open(os.path.join(SIMSRC, "ollama", "ollama.py")) as f:
            assert '"%s"' % row["key"] in f.read(), row
        assert row.get("simulated", "").startswith("code path only"), row
        return
    r = scenario_run(row["release"], row["when"])
    if row.get("format", "").startswith("log.Lshortfile"):
        rx = r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d %s: %s %s env=" % (re.escape(row["source"]), row["level"],
                                                                 re.escape(row["msg"]))
        assert any(re.match(rx, line) for line in r.log.splitlines()), (row, r.log[:2000])
        return
    want = _template_re(row["msg"])
    got = [p for p in slog_lines(r.log) if want.match(dict(p).get("msg") or "")]
    assert got, "no %r line in %s/%s:\n%s" % (row["msg"], row["release"], row["when"], r.log[-4000:])
    keys = ["time", "level", "source", "msg"] + row["attrs"]
    ok = [p for p in got if dict(p)["level"] == row["level"] and dict(p)["source"] == row["source"]
          and ([k for k, _ in p] == keys or (row.get("dynamic_attrs") and len(p) == len(keys)))]
    assert ok, (row, got)


def _tar_names(release):
    with tarfile.open(os.path.join(BUILD, "ollama-%s-linux-amd64.tgz" % release)) as t:
        return set(m.name.rstrip("/") for m in t.getmembers())


def check_layout_row(row):
    names = _tar_names(row["release"])
    assert set(row["paths"]) <= names, set(row["paths"]) - names
    if not any("/cuda_v" in x for x in row["paths"]):
        assert not [n for n in names if n.startswith("lib/ollama/cuda_v")], names
    if row.get("payloads"):
        r = scenario_run(row["release"], "gpu")
        line = [m for m in msgs(r.log) if m.startswith("Dynamic LLM libraries")][0]
        assert line == "Dynamic LLM libraries [%s]" % " ".join(sorted(row["payloads"])), line


def _in_process(row):
    return row["search"][-1].endswith("/usr/local/lib*/libcuda.so*")


def check_discovery_row(row):
    release = row["release"]
    if _in_process(row):
        r = scenario_run(release, "gpu_debug")
        globs = [dict(p)["globs"] for p in slog_lines(r.log) if dict(p).get("msg") == "gpu library search"][0]
        got = globs[1:-1].split(" ")
        links = [x for x in got if x.endswith("/links/libcuda.so*") or x.endswith("/links/libcuda.so**")]
        assert len(links) == 1, got
        lib = [x for x in got if x.endswith("/lib/ollama/libcuda.so*")]
        want = []
        for s in row["search"]:
            if s == "<lib/ollama>/libcuda.so*":
                want.extend(lib[:1])
            elif s.startswith("$LD_LIBRARY_PATH"):
                want.extend(links)
            else:
                want.append(s)
        assert got == want, (got, want)
        found = [dict(p)["paths"] for p in slog_lines(r.log) if dict(p).get("msg") == "discovered GPU libraries"][0]
        assert os.path.realpath(shim(BUILD)) in found
        assert "starting runner" not in msgs(r.log) and "bootstrap discovery took" not in msgs(r.log)
        # the loader plays no part: a preloaded shim alone is not a libcuda.so* file found by a glob
        p = install(BUILD, release)
        try:
            assert not is_gpu(serve(p, {"LD_PRELOAD": shim(BUILD)}).log)
        finally:
            shutil.rmtree(p, ignore_errors=True)
    else:
        # through the loader: a preloaded shim (SONAME libcuda.so.1) is enough; a link only in a dir
        # that is not on the loader's path is not
        p = install(BUILD, release)
        try:
            assert is_gpu(serve(p, {"LD_PRELOAD": shim(BUILD)}).log)
            elsewhere = os.path.join(p, "elsewhere")
            os.mkdir(elsewhere)
            link(shim(BUILD), elsewhere)
            assert not is_gpu(serve(p).log)
        finally:
            shutil.rmtree(p, ignore_errors=True)


def check_runner_env_row(row):
    r = scenario_run(row["release"], "gpu_debug")
    took = [dict(p) for p in slog_lines(r.log) if dict(p).get("msg") == "bootstrap discovery took"]
    if row["env"][0].startswith("(no discovery runner"):
        assert not took and "starting runner" not in msgs(r.log)
        return
    as_list = any("as a list" in e for e in row["env"])
    empty = "[]" if as_list else "map[]"
    first = [t for t in took if t["extra_envs"] == empty]
    assert any(t["OLLAMA_LIBRARY_PATH"].endswith("/lib/ollama/cuda_v12]") for t in first), took
    second = [t for t in took if t["extra_envs"] != empty]
    assert second, took
    dev = UUID if "<GPU UUID>" in " ".join(row["env"]) else "0"
    want = ("[GGML_CUDA_INIT=1 CUDA_VISIBLE_DEVICES=%s]" if as_list else "map[CUDA_VISIBLE_DEVICES:%s GGML_CUDA_INIT:1]")
    assert second[0]["extra_envs"] == want % dev, second


_EXPORTS = {}


def _exports(path):
    if path not in _EXPORTS:
        out = readelf(path, "--dyn-syms")
        _EXPORTS[path] = set(line.split()[-1].split("@")[0] for line in out.splitlines()
                             if " FUNC " in line and " UND " not in line)
    return _EXPORTS[path]


def check_driver_calls_row(row):
    if row["calls"] and all(re.match(r"^cu\w+$", c) for c in row["calls"]):
        # in-process discovery: the dlsym()s in this order, seen in the C side's debug output
        r = scenario_run(row["release"], "gpu_debug")
        assert re.findall(r"^dlsym: (\w+) - 0x", r.log, re.M) == row["calls"], r.log[-3000:]
        return
    groups = []   # "a|b": either will do (the native probe's cuDeviceTotalMem_v2|cuDeviceTotalMem)
    for c in row["calls"]:
        c = re.sub(r"^(native probe|NVML): ", "", c)
        alts = [x.strip() for x in re.sub(r"\(.*?\)", "", c).split("|")]
        alts = [x for x in alts if re.match(r"^(cu|nvml)\w+$", x)]
        if alts:
            groups.append(alts)
    assert groups, row
    for alts in groups:
        lib = shim(BUILD, "libvgpu-nvml.so") if alts[0].startswith("nvml") else shim(BUILD)
        assert set(alts) & _exports(lib), "the reference shim exports none of %s (%s)" % (alts, row["release"])


def check_default_row(row):
    mod = simulator_module()
    saved = dict(os.environ)
    try:
        os.environ.pop(row["name"], None)
        p = mod.Profile(row["release"])
        if row["name"] == "OLLAMA_VULKAN":
            assert mod.vulkan_enabled(p) == row["value"].startswith("true")
        else:
            assert mod.server_env_map(p)[row["name"]] == row["value"]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check_not_modelled_row(row):
    with open(os.path.join(SIMSRC, "README.md")) as f:
        assert row["what"] in f.read()


CHECKS = {"log": check_log_row, "layout": check_layout_row, "discovery": check_discovery_row,
          "runner_env": check_runner_env_row, "driver_calls": check_driver_calls_row, "default": check_default_row,
          "not_modelled": check_not_modelled_row}


def _row_id(r):
    return "%s-%s-%s" % (r["release"], r["kind"], r.get("key") or r.get("name") or r.get("when") or "")


@pytest.mark.parametrize("row", FIDELITY["rows"], ids=[_row_id(r) for r in FIDELITY["rows"]])
def test_fidelity_row(sim, row):
    CHECKS[row["kind"]](row)


def test_fidelity_table_shape_and_coverage(sim):
    assert fidelity.check_shape(FIDELITY) == []
    assert sorted(CHECKS) == sorted(fidelity.KINDS)
    built = [line.split()[0] for line in open(os.path.join(BUILD, "versions.txt"))]
    assert built == FIDELITY_RELEASES
    for v in FIDELITY_RELEASES:   # every simulated release has every kind of row
        kinds = set(r["kind"] for r in fidelity.rows(FIDELITY, release=v))
        assert {"log", "layout", "discovery", "runner_env", "driver_calls", "default"} <= kinds, (v, kinds)
    # every source= key the simulator prints for a release comes from the table
    for v, keys in fidelity.sources(FIDELITY).items():
        assert "compute" in keys or "compute_gpu" in keys, v


def test_readme_lists_exactly_the_table(sim):
    with open(os.path.join(SIMSRC, "README.md")) as f:
        text = f.read()
    assert fidelity.readme_section(FIDELITY) in text, "run: python3 simulator/fidelity.py markdown"


# ---------------------------------------------------------------------------
# real log lines from public issue threads (tests/corpus/upstream_threads.json) against the simulator
# ---------------------------------------------------------------------------

ollama_log = _load_file("sim_test_ollama_log", os.path.join(REPO, "module_utils", "ollama_log.py"))

with open(os.path.join(REPO, "tests", "corpus", "upstream_threads.json")) as _f:
    THREADS = json.load(_f)["excerpts"]
_SLOG_RE = re.compile(r"(?:^|\s)((?:time=\S+\s+)?level=\S+\s.*|msg=.*)$")


def _slog_part(line):
    """the slog record inside a journald / docker-compose / bare line"""
    m = _SLOG_RE.search(line)
    return m.group(1) if m else None


def _env_keys(env):
    """the keys of a Go map printed by slog (map[K:V K:[a b] ...])"""
    return set(kv.split(":", 1)[0] for kv in re.sub(r"\[[^\]]*\]", "", env[len("map["):-1]).split())


def _env_value(env, key):
    m = re.search(r"(?:\[| )%s:(\[[^\]]*\]|\S*)" % re.escape(key), env)
    return m.group(1) if m else None


def _table_rows_for(rows, rec):
    """(pairs, fields, the log rows of the table whose message template matches the record's msg)"""
    pairs = parse(rec)
    d = dict(pairs)
    return pairs, d, [r for r in rows if _template_re(r["msg"]).match(d.get("msg") or "")]


def _judge(text):
    res = ollama_log.parse_log(text)
    return res["mode"], set(e["kind"] for e in res.get("discovery_errors", []))


@pytest.mark.parametrize("case", THREADS, ids=[c["url"].rsplit("/", 1)[1] for c in THREADS])
def test_upstream_thread(sim, case):
    """The real lines parse to the verdict a reader gives them, the simulated release in the same situation
    parses to the same verdict, and every real line whose message the fidelity table knows for that release
    has the table's level and attribute order (the source= line may differ between releases)."""
    release = case["simulated_release"]
    real_mode, real_kinds = _judge("\n".join(case["lines"]) + "\n")
    run = scenario_run(release, case["scenario"])
    sim_mode, sim_kinds = _judge(run.log)
    if case["complete_start"]:
        assert real_mode == case["verdict"], (real_mode, case["url"])
        assert sim_mode == real_mode, (sim_mode, run.log[-3000:])
    else:   # a fragment: the parser cannot judge it alone; what it found must be what the simulator's log shows
        assert real_mode == "unknown" and sim_mode == case["verdict"], (real_mode, sim_mode)
    if case["version"] == release and case.get("os", "linux") == "linux":
        # the very release on Linux: the server config keys (envconfig AsMap) are the same
        for line in case["lines"]:
            real_env = dict(parse(_slog_part(line) or "")).get("env")
            if real_env and dict(parse(_slog_part(line))).get("msg") == "server config":
                sim_env = dict(lines_with(run.log, "server config")[0])["env"]
                assert _env_keys(real_env) == _env_keys(sim_env), (release, _env_keys(real_env) ^ _env_keys(sim_env))
                assert _env_value(real_env, "OLLAMA_ORIGINS") == _env_value(sim_env, "OLLAMA_ORIGINS")
    assert real_kinds <= sim_kinds, (real_kinds, sim_kinds)
    rows = fidelity.rows(FIDELITY, "log", release)
    compared = 0
    for line in case["lines"]:
        rec = _slog_part(line)
        if rec is None:
            continue
        pairs, d, match = _table_rows_for(rows, rec)
        if not match:
            continue
        keys = [k for k, _ in pairs]
        fits = []
        for r in match:
            want = ["time", "level", "source", "msg"] + r["attrs"]
            want = [k for k in want if k in keys or k not in ("time", "level", "source")]   # pasted fragments
            absent = case.get("format_differs", {}).get("missing_keys", [])
            exact = case["version"] != release or d.get("source", r["source"]) == r["source"]   # same release: same line
            if keys == [k for k in want if k not in absent] and d.get("level", r["level"]) == r["level"] and exact:
                fits.append(r)
        assert fits, "%s: level/attributes fit none of the table's rows for %s: %s" % (
            line, release, [(r["key"], r["level"], r["attrs"]) for r in match])
        compared += 1
    assert compared, "no line of %s is in the table for %s" % (case["url"], release)


CORPUS = os.path.join(REPO, "tests", "corpus")


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(CORPUS) if n.split("-")[0] in FIDELITY_RELEASES))
def test_corpus_log_of_a_simulated_release_fits_the_table(name):
    """tests/corpus/<release>-*.log of a simulated release: every line whose message the table knows for that
    release has exactly the table's level, source= and attribute order (the parser tests must not rest on
    lines that release never printed)"""
    release = name.split("-")[0]
    rows = fidelity.rows(FIDELITY, "log", release)
    checked = 0
    with open(os.path.join(CORPUS, name), encoding="utf-8") as f:
        for line in f:
            rec = _slog_part(line.strip())
            if rec is None:
                continue
            pairs, d, match = _table_rows_for(rows, rec)
            if not match or "level" not in d:
                continue
            keys = [k for k, _ in pairs]
            head = ["time", "level", "source", "msg"] if "time" in d else ["level", "source", "msg"]
            assert any(keys == head + r["attrs"] and d["level"] == r["level"]
                       and d["source"] == r["source"] for r in match), (name, line, [
                           (r["level"], r["source"], r["attrs"]) for r in match])
            checked += 1
    assert checked, name
