# -*- coding: utf-8 -*-
# The live driver probe's result: the child's output read back (target side, Python 3.8+ stdlib, no Ansible).
"""``probe_result(meta, run, error)``: one probe's result from what its child printed (``parse_child_output``)
and how it ended (vgpu_probe.run_bounded); the CUresult / nvmlReturn_t names of its calls.

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
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import signal

try:
    from ansible.module_utils.vgpu_probe_child import MARKER
except ImportError:     # imported on its own (module_utils on sys.path), without Ansible
    from vgpu_probe_child import MARKER

KILL_GRACE = 0.2         # seconds to wait for the child after SIGKILL before giving up on it
OUTPUT_SHOWN = 2000      # characters of foreign output in the result

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


def probe_result(meta, run, error):
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
