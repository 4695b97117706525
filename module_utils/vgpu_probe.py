# -*- coding: utf-8 -*-
# Live CUDA driver-API / NVML probe for vgpu_doctor (target side, Python 3.8+ stdlib, no Ansible imports).
"""Ask the driver what Ollama's discovery would get, in a fresh, bounded subprocess.

Static evidence (links, ELF, unit files) says what *should* load; this asks the loader and the driver
what *does*: a child Python, started with the service's predicted environment, as the unit's user, under
a hard time limit, ``dlopen``\\ s ``libcuda.so.1`` the way Ollama's native GPU probe does and calls the
driver API, then NVML. It is read-only (no writes, no network; the child runs ``python -I -S -B`` in
``/``) and can never take the service or the VM down: the child is its own session, killed with its
whole process group at the time limit, and the parent never waits more than ~0.2 s after that, even
for a child stuck in an uninterruptible ``cuInit``.

What upstream does (Ollama v0.30.11; ``git -C /work/.mirror/ollama+ollama/repo show v0.30.11:<path>``):

* ``discover/native_probe.go:82-88@v0.30.11``: discovery re-executes ``ollama gpu-discover --lib-dir ...``
  with ``llm.SetupLlamaServerCommandEnv``: the server's whole environment (LD_PRELOAD and
  CUDA_VISIBLE_DEVICES included) with LD_LIBRARY_PATH replaced (``llm/llama_server.go:437-467@v0.30.11``).
* ``llm/llama_server.go:480-514@v0.30.11`` (``llamaServerLibraryPaths``): LD_LIBRARY_PATH = llama-server's
  dir (``<lib/ollama>``), the GPU dirs (``<lib/ollama>/cuda_vNN``), then the server's own LD_LIBRARY_PATH
  entries; empty entries and repeats dropped. ``library_path()`` does exactly that.
* ``discover/native_probe_linux.go:249-351@v0.30.11`` (``probeCUDADriverLinux``): ``dlopen`` (RTLD_NOW |
  RTLD_LOCAL, line 14) ``"libcuda.so.1"`` then ``"libcuda.so"`` (line 250; bare names, so the loader
  resolves them: an object already loaded with that SONAME - e.g. from LD_PRELOAD -, LD_LIBRARY_PATH,
  ld.so.cache, the default dirs); ``dlsym`` of every entry point first (lines 255-283; a missing one
  fails the probe before any call; cuDeviceGetPCIBusId is optional, cuDeviceTotalMem_v2 falls back to
  cuDeviceTotalMem); cuInit(0) (285; failure ends the probe), cuDriverGetVersion (291), the NVIDIA driver
  major from NVML (298), cuDeviceGetCount (303), per device cuDeviceGet (311; failure skips the device),
  cuDeviceGetAttribute 75/76 (compute capability major/minor) and 18 (integrated) (315-317; a failure
  reads as 0), cuDeviceGetName (320, 128 bytes), cuDeviceTotalMem (323), cuDeviceGetPCIBusId (328, 32
  bytes, lower-cased).
* ``discover/native_probe_linux.go:391-418@v0.30.11`` (``probeNVIDIADriverMajorLinux``): ``dlopen``
  ``"libnvidia-ml.so.1"`` then ``"libnvidia-ml.so"``, ``dlsym`` nvmlInit_v2, nvmlShutdown,
  nvmlSystemGetDriverVersion, then nvmlInit_v2, nvmlSystemGetDriverVersion (80 bytes), nvmlShutdown; the
  major parsed by ``parseNVIDIADriverMajor`` (``discover/native_probe_platform.go:121@v0.30.11``).

The child does the same calls in the same order, plus nvmlDeviceGetCount_v2, and goes on where upstream
stops, so every answer is on record: each call is reported on its own (a missing symbol as
``'symbol not found'``), and NVML is asked even when libcuda does not load or cuInit fails.

API
---

``probe_command(lib_dirs, env, python)`` -> ``(argv, child_env)``; ``user_argv(argv, user, uid, gid,
groups, which)`` -> ``(argv, as_user)``; ``run_bounded(argv, env, timeout)`` -> dict;
``start_probe(lib_dirs, env, user_spec, timeout)`` -> handle, ``finish_probe(handle)`` -> result,
``finish_probes(handles)``, ``run_probe(...)`` = start + finish. Several probes (one per ``cuda_v*`` dir)
may be started before the first is finished: finishing one reads the pipes of all that are running, so
they take the longest one's time, not the sum.

Result fields (all JSON-serialisable)
-------------------------------------

``ok``
    True when libcuda loaded, every symbol upstream requires is there, cuInit and cuDeviceGetCount
    returned CUDA_SUCCESS and at least one device answered cuDeviceGet: what Ollama needs for GPU mode.
``timed_out``
    the time limit was hit (the child was SIGKILLed with its process group); see ``last_call``.
``killed``
    the probe's process group was sent SIGKILL (time limit, or processes left behind after the child
    exited holding its pipes: ``leftover``).
``leftover``
    the child exited but something it started still held stdout/stderr open (it was killed).
``unkillable``
    the child was still there ~0.2 s after SIGKILL (e.g. uninterruptible sleep in a driver call); it is
    left behind, not waited for.
``elapsed``
    seconds from start to the end of the probe (the parent's clock).
``rc``, ``signal``
    the child's exit status (negative: killed by a signal) and the signal's name (``'SIGSEGV'``) or None.
``completed``
    the child printed its final JSON document (False: it hung, crashed or exited inside a call).
``as_user``
    whom the child runs as: the user name when switched (setpriv/runuser), else ``'uid N'``.
``child``
    what the child saw of itself: ``{'uid', 'euid', 'gid', 'groups', 'python'}`` (None if it never started).
``ld_library_path``
    the LD_LIBRARY_PATH the child got (string, may be None when there is none).
``ld_preload``, ``cuda_visible_devices``
    those variables of the given environment (None when unset).
``lib_dirs``
    the Ollama library dirs given (first on LD_LIBRARY_PATH).
``error``
    a problem of the probe itself, not of the host's GPU setup, or None: the child could not be started,
    Python never came up (exit before its first marker: the interpreter is not executable for the user,
    setpriv failed, or the LD_PRELOAD kills every program - then ``output`` has the loader's line), the
    child stayed unkillable, or it exited 0 without its document.
``last_call``
    the step in progress when the child stopped without finishing (time limit, crash, exit inside a
    call): ``'cuInit'``, ``'dlopen libcuda.so.1'``, ``'import ctypes'``, ...; None when it finished.
``output``
    the child's stdout/stderr without the probe's own lines (what a shim or the loader printed), at most
    2000 characters.
``cuda``, ``nvml``
    one dict per library:

    ``requested``     the first name asked for (``'libcuda.so.1'`` / ``'libnvidia-ml.so.1'``)
    ``attempted``     the child got as far as trying to load it
    ``opened_as``     the name that loaded (``'libcuda.so.1'`` or the fallback ``'libcuda.so'``), or None
    ``dlopen_error``  upstream's text when neither name loads: ``'dlopen libcuda.so.1: <dlerror>; dlopen
                      libcuda.so: <dlerror>'``, else None
    ``loaded``        real path (symlinks resolved) of the object that provides ``cuInit`` (NVML:
                      ``nvmlInit_v2``) - found by ``dladdr`` on the symbol's address; when the symbol is
                      missing, of the object the handle stands for (``dlinfo(RTLD_DI_LINKMAP)``)
    ``loaded_as``     that object's name as the loader mapped it (``dli_fname``/``l_name``: the
                      LD_PRELOAD entry or the path found on the search path)
    ``found_by``      ``'dladdr'`` or ``'dlinfo'``: which of the two gave ``loaded``
    ``mapped``        every file in the child's ``/proc/self/maps`` whose name contains ``cuda``,
                      ``nvidia-ml`` or ``vgpu`` after the load (kernel's path, already real)
    ``missing_symbols`` the entry points (of those upstream looks up, plus nvmlDeviceGetCount_v2) that
                      ``dlsym`` did not find
    ``upstream_error``  the error upstream's probe function would return from these answers
                      (``'dlsym cuInit: ...'``, ``'cuInit failed: 100'``, ...), or None
    ``calls``         every call made, in order: ``{'call', 'rc', 'error', 'ms', 'value'}`` plus
                      ``'device'`` (ordinal) and ``'attr'`` where they apply, ``'detail'`` for a missing
                      symbol's dlerror text; ``error`` is the CUresult/nvmlReturn_t name
                      (``'CUDA_ERROR_NO_DEVICE'``; unknown codes ``'CUDA_ERROR_<n>'``), or
                      ``'symbol not found'`` (then ``rc`` is None)
    ``failed_call``   the first entry of ``calls`` whose rc is not 0 (None if none)

    ``cuda`` only: ``driver_version`` (cuDriverGetVersion's int, 12080 = 12.8, or None),
    ``device_count`` (cuDeviceGetCount's value or None), ``devices``: one
    ``{'index', 'name', 'total_mem' (bytes), 'compute' ('9.0'), 'pci_bus_id' (lower case, as upstream),
    'integrated' (bool)}`` per device that answered cuDeviceGet (a field whose call failed is None); at
    most ``MAX_DEVICES`` are asked.

    ``nvml`` only: ``driver_version`` (``'570.133.20'`` or None), ``driver_major`` (570, parsed as
    upstream's parseNVIDIADriverMajor, or None), ``driver_major_error`` (its error text), ``device_count``
    (nvmlDeviceGetCount_v2's value or None).

What it does not reproduce of the running unit: the systemd sandbox (PrivateDevices=, DevicePolicy=/
DeviceAllow= cgroup device rules, ProtectKernel*, namespaces, SystemCallFilter=), resource limits,
SupplementaryGroups= unless passed as ``groups``, DynamicUser= (the caller decides whom to run as), the
unit's WorkingDirectory, and the GGML backend libraries upstream loads before its driver probe (the
child loads the driver itself; the loader resolves ``libcuda.so.1`` the same way, but a constructor in
libggml-cuda.so or a dependency it drags in is not run). The caller is Python, not the Go binary:
the loader's search path for a ``dlopen`` of a bare name also honours the caller's (and the main
program's) RPATH; neither ``python3`` nor ``ollama`` has one. A real libcuda may, as it does for
Ollama, run ``nvidia-modprobe`` when ``/dev/nvidia*`` are missing: that is the driver's doing.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import time

PROBE_TIMEOUT = 3.0      # default seconds per probe (upstream gives its native probe 15 s)
KILL_GRACE = 0.2         # seconds to wait for the child after SIGKILL before giving up on it
PIPE_GRACE = 0.1         # seconds to wait for EOF after the child exited (grandchildren holding the pipes)
OUTPUT_LIMIT = 1 << 20   # bytes kept per stream
OUTPUT_SHOWN = 2000      # characters of foreign output in the result
MAX_DEVICES = 16         # devices asked per probe (the result stays small)
DEFAULT_PYTHON = '/usr/bin/python3'

CUDA_NAMES = ('libcuda.so.1', 'libcuda.so')             # discover/native_probe_linux.go:250@v0.30.11
NVML_NAMES = ('libnvidia-ml.so.1', 'libnvidia-ml.so')   # discover/native_probe_linux.go:392@v0.30.11
MARKER = '{"vgpu_probe":'

# CUresult, from cuda.h as documented in the CUDA Driver API reference, "Data types used by CUDA driver"
# (group CUDA_TYPES), enum CUresult (https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__TYPES.html).
CUDA_ERRORS = {
    0: 'CUDA_SUCCESS',
    1: 'CUDA_ERROR_INVALID_VALUE',
    2: 'CUDA_ERROR_OUT_OF_MEMORY',
    3: 'CUDA_ERROR_NOT_INITIALIZED',
    4: 'CUDA_ERROR_DEINITIALIZED',
    5: 'CUDA_ERROR_PROFILER_DISABLED',
    6: 'CUDA_ERROR_PROFILER_NOT_INITIALIZED',
    7: 'CUDA_ERROR_PROFILER_ALREADY_STARTED',
    8: 'CUDA_ERROR_PROFILER_ALREADY_STOPPED',
    34: 'CUDA_ERROR_STUB_LIBRARY',
    # 35 is not a CUresult: it is the runtime API's cudaErrorInsufficientDriver (driver_types.h); shims
    # (the simulator's cuda_min.h among them) borrow it, so it is named here under its driver-API spelling.
    35: 'CUDA_ERROR_INSUFFICIENT_DRIVER',
    46: 'CUDA_ERROR_DEVICE_UNAVAILABLE',
    100: 'CUDA_ERROR_NO_DEVICE',
    101: 'CUDA_ERROR_INVALID_DEVICE',
    102: 'CUDA_ERROR_DEVICE_NOT_LICENSED',
    200: 'CUDA_ERROR_INVALID_IMAGE',
    201: 'CUDA_ERROR_INVALID_CONTEXT',
    202: 'CUDA_ERROR_CONTEXT_ALREADY_CURRENT',
    205: 'CUDA_ERROR_MAP_FAILED',
    206: 'CUDA_ERROR_UNMAP_FAILED',
    207: 'CUDA_ERROR_ARRAY_IS_MAPPED',
    208: 'CUDA_ERROR_ALREADY_MAPPED',
    209: 'CUDA_ERROR_NO_BINARY_FOR_GPU',
    210: 'CUDA_ERROR_ALREADY_ACQUIRED',
    211: 'CUDA_ERROR_NOT_MAPPED',
    212: 'CUDA_ERROR_NOT_MAPPED_AS_ARRAY',
    213: 'CUDA_ERROR_NOT_MAPPED_AS_POINTER',
    214: 'CUDA_ERROR_ECC_UNCORRECTABLE',
    215: 'CUDA_ERROR_UNSUPPORTED_LIMIT',
    216: 'CUDA_ERROR_CONTEXT_ALREADY_IN_USE',
    217: 'CUDA_ERROR_PEER_ACCESS_UNSUPPORTED',
    218: 'CUDA_ERROR_INVALID_PTX',
    219: 'CUDA_ERROR_INVALID_GRAPHICS_CONTEXT',
    220: 'CUDA_ERROR_NVLINK_UNCORRECTABLE',
    221: 'CUDA_ERROR_JIT_COMPILER_NOT_FOUND',
    222: 'CUDA_ERROR_UNSUPPORTED_PTX_VERSION',
    223: 'CUDA_ERROR_JIT_COMPILATION_DISABLED',
    224: 'CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY',
    300: 'CUDA_ERROR_INVALID_SOURCE',
    301: 'CUDA_ERROR_FILE_NOT_FOUND',
    302: 'CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND',
    303: 'CUDA_ERROR_SHARED_OBJECT_INIT_FAILED',
    304: 'CUDA_ERROR_OPERATING_SYSTEM',
    400: 'CUDA_ERROR_INVALID_HANDLE',
    401: 'CUDA_ERROR_ILLEGAL_STATE',
    500: 'CUDA_ERROR_NOT_FOUND',
    600: 'CUDA_ERROR_NOT_READY',
    700: 'CUDA_ERROR_ILLEGAL_ADDRESS',
    701: 'CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES',
    702: 'CUDA_ERROR_LAUNCH_TIMEOUT',
    703: 'CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING',
    704: 'CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED',
    705: 'CUDA_ERROR_PEER_ACCESS_NOT_ENABLED',
    708: 'CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE',
    709: 'CUDA_ERROR_CONTEXT_IS_DESTROYED',
    710: 'CUDA_ERROR_ASSERT',
    711: 'CUDA_ERROR_TOO_MANY_PEERS',
    712: 'CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED',
    713: 'CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED',
    714: 'CUDA_ERROR_HARDWARE_STACK_ERROR',
    715: 'CUDA_ERROR_ILLEGAL_INSTRUCTION',
    716: 'CUDA_ERROR_MISALIGNED_ADDRESS',
    717: 'CUDA_ERROR_INVALID_ADDRESS_SPACE',
    718: 'CUDA_ERROR_INVALID_PC',
    719: 'CUDA_ERROR_LAUNCH_FAILED',
    720: 'CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE',
    800: 'CUDA_ERROR_NOT_PERMITTED',
    801: 'CUDA_ERROR_NOT_SUPPORTED',
    802: 'CUDA_ERROR_SYSTEM_NOT_READY',
    803: 'CUDA_ERROR_SYSTEM_DRIVER_MISMATCH',
    804: 'CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE',
    805: 'CUDA_ERROR_MPS_CONNECTION_FAILED',
    806: 'CUDA_ERROR_MPS_RPC_FAILURE',
    807: 'CUDA_ERROR_MPS_SERVER_NOT_READY',
    808: 'CUDA_ERROR_MPS_MAX_CLIENTS_REACHED',
    809: 'CUDA_ERROR_MPS_MAX_CONNECTIONS_REACHED',
    900: 'CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED',
    901: 'CUDA_ERROR_STREAM_CAPTURE_INVALIDATED',
    902: 'CUDA_ERROR_STREAM_CAPTURE_MERGE',
    903: 'CUDA_ERROR_STREAM_CAPTURE_UNMATCHED',
    904: 'CUDA_ERROR_STREAM_CAPTURE_UNJOINED',
    905: 'CUDA_ERROR_STREAM_CAPTURE_ISOLATION',
    906: 'CUDA_ERROR_STREAM_CAPTURE_IMPLICIT',
    907: 'CUDA_ERROR_CAPTURED_EVENT',
    908: 'CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD',
    909: 'CUDA_ERROR_TIMEOUT',
    910: 'CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE',
    911: 'CUDA_ERROR_EXTERNAL_DEVICE',
    999: 'CUDA_ERROR_UNKNOWN',
}

# nvmlReturn_t, from nvml.h as documented in the NVML API Reference, "Device Enums"
# (https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceEnumvs.html), enum nvmlReturn_t.
NVML_ERRORS = {
    0: 'NVML_SUCCESS',
    1: 'NVML_ERROR_UNINITIALIZED',
    2: 'NVML_ERROR_INVALID_ARGUMENT',
    3: 'NVML_ERROR_NOT_SUPPORTED',
    4: 'NVML_ERROR_NO_PERMISSION',
    5: 'NVML_ERROR_ALREADY_INITIALIZED',
    6: 'NVML_ERROR_NOT_FOUND',
    7: 'NVML_ERROR_INSUFFICIENT_SIZE',
    8: 'NVML_ERROR_INSUFFICIENT_POWER',
    9: 'NVML_ERROR_DRIVER_NOT_LOADED',
    10: 'NVML_ERROR_TIMEOUT',
    11: 'NVML_ERROR_IRQ_ISSUE',
    12: 'NVML_ERROR_LIBRARY_NOT_FOUND',
    13: 'NVML_ERROR_FUNCTION_NOT_FOUND',
    14: 'NVML_ERROR_CORRUPTED_INFOROM',
    15: 'NVML_ERROR_GPU_IS_LOST',
    16: 'NVML_ERROR_RESET_REQUIRED',
    17: 'NVML_ERROR_OPERATING_SYSTEM',
    18: 'NVML_ERROR_LIB_RM_VERSION_MISMATCH',
    19: 'NVML_ERROR_IN_USE',
    20: 'NVML_ERROR_MEMORY',
    21: 'NVML_ERROR_NO_DATA',
    22: 'NVML_ERROR_VGPU_ECC_NOT_SUPPORTED',
    23: 'NVML_ERROR_INSUFFICIENT_RESOURCES',
    24: 'NVML_ERROR_FREQ_NOT_SUPPORTED',
    25: 'NVML_ERROR_ARGUMENT_VERSION_MISMATCH',
    26: 'NVML_ERROR_DEPRECATED',
    27: 'NVML_ERROR_NOT_READY',
    28: 'NVML_ERROR_GPU_NOT_FOUND',
    29: 'NVML_ERROR_INVALID_STATE',
    999: 'NVML_ERROR_UNKNOWN',
}

# The entry points upstream dlsym()s before its first call, in its order; a missing one fails its probe
# (discover/native_probe_linux.go:255-283 and 396-407@v0.30.11). A tuple is "any of" (dlsymAny).
CUDA_REQUIRED = ('cuInit', 'cuDriverGetVersion', 'cuDeviceGetCount', 'cuDeviceGet', 'cuDeviceGetAttribute',
                 'cuDeviceGetName', ('cuDeviceTotalMem_v2', 'cuDeviceTotalMem'))
NVML_REQUIRED = ('nvmlInit_v2', 'nvmlShutdown', 'nvmlSystemGetDriverVersion')

SIGNAL_NAMES = dict((int(getattr(signal, n)), n) for n in dir(signal)
                    if n.startswith('SIG') and not n.startswith('SIG_') and isinstance(getattr(signal, n), int))


def cuda_error_name(rc):
    """CUresult name of rc (``CUDA_ERROR_<n>`` when unknown)."""
    return CUDA_ERRORS.get(rc, 'CUDA_ERROR_%s' % rc)


def nvml_error_name(rc):
    """nvmlReturn_t name of rc (``NVML_ERROR_<n>`` when unknown)."""
    return NVML_ERRORS.get(rc, 'NVML_ERROR_%s' % rc)


def parse_nvidia_driver_major(version):
    """(major, None) or (None, error) the way parseNVIDIADriverMajor does it
    (discover/native_probe_platform.go:121-132@v0.30.11): trim, cut at the first '.', strconv.Atoi."""
    version = (version or '').strip()
    if not version:
        return None, 'empty NVIDIA driver version'
    major = version.split('.', 1)[0]
    digits = major[1:] if major[:1] in ('+', '-') else major
    if not digits or not all('0' <= c <= '9' for c in digits):
        return None, 'parse NVIDIA driver version %r: invalid syntax' % version
    return int(major), None


def library_path(lib_dirs, inherited):
    """LD_LIBRARY_PATH entries for the discovery child: Ollama's lib dirs, then the inherited value's
    entries, empty ones and repeats dropped (llamaServerLibraryPaths, llm/llama_server.go:480-514@v0.30.11;
    filepath.SplitList of "" is nothing)."""
    out = []
    for d in list(lib_dirs or []) + (inherited.split(':') if inherited else []):
        if d and d not in out:
            out.append(d)
    return out


def default_python():
    return DEFAULT_PYTHON if os.access(DEFAULT_PYTHON, os.X_OK) else (sys.executable or 'python3')


# ------------------------------------------------------------------------------------------ the child
#
# Runs as `python -I -S -B -c CHILD_CODE ARGS_JSON` (isolated: no PYTHON* variables, no site, no user
# site, no script dir on sys.path, no .pyc written). Every step is announced on stdout before it starts
# ({"vgpu_probe":"begin",...}) and its record written when it ends ({"vgpu_probe":"end",...}), each
# with os.write so nothing waits in a buffer when the child is killed; the last line is the whole
# document ({"vgpu_probe":"result",...}). Lines start with "\n" so a shim's unterminated printf cannot
# glue onto them. Error names are added by the parent.
CHILD_CODE = r'''
import os, sys, json, time
def emit(kind, **kw):
    d = {"vgpu_probe": kind}
    d.update(kw)
    b = ("\n" + json.dumps(d, separators=(",", ":")) + "\n").encode("utf-8", "replace")
    while b:
        b = b[os.write(1, b):]
A = json.loads(sys.argv[1])
emit("start", pid=os.getpid(), uid=os.getuid(), euid=os.geteuid(), gid=os.getgid(),
     groups=sorted(os.getgroups()), python=sys.version.split()[0])
OUT = {"cuda": {"attempted": False, "calls": []}, "nvml": {"attempted": False, "calls": []}}
def text(b):
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b
emit("begin", lib="cuda", call="import ctypes")
import ctypes
emit("end", lib="cuda", rec=None)
C = ctypes
class DlInfo(C.Structure):
    _fields_ = [("fname", C.c_char_p), ("fbase", C.c_void_p), ("sname", C.c_char_p), ("saddr", C.c_void_p)]
class LinkMap(C.Structure):
    _fields_ = [("addr", C.c_void_p), ("name", C.c_char_p), ("ld", C.c_void_p), ("next", C.c_void_p),
                ("prev", C.c_void_p)]
DL = {}
for src in (None, "libdl.so.2"):
    try:
        h = C.CDLL(src)
    except OSError:
        continue
    for n in ("dladdr", "dlinfo"):
        if n not in DL:
            try:
                DL[n] = getattr(h, n)
            except AttributeError:
                pass
if "dladdr" in DL:
    DL["dladdr"].argtypes = [C.c_void_p, C.POINTER(DlInfo)]
    DL["dladdr"].restype = C.c_int
if "dlinfo" in DL:
    DL["dlinfo"].argtypes = [C.c_void_p, C.c_int, C.c_void_p]
    DL["dlinfo"].restype = C.c_int
def real(p):
    try:
        return os.path.realpath(p)
    except Exception:
        return p
def mapped():
    out = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) < 6:
                    continue
                p = parts[5].strip()
                b = os.path.basename(p).lower()
                if ("cuda" in b or "nvidia-ml" in b or "vgpu" in b) and p not in out:
                    out.append(p)
    except Exception as e:
        out.append("<cannot read /proc/self/maps: %s>" % e)
    return out
def sym(lib, name):
    try:
        return lib[name], None
    except AttributeError as e:
        return None, str(e)
def where(lib, first_sym):
    info = {"loaded": None, "loaded_as": None, "found_by": None}
    fn = sym(lib, first_sym)[0] if first_sym else None
    if fn is not None and "dladdr" in DL:
        d = DlInfo()
        try:
            if DL["dladdr"](C.cast(fn, C.c_void_p), C.byref(d)) and d.fname:
                info.update(loaded_as=text(d.fname), found_by="dladdr")
        except Exception:
            pass
    if info["loaded_as"] is None and "dlinfo" in DL:
        lm = C.c_void_p()
        try:
            if DL["dlinfo"](C.c_void_p(lib._handle), 2, C.byref(lm)) == 0 and lm.value:
                name = C.cast(lm, C.POINTER(LinkMap)).contents.name
                if name:
                    info.update(loaded_as=text(name), found_by="dlinfo")
        except Exception:
            pass
    if info["loaded_as"]:
        info["loaded"] = real(info["loaded_as"])
    return info
def load(which, names, first_sym, symbols):
    sec = OUT[which]
    sec["attempted"] = True
    errs = []
    for n in names:
        emit("begin", lib=which, call="dlopen " + n)
        try:
            lib = C.CDLL(n, mode=C.RTLD_LOCAL)
        except OSError as e:
            errs.append("dlopen %s: %s" % (n, e))
            emit("end", lib=which, rec=None)
            continue
        emit("end", lib=which, rec=None)
        sec.update(opened_as=n, dlopen_error=None)
        sec.update(where(lib, first_sym))
        sec["mapped"] = mapped()
        fns = {}
        sec["missing_symbols"] = []
        sec["dlsym_errors"] = {}
        for s in symbols:
            fns[s], err = sym(lib, s)
            if fns[s] is None:
                sec["missing_symbols"].append(s)
                sec["dlsym_errors"][s] = err
        emit("lib", lib=which, info=dict((k, v) for k, v in sec.items() if k != "calls"))
        return fns
    sec.update(opened_as=None, dlopen_error="; ".join(errs), mapped=mapped())
    emit("lib", lib=which, info=dict((k, v) for k, v in sec.items() if k != "calls"))
    return None
def call(which, fns, name, args, value=None, argtypes=None, **extra):
    rec = {"call": name}
    rec.update(extra)
    fn = fns.get(name)
    if fn is None:
        rec.update(rc=None, error="symbol not found",
                   detail=OUT[which].get("dlsym_errors", {}).get(name))
        OUT[which]["calls"].append(rec)
        emit("end", lib=which, rec=rec)
        return rec
    fn.restype = C.c_int
    if argtypes is not None:
        fn.argtypes = argtypes
    emit("begin", lib=which, call=name)
    t = time.perf_counter()
    try:
        rc = fn(*args)
    except Exception as e:
        rc = None
        rec.update(error="exception", detail=str(e))
    rec["ms"] = round((time.perf_counter() - t) * 1000.0, 3)
    rec["rc"] = rc
    if rc == 0 and value is not None:
        try:
            rec["value"] = value()
        except Exception as e:
            rec["detail"] = "value: %s" % e
    OUT[which]["calls"].append(rec)
    emit("end", lib=which, rec=rec)
    return rec
P, I, U, S, CP = C.POINTER, C.c_int, C.c_uint, C.c_size_t, C.c_char_p
def nvml():
    fns = load("nvml", A["nvml"], "nvmlInit_v2",
               ("nvmlInit_v2", "nvmlShutdown", "nvmlSystemGetDriverVersion", "nvmlDeviceGetCount_v2"))
    if fns is None:
        return
    r = call("nvml", fns, "nvmlInit_v2", (), argtypes=[])
    if r["rc"] != 0:
        return
    buf = C.create_string_buffer(80)
    call("nvml", fns, "nvmlSystemGetDriverVersion", (buf, 80), lambda: text(buf.value), [CP, U])
    n = U(0)
    call("nvml", fns, "nvmlDeviceGetCount_v2", (C.byref(n),), lambda: n.value, [P(U)])
    call("nvml", fns, "nvmlShutdown", (), argtypes=[])
def cuda():
    fns = load("cuda", A["cuda"], "cuInit",
               ("cuInit", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetAttribute",
                "cuDeviceGetName", "cuDeviceTotalMem_v2", "cuDeviceTotalMem", "cuDeviceGetPCIBusId"))
    if fns is None:
        return False
    if call("cuda", fns, "cuInit", (0,), argtypes=[U])["rc"] != 0:
        return False
    v = I(0)
    call("cuda", fns, "cuDriverGetVersion", (C.byref(v),), lambda: v.value, [P(I)])
    # upstream asks NVML for the driver major here, between cuDriverGetVersion and cuDeviceGetCount
    # (discover/native_probe_linux.go:297-300@v0.30.11): same order
    nvml()
    n = I(0)
    if call("cuda", fns, "cuDeviceGetCount", (C.byref(n),), lambda: n.value, [P(I)])["rc"] != 0:
        return True
    for i in range(min(max(n.value, 0), A["max_devices"])):
        d = I(0)
        if call("cuda", fns, "cuDeviceGet", (C.byref(d), i), lambda: d.value, [P(I), I], device=i)["rc"] != 0:
            continue
        for attr in (75, 76, 18):
            x = I(0)
            call("cuda", fns, "cuDeviceGetAttribute", (C.byref(x), attr, d.value), lambda: x.value,
                 [P(I), I, I], device=i, attr=attr)
        name = C.create_string_buffer(128)
        call("cuda", fns, "cuDeviceGetName", (name, 128, d.value), lambda: text(name.value), [CP, I, I],
             device=i)
        mem = S(0)
        tm = "cuDeviceTotalMem_v2" if fns.get("cuDeviceTotalMem_v2") is not None else "cuDeviceTotalMem"
        call("cuda", fns, tm, (C.byref(mem), d.value), lambda: mem.value, [P(S), I], device=i)
        if fns.get("cuDeviceGetPCIBusId") is not None:
            pci = C.create_string_buffer(32)
            call("cuda", fns, "cuDeviceGetPCIBusId", (pci, 32, d.value), lambda: text(pci.value), [CP, I, I],
                 device=i)
    return True
try:
    if not cuda():
        # cuInit failed or libcuda did not load: upstream stops here and never asks NVML; we do, so the
        # driver version NVML reports is on record for the diagnosis
        nvml()
except BaseException as e:
    OUT["crash"] = "%s: %s" % (type(e).__name__, e)
emit("result", cuda=OUT["cuda"], nvml=OUT["nvml"], crash=OUT.get("crash"))
os._exit(0)
'''


def probe_command(lib_dirs, env, python=DEFAULT_PYTHON, max_devices=MAX_DEVICES, cuda_names=None):
    """The child's argv and environment.

    argv = ``[python, '-I', '-S', '-B', '-c', CHILD_CODE, <json args>]``; the environment is ``env`` (the
    service's predicted environment, LD_PRELOAD and CUDA_VISIBLE_DEVICES included, as given) with
    LD_LIBRARY_PATH = ``lib_dirs`` + env's LD_LIBRARY_PATH entries (``library_path``). As upstream
    (llm/llama_server.go:449-461@v0.30.11), a variable whose name equals LD_LIBRARY_PATH ignoring case is
    replaced too; when there is no entry at all the variable is left out."""
    env = dict(env or {})
    entries = library_path(lib_dirs, env.get('LD_LIBRARY_PATH'))
    for k in list(env):
        if k.upper() == 'LD_LIBRARY_PATH':
            del env[k]
    if entries:
        env['LD_LIBRARY_PATH'] = ':'.join(entries)
    # cuda_names: what to dlopen instead of upstream's bare names - the full path Ollama before 0.12.4 opens
    # (its in-process discovery, discover/gpu_info_nvcuda.c:33@v0.5.7)
    args = json.dumps({'cuda': list(cuda_names or CUDA_NAMES), 'nvml': list(NVML_NAMES),
                       'max_devices': int(max_devices)})
    return [python or default_python(), '-I', '-S', '-B', '-c', CHILD_CODE, args], env


def user_argv(argv, user=None, uid=None, gid=None, groups=None, which=shutil.which, euid=None):
    """Wrap argv to run as the unit's user: ``(argv, as_user)``.

    Only when we are root (``euid``, default ``os.geteuid()``) and the user is not root: ``setpriv
    --reuid=U --regid=G --init-groups --`` (``--groups=g1,g2`` when ``groups`` is given, ``--clear-groups``
    for an empty list or a uid without a passwd entry); G is ``gid``, else the user's primary group, else
    U. No PAM session (runuser's would log "session opened" on every run), hence setpriv first;
    ``runuser -u NAME --`` when setpriv is missing; argv unchanged when neither exists or nothing is to be
    switched. ``as_user`` is the user name when switched, else ``'uid N'`` (N = euid). An unknown user name
    raises ValueError (a numeric string is taken as a uid)."""
    euid = os.geteuid() if euid is None else euid
    here = 'uid %d' % euid
    argv = list(argv)
    if euid != 0 or (user in (None, '') and uid is None):
        return argv, here
    pw = None
    if uid is None:
        try:
            pw = pwd.getpwnam(user)
            uid = pw.pw_uid
        except KeyError:
            if not str(user).isdigit():
                raise ValueError('unknown user %r' % (user,))
            uid = int(user)
    if pw is None:
        try:
            pw = pwd.getpwuid(uid)
        except KeyError:
            pw = None
    uid = int(uid)
    if uid == 0:
        return argv, here
    name = user if user not in (None, '') and not str(user).isdigit() else (pw.pw_name if pw else None)
    shown = name or 'uid %d' % uid
    setpriv = which('setpriv')
    if setpriv:
        if gid is None:
            gid = pw.pw_gid if pw else uid
        if groups is not None:
            gopt = '--groups=%s' % ','.join(str(int(g)) for g in groups) if groups else '--clear-groups'
        else:
            gopt = '--init-groups' if pw else '--clear-groups'
        return [setpriv, '--reuid=%d' % uid, '--regid=%d' % int(gid), gopt, '--'] + argv, shown
    runuser = which('runuser')
    if runuser and name:
        return [runuser, '-u', name, '--'] + argv, shown
    return argv, here


# ------------------------------------------------------------------------------------------ bounded runs

class _Job(object):
    """One child in its own session, read without blocking, killed with its group at the deadline."""

    def __init__(self, argv, env, timeout, cwd=None):
        self.t0 = time.monotonic()
        self.deadline = self.t0 + max(0.0, float(timeout))
        self.rc = None
        self.timed_out = self.killed = self.unkillable = self.leftover = False
        self.done = False
        self.exited_at = self.killed_at = None
        self.elapsed = None
        self.out = {1: bytearray(), 2: bytearray()}
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, close_fds=True, start_new_session=True)
        self.pgid = self.proc.pid   # start_new_session: the child leads its own session and group
        self.fds = {self.proc.stdout.fileno(): 1, self.proc.stderr.fileno(): 2}
        self.files = {self.proc.stdout.fileno(): self.proc.stdout, self.proc.stderr.fileno(): self.proc.stderr}
        _ACTIVE.append(self)

    def _killpg(self):
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except OSError:
            pass
        self.killed = True

    def _close(self):
        for fd in list(self.files):
            try:
                self.files.pop(fd).close()
            except OSError:
                pass
        self.fds.clear()

    def _finish(self):
        self._close()
        self.done = True
        self.elapsed = time.monotonic() - self.t0
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def read(self, fd):
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b''
        if not data:
            f = self.files.pop(fd, None)
            self.fds.pop(fd, None)
            if f is not None:
                f.close()
            return
        buf = self.out[self.fds[fd]]
        if len(buf) < OUTPUT_LIMIT:
            buf.extend(data[:OUTPUT_LIMIT - len(buf)])

    def step(self, now):
        """Advance the state machine; returns the next moment something is due."""
        if self.done:
            return None
        if self.rc is None:
            rc = self.proc.poll()
            if rc is not None:
                self.rc = rc
                self.exited_at = now
        if self.rc is not None:
            if not self.fds:
                self._finish()
                return None
            # the child is gone but its pipes are still open: something it started holds them
            limit = (self.killed_at + KILL_GRACE) if self.killed_at is not None else self.exited_at + PIPE_GRACE
            if now >= limit:
                if not self.killed:
                    self.leftover = True
                    self._killpg()
                self._finish()
                return None
            return limit
        if self.killed_at is None:
            if now >= self.deadline:
                self.timed_out = True
                self._killpg()
                self.killed_at = now
                return now + 0.01
            return self.deadline
        if now >= self.killed_at + KILL_GRACE:
            # SIGKILL did not end it (uninterruptible sleep): give up, never block on it
            self.unkillable = True
            self._finish()
            return None
        return min(now + 0.01, self.killed_at + KILL_GRACE)

    def report(self):
        return {'rc': self.rc, 'stdout': self.out[1].decode('utf-8', 'replace'),
                'stderr': self.out[2].decode('utf-8', 'replace'), 'timed_out': self.timed_out,
                'killed': self.killed, 'unkillable': self.unkillable, 'leftover': self.leftover,
                'elapsed': round(self.elapsed if self.elapsed is not None else time.monotonic() - self.t0, 4)}


_ACTIVE = []   # jobs started and not finished: finishing one keeps reading all of them


def _pump(until):
    """Read every active job's pipes until job `until` is done."""
    while not until.done:
        now = time.monotonic()
        due = []
        for job in list(_ACTIVE):
            t = job.step(now)
            if t is not None:
                due.append(t)
        if until.done:
            break
        wait = max(0.0, min(due) - time.monotonic()) if due else 0.0
        # a child that exits wakes nobody (its pipes may stay open): look again at least every 20 ms
        wait = min(wait, 0.02)
        poller = select.poll()
        owners = {}
        for job in _ACTIVE:
            for fd in job.fds:
                poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
                owners[fd] = job
        if not owners:
            time.sleep(wait)
            continue
        try:
            events = poller.poll(wait * 1000.0)
        except InterruptedError:
            continue
        for fd, _ev in events:
            job = owners.get(fd)
            if job is not None and fd in job.fds:
                job.read(fd)


def run_bounded(argv, env, timeout, cwd=None):
    """Run argv with a hard time limit: ``{'rc', 'stdout', 'stderr', 'timed_out', 'killed', 'unkillable',
    'leftover', 'elapsed'}``.

    The child gets its own session (``start_new_session``), stdin from /dev/null, no inherited fds. At the
    deadline the whole process group gets SIGKILL; the child is waited for at most KILL_GRACE more, then
    given up (``unkillable``; rc None). After the child exits, pipes held open by processes it left behind
    are waited for at most PIPE_GRACE, then the group is killed (``leftover``). Never blocks beyond
    timeout + KILL_GRACE (+ a few ms). OSError from exec (no such program) propagates."""
    job = _Job(argv, env, timeout, cwd=cwd)
    _pump(job)
    return job.report()


# ------------------------------------------------------------------------------------------ probes

class ProbeHandle(object):
    """What start_probe returns; pass it to finish_probe."""

    def __init__(self, meta, job=None, error=None):
        self.meta = meta
        self.job = job
        self.error = error
        self.result = None


def _user_fields(user_spec):
    if user_spec is None:
        return {}
    if isinstance(user_spec, dict):
        return dict((k, user_spec.get(k)) for k in ('user', 'uid', 'gid', 'groups'))
    if isinstance(user_spec, int):
        return {'uid': user_spec}
    return {'user': str(user_spec)}


def start_probe(lib_dirs, env, user_spec=None, timeout=PROBE_TIMEOUT, python=None, which=shutil.which,
                max_devices=MAX_DEVICES, cuda_names=None):
    """Start one probe; returns a handle at once (the child runs in the background).

    ``lib_dirs``: Ollama's dirs in upstream's order (``<lib/ollama>``, ``<lib/ollama>/cuda_vNN``);
    ``env``: the service's predicted environment; ``user_spec``: None (run as we are), a user name, a uid,
    or ``{'user', 'uid', 'gid', 'groups'}`` (see user_argv); ``python``: the interpreter for the child
    (default /usr/bin/python3, which the service user can normally run; a virtualenv's may sit in a
    private home)."""
    env = dict(env or {})
    argv, child_env = probe_command(lib_dirs, env, python or default_python(), max_devices, cuda_names)
    meta = {'lib_dirs': list(lib_dirs or []), 'ld_library_path': child_env.get('LD_LIBRARY_PATH'),
            'cuda_names': list(cuda_names or CUDA_NAMES),
            'ld_preload': env.get('LD_PRELOAD'), 'cuda_visible_devices': env.get('CUDA_VISIBLE_DEVICES'),
            'as_user': 'uid %d' % os.geteuid(), 'timeout': timeout}
    try:
        argv, meta['as_user'] = user_argv(argv, which=which, **_user_fields(user_spec))
    except ValueError as e:
        return ProbeHandle(meta, error='cannot run the probe as %r: %s' % (user_spec, e))
    try:
        job = _Job(argv, child_env, timeout, cwd='/')
    except OSError as e:
        return ProbeHandle(meta, error='cannot start the probe (%s): %s' % (argv[0], e))
    return ProbeHandle(meta, job=job)


def finish_probe(handle):
    """Wait for the probe (never past its time limit + ~0.2 s) and return its result (see the module doc)."""
    if handle.result is None:
        if handle.job is None:
            handle.result = _result(handle.meta, None, handle.error)
        else:
            _pump(handle.job)
            handle.result = _result(handle.meta, handle.job.report(), None)
    return handle.result


def finish_probes(handles):
    return [finish_probe(h) for h in handles]


def run_probe(lib_dirs, env, user_spec=None, timeout=PROBE_TIMEOUT, python=None, which=shutil.which,
              max_devices=MAX_DEVICES):
    return finish_probe(start_probe(lib_dirs, env, user_spec, timeout, python, which, max_devices))


# ------------------------------------------------------------------------------------------ parsing

def parse_child_output(text):
    """The child's marker lines -> ``(events, foreign)``: the decoded events in order and every other
    line (a shim's or the loader's output)."""
    events, foreign = [], []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(MARKER):
            try:
                ev = json.loads(s)
            except ValueError:
                foreign.append(line)   # a marker cut short by a kill
                continue
            if isinstance(ev, dict):
                events.append(ev)
                continue
        if s:
            foreign.append(line)
    return events, foreign


def _replay(events):
    """Sections, last step in progress, start info and the final document from the events (a killed
    child leaves its events up to the kill)."""
    secs = {'cuda': {'attempted': False, 'calls': []}, 'nvml': {'attempted': False, 'calls': []}}
    pending, start, final = None, None, None
    for ev in events:
        kind = ev.get('vgpu_probe')
        lib = ev.get('lib') if ev.get('lib') in secs else None
        if kind == 'start':
            start = ev
        elif kind == 'begin':
            pending = ev.get('call')
        elif kind == 'end':
            pending = None
            if lib and isinstance(ev.get('rec'), dict):
                secs[lib]['calls'].append(ev['rec'])
        elif kind == 'lib' and lib and isinstance(ev.get('info'), dict):
            secs[lib].update(ev['info'])
            secs[lib]['attempted'] = True
        elif kind == 'result':
            final = ev
    if final is not None:
        for lib in secs:
            if isinstance(final.get(lib), dict):
                secs[lib] = final[lib]
        pending = None
    return secs, pending, start, final


def _named(calls, namer):
    out = []
    for c in calls:
        c = dict(c)
        if c.get('error') is None and isinstance(c.get('rc'), int):
            c['error'] = namer(c['rc'])
        out.append(c)
    return out


def _first_failed(calls):
    for c in calls:
        if c.get('rc') != 0:
            return c
    return None


def _last_value(calls, name, **match):
    """value of the last successful call `name` (matching the given fields), None otherwise."""
    val = None
    for c in calls:
        if c.get('call') == name and c.get('rc') == 0 and all(c.get(k) == v for k, v in match.items()):
            val = c.get('value')
    return val


def _upstream_error(sec, required, calls, failing):
    """The error upstream's probe function returns for these answers (None when it returns devices)."""
    if not sec.get('attempted'):
        return None
    if sec.get('dlopen_error'):
        return sec['dlopen_error']
    missing = sec.get('missing_symbols') or []
    errs = sec.get('dlsym_errors') or {}
    for req in required:
        names = req if isinstance(req, tuple) else (req,)
        if all(n in missing for n in names):
            return '; '.join('dlsym %s: %s' % (n, errs.get(n) or 'symbol not found') for n in names)
    for name in failing:
        for c in calls:
            if c.get('call') == name and c.get('rc') not in (0, None):
                return '%s failed: %d' % (name, c['rc'])
    return None


def _cuda_section(sec):
    calls = _named(sec.get('calls') or [], cuda_error_name)
    devices = []
    for c in calls:
        if c.get('call') == 'cuDeviceGet' and c.get('rc') == 0:
            i = c.get('device')
            cmaj = _last_value(calls, 'cuDeviceGetAttribute', device=i, attr=75)
            cmin = _last_value(calls, 'cuDeviceGetAttribute', device=i, attr=76)
            integ = _last_value(calls, 'cuDeviceGetAttribute', device=i, attr=18)
            mem = _last_value(calls, 'cuDeviceTotalMem_v2', device=i)
            if mem is None:
                mem = _last_value(calls, 'cuDeviceTotalMem', device=i)
            pci = _last_value(calls, 'cuDeviceGetPCIBusId', device=i)
            devices.append({'index': i, 'name': _last_value(calls, 'cuDeviceGetName', device=i),
                            'total_mem': mem,
                            'compute': '%d.%d' % (cmaj, cmin) if cmaj is not None and cmin is not None else None,
                            'pci_bus_id': pci.lower() if isinstance(pci, str) else None,
                            'integrated': (integ == 1) if integ is not None else None})
    out = _common(sec, 'libcuda.so.1', calls)
    if 'cuDeviceTotalMem_v2' not in out['missing_symbols']:
        # the fallback is looked up only when the _v2 entry point is missing (dlsymAny)
        out['missing_symbols'] = [m for m in out['missing_symbols'] if m != 'cuDeviceTotalMem']
    out['upstream_error'] = _upstream_error(sec, CUDA_REQUIRED, calls, ('cuInit', 'cuDeviceGetCount'))
    out.update(driver_version=_last_value(calls, 'cuDriverGetVersion'),
               device_count=_last_value(calls, 'cuDeviceGetCount'), devices=devices)
    return out


def _nvml_section(sec):
    calls = _named(sec.get('calls') or [], nvml_error_name)
    out = _common(sec, 'libnvidia-ml.so.1', calls)
    out['upstream_error'] = _upstream_error(sec, NVML_REQUIRED, calls, ('nvmlInit_v2', 'nvmlSystemGetDriverVersion'))
    version = _last_value(calls, 'nvmlSystemGetDriverVersion')
    major, err = parse_nvidia_driver_major(version) if version is not None else (None, None)
    out.update(driver_version=version, driver_major=major, driver_major_error=err,
               device_count=_last_value(calls, 'nvmlDeviceGetCount_v2'))
    return out


def _common(sec, requested, calls):
    return {'requested': requested, 'attempted': bool(sec.get('attempted')), 'opened_as': sec.get('opened_as'),
            'dlopen_error': sec.get('dlopen_error'), 'loaded': sec.get('loaded'),
            'loaded_as': sec.get('loaded_as'), 'found_by': sec.get('found_by'), 'mapped': sec.get('mapped') or [],
            'missing_symbols': sec.get('missing_symbols') or [], 'calls': calls, 'failed_call': _first_failed(calls)}


def _cuda_ok(cuda):
    if not cuda['opened_as'] or cuda['upstream_error']:
        return False
    rcs = dict((c['call'], c.get('rc')) for c in cuda['calls'] if c['call'] in ('cuInit', 'cuDeviceGetCount'))
    return rcs.get('cuInit') == 0 and rcs.get('cuDeviceGetCount') == 0 and len(cuda['devices']) >= 1


def _result(meta, run, error):
    res = {'ok': False, 'timed_out': False, 'killed': False, 'leftover': False, 'unkillable': False,
           'elapsed': 0.0, 'rc': None, 'signal': None, 'completed': False, 'as_user': meta['as_user'],
           'child': None, 'ld_library_path': meta['ld_library_path'], 'ld_preload': meta['ld_preload'],
           'cuda_visible_devices': meta['cuda_visible_devices'], 'lib_dirs': meta['lib_dirs'],
           'error': error, 'last_call': None, 'output': ''}
    events, foreign = [], []
    if run is not None:
        for k in ('timed_out', 'killed', 'leftover', 'unkillable', 'elapsed', 'rc'):
            res[k] = run[k]
        if isinstance(run['rc'], int) and run['rc'] < 0:
            res['signal'] = SIGNAL_NAMES.get(-run['rc'], 'signal %d' % -run['rc'])
        events, foreign = parse_child_output(run['stdout'])
        foreign += [line for line in run['stderr'].splitlines() if line.strip()]
    secs, pending, start, final = _replay(events)
    res['output'] = '\n'.join(foreign)[-OUTPUT_SHOWN:]
    res['completed'] = final is not None
    res['last_call'] = pending
    if start is not None:
        res['child'] = dict((k, start.get(k)) for k in ('uid', 'euid', 'gid', 'groups', 'python'))
    res['cuda'] = _cuda_section(secs['cuda'])
    res['nvml'] = _nvml_section(secs['nvml'])
    if final is not None and final.get('crash'):
        res['crash'] = final['crash']
    res['ok'] = _cuda_ok(res['cuda'])
    if run is not None and res['error'] is None:
        t = meta.get('timeout')
        if run['unkillable']:
            res['error'] = 'the probe did not die within %.1f s of SIGKILL (stuck in %s; left behind)' % (
                KILL_GRACE, pending or 'an unknown step')
        elif start is None:
            how = ('timed out after %s s' % t if run['timed_out'] else
                   'died by %s' % res['signal'] if res['signal'] else 'exited %s' % run['rc'])
            res['error'] = 'the probe child never started Python as %s (%s)%s' % (
                meta['as_user'], how, ': ' + ' '.join(res['output'].split())[:400] if res['output'] else '')
        elif final is None and run['rc'] == 0:
            res['error'] = 'the probe child exited 0 without its result'
    return res
