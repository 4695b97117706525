# -*- coding: utf-8 -*-
# The live driver probe's child program (target side, Python 3.8+ stdlib, no imports at all).
"""``CHILD_CODE``: the Python program vgpu_probe runs in a fresh, isolated interpreter to dlopen libcuda.so.1
and libnvidia-ml.so.1 the way Ollama's native GPU probe does and call the driver API, announcing each step
on stdout (lines starting with ``MARKER``). vgpu_probe.probe_command builds its argv; vgpu_probe_result
reads what it printed.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

CUDA_NAMES = ('libcuda.so.1', 'libcuda.so')             # discover/native_probe_linux.go:250@v0.30.11
NVML_NAMES = ('libnvidia-ml.so.1', 'libnvidia-ml.so')   # discover/native_probe_linux.go:392@v0.30.11
MARKER = '{"vgpu_probe":'

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
