# -*- coding: utf-8 -*-
# Gathering the host: processes, shims, links, driver files, PCI, snap, unsafe paths (target side).
"""Facts read from the file system and /proc: the running processes, the shims' ELF, the managed links,
real NVIDIA driver libraries, PCI devices, a snap install and paths a non-root user may write.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import re

from ansible.module_utils.vgpu_doctor.catalogue import PROCESS_VARIABLES
from ansible.module_utils.vgpu_doctor.common import read_small, same_file, sha256_or_none, split_path_list
from ansible.module_utils.vgpu_doctor.params import link_targets, managed_link_dirs
from ansible.module_utils.vgpu_elf import ElfError, STB_WEAK, read_elf, shim_problems
from ansible.module_utils.vgpu_fs import describe, looks_like_nvidia_driver, unsafe_path_components
from ansible.module_utils.vgpu_layout import cuda_dirs
from ansible.module_utils.vgpu_loader import realpath
from ansible.module_utils.vgpu_shim_consumers import REQUIRED_SYMBOLS
from ansible.module_utils.vgpu_systemctl import proc_stat_fields, read_proc_environ


MAX_PROCESSES = 64       # runner processes looked at
NVIDIA_PCI_VENDOR = '0x10de'


def _proc_stat_ppid(proc, pid):
    fields = proc_stat_fields(pid, proc)
    try:
        return int(fields[1])
    except (IndexError, TypeError, ValueError):
        return None


def _proc_maps(proc, pid):
    """Absolute file paths mapped by the process (None if unreadable)."""
    try:
        with open(os.path.join(proc, str(pid), 'maps'), 'rb') as fh:
            raw = fh.read()
    except (IOError, OSError):
        return None
    out = []
    for line in raw.decode('utf-8', 'replace').splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith('/'):
            path = parts[5].replace(' (deleted)', '')
            if path not in out:
                out.append(path)
    return out


def gather_processes(f):
    proc = f.paths.proc
    main = f.unit.get('main_pid') or 0
    if not main:
        return
    children = {}
    try:
        pids = [n for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        ppid = _proc_stat_ppid(proc, pid)
        if ppid:
            children.setdefault(ppid, []).append(int(pid))
    order, queue = [], [(main, 'main')]
    while queue and len(order) < MAX_PROCESSES:
        pid, role = queue.pop(0)
        order.append((pid, role))
        queue.extend((c, 'runner') for c in sorted(children.get(pid, [])))
    shim_real = [realpath(s) for s in (f.params.shim, f.params.nvml_shim) if s]
    for pid, role in order:
        env = read_proc_environ(pid, proc)
        maps = _proc_maps(proc, pid)
        if role == 'main':
            f.running_env = env
            if env is None:
                f.notes.append('cannot read %s/%d/environ' % (proc, pid))
        gpu_libs = [m for m in (maps or []) if re.search(r'/lib(cuda|nvidia-ml|vgpu)[^/]*$', m)]
        f.processes.append({
            'pid': pid, 'role': role,
            'environ_readable': env is not None,
            'env': dict((k, (env or {}).get(k)) for k in PROCESS_VARIABLES if env and k in env),
            'maps_readable': maps is not None,
            'gpu_libraries_mapped': gpu_libs,
            'shim_mapped': None if maps is None else any(s in maps for s in shim_real),
        })


def _shim_facts(path, kind, expected, machine):
    facts = {'path': path, 'kind': kind, 'exists': False, 'kind_on_disk': None, 'sha256': None,
             'expected_sha256': expected, 'problems': [], 'elf': None, 'interposed': [], 'soname': None,
             'undefined': [], 'exports': [], 'needed': []}
    d = describe(path)
    facts['kind_on_disk'] = d['kind']
    if d['kind'] == 'missing' or (d['kind'] == 'symlink' and d.get('dangling')):
        facts['problems'].append('%s does not exist%s' % (
            path, ' (dangling symlink -> %s)' % d['link'] if d['kind'] == 'symlink' else ''))
        return facts
    facts['exists'] = True
    if not os.path.isfile(path):
        facts['problems'].append('%s is a %s, not a regular file' % (path, d['kind']))
        return facts
    facts['sha256'] = sha256_or_none(path)
    try:
        info = read_elf(path)
    except ElfError as e:
        facts['problems'].append(str(e))
        if e.partial is not None:
            facts['problems'].extend('%s %s' % (path, x) for x in shim_problems(e.partial, (), machine, True))
        return facts
    except (IOError, OSError) as e:
        facts['problems'].append('%s cannot be read: %s' % (path, e))
        return facts
    facts['elf'] = info.summary()
    facts['soname'] = info.soname
    facts['needed'] = list(info.needed)
    facts['exports'] = info.exported_symbols()
    facts['interposed'] = info.interposed_symbols()
    facts['undefined'] = sorted(set(s.name for s in info.symbols
                                    if not s.defined and s.name and s.bind != STB_WEAK))
    facts['problems'].extend('%s %s' % (path, x) for x in shim_problems(info, REQUIRED_SYMBOLS[kind], machine))
    if expected and facts['sha256'] and facts['sha256'] != expected:
        facts['problems'].append('%s has sha256 %s, expected %s (a stale or different build)'
                                 % (path, facts['sha256'], expected))
    return facts


def gather_shims(f):
    p = f.params
    f.shims['cuda'] = _shim_facts(p.shim, 'cuda', p.shim_sha256, f.machine)
    if p.nvml_shim:
        f.shims['nvml'] = _shim_facts(p.nvml_shim, 'nvml', p.nvml_sha256, f.machine)


def gather_links(f):
    f.cuda_dirs = cuda_dirs(f.params.ollama_lib_dir)
    for d in managed_link_dirs(f.params):
        dir_ok = os.path.isdir(d)
        for name, target, kind in link_targets(f.params):
            path = os.path.join(d, name)
            item = {'path': path, 'dir': d, 'name': name, 'target': target, 'kind': kind}
            if not dir_ok:
                item['state'] = 'dir_missing'
                f.links.append(item)
                continue
            info = describe(path)
            item['on_disk'] = info['kind']
            if info['kind'] == 'missing':
                item['state'] = 'missing'
            elif info['kind'] == 'symlink':
                item['link'] = info['link']
                if info['dangling']:
                    item['state'] = 'dangling'
                elif same_file(path, target):
                    item['state'] = 'ok'
                else:
                    item['state'] = 'elsewhere'
                    item['resolves_to'] = realpath(path)
            elif info['kind'] == 'file':
                item['sha256'] = sha256_or_none(path)
                if same_file(path, target):
                    item['state'] = 'is_target'   # the shim itself sits under the link name
                elif item['sha256'] and item['sha256'] == sha256_or_none(target):
                    item['state'] = 'copy'
                else:
                    item['state'] = 'foreign_file'
            else:
                item['state'] = 'not_a_file'
            f.links.append(item)


def _toolkit_shim_file(path, cuda_shim):
    """Whether path is one of the toolkit's shims: libvgpu-<kind>.so in the CUDA shim's directory (the names
    vgpu_shim installs)."""
    return (os.path.dirname(path) == os.path.dirname(realpath(cuda_shim))
            and re.match(r'^libvgpu-[a-z]+\.so$', os.path.basename(path)) is not None)


def gather_drivers(f, probe):
    """Files named like driver libraries on the loader path that are not the shim, judged by vgpu_fs."""
    shim = f.shims['cuda']
    candidates = []
    for name in ('libcuda.so.1', 'libnvidia-ml.so.1'):
        candidates.extend(f.cache.get(name, []))
    dirs = list(f.default_dirs) + [l['dir'] for l in f.links] + [f.params.ollama_lib_dir] + f.cuda_dirs
    for d in dirs:
        for pattern in ('libcuda.so*', 'libnvidia-ml.so*'):
            candidates.extend(glob.glob(os.path.join(glob.escape(d), pattern)))
    candidates.extend(r['path'] for r in f.resolution + (f.resolution_after_restart or []) if r['path'])
    seen, out = set(), []
    shims = [s['path'] for s in f.shims.values() if s['exists']]
    shim_shas = set(s['sha256'] for s in f.shims.values() if s['sha256'])
    for c in candidates:
        real = realpath(c)
        if real in seen or not os.path.isfile(real):
            continue
        seen.add(real)
        if any(same_file(real, s) for s in shims) or sha256_or_none(real) in shim_shas:
            continue
        if _toolkit_shim_file(real, shim['path']):
            # another of the toolkit's own shims (vgpu_shim installs libvgpu-<kind>.so beside the CUDA shim),
            # e.g. the NVML shim when the caller did not name it: never a driver
            if 'nvml' in os.path.basename(real) and not f.params.nvml_shim:
                f.notes.append('%s is the toolkit\'s NVML shim but nvml_shim was not given: its links '
                               '(libnvidia-ml.so.1) were not checked' % real)
            continue
        reasons = looks_like_nvidia_driver(real, reference=shim['path'] if shim['exists'] else None,
                                           reference_soname=shim['soname'], dpkg_info_dir=f.paths.dpkg_info_dir)
        if not reasons:
            continue
        if not any('(dpkg)' in r for r in reasons) and f.paths.root == '/':
            rpm = probe.which('rpm')
            if rpm:
                rc, out_, _e = probe.run([rpm, '-qf', '--qf', '%{NAME}', real], timeout=1.0)
                if rc == 0 and out_.strip():
                    reasons.append('it belongs to the package %s (rpm)' % out_.strip())
        first = sorted(set(r['runner'] for r in f.resolution + (f.resolution_after_restart or [])
                           if r['path'] and realpath(r['path']) == real))
        out.append({'path': c, 'real': real, 'reasons': reasons, 'resolves_first_for': first})
    f.drivers = out


def gather_pci(f):
    base = f.paths.pci_devices
    f.pci = {'path': base, 'devices': 0, 'nvidia': [], 'error': None}
    try:
        names = sorted(os.listdir(base))
    except OSError as e:
        f.pci['error'] = '%s: %s' % (base, e.strerror)
        return
    f.pci['devices'] = len(names)
    for n in names:
        vendor = (read_small(os.path.join(base, n, 'vendor'), 64) or '').strip().lower()
        if vendor == NVIDIA_PCI_VENDOR:
            f.pci['nvidia'].append({
                'slot': n, 'vendor': vendor,
                'device': (read_small(os.path.join(base, n, 'device'), 64) or '').strip(),
                'class': (read_small(os.path.join(base, n, 'class'), 64) or '').strip()})


def gather_snap(f):
    f.snap = {'dirs': [d for d in f.paths.snap_dirs if os.path.exists(d)],
              'units': sorted(glob.glob(os.path.join(glob.escape(f.paths.systemd_dir), 'snap.ollama.*')))}
    frag = f.unit.get('fragment_path') or ''
    f.snap['unit_is_snap'] = '/snap/' in (f.unit.get('exec_start') or '') or os.path.basename(frag).startswith('snap.')


def gather_unsafe(f):
    """Paths whose content decides what the service loads, with a non-root writer (PRELOAD_HIJACK_RISK)."""
    paths = [s['path'] for s in f.shims.values() if s['exists']]
    paths += [o['path'] for o in f.preload_entries if o.get('exists')]
    paths += [d for d in split_path_list(f.unit_env.get('LD_LIBRARY_PATH')) if os.path.isabs(d) and os.path.isdir(d)]
    if os.path.isdir(f.params.ollama_lib_dir):
        paths += [f.params.ollama_lib_dir] + f.cuda_dirs
    seen, out = set(), []
    for p in paths:
        for comp in unsafe_path_components(p):
            if comp['path'] in seen:
                continue
            seen.add(comp['path'])
            comp['reached_from'] = p
            out.append(comp)
    f.unsafe = out
