# -*- coding: utf-8 -*-
# What real consumers need from a vGPU shim (target side, Python 3.8+ stdlib only).
"""The catalogue of who loads a shim and which exports each needs, with its upstream evidence.

Exports a shim must provide, per kind (the SHIM_BAD check in the design's failure catalogue): the union
of what the programs that load it really look up or link against. Each consumer is named with its
upstream evidence (path:line@tag in github.com/ollama/ollama), per symbol, so that a refusal can say who
needs a missing export (describe_need). REQUIRED_SYMBOLS['cuda'] and ['nvml'] are derived from this
table. CONSUMER_SYMBOL_PATTERNS says which undefined symbols of a consumer file on the host a shim of
each kind has to provide (vgpu_elf.consumer_needs reads them off the file).

Pure data and lookups: no ELF parsing here (module_utils/vgpu_elf.py reads files and judges them).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re


class SymbolNeed(object):
    """One entry point a consumer cannot do without: where it is looked up or called, and what for."""
    __slots__ = ('name', 'where', 'purpose')

    def __init__(self, name, where, purpose=None):
        self.name = name
        self.where = where
        self.purpose = purpose

    def __repr__(self):
        return 'SymbolNeed(%r, %r)' % (self.name, self.where)


class ShimConsumer(object):
    """A real program or library that loads a shim of ``kind``, and the exports it needs from it."""
    __slots__ = ('kind', 'name', 'source', 'how', 'needs')

    def __init__(self, kind, name, source, how, needs):
        self.kind = kind
        self.name = name
        self.source = source    # the evidence for the whole list
        self.how = how          # why a missing symbol breaks it
        self.needs = tuple(needs)

    @property
    def symbols(self):
        return [n.name for n in self.needs]

    def __repr__(self):
        return 'ShimConsumer(%r, %r)' % (self.kind, self.name)


def _needs(where, **lines):
    """[SymbolNeed] in keyword order: name=line or name=(line, purpose); the evidence is ``where % line``
    (``where`` itself when line is None)."""
    out = []
    for name, spec in lines.items():
        line, purpose = spec if isinstance(spec, tuple) else (spec, None)
        out.append(SymbolNeed(name, where if line is None else where % line, purpose))
    return out


_NVCUDA = 'discover/gpu_info_nvcuda.c:%d@v0.11.10'
_PROBE = 'discover/native_probe_linux.go:%d@v0.30.11'
_GGML_CU = 'ml/backend/ggml/ggml/src/ggml-cuda/ggml-cuda.cu:%s@v0.13.5'
_GGML_COMMON = 'ml/backend/ggml/ggml/src/ggml-cuda/common.cuh:%d@v0.13.5'
_MEM_NVML = 'ml/backend/ggml/ggml/src/mem_nvml.cpp:%s@v0.13.5'
_ENTRY_POINTS = 'CUDA Driver API docs, "Driver Entry Point Access"; no in-repo evidence'
_VMM = 'VMM pool'
_DRIVER_MAJOR = 'NVIDIA driver major'

SHIM_CONSUMERS = (
    # Ollama <= 0.12.3 (and back to 0.5.7 at least): GPU discovery in the server process dlsym()s every one
    # of these from libcuda.so.1; a NULL for any of them abandons the library ("Unable to load ... library
    # to query for Nvidia GPUs"). discover/gpu_info_nvcuda.c:22-31@v0.11.10; the same list at :21-30@v0.5.7.
    ShimConsumer('cuda', 'Ollama <=0.12.3 GPU discovery', 'discover/gpu_info_nvcuda.c:22-31@v0.11.10',
                 'dlsym()ed at load, all mandatory: one missing and the CUDA library is skipped',
                 _needs(_NVCUDA, cuInit=22, cuDriverGetVersion=23, cuDeviceGetCount=24, cuDeviceGet=25,
                        cuDeviceGetAttribute=26, cuDeviceGetUuid=27, cuDeviceGetName=28, cuCtxCreate_v3=29,
                        cuMemGetInfo_v2=30, cuCtxDestroy=31)),
    # Ollama 0.30.x native probe (probeCUDADriverLinux, discover/native_probe_linux.go:250-283@v0.30.11):
    # dlsym()s these, any error ends the probe. cuDeviceTotalMem_v2 falls back to cuDeviceTotalMem (:279,
    # dlsymAny); the default asks for the _v2 name every real libcuda since CUDA 3.2 exports.
    # cuDeviceGetPCIBusId (:283) is optional and not required here.
    ShimConsumer('cuda', 'Ollama 0.30 native GPU probe', 'discover/native_probe_linux.go:250-283@v0.30.11',
                 'dlsym()ed before any call; an error ends the probe (no CUDA GPU)',
                 _needs(_PROBE, cuInit=255, cuDriverGetVersion=259, cuDeviceGetCount=263, cuDeviceGet=267,
                        cuDeviceGetAttribute=271, cuDeviceGetName=275,
                        cuDeviceTotalMem_v2=(279, 'device memory query (it also takes cuDeviceTotalMem)'))),
    # libggml-cuda.so links CUDA::cuda_driver unless GGML_CUDA_NO_VMM
    # (ml/backend/ggml/ggml/src/ggml-cuda/CMakeLists.txt:115-119@v0.13.5), so it has DT_NEEDED libcuda.so.1
    # and undefined references to these; ggml dlopen()s it RTLD_NOW
    # (ml/backend/ggml/ggml/src/ggml-backend-reg.cpp:173@v0.13.5), so every one must resolve or the CUDA
    # backend does not load at all ("undefined symbol: ..."). The VMM calls only run when device attribute
    # 102 (CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED) is non-zero (ggml-cuda.cu:283-293 and
    # the pool choice at :652-656@v0.13.5), but the references are there regardless.
    ShimConsumer('cuda', 'libggml-cuda.so', 'ml/backend/ggml/ggml/src/ggml-cuda/CMakeLists.txt:115-119@v0.13.5',
                 'undefined symbols of a library dlopen()ed RTLD_NOW '
                 '(ml/backend/ggml/ggml/src/ggml-backend-reg.cpp:173@v0.13.5): one missing and the CUDA '
                 'backend fails to load',
                 _needs(_GGML_CU, cuDeviceGet=(282, 'VMM support check'),
                        cuDeviceGetAttribute=(283, 'VMM support check (attribute 102)'),
                        cuMemGetAllocationGranularity=(290, _VMM), cuMemCreate=(569, _VMM),
                        cuMemAddressReserve=(576, _VMM), cuMemMap=(581, _VMM), cuMemRelease=('583,588', _VMM),
                        cuMemSetAccess=(595, _VMM), cuMemUnmap=('539,542,596', _VMM),
                        cuMemAddressFree=(544, _VMM))
                 + _needs(_GGML_COMMON, cuGetErrorString=(222, 'CU_CHECK error messages'))),
    # The CUDA runtime (libcudart.so.NN, bundled in lib/ollama/cuda_vNN) dlopen()s libcuda.so.1 and
    # resolves every driver entry point it uses through cuGetProcAddress (CUDA 11.3+) / cuGetProcAddress_v2
    # (CUDA 12), and needs cuGetExportTable for its private driver interfaces: NVIDIA CUDA Driver API
    # documentation, "Driver Entry Point Access". No in-repo evidence (closed source). A shim cannot provide
    # NVIDIA's private tables; the export must still exist (the reference shim answers it with
    # CUDA_ERROR_NOT_SUPPORTED), since a missing one fails the runtime before it gets that far.
    ShimConsumer('cuda', 'the CUDA runtime (libcudart)',
                 'NVIDIA CUDA Driver API documentation, "Driver Entry Point Access" (no in-repo evidence: '
                 'libcudart is closed source; Ollama bundles it in lib/ollama/cuda_vNN)',
                 'looked up by the runtime when it loads the driver',
                 _needs(_ENTRY_POINTS, cuGetProcAddress=(None, 'entry points (CUDA 11.3+ runtimes)'),
                        cuGetProcAddress_v2=(None, 'entry points (CUDA 12+ runtimes)'),
                        cuGetExportTable=(None, 'private driver interfaces'))),
    # Ollama 0.12.5-0.13.x: ggml's NVML memory query (ggml_nvml_init) dlsym()s these from libnvidia-ml.so.1;
    # the first five are checked for NULL (mem_nvml.cpp:184), nvmlErrorString is not but is called on every
    # error path (:192, :209), so a shim without it crashes the runner instead of failing cleanly.
    ShimConsumer('nvml', 'Ollama 0.12.5-0.13 ggml NVML memory query', _MEM_NVML % '178-184',
                 'dlsym()ed; a NULL fails the NVML memory query (nvmlErrorString: a crash on an error path)',
                 _needs(_MEM_NVML, nvmlInit_v2=178, nvmlShutdown=179, nvmlDeviceGetHandleByUUID=180,
                        nvmlDeviceGetMemoryInfo=181, nvmlDeviceGetName=182,
                        nvmlErrorString=('183,192,209', 'error messages'))),
    # Ollama 0.30.x native probe, probeNVIDIADriverMajorLinux (discover/native_probe_linux.go:392-404
    # @v0.30.11): any dlsym error and the NVIDIA driver major reads as 0.
    ShimConsumer('nvml', 'Ollama 0.30 native GPU probe', 'discover/native_probe_linux.go:392-404@v0.30.11',
                 'dlsym()ed; an error loses the NVIDIA driver major',
                 _needs(_PROBE, nvmlInit_v2=(396, _DRIVER_MAJOR), nvmlShutdown=(400, _DRIVER_MAJOR),
                        nvmlSystemGetDriverVersion=(404, _DRIVER_MAJOR))),
    # This toolkit's own probe (its child, module_utils/vgpu_probe_child.py, run for vgpu_doctor) calls it after
    # upstream's calls.
    ShimConsumer('nvml', "this toolkit's probe", 'module_utils/vgpu_probe_child.py', "the doctor's device count",
                 _needs('module_utils/vgpu_probe_child.py', nvmlDeviceGetCount_v2=(None, 'device count'))),
)


def _union(kind):
    out = []
    for c in SHIM_CONSUMERS:
        if c.kind == kind:
            out.extend(n for n in c.symbols if n not in out)
    return out


REQUIRED_SYMBOLS = {
    'cuda': _union('cuda'),
    'nvml': _union('nvml'),
    # what GPU discovery calls; cudaGetDeviceProperties/cudaMalloc are left to required_symbols because
    # minimal runtime shims (the project's reference one included) leave them out
    'cudart': ['cudaGetDeviceCount', 'cudaGetDevice', 'cudaSetDevice', 'cudaMemGetInfo', 'cudaDriverGetVersion',
               'cudaRuntimeGetVersion', 'cudaGetErrorString'],
}


def symbol_consumers(name):
    """[(ShimConsumer, SymbolNeed)] for every consumer in SHIM_CONSUMERS that needs the export name."""
    return [(c, n) for c in SHIM_CONSUMERS for n in c.needs if n.name == name]


def describe_need(name):
    """``name (needed by <consumer> for its <purpose>, <path:line@tag>; ...)``, or just name when no known
    consumer needs it (a symbol the caller added to required_symbols)."""
    parts = []
    for c, n in symbol_consumers(name):
        parts.append('%s%s, %s' % (c.name, ' for its %s' % n.purpose if n.purpose else '', n.where))
    return '%s (needed by %s)' % (name, '; '.join(parts)) if parts else name


# ---- consumer files on the host (host evidence) -------------------------------------------------------
# Which undefined symbols of a consumer a shim of each kind has to provide, by name: the driver API is
# "cu" + a capital (cuInit, cuMemCreate); cudaXxx, cublasXxx, cufftXxx, ... come from the runtime
# libraries Ollama bundles, never from libcuda. NVML is "nvml" + a capital. A cudart shim is not judged
# by consumer files (the runtime libggml-cuda.so links is the one Ollama ships next to it).
CONSUMER_SYMBOL_PATTERNS = {
    'cuda': re.compile(r'^cu[A-Z]'),
    'nvml': re.compile(r'^nvml[A-Z]'),
}
