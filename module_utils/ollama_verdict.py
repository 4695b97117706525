# -*- coding: utf-8 -*-
# Judging a parsed Ollama start (target side, Python 3.8+ stdlib only).
"""What a parsed start (``ollama_log.parse_log`` / ``follow_log``'s result) means for the caller.

``judge_libraries`` judges a start against the GPU libraries the shims serve (a Vulkan-only start beside a
CUDA shim is ``other_library``); ``check_expectations`` lists what misses the caller's expectation and
minimums, ``hint_for`` says what to look at next and ``summarize`` writes the one human line.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible.module_utils.ollama_log import device_libraries
from ansible.module_utils.ollama_log_record import format_size, parse_size

# --------------------------------------------------------------------------- devices


def total_vram_bytes(devices):
    return sum(d.get('total_bytes') or 0 for d in devices)


def _device_label(dev):
    name = dev.get('description') or dev.get('name') or dev.get('id') or 'GPU'
    return '%s %s' % (name, dev.get('total') or format_size(dev.get('total_bytes')) or '?')


# --------------------------------------------------------------------------- GPU libraries
#
# Since 0.30 Ollama probes Vulkan by default (envconfig/config.go:234@v0.30.11 EnableVulkan =
# BoolWithDefault("OLLAMA_VULKAN"), called as EnableVulkan(true) in discover/runner.go:99@v0.30.11) and merges
# a device that two libraries report under the same PCI id, keeping CUDA/ROCm (discover/runner.go:200-213 and
# ml/device.go:451-459 Compare, ml/device.go:678-686 PreferredLibrary@v0.30.11). So a host whose CUDA shim
# fails can still log `library=Vulkan` for the very same paravirtual GPU: GPU mode, but not through the shim.
# The helpers below judge a start against the libraries the caller's shims serve.

# the spelling Ollama logs since 0.12 (discover/llama_server.go:468 inferLibrary@v0.30.11); older eras log
# lower case (library=cuda, rocm)
LIBRARY_SPELLING = {'cuda': 'CUDA', 'rocm': 'ROCm', 'vulkan': 'Vulkan', 'metal': 'Metal', 'cpu': 'cpu'}


def library_label(name):
    """``cuda`` -> ``CUDA``, ``rocm`` -> ``ROCm``; other names as given."""
    return LIBRARY_SPELLING.get((name or '').strip().lower(), name or '?')


def normalize_libraries(library):
    """The required GPU libraries as lower-case names, in order, no duplicates; ``[]`` means any library.

    Takes None, a name (``cuda``), a comma or blank separated text (``cuda, rocm``; ``''`` is any), or a list
    of those.
    """
    if library is None:
        return []
    items = [library] if isinstance(library, (str, bytes)) else list(library)
    out = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, bytes):
            item = item.decode('utf-8', 'replace')
        for word in re.split(r'[\s,]+', str(item)):
            word = word.strip().lower()
            if word and word not in out:
                out.append(word)
    return out


def judge_libraries(result, library=None):
    """The parser's result judged against the GPU libraries the caller's shims serve.

    Returns ``verdict`` - ``gpu`` (a device of one of those libraries; with ``library`` empty any GPU device),
    ``cpu``, ``unknown`` (as ``mode``), or ``other_library``: Ollama is in GPU mode, but every device it found is
    of another library (a Vulkan fallback beside a broken CUDA shim) -; ``required_libraries`` (normalized
    ``library``), ``libraries`` (of all GPU devices, as logged), ``library_devices`` (the devices of the required
    libraries, all GPU devices when none is required) and ``other_devices`` (the rest).
    """
    required = normalize_libraries(library)
    devices = list(result.get('devices') or [])
    mode = result.get('mode') or 'unknown'
    ours, others = [], []
    for dev in devices:
        if not required or (dev.get('library') or '').strip().lower() in required:
            ours.append(dev)
        else:
            others.append(dev)
    verdict = 'other_library' if mode == 'gpu' and not ours else mode
    return {'verdict': verdict, 'required_libraries': required, 'libraries': device_libraries(devices),
            'library_devices': ours, 'other_devices': others}


def _libraries_text(required, joiner=' or '):
    return joiner.join(library_label(lib) for lib in required)


def other_library_problem(result, library):
    """``no CUDA device: Ollama found only Vulkan (1 device), so the CUDA shim is not in use``."""
    required = normalize_libraries(library)
    devices = result.get('devices') or []
    return 'no %s device: Ollama found only %s (%d device%s), so the %s shim is not in use' % (
        _libraries_text(required), ' and '.join(device_libraries(devices)), len(devices),
        '' if len(devices) == 1 else 's', _libraries_text(required, '/'))


REMEDIATE_HINT = 'run playbooks/remediate.yml (the vgpu_doctor module finds the cause, remediate applies the ' \
                 'safe fixes and judges the new start)'


def hint_for(result, expect='gpu', library=None):
    """One sentence that says what to look at next, from the discovery errors and the devices."""
    kinds = [e['kind'] for e in result.get('discovery_errors', [])]
    mode = result.get('mode')
    required = normalize_libraries(library)
    if mode == 'gpu' and expect == 'cpu':
        return 'Ollama found %d GPU(s) although expect=cpu: check CUDA_VISIBLE_DEVICES/OLLAMA_LLM_LIBRARY ' \
               'in the unit environment, or set expect to gpu or any' % len(result.get('devices', []))
    if mode == 'gpu' and required and judge_libraries(result, required)['verdict'] == 'other_library':
        found = device_libraries(result.get('devices', []))
        how = 'fell back to Vulkan (probed by default since Ollama 0.30)' if 'vulkan' in [
            lib.lower() for lib in found] else 'found only %s devices' % ' and '.join(found)
        return 'the %s backend found no device and Ollama %s: the %s shim path (libcuda.so.1 links, the ' \
               'LD_PRELOAD drop-in) is broken; %s' % (_libraries_text(required, '/'), how,
                                                      _libraries_text(required, '/'), REMEDIATE_HINT)
    if 'preload_failed' in kinds:
        return 'LD_PRELOAD names a library the loader cannot open (see discovery_errors): fix the shim ' \
               'path in /etc/systemd/system/ollama.service.d/ and restart ollama (PRELOAD_MISSING_FILE); ' \
               + REMEDIATE_HINT
    if 'undefined_symbol' in kinds:
        return 'a shim needs a symbol no loaded library provides (see discovery_errors): rebuild the NVML ' \
               'shim without CUDA-shim symbols or fix the LD_PRELOAD order (SHIM_UNDEFINED_SYMBOL); ' \
               + REMEDIATE_HINT
    if 'shared_library' in kinds:
        return 'a library could not be loaded (see discovery_errors): check the loader path ' \
               '(ldconfig -p, /etc/ld.so.conf.d) of the shim; ' + REMEDIATE_HINT
    if 'discovery_timeout' in kinds:
        return 'GPU discovery timed out (DISCOVERY_TIMEOUT): the runner hung probing the CUDA backend; ' \
               'check that the shim answers cuInit quickly and the host side of the vGPU is up'
    if mode == 'cpu':
        return 'no GPU backend reported a device: check the libcuda.so.1 links under ' \
               '/usr/local/lib/ollama/cuda_v*/ and that the vgpu drop-in is applied (restart ollama after ' \
               'changing it); ' + REMEDIATE_HINT
    if mode == 'unknown':
        if result.get('starts', 0) == 0:
            return 'no Ollama server start (server config / Listening on line) in the log: is this the ' \
                   'right log, and is ollama running (journalctl -u ollama -n 50)?'
        return 'no "inference compute" line for this start yet: discovery may still be running (raise ' \
               'timeout) or ollama is restarting in a loop (journalctl -u ollama -n 50)'
    if mode == 'gpu':
        return 'the GPUs Ollama found do not meet the minimums: check CUDA_VISIBLE_DEVICES in the unit ' \
               'environment and the vGPU profile the host gives this guest'
    return ''


def check_expectations(result, expect='gpu', min_devices=1, min_total_vram=None, library=None):
    """List of problems (empty when the verdict is what was asked for).

    ``library`` (a name, a comma-separated text or a list; empty = any) is what the shims serve: in GPU mode
    only its devices count, and a start whose GPU devices are all of another library is a problem
    (``other_library_problem``). With expect=any the mode itself is never a problem, and the device minimums
    and ``library`` apply only to GPU mode.
    """
    problems = []
    mode = result.get('mode')
    if expect != 'any':
        if mode == 'unknown':
            problems.append('no verdict: the current Ollama start has not reported its compute devices')
            return problems
        if mode != expect:
            problems.append('Ollama runs in %s mode, expected %s' % (mode.upper(), expect.upper()))
            return problems
    if mode != 'gpu' or expect == 'cpu':
        return problems
    required = normalize_libraries(library)
    judged = judge_libraries(result, required)
    if judged['verdict'] == 'other_library':
        problems.append(other_library_problem(result, required))
        return problems
    devices = judged['library_devices']
    if len(devices) < (min_devices or 0):
        problems.append('%d GPU device(s)%s, at least %d required' % (
            len(devices), ' of library %s' % _libraries_text(required) if required else '', min_devices))
    need = parse_size(min_total_vram) if min_total_vram not in (None, '') else None
    if need:
        have = total_vram_bytes(devices)
        if have < need:
            problems.append('total VRAM %s, at least %s required' % (format_size(have), format_size(need)))
    return problems


def summarize(result, problems=None, hint=None, library=None):
    """One human line: ``GPU (1 device: vH100 79.6 GiB, CUDA, ollama 0.13.5)`` or ``CPU — hint``.

    With ``library`` (what the shims serve) a GPU start whose devices are all of another library reads
    ``VULKAN ONLY (1 device: …, Vulkan, ollama 0.30.1) — no CUDA device: …``.
    """
    mode = result.get('mode') or 'unknown'
    version = result.get('ollama_version')
    tail = ['ollama %s' % version] if version else []
    if mode == 'gpu':
        devices = result.get('devices', [])
        libs = device_libraries(devices)
        label = 'GPU'
        if judge_libraries(result, library)['verdict'] == 'other_library':
            label = '%s ONLY' % '+'.join(lib.upper() for lib in libs)
        text = '%s (%d device%s: %s, %s)' % (
            label, len(devices), '' if len(devices) == 1 else 's',
            ' + '.join(_device_label(d) for d in devices), ', '.join(libs + tail))
    elif mode == 'cpu':
        text = 'CPU' + (' (%s)' % ', '.join(tail) if tail else '')
    else:
        text = 'UNKNOWN' + (' (%s)' % ', '.join(tail) if tail else '')
    if problems:
        text += ' \u2014 ' + '; '.join(problems)
        if hint:
            text += ': ' + hint
    return text
