# -*- coding: utf-8 -*-
# Checks of the links, the live driver probe and discovery: one function per code (target side).
"""LINK_MISSING, LINK_WRONG, DRIVER_HANG, DRIVER_API_ERROR, DRIVER_ZERO_DEVICES, DRIVER_TOO_OLD, NVML_MISSING,
DISCOVERY_TIMEOUT.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible.module_utils.vgpu_doctor.catalogue import check, finding
from ansible.module_utils.vgpu_doctor.common import version_tuple
from ansible.module_utils.vgpu_doctor.judge import (
    gpu_start, how_resolved, link_severity, loaded_is_shim, probe_where, resolution_ok, short_resolution,
    static_cause,
)
from ansible.module_utils.vgpu_doctor.log_evidence import log_errors, log_mode, log_result
from ansible.module_utils.vgpu_doctor.probes import judged_probe, probe_evidence
from ansible.module_utils.vgpu_loader import realpath


@check('LINK_MISSING')
def check_link_missing(f):
    missing = [l for l in f.links if l['state'] == 'missing']
    if not missing:
        return []
    sev = link_severity(f)
    ev = {'paths': [l['path'] for l in missing], 'targets': sorted(set(l['target'] for l in missing)),
          'runner_resolves_shim': resolution_ok(f), 'discovery': f.discovery,
          'resolution': [short_resolution(r) for r in f.resolution_after_restart or []],
          'log_lines': log_errors(f, 'shared_library')}
    out = []
    for target in sorted(set(l['target'] for l in missing)):
        group = [l for l in missing if l['target'] == target]
        out.append(finding('LINK_MISSING', sev, '%d link(s) to %s missing: %s%s' % (
            len(group), target, ', '.join(l['path'] for l in group),
            '' if sev == 'error' else ' (the runners still load the shim: %s)' % how_resolved(f)),
            dict(ev, paths=[l['path'] for l in group]), 'relink',
            'run cuda_links for %s (names %s) to recreate them' % (
                target, ', '.join(sorted(set(l['name'] for l in group)))),
            target=target, names=sorted(set(l['name'] for l in group)), paths=[l['path'] for l in group],
            replace_files=False))
    return out


@check('LINK_WRONG')
def check_link_wrong(f):
    out = []
    drivers = set(d['real'] for d in f.drivers)
    wrong = []
    for l in f.links:
        st = l['state']
        if st in ('ok', 'missing', 'dir_missing', 'is_target'):
            continue
        if st in ('elsewhere', 'foreign_file') and realpath(l['path']) in drivers:
            continue   # DRIVER_SHADOW reports it; remediate must not replace a driver
        wrong.append(l)
    if wrong:
        resolved_paths = set(r['path'] for r in f.resolution_after_restart or [] if not r['ok'] and r['path'])
        loaded_wrong = [l['path'] for l in wrong if l['path'] in resolved_paths]
        only_copies = all(l['state'] == 'copy' for l in wrong)
        sev = 'error' if loaded_wrong or (not only_copies and resolution_ok(f) is not True) else 'warning'
        for target in sorted(set(l['target'] for l in wrong)):
            group = [l for l in wrong if l['target'] == target]
            desc = []
            for l in group:
                if l['state'] == 'dangling':
                    desc.append('%s dangles (-> %s)' % (l['path'], l['link']))
                elif l['state'] == 'elsewhere':
                    desc.append('%s -> %s' % (l['path'], l['link']))
                elif l['state'] == 'copy':
                    desc.append('%s is a regular-file copy of the shim' % l['path'])
                elif l['state'] == 'foreign_file':
                    desc.append('%s is a regular file that is not the shim (sha256 %s)' % (l['path'], l.get('sha256')))
                else:
                    desc.append('%s is a %s' % (l['path'], l.get('on_disk')))
            files = any(l['state'] in ('copy', 'foreign_file') for l in group)
            out.append(finding('LINK_WRONG', sev, '; '.join(desc), {
                'links': [dict((k, l.get(k)) for k in ('path', 'state', 'link', 'sha256', 'resolves_to'))
                          for l in group],
                'loaded_by_runner': loaded_wrong, 'target': target}, 'relink',
                'run cuda_links for %s%s to point them at the shim' % (
                    target, ' with replace_files: true (the files are kept as hidden backups)' if files else ''),
                target=target, names=sorted(set(l['name'] for l in group)), paths=[l['path'] for l in group],
                replace_files=files))
    # a wrong libcuda.so.1 found by a runner outside the managed links
    managed = set(l['path'] for l in f.links)
    stray = {}
    for r in f.resolution_after_restart or []:
        if (r['path'] and not r['ok'] and r['path'] not in managed and realpath(r['path']) not in drivers
                and not (r['step'] or '').startswith(('LD_PRELOAD', '/etc/ld.so.preload'))):
            stray.setdefault(r['path'], []).append(r['runner'])
    for path, runners in sorted(stray.items()):
        out.append(finding('LINK_WRONG', 'error', 'runner(s) %s load %s, which is not the shim' % (
            ', '.join(sorted(set(runners))), path), {'path': path, 'real_path': realpath(path),
                                                   'runners': sorted(set(runners))}, 'manual',
            'remove or rename %s (not managed by this toolkit), or put the shim before it on the runner\'s path'
            % path, path=path))
    return out


@check('DRIVER_HANG')
def check_driver_hang(f):
    r = judged_probe(f)
    if not r or not r.get('timed_out'):
        return []
    c = r.get('cuda') or {}
    sev = 'error' if log_mode(f) != 'gpu' else 'warning'
    return [finding('DRIVER_HANG', sev, 'the driver API did not return within %.1f s: the probe hung in %s of %s (%s)'
                    % (r.get('elapsed') or 0, r.get('last_call') or 'the driver', c.get('loaded') or 'libcuda.so.1',
                       probe_where(r)),
                    {'probe': probe_evidence(r), 'unkillable': r.get('unkillable'),
                     'log_lines': log_errors(f, 'discovery_timeout')}, 'manual',
                    'the shim waits for its host side: check the hypervisor\'s vGPU service for this VM (and the '
                    'shim\'s own log); restarting Ollama would hang in GPU discovery the same way, so remediate does '
                    'not restart it')]


# what a CUresult means for a vGPU guest, and what to do (cuda.h error values)
_DRIVER_ERROR_ADVICE = {
    100: 'the shim finds no device: the host side gives this VM no vGPU (check the VM\'s vGPU assignment on the '
         'hypervisor)',
    999: 'the shim cannot complete cuInit (CUDA_ERROR_UNKNOWN): it typically cannot reach its host side - check '
         'the hypervisor\'s vGPU service and the shim\'s own log',
    34: 'this is the CUDA toolkit\'s stub library (cuda/lib64/stubs: it exists only to link against): remove it '
        'from the loader path, or point the link at the shim',
    3: 'the driver was not initialised (CUDA_ERROR_NOT_INITIALIZED)',
    101: 'the device ordinal is invalid (check CUDA_VISIBLE_DEVICES and the shim\'s device list)',
    304: 'the shim\'s host-side call failed (CUDA_ERROR_OPERATING_SYSTEM)',
}


@check('DRIVER_API_ERROR')
def check_driver_api_error(f):
    r = judged_probe(f)
    if not r or r.get('timed_out') or r.get('ok'):
        return []
    c = r.get('cuda') or {}
    if r.get('error') and not c.get('attempted'):
        f.notes.append('driver probe did not run: %s%s' % (r['error'], ' (%s)' % r['output'] if r.get('output') else ''))
        return []
    fc = c.get('failed_call')
    if not c.get('dlopen_error') and not fc:
        return []       # loaded and answered: zero devices (DRIVER_ZERO_DEVICES) or a crash without a call record
    loaded = c.get('loaded')
    is_shim = loaded_is_shim(f, loaded)
    if c.get('dlopen_error'):
        what = 'libcuda.so.1 cannot be loaded: %s' % c['dlopen_error']
        advice = 'the loader finds no usable libcuda.so.1 for the service: the link and loader findings say why'
    elif fc.get('error') == 'symbol not found':
        what = '%s (%s) has no %s' % (loaded, c.get('loaded_as'), fc.get('call'))
        advice = 'the library loaded as libcuda.so.1 lacks the driver API'
    else:
        what = '%s of %s returned %s %s' % (fc.get('call'), loaded, fc.get('rc'), fc.get('error'))
        advice = _DRIVER_ERROR_ADVICE.get(fc.get('rc'), 'the driver call fails')
    # a static finding (links, driver, the shim's own ELF or checksum) explains the failure: its fix comes first
    # and this one only says what the loaded file does. Otherwise the shim itself fails: nothing in the guest helps
    explained = static_cause(f)
    sev = 'error' if log_mode(f) != 'gpu' and not explained else 'warning'
    text = '%s%s' % (advice, '' if is_shim or not loaded else ' (%s is not the shim %s)' % (
        loaded, (f.shims.get('cuda') or {}).get('path')))
    return [finding('DRIVER_API_ERROR', sev, 'the driver API fails for the service: %s (%s)' % (what, probe_where(r)),
                    {'probe': probe_evidence(r), 'loaded_is_shim': is_shim, 'explained_by_static_findings': explained},
                    'manual', text + '; remediate changes nothing for it')]


@check('DRIVER_ZERO_DEVICES')
def check_driver_zero_devices(f):
    r = judged_probe(f)
    if not r or r.get('timed_out'):
        return []
    c = r.get('cuda') or {}
    if c.get('failed_call') or c.get('dlopen_error') or c.get('device_count') != 0:
        return []
    return [finding('DRIVER_ZERO_DEVICES', 'error' if log_mode(f) != 'gpu' else 'warning',
                    'cuInit of %s succeeds but cuDeviceGetCount reports no device (%s)' % (c.get('loaded'), probe_where(r)),
                    {'probe': probe_evidence(r), 'loaded_is_shim': loaded_is_shim(f, c.get('loaded'))}, 'manual',
                    'the shim reports no device for this VM: check the vGPU assignment on the host side (and '
                    'CUDA_VISIBLE_DEVICES); nothing in the guest can add one')]


_CUDART_RE = re.compile(r'^libcudart\.so\.(\d+)(?:\.(\d+))?')     # discover/llama_server.go:197@v0.30.11


def cuda_runtime_version(dirs):
    """The CUDA runtime Ollama's driver gate assumes for a backend: the highest libcudart.so.<maj>.<min> in its
    lib dirs, else the cuda_vNN dir name with minor 0 (cudaRuntimeVersion, discover/llama_server.go:400@v0.30.11)."""
    found = []
    for d in dirs:
        matches = [_CUDART_RE.match(n) for n in _names_in(d)] + [re.match(r'^cuda_v(\d+)()$', os.path.basename(d))]
        found += [(int(m.group(1)), int(m.group(2) or 0)) for m in matches if m]
    return max(found) if found else None


def _names_in(path):
    """The entries of a directory ([] when it cannot be listed)."""
    try:
        return os.listdir(path)
    except OSError:
        return []


def driver_gate(ollama_version, runtime, compute_major, nvidia_major):
    """(required major or None, rule) of Ollama's driver gate for a CUDA device of the cuda_v12 backend
    (filterOldCUDADriver, discover/cuda_compat.go:21-85@v0.30.11; v0.30.0-v0.30.10 checked only compute < 7
    against 570, discover/cuda_compat.go:10-45@v0.30.1). None: the device is kept."""
    if not nvidia_major or ollama_version is None or ollama_version < (0, 30, 0):
        return None, None
    old_cc = 0 < (compute_major or 0) < 7
    if ollama_version < (0, 30, 11):
        return (570, 'compute capability < 7.0 needs 570 (Ollama 0.30.0-0.30.10)') if old_cc and nvidia_major < 570 \
            else (None, None)
    if not runtime or runtime[0] != 12 or nvidia_major >= 570:
        return None, None
    if runtime >= (12, 4) and nvidia_major < 550:
        return 550, 'the CUDA %d.%d runtime of cuda_v12 may use compressed fatbins: 550 or newer' % runtime
    if runtime >= (12, 8) and old_cc:
        return 570, 'compute capability < 7.0 is JIT-compiled by the CUDA %d.%d runtime: 570 or newer' % runtime
    return None, None


@check('DRIVER_TOO_OLD')
def check_driver_too_old(f):
    r = judged_probe(f)
    if not r:
        return []
    nv, c = r.get('nvml') or {}, r.get('cuda') or {}
    major = nv.get('driver_major')
    if not major:
        return []
    res = log_result(f)
    version = version_tuple(res.get('ollama_version')) if res else None
    v12 = [d for d in f.cuda_dirs if os.path.basename(d) == 'cuda_v12']
    runtime = cuda_runtime_version([f.params.ollama_lib_dir] + v12) if v12 else None
    ccs = [int((d.get('compute') or '0').split('.')[0] or 0) for d in c.get('devices') or [] if d.get('compute')]
    cc = min(ccs) if ccs else None
    need, rule = driver_gate(version, runtime, cc, major)
    lines = [l for l in log_errors(f, 'gpu_warning') if 'NVIDIA driver too old' in l]
    ev = {'nvml_driver_version': nv.get('driver_version'), 'driver_major': major, 'ollama_version':
          res.get('ollama_version') if res else None, 'cuda_v12_runtime': '%d.%d' % runtime if runtime else None,
          'compute_capability': cc, 'required': need, 'rule': rule, 'log_lines': lines, 'nvml': nv.get('loaded')}
    fix = 'make the shim report the host\'s real driver: install an NVML shim build that reports %d or newer ' \
          '(nvmlSystemGetDriverVersion), or keep Ollama below 0.30.11 until then; remediate changes nothing for it'
    if need:
        return [finding('DRIVER_TOO_OLD', 'error' if log_mode(f) != 'gpu' or lines else 'warning',
                        'NVML (%s) reports NVIDIA driver %s; Ollama %s drops CUDA devices below %d (%s)%s' % (
                            nv.get('loaded'), nv.get('driver_version'), res.get('ollama_version') if res else '?',
                            need, rule, ': "NVIDIA driver too old" in the current start' if lines else ''),
                        ev, 'manual', fix % need)]
    # not gated by this Ollama, but by the next: 0.30.11+ with its CUDA 12.8 runtime needs 550
    later, _rule = driver_gate((0, 30, 11), (12, 8), cc, major)
    if later and (version is None or version < (0, 30, 11)):
        return [finding('DRIVER_TOO_OLD', 'warning', 'NVML reports NVIDIA driver %s: Ollama 0.30.11 and later drop '
                        'CUDA devices below %d (this Ollama, %s, does not check yet)' % (
                            nv.get('driver_version'), later, res.get('ollama_version') if res else 'unknown'),
                        ev, 'manual', fix % later)]
    return []


@check('NVML_MISSING')
def check_nvml_missing(f):
    r = judged_probe(f)
    if not r or r.get('timed_out'):
        return []
    c, nv = r.get('cuda') or {}, r.get('nvml') or {}
    if not nv.get('attempted') or (nv.get('loaded') and not nv.get('failed_call')):
        return []
    fc = nv.get('failed_call')
    what = nv.get('dlopen_error') or '%s returned %s %s' % (fc.get('call'), fc.get('rc'), fc.get('error'))
    lines = [l for l in log_errors(f, 'gpu_warning') if 'could not verify NVIDIA driver' in l]
    ev = {'probe': probe_evidence(r), 'nvml_shim': f.params.nvml_shim, 'log_lines': lines}
    if f.params.nvml_shim:
        text = 'the NVML shim %s is configured but the service does not get it (%s): the shim and link findings ' \
               'say why' % (f.params.nvml_shim, what)
    else:
        text = 'give Ollama an NVML shim - vgpu_shim_nvml_src in the inventory: site.yml preloads it and links ' \
               'libnvidia-ml.so.1 - so that Ollama 0.30.11+ can check the driver version it reports'
    return [finding('NVML_MISSING', 'warning', 'libnvidia-ml.so.1 is not usable for the service: %s%s' % (
        what, '; Ollama logs "could not verify NVIDIA driver compatibility for CUDA"' if lines else ''), ev, 'manual',
        text)]


@check('DISCOVERY_TIMEOUT')
def check_discovery_timeout(f):
    lines = log_errors(f, 'discovery_timeout')
    if not lines:
        return []
    gpu = gpu_start(f)
    probe = judged_probe(f)
    ev = {'log_lines': lines, 'mode': log_mode(f), 'source': (f.log or {}).get('source'),
          'probe_hangs': bool(probe and probe.get('timed_out'))}
    summary = 'GPU discovery timed out in the current start (%d runner(s))%s' % (
        len(lines), '; another backend found the GPU' if gpu else '')
    if probe is not None and (probe.get('timed_out') or not probe.get('ok')):
        # the live probe fails the same way now: a restart is not predicted to change anything
        return [finding('DISCOVERY_TIMEOUT', 'warning' if gpu else 'error', summary, ev, 'manual',
                        'the live driver probe fails too (DRIVER_HANG / DRIVER_API_ERROR): a restart would time out '
                        'again - check the host side of the vGPU')]
    return [finding('DISCOVERY_TIMEOUT', 'warning' if gpu else 'error', summary, ev, 'restart',
                    'restart %s once; if it times out again the shim hangs in cuInit - check the host side of the '
                    'vGPU (the guest cannot fix that)' % f.params.unit, daemon_reload=False)]
