# -*- coding: utf-8 -*-
# Which libcuda.so.1 the runners get: loader cache, preloads, the runner and in-process models (target).
"""The loader view of the facts: the loader's cache and default dirs, /etc/ld.so.preload and LD_PRELOAD, and
where each runner (or, before Ollama 0.12.4, the server's own discovery) finds libcuda.so.1.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct

from ansible.module_utils.vgpu_doctor.common import (
    read_small, same_file, sha256_or_none, split_path_list, split_preload,
)
from ansible.module_utils.vgpu_doctor.log_evidence import log_version
from ansible.module_utils.vgpu_elf import ElfError
from ansible.module_utils.vgpu_loader import (
    emulate_loader, go_glob, loader_candidate, parse_ld_so_cache, parse_ldconfig_p, read_elf_cached, realpath,
    system_search_dirs,
)


def gather_loader(f, probe):
    f.default_dirs, source = system_search_dirs(f.paths, probe, f.machine)
    f.notes.append('loader default dirs from %s: %s' % (source, ':'.join(f.default_dirs)))
    try:
        with open(f.paths.ld_so_cache, 'rb') as fh:
            f.cache = parse_ld_so_cache(fh.read(), f.machine)
        f.cache_source = f.paths.ld_so_cache
        return
    except (IOError, OSError) as e:
        reason = str(e)
    except (ValueError, struct.error) as e:
        reason = 'unreadable format (%s)' % e
    f.cache = {}
    ldconfig = probe.which('ldconfig') if f.paths.root == '/' else None
    if ldconfig:
        rc, out, _err = probe.run([ldconfig, '-p'], timeout=1.5)
        if rc == 0:
            f.cache = parse_ldconfig_p(out, f.machine)
            f.cache_source = 'ldconfig -p'
            return
    f.cache_source = None
    f.notes.append('loader cache not used: %s' % reason)


def _preload_object(path, step, f):
    """A preloaded object as the loader sees it: None when it cannot be loaded at all."""
    uid, gids = f.unit.get('uid'), f.unit.get('gids')
    verdict, reason = loader_candidate(path, f.machine, uid, gids)
    obj = {'path': path, 'step': step, 'loads': verdict == 'load', 'reason': reason, 'soname': None,
           'interposed': []}
    if verdict == 'load':
        try:
            info = read_elf_cached(path)
            obj['soname'] = info.soname
            obj['interposed'] = info.interposed_symbols()
            obj['exports_cuda'] = 'cuInit' in info.exported_symbols()
            obj['exports_nvml'] = 'nvmlInit_v2' in info.exported_symbols()
        except (ElfError, IOError, OSError) as e:
            obj.update(loads=False, reason=str(e))
    return obj


def _preload_path(f, entry, env):
    """The file an LD_PRELOAD entry names: a bare name (no '/') is searched like a library."""
    if '/' in entry:
        return entry
    r = emulate_loader(entry, [], split_path_list(env.get('LD_LIBRARY_PATH')), f.cache, f.default_dirs, f.machine)
    return r['path'] or entry


def gather_preload(f):
    gp = f.paths.ld_so_preload
    text = read_small(gp)
    f.global_preload = {'path': gp, 'exists': text is not None, 'entries': []}
    for entry in split_preload(text or ''):
        if entry.startswith('#'):
            continue
        obj = _preload_object(entry, '/etc/ld.so.preload', f)
        f.global_preload['entries'].append(obj)
    f.preload_entries = []
    for entry in split_preload(f.unit_env.get('LD_PRELOAD')):
        path = _preload_path(f, entry, f.unit_env)
        obj = _preload_object(path, 'LD_PRELOAD', f)
        obj['entry'] = entry
        obj['exists'] = os.path.exists(path)
        obj['source'] = f.env_sources.get('LD_PRELOAD')
        f.preload_entries.append(obj)


def _preload_objects_for(f, env):
    objs = list(f.global_preload['entries'])
    if env is f.unit_env:
        return [o for o in f.preload_entries] + objs
    return [_preload_object(_preload_path(f, e, env), 'LD_PRELOAD', f) for e in split_preload(env.get('LD_PRELOAD'))] \
        + objs


def _runner_resolution(f, env):
    """[{runner, name, path, real, step, is_shim, ...}] for each cuda_v* runner and link name."""
    preloaded = [o for o in _preload_objects_for(f, env) if o['loads']]
    uid, gids = f.unit.get('uid'), f.unit.get('gids')
    out = []
    service_path = split_path_list(env.get('LD_LIBRARY_PATH'))
    backend_first = runner_backend_first(f)
    for d in f.cuda_dirs:
        # Ollama puts its own dirs before the service's LD_LIBRARY_PATH. Discovery since 0.12 runs
        # lib/ollama then the backend dir (the OLLAMA_LIBRARY_PATH of its "failure during GPU discovery"
        # lines); the model runners of 0.5-0.11 prepended the backend dir to lib/ollama.
        own = [d, f.params.ollama_lib_dir] if backend_first else [f.params.ollama_lib_dir, d]
        search = own + service_path
        for name, target, kind in [('libcuda.so.1', f.params.shim, 'cuda')] + (
                [('libnvidia-ml.so.1', f.params.nvml_shim, 'nvml')] if f.params.nvml_shim else []):
            r = emulate_loader(name, preloaded, search, f.cache, f.default_dirs, f.machine, uid, gids)
            r['runner'] = os.path.basename(d)
            r['search_path'] = search
            r['real'] = realpath(r['path']) if r['path'] else None
            r['is_shim'] = bool(r['path']) and same_file(r['path'], target)
            r['copy_of_shim'] = False
            if r['path'] and not r['is_shim']:
                sha = sha256_or_none(r['path'])
                r['copy_of_shim'] = bool(sha) and sha == f.shims.get(kind, {}).get('sha256')
            r['ok'] = bool(r['path']) and not r['error'] and (r['is_shim'] or r['copy_of_shim'])
            r['target'] = target
            out.append(r)
    return out


def runner_backend_first(f):
    """True when the Ollama in the log is older than 0.12 (backend dir before lib/ollama in the runner's
    LD_LIBRARY_PATH); the 0.12+ order when the version is unknown."""
    version = log_version(f)
    return version is not None and version < (0, 12, 0)


# How Ollama finds libcuda for GPU discovery, by release (the simulator's fidelity table has the rows):
# before 0.12.4 the server itself globs for libcuda.so* and dlopen()s each match by its resolved full path
# (FindGPULibs, gpu/gpu.go:467-527@v0.3.6, discover/gpu.go:513-577@v0.5.7, :498-559@v0.11.4) - the dynamic
# loader's search (LD_PRELOAD, LD_LIBRARY_PATH as a search path, ld.so.cache) plays no part; from 0.12.4 a
# runner subprocess loads libggml-cuda.so, whose DT_NEEDED libcuda.so.1 the loader resolves.
IN_PROCESS_BEFORE = (0, 12, 4)
BUNDLED_FIRST_FROM = (0, 3, 14)    # Ollama's lib dir searched first (not @v0.3.6; LibraryDirs() @v0.5.7)
NVCUDA_GLOBS = (                   # gpu/gpu_linux.go:29-39@v0.3.6 = discover/gpu_linux.go:33-43@v0.5.7,@v0.11.4
    '/usr/local/cuda*/targets/*/lib/libcuda.so*', '/usr/lib/*-linux-gnu/nvidia/current/libcuda.so*',
    '/usr/lib/*-linux-gnu/libcuda.so*', '/usr/lib/wsl/lib/libcuda.so*', '/usr/lib/wsl/drivers/*/libcuda.so*',
    '/opt/cuda/lib*/libcuda.so*', '/usr/local/cuda/lib*/libcuda.so*', '/usr/lib*/libcuda.so*',
    '/usr/local/lib*/libcuda.so*')


def discovery_model(f):
    """{'mechanism': 'in_process' | 'runner', 'ollama_version', 'reasoned_for'}: which upstream discovery the
    resolution checks model, from the Ollama version of the current start's log."""
    version = log_version(f)
    shown = '.'.join(str(x) for x in version) if version else None
    if version is not None and version < IN_PROCESS_BEFORE:
        return {'mechanism': 'in_process', 'ollama_version': shown,
                'reasoned_for': 'Ollama %s (before 0.12.4): the server globs for libcuda.so* in %sLD_LIBRARY_PATH '
                                'and fixed system dirs and dlopen()s each file by its path; LD_PRELOAD and '
                                'ld.so.cache do not count' % (shown, 'its lib dir, ' if version >= BUNDLED_FIRST_FROM
                                                              else '')}
    return {'mechanism': 'runner', 'ollama_version': shown,
            'reasoned_for': ('Ollama %s (0.12.4+)' % shown if shown else 'Ollama of unknown version, taken as '
                             '0.12.4+') + ': a runner process loads libggml-cuda.so and the dynamic loader resolves '
                                          'its libcuda.so.1'}


def _follow_links(path):
    """FindGPULibs' readlink loop: one link at a time, relative targets joined to the link's dir."""
    lib = path
    for _ in range(40):
        try:
            target = os.readlink(lib)
        except OSError:
            break
        lib = target if os.path.isabs(target) else os.path.normpath(os.path.join(os.path.dirname(lib), target))
    return lib


def in_process_candidates(f, env):
    """[(pattern, match, resolved path)] in the order FindGPULibs tries them, de-duplicated like upstream."""
    version = log_version(f) or (0, 0, 0)
    patterns = []
    if version >= BUNDLED_FIRST_FROM:
        patterns.append(os.path.join(f.params.ollama_lib_dir, 'libcuda.so*'))
    for d in (env.get('LD_LIBRARY_PATH') or '').split(':'):
        patterns.append(os.path.join(os.path.abspath(d) if d else '/', 'libcuda.so*'))  # "" is the unit's cwd
    patterns += [f.paths.join(g) for g in NVCUDA_GLOBS]
    out, seen = [], set()
    for pat in patterns:
        for m in go_glob(pat):
            lib = _follow_links(m)
            if lib not in seen:
                seen.add(lib)
                out.append((pat, m, lib))
    return patterns, out


def _in_process_resolution(f, env):
    """One record shaped like a runner's: the libcuda.so* file in-process discovery settles on. Each candidate
    is tried in turn and the first that initialises wins, so a failing driver library before the shim does not
    shadow it; the record's path is the first candidate that is the shim (or a copy), else the first one."""
    patterns, cands = in_process_candidates(f, env)
    target = f.params.shim
    sha = f.shims.get('cuda', {}).get('sha256')
    tried = []
    chosen = None
    for pat, match, lib in cands:
        is_shim = os.path.exists(lib) and same_file(lib, target)
        copy = not is_shim and bool(sha) and sha256_or_none(lib) == sha
        tried.append({'pattern': pat, 'match': match, 'path': lib, 'is_shim': is_shim, 'copy_of_shim': copy})
        if chosen is None and (is_shim or copy):
            chosen = tried[-1]
    pick = chosen or (tried[0] if tried else None)
    r = {'runner': 'in-process discovery', 'name': 'libcuda.so*', 'path': pick['match'] if pick else None,
         'real': pick['path'] if pick else None, 'step': ('glob %s' % pick['pattern']) if pick else None,
         'is_shim': bool(pick and pick['is_shim']), 'copy_of_shim': bool(pick and pick['copy_of_shim']),
         'error': None if tried else 'no file matches libcuda.so* in %s' % ', '.join(patterns),
         'search_path': patterns, 'candidates': tried, 'target': target}
    r['ok'] = bool(chosen)
    if tried and not chosen:
        r['error'] = 'none of %s is the shim %s' % (', '.join(t['path'] for t in tried), target)
    return [r]


def gather_resolution(f):
    f.discovery = discovery_model(f)
    resolve = _in_process_resolution if f.discovery['mechanism'] == 'in_process' else _runner_resolution
    after = resolve(f, f.unit_env)
    running = f.running_env
    if running is not None and any(running.get(v) != f.unit_env.get(v) for v in ('LD_PRELOAD', 'LD_LIBRARY_PATH')):
        f.resolution = resolve(f, running)
        for r in f.resolution:
            r['env'] = 'running'
        for r in after:
            r['env'] = 'unit'
        f.resolution_after_restart = after
    else:
        for r in after:
            r['env'] = 'running' if running is not None else 'unit'
        f.resolution = after
        f.resolution_after_restart = after
