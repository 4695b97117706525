# -*- coding: utf-8 -*-
# The doctor's parameters: one typed record, validated once (target side, Python 3.8+ stdlib).
"""``normalize_params(module_params)`` -> ``Params``; what the parameters imply (managed link dirs and names,
the intended LD_PRELOAD). Fallbacks come from vgpu_layout.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import os
import re

from ansible.module_utils.vgpu_fs import normalize_sha256
from ansible.module_utils.vgpu_layout import (
    CUDA_SHIM, DROPIN, OLLAMA_LIB_DIR, UNIT, cuda_dirs, default_link_dirs, shim_dir, unique_dirs,
)
from ansible.module_utils.vgpu_probe import PROBE_TIMEOUT

# The module's options (library/vgpu_doctor.py argument_spec), with the value a missing one takes.
PARAM_DEFAULTS = collections.OrderedDict([
    ('unit', UNIT),
    ('strategy', 'preload'),
    ('shim', None),               # normalize_params: vgpu_layout's shim dir for the strategy + CUDA_SHIM
    ('nvml_shim', None),
    ('shim_sha256', None),
    ('nvml_sha256', None),
    ('link_names', None),
    ('link_dirs', None),
    ('ollama_lib_dir', OLLAMA_LIB_DIR),
    ('dropin', DROPIN),
    ('require_pci_device', True),
    ('log_timeout', 0),
    ('log_path', None),
    ('load_test', True),
    ('preload', None),
    ('history_path', None),
    ('driver_probe', 'auto'),
    ('probe_timeout', PROBE_TIMEOUT),
    ('root', '/'),
])


class Params(collections.namedtuple('Params', list(PARAM_DEFAULTS))):
    """The doctor's parameters, validated and defaulted (``normalize_params``); read as attributes."""
    __slots__ = ()

    @classmethod
    def make(cls, values):
        """A record from a dict of option values (a missing or None option takes PARAM_DEFAULTS' value,
        except the ones whose None means "not given"); an unknown option raises TypeError."""
        unknown = sorted(set(values) - set(PARAM_DEFAULTS))
        if unknown:
            raise TypeError('unknown vgpu_doctor parameters: %s' % ', '.join(unknown))
        merged = dict(PARAM_DEFAULTS)
        for k, v in values.items():
            if v is not None or PARAM_DEFAULTS[k] is None:
                merged[k] = v
        return cls(**merged)


def as_params(params):
    """params as a Params record (a dict of options is taken as already normalized)."""
    return params if isinstance(params, Params) else Params.make(params)


def intended_preload(p):
    """The LD_PRELOAD entries our drop-in is meant to have, in order: the preload parameter (the operator's
    vgpu_dropin_preload), else the strategy's - both shims for preload, none for library_path."""
    if p.preload is not None:
        return list(p.preload)
    if p.strategy == 'preload':
        return [p.shim] + ([p.nvml_shim] if p.nvml_shim else [])
    return []


def managed_link_dirs(p):
    """link_dirs (or the strategy's default) plus, for preload, every existing cuda_v* dir; de-duplicated."""
    dirs = list(p.link_dirs) if p.link_dirs else default_link_dirs(p.strategy, os.path.dirname(p.shim),
                                                                   p.ollama_lib_dir)
    if p.strategy == 'preload':
        dirs += cuda_dirs(p.ollama_lib_dir)
    return unique_dirs(dirs)


def link_targets(p):
    """[(link name, shim path, kind)] the links must point at."""
    names = list(p.link_names or [])
    if not names:
        names = ['libcuda.so.1'] + (['libnvidia-ml.so.1'] if p.nvml_shim else [])
    out = []
    for n in names:
        if 'nvidia-ml' in n:
            if p.nvml_shim:
                out.append((n, p.nvml_shim, 'nvml'))
        else:
            out.append((n, p.shim, 'cuda'))
    return out


def normalize_params(p):
    """The module's options as a Params record: strategy-dependent defaults filled (vgpu_layout), paths
    normalized; raise ValueError with a sentence on bad input."""
    p = dict(p)
    for key in ('unit', 'strategy', 'ollama_lib_dir', 'dropin'):
        if p.get(key) is None:
            p[key] = PARAM_DEFAULTS[key]
    if not p.get('shim'):
        p['shim'] = os.path.join(shim_dir(p['strategy']), CUDA_SHIM)
    for key in ('shim', 'nvml_shim', 'ollama_lib_dir', 'log_path'):
        if p.get(key) and not os.path.isabs(p[key]):
            raise ValueError('%s must be an absolute path, got %r' % (key, p[key]))
    for key in ('shim', 'nvml_shim', 'ollama_lib_dir'):
        if p.get(key):
            p[key] = os.path.normpath(p[key])
    for d in p.get('link_dirs') or []:
        if not os.path.isabs(d):
            raise ValueError('link_dirs must be absolute paths, got %r' % d)
    if p.get('preload') is not None:
        for e in p['preload']:
            if not e or not os.path.isabs(e) or ':' in e or re.search(r'\s', e):
                raise ValueError('preload must list absolute paths without ":" or whitespace, got %r' % (e,))
        p['preload'] = [os.path.normpath(e) for e in p['preload']]
    for n in p.get('link_names') or []:
        if not n or '/' in n:
            raise ValueError('link_names must be plain file names, got %r' % n)
    if '/' in (p.get('dropin') or '/') or not p['dropin'].endswith('.conf'):
        raise ValueError('dropin must be a file name ending in .conf, got %r' % p.get('dropin'))
    for key in ('shim_sha256', 'nvml_sha256'):
        if p.get(key):
            p[key] = normalize_sha256(p[key])
    if (p.get('log_timeout') or 0) < 0:
        raise ValueError('log_timeout must be 0 or more seconds')
    p.setdefault('history_path', None)
    p.setdefault('driver_probe', 'auto')
    p.setdefault('probe_timeout', PROBE_TIMEOUT)
    if p['history_path'] and not os.path.isabs(p['history_path']):
        raise ValueError('history_path must be an absolute path, got %r' % p['history_path'])
    if p['driver_probe'] not in ('auto', 'always', 'never'):
        raise ValueError('driver_probe must be auto, always or never, got %r' % p['driver_probe'])
    if not 0 < float(p['probe_timeout']) <= 120:
        raise ValueError('probe_timeout must be more than 0 and at most 120 seconds, got %r' % p['probe_timeout'])
    return Params.make(p)
