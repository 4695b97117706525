# -*- coding: utf-8 -*-
# What the current start's log says, as the doctor's checks read it (target side, Python 3.8+ stdlib).
"""Views of ``f.log``: the parser's result, discovery errors by kind, the GPU-mode verdict for the shims'
libraries, "cannot be preloaded" and "undefined symbol" lines.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible.module_utils.ollama_verdict import judge_libraries
from ansible.module_utils.vgpu_doctor.common import version_tuple


_PRELOAD_FAIL_RE = re.compile(
    r"object '([^']+)' from (LD_PRELOAD|/etc/ld\.so\.preload) cannot be preloaded \(([^)]*)\)")


_UNDEFINED_RE = re.compile(r'(/\S+?):? undefined symbol: ([A-Za-z0-9_@.]+)')


def log_result(f):
    """The parser's result for the current start, or None when no start was found."""
    if not f.log or not f.log.get('result') or not f.log['result'].get('starts'):
        return None
    return f.log['result']


def log_errors(f, kind):
    res = log_result(f)
    if not res:
        return []
    return [e['line'] for e in res.get('discovery_errors', []) if e['kind'] == kind]


def log_version(f):
    res = log_result(f)
    return version_tuple(res.get('ollama_version')) if res else None


# the GPU libraries the shims serve: a start whose only GPU devices are Vulkan is not the CUDA shim at work
SHIM_LIBRARIES = ('cuda',)


def log_mode(f):
    """The current start judged against the shims' libraries: gpu, cpu, unknown, or other_library (GPU mode, but
    on another library only - a Vulkan fallback beside a failing CUDA shim); None without a start."""
    res = log_result(f)
    return judge_libraries(res, SHIM_LIBRARIES)['verdict'] if res else None


def verdict(f):
    res = log_result(f)
    if not res:
        return None
    judged = judge_libraries(res, SHIM_LIBRARIES)
    return {'mode': res['mode'], 'verdict': judged['verdict'], 'libraries': judged['libraries'],
            'devices': res['devices'], 'ollama_version': res['ollama_version'],
            'started_at': res['started_at'], 'discovery_errors': res['discovery_errors'],
            'evidence': res['evidence'], 'source': f.log.get('source')}


def preload_failures(f):
    """[{'path', 'reason', 'line'}] from "cannot be preloaded" lines of the current start."""
    out = []
    for line in log_errors(f, 'preload_failed'):
        m = _PRELOAD_FAIL_RE.search(line)
        if m:
            out.append({'path': m.group(1), 'reason': m.group(3), 'line': line})
    return out


def undefined_symbol_lines(f):
    out = []
    for line in log_errors(f, 'undefined_symbol'):
        m = _UNDEFINED_RE.search(line)
        out.append({'library': m.group(1) if m else None, 'symbol': m.group(2) if m else None, 'line': line})
    return out
