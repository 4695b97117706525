# -*- coding: utf-8 -*-
# Checks of the host and the shims: one function per failure code (target side, Python 3.8+ stdlib).
"""NO_DEVICE, SNAP_OLLAMA, UNIT_START_FAILS, GLOBAL_PRELOAD, DRIVER_SHADOW, SHIM_BAD, SHIM_UNREADABLE,
SHIM_UNDEFINED_SYMBOL. Each check reads the facts and returns findings (catalogue.finding).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible.module_utils.vgpu_doctor.catalogue import check, finding
from ansible.module_utils.vgpu_doctor.common import same_file, split_preload
from ansible.module_utils.vgpu_doctor.judge import applied_by, conflict_paths, gpu_start
from ansible.module_utils.vgpu_doctor.log_evidence import preload_failures
from ansible.module_utils.vgpu_fs import readable_by


@check('NO_DEVICE')
def check_no_device(f):
    pci = f.pci
    if pci['nvidia']:
        return []
    ev = {'pci_devices_dir': pci['path'], 'devices_seen': pci['devices'], 'error': pci['error'],
          'require_pci_device': f.params.require_pci_device}
    if not f.params.require_pci_device:
        return [finding('NO_DEVICE', 'info', 'no PCI device with vendor 0x10de (expected here: '
                        'require_pci_device is false, the shim stands in for the device)', ev, 'manual',
                        'nothing to do on a simulated host')]
    return [finding('NO_DEVICE', 'error', 'no PCI device with vendor 0x10de in the guest: the hypervisor does not '
                    'give this VM its paravirtual GPU', ev, 'manual',
                    'on the hypervisor, attach the vGPU profile to this VM and reboot it; nothing in the guest '
                    'can make up for a missing device (remediate does not act)')]


@check('SNAP_OLLAMA')
def check_snap_ollama(f):
    s = f.snap
    if not s['dirs'] and not s['units'] and not s['unit_is_snap']:
        return []
    upstream = f.unit.get('load_state') == 'loaded' and not s['unit_is_snap']
    sev = 'warning' if upstream else 'error'
    summary = ('a snap Ollama is installed besides %s (it may hold port 11434)' % f.params.unit if upstream else
               'Ollama is the snap package: read-only tree, unit %s, confined - the shim cannot be wired in'
               % (', '.join(os.path.basename(u) for u in s['units']) or 'snap.ollama.*'))
    return [finding('SNAP_OLLAMA', sev, summary, {'snap_dirs': s['dirs'], 'snap_units': s['units'],
                                                  'unit_load_state': f.unit.get('load_state'),
                                                  'exec_start': f.unit.get('exec_start')}, 'manual',
                    'remove the snap (snap remove ollama) and install Ollama with its upstream install script, '
                    'then run site.yml (remediate does not touch snaps)')]


@check('UNIT_START_FAILS')
def check_unit_start_fails(f):
    fails = f.predicted['start_fails'] if f.predicted else []
    if not fails:
        return []
    return [finding('UNIT_START_FAILS', 'error', 'the next start of %s fails before Ollama runs: %s' % (
        f.params.unit, fails[0]), {'reasons': fails, 'environment_files': f.predicted['environment_files']}, 'manual',
        'create the missing file, or mark it optional with "-" (EnvironmentFile=-/path) in the unit or its '
        'drop-in, then daemon-reload; remediate restarts nothing while the next start would fail (%s)'
        % '; '.join(fails))]


@check('GLOBAL_PRELOAD')
def check_global_preload(f):
    gp = f.global_preload
    shim_paths = [s['path'] for s in f.shims.values()]
    bad = []
    for o in gp['entries']:
        p = o['path']
        if ('vgpu' in os.path.basename(p).lower() or any(same_file(p, s) for s in shim_paths)
                or o.get('soname') in ('libcuda.so.1', 'libnvidia-ml.so.1') or o.get('exports_cuda')
                or o.get('exports_nvml')):
            bad.append(p)
    if not bad:
        return []
    return [finding('GLOBAL_PRELOAD', 'error',
                    '%s loads %s into every process on the host' % (gp['path'], ', '.join(bad)),
                    {'path': gp['path'], 'entries': bad, 'all_entries': [o['path'] for o in gp['entries']]},
                    'remove_global_preload',
                    'remove %s from %s (delete the file if nothing else is in it); the shim belongs in the '
                    'Ollama unit only' % (', '.join(bad), gp['path']), path=gp['path'], entries=bad)]


@check('DRIVER_SHADOW')
def check_driver_shadow(f):
    out = []
    for d in f.drivers:
        first = d['resolves_first_for']
        ev = {'path': d['path'], 'real_path': d['real'], 'reasons': d['reasons'], 'resolves_first_for': first}
        pkg = [m.group(1) for m in (re.search(r'package (\S+) \((?:dpkg|rpm)\)', r) for r in d['reasons']) if m]
        ev['package'] = pkg[0] if pkg else None
        owner = 'the package %s' % pkg[0] if pkg else 'the NVIDIA driver package that owns %s' % d['real']
        if first:
            out.append(finding('DRIVER_SHADOW', 'error', 'a real NVIDIA driver library %s is what runner(s) %s load '
                               'as %s, not the shim' % (d['real'], ', '.join(first), os.path.basename(d['path'])),
                               ev, 'manual', 'uninstall %s (a guest with the vGPU shim must not have a driver; '
                               'Ollama\'s installer adds one when it sees vendor 0x10de), run ldconfig, then remediate '
                               'again (remediate never removes driver files)' % owner,
                               path=d['real'], package=ev['package']))
        else:
            out.append(finding('DRIVER_SHADOW', 'warning', 'a real NVIDIA driver library %s is on the loader path '
                               '(the shim still wins today; an ldconfig or upgrade may change that)' % d['real'],
                               ev, 'manual', 'uninstall %s' % owner, path=d['real'], package=ev['package']))
    return out


@check('SHIM_BAD')
def check_shim_bad(f):
    out = []
    for kind, s in sorted(f.shims.items()):
        if not s['problems']:
            continue
        ev = {'path': s['path'], 'problems': s['problems'], 'sha256': s['sha256'],
              'expected_sha256': s['expected_sha256'], 'elf': s['elf']}
        fails = [x for x in preload_failures(f) if same_file(x['path'], s['path']) or x['path'] == s['path']]
        if fails:
            ev['log_lines'] = [x['line'] for x in fails]
        out.append(finding('SHIM_BAD', 'error', 'the %s shim %s is unusable: %s' % (kind.upper(), s['path'],
                                                                                   s['problems'][0]),
                           ev, 'reinstall_shim', 'install the %s shim artifact again at %s (vgpu_shim checks its '
                           'ELF, exports and checksum before it lands)' % (kind.upper(), s['path']),
                           path=s['path'], kind=kind, expected_sha256=s['expected_sha256']))
    return out


@check('SHIM_UNREADABLE')
def check_shim_unreadable(f):
    uid, gids = f.unit.get('uid'), f.unit.get('gids')
    if uid is None:
        return []
    out = []
    user = f.unit.get('user')
    paths = [s['path'] for s in f.shims.values() if s['exists']]
    paths += [o['path'] for o in f.preload_entries if o.get('exists') and o['path'] not in paths]
    for p in paths:
        ok, problems = readable_by(p, uid, gids)
        if ok:
            continue
        fails = [x['line'] for x in preload_failures(f) if x['path'] == p]
        fix_paths = []
        for pr in problems:
            m = re.match(r'^(?:directory )?(/.*?) \(mode', pr)
            if m:
                fix_paths.append(m.group(1))
        ev = {'path': p, 'user': user, 'uid': uid, 'gids': gids, 'problems': problems,
              'dynamic_user': f.unit.get('dynamic_user')}
        if fails:
            ev['log_lines'] = fails
        out.append(finding('SHIM_UNREADABLE', 'error', '%s cannot be read by the service user %s: %s'
                           % (p, user, problems[0]), ev, 'fix_shim_mode',
                           'chown root:root and chmod 0755 %s, so every user can read and search them and only '
                           'root can write' % ', '.join(fix_paths or [p]), paths=fix_paths or [p]))
    return out


@check('SHIM_UNDEFINED_SYMBOL')
def check_shim_undefined_symbol(f):
    """Severity from the strongest evidence: a failed load test (error), the log of the current start
    (error; warning when that start found a GPU anyway), the ELF alone (warning: it loads in the service's
    context, e.g. because the CUDA shim is preloaded, but not on its own)."""
    out = []
    cuda_exports = set(f.shims['cuda']['exports']) if f.shims.get('cuda') else set()
    preload = [o['path'] for o in f.preload_entries]
    cuda_path = f.shims['cuda']['path'] if f.shims.get('cuda') else None

    def is_cuda(path):
        return cuda_path is not None and (path == cuda_path or same_file(path, cuda_path))

    gpu = gpu_start(f)
    for kind, test in sorted(f.load_tests.items()):
        shim = f.shims[kind]
        unresolved = test['unresolved'] or []
        lt = test['load_test']
        if lt is not None and lt['ok'] is False:
            sev = 'error'
        elif test['log'] and (lt is None or lt['ok'] is None):
            sev = 'warning' if gpu else 'error'
        elif unresolved or test['log']:
            sev = 'warning'
        else:
            continue    # only our emulation missed a DT_NEEDED library; the real loader found it
        symbols = sorted(set(unresolved + [x['symbol'] for x in test['log'] if x['symbol']]))
        from_cuda = [s for s in symbols if s in cuda_exports]
        ev = {'path': shim['path'], 'unresolved_symbols': symbols, 'needed_not_found': test['needed_missing'],
              'provided_by_cuda_shim': from_cuda, 'load_test': lt,
              'log_lines': [x['line'] for x in test['log']], 'unit_ld_preload': f.unit_env.get('LD_PRELOAD')}
        cuda_preloaded = kind != 'cuda' and any(is_cuda(p) for p in preload)
        preload_src = applied_by(f, 'LD_PRELOAD')
        if from_cuda and not cuda_preloaded and preload_src in conflict_paths(f) \
                and preload_src != f.unit.get('unit_file') \
                and any(is_cuda(p) for p in split_preload(f.our_env.get('LD_PRELOAD'))):
            # our drop-in preloads the CUDA shim; another drop-in's LD_PRELOAD (PRELOAD_CONFLICT) replaces it
            action, fix, text = 'move_conflicting_dropin', {'path': preload_src, 'variables': ['LD_PRELOAD']}, \
                'move %s out of %s (its LD_PRELOAD, without the CUDA shim, wins over %s), daemon-reload and ' \
                'restart' % (preload_src, os.path.dirname(preload_src), os.path.basename(f.dropin_path))
        elif from_cuda and not cuda_preloaded and f.params.preload is not None \
                and not any(is_cuda(p) for p in f.params.preload):
            # the intended preload leaves the CUDA shim out: rendering the drop-in again changes nothing
            action, fix, text = 'manual', {}, \
                'add %s before %s to the preload list (vgpu_dropin_preload) and run site.yml, or rebuild ' \
                'the NVML shim so it does not use CUDA-shim symbols' % (cuda_path, shim['path'])
        elif from_cuda and not cuda_preloaded:
            action, fix, text = 'rewrite_dropin', {'path': f.dropin_path}, \
                'render %s again with the CUDA shim in LD_PRELOAD before %s, daemon-reload and restart; better, ' \
                'rebuild the NVML shim so it does not use CUDA-shim symbols' % (f.dropin_path, shim['path'])
        else:
            action, fix, text = 'manual', {}, 'rebuild %s so that it defines or links (DT_NEEDED) every symbol it ' \
                'uses (%s), then reinstall it' % (shim['path'], ', '.join(symbols) or ', '.join(test['needed_missing']))
        if lt is not None and lt['ok'] is False:
            how = ' (load test as %s with LD_BIND_NOW=1 failed: %s)' % (lt['as'], lt['output'])
        elif sev == 'warning' and lt is not None and lt['ok']:
            how = ' (it loads in the service today only because another preloaded library provides them)'
        else:
            how = ''
        out.append(finding('SHIM_UNDEFINED_SYMBOL', sev, '%s needs %s that nothing it links provides%s' % (
            shim['path'], ', '.join(symbols), how), ev, action, text, **fix))
    for x in f.load_tests_unmatched_log:
        out.append(finding('SHIM_UNDEFINED_SYMBOL', 'warning' if gpu else 'error',
                           '%s: undefined symbol %s in the current start' % (x['library'], x['symbol']),
                           {'path': x['library'], 'unresolved_symbols': [x['symbol']], 'log_lines': [x['line']],
                            'unit_ld_preload': f.unit_env.get('LD_PRELOAD')}, 'manual',
                           'rebuild %s so that it defines or links every symbol it uses, or remove it from '
                           'LD_PRELOAD' % x['library']))
    return out
