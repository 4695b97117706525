# -*- coding: utf-8 -*-
# Judgements several of the doctor's checks share (target side, Python 3.8+ stdlib).
"""Helpers of the checks_* modules: whether the runners resolve the shim, which file decides a variable, the
fixes that take a variable away from the service, short evidence records.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible.module_utils.vgpu_doctor.common import same_file, sha256_or_none, split_path_list, split_preload
from ansible.module_utils.vgpu_doctor.log_evidence import log_mode
from ansible.module_utils.vgpu_doctor.params import intended_preload
from ansible.module_utils.vgpu_unit_env import describe_source, removal_plan


def gpu_start(f):
    """Whether the current start is in GPU mode on the shim's library."""
    return log_mode(f) == 'gpu'


def resolution_ok(f, after_restart=True):
    """True when every runner resolves every managed name to its shim (None when there is no runner)."""
    res = f.resolution_after_restart if after_restart else f.resolution
    if not res:
        return None
    return all(r['ok'] for r in res)


def loaded_is_shim(f, path):
    """Whether the file the driver probe loaded is the CUDA shim (the file itself or a copy of it)."""
    shim = f.shims.get('cuda') or {}
    if not path:
        return False
    return same_file(path, shim.get('path')) or (bool(shim.get('sha256')) and sha256_or_none(path) == shim['sha256'])


def static_cause(f):
    """A static finding explains why the runners do not get the shim (its fix comes first)."""
    return resolution_ok(f) is False or any(s['problems'] for s in f.shims.values()) or \
        any(d['resolves_first_for'] for d in f.drivers)


def applied_by(f, variable):
    """The file whose setting decides variable for the service: the one that set it last, or the one whose
    UnsetEnvironment= removes it."""
    return f.env_sources.get(variable) or f.unset_by.get(variable)


def conflict_paths(f):
    """The files of the PRELOAD_CONFLICT candidates."""
    return set(c['path'] for c in f.conflicts)


def env_fix(f, variable, what):
    """The fix for a variable the service must not have, by where it comes from: our drop-in (rendered from the
    inventory: refused by remediate with the inventory step) or anywhere else (unset_env at every source)."""
    src = f.env_records.get(variable) or {}
    if src.get('kind') == 'environment' and src.get('path') == f.dropin_path:
        return 'rewrite_dropin', {'path': src['path'], 'variable': variable}, \
            'render %s again without %s (check the inventory: it came from our own variables), daemon-reload ' \
            'and restart %s' % (src['path'], what, f.params.unit)
    return unset_fix(f, [variable])


def unset_fix(f, variables):
    """('unset_env', fix, fix_text) taking ``variables`` out of every source that gives them to the next start
    except our own drop-in (whose value then applies): fix.sources are vgpu_unit_env.source_fix() entries,
    fix.editable says whether remediate may do it all; fix_text has the exact manual step otherwise."""
    keep = [f.dropin_path]
    sources = []
    for v in variables:
        for s in removal_plan(f.predicted, v, f.params.unit, f.paths.systemd_dir, f.paths.root):
            if s.get('kind') == 'environment' and s.get('path') in keep:
                continue
            sources.append(dict(s, variable=v))
    editable = bool(sources) and all(s['editable'] for s in sources)
    winner = f.env_records.get(variables[0]) or {}
    fix = {'variable': variables[0], 'variables': list(variables), 'sources': sources, 'editable': editable,
           'keep': keep, 'path': f.env_sources.get(variables[0]),
           'source': describe_source(winner) if winner else None}
    where = '; '.join('%s from %s' % (s['variable'], s['location']) for s in sources) or 'nowhere'
    if editable:
        text = 'take %s out where it is set (%s; systemd_env_unset keeps each original as a hidden backup), ' \
               'daemon-reload and restart %s' % (', '.join(variables), where, f.params.unit)
    else:
        text = ' / '.join(s['manual'] for s in sources if not s['editable']) or \
            'find what sets %s for %s' % (', '.join(variables), f.params.unit)
    return 'unset_env', fix, text


def desired_env_problems(f, env):
    """[(variable, problem)]: what env lacks for the strategy and the intended preload (missing drop-in,
    wrong paths)."""
    p = f.params
    problems = []
    want = intended_preload(p)
    if want:
        entries = split_preload(env.get('LD_PRELOAD'))
        pos = []
        for w in want:
            idx = [i for i, e in enumerate(entries) if e == w or same_file(e, w)]
            if not idx:
                problems.append(('LD_PRELOAD', 'LD_PRELOAD of the unit does not contain %s' % w))
            else:
                pos.append(idx[0])
        if len(pos) == len(want) and pos != sorted(pos):
            shims = [p.shim, p.nvml_shim]
            problems.append(('LD_PRELOAD', 'LD_PRELOAD has the NVML shim before the CUDA shim' if want == shims else
                             'LD_PRELOAD does not have %s in this order' % ', '.join(want)))
    if p.strategy == 'library_path':
        shim_dir = os.path.dirname(p.shim)
        dirs = split_path_list(env.get('LD_LIBRARY_PATH'))
        if not dirs or os.path.normpath(dirs[0]) != os.path.normpath(shim_dir):
            problems.append(('LD_LIBRARY_PATH', 'LD_LIBRARY_PATH of the unit does not start with %s' % shim_dir))
    return problems


def link_severity(f):
    return 'warning' if resolution_ok(f) else 'error'


def how_resolved(f):
    steps = sorted(set(r['step'] for r in f.resolution_after_restart or [] if r['step']))
    return ', '.join(steps) or 'n/a'


def short_resolution(r):
    return {'runner': r['runner'], 'name': r['name'], 'path': r['path'], 'step': r['step'], 'ok': r['ok']}


def probe_where(r):
    return 'as %s, with the next start\'s environment and LD_LIBRARY_PATH=%s' % (
        r.get('as_user'), r.get('ld_library_path') or '')
