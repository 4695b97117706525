# -*- coding: utf-8 -*-
# Load tests and the live driver probe of the doctor (target side, Python 3.8+ stdlib).
"""The two things the doctor runs as the service user: a dlopen load test of a shim whose symbols may not
resolve, and the live driver-API probe (vgpu_probe) with the next start's environment.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sys
import time

from ansible.module_utils.vgpu_doctor.common import same_file, visible_device_count
from ansible.module_utils.vgpu_doctor.log_evidence import log_mode, undefined_symbol_lines
from ansible.module_utils.vgpu_elf import ElfError
from ansible.module_utils.vgpu_fs import resolve_gid
from ansible.module_utils.vgpu_loader import emulate_loader, read_elf_cached
from ansible.module_utils.vgpu_probe import PROBE_TIMEOUT, user_argv


LOAD_TEST_TIMEOUT = 1.0  # seconds per load test (at most one per shim), less when the budget is spent


def _needed_exports(needed, f, depth=0, seen=None):
    """(exports, missing): symbols exported by the DT_NEEDED closure of a library, and names not found."""
    seen = set() if seen is None else seen
    exports, missing = set(), []
    for name in needed:
        if name in seen:
            continue
        seen.add(name)
        r = emulate_loader(name, [], [], f.cache, f.default_dirs, f.machine)
        if not r['path'] or r['error']:
            missing.append(name)
            continue
        try:
            info = read_elf_cached(r['path'])
        except (ElfError, IOError, OSError):
            missing.append(name)
            continue
        exports.update(info.exported_symbols())
        if depth < 3:
            sub, sub_missing = _needed_exports(info.needed, f, depth + 1, seen)
            exports |= sub
            missing += sub_missing
    return exports, missing


def _static_unresolved(f, kind):
    shim = f.shims.get(kind)
    if not shim or not shim['elf']:
        return None, []
    exports, missing = _needed_exports(shim['needed'], f)
    if missing:
        return None, missing
    return sorted(s for s in shim['undefined'] if s not in exports), []


def gather_load_tests(f, probe):
    """Static check of every shim's undefined symbols; a load test as the service user only where the ELF
    (or the log) says some symbol may be unresolved."""
    logged = undefined_symbol_lines(f)
    for kind, shim in f.shims.items():
        unresolved, missing = _static_unresolved(f, kind)
        in_log = [x for x in logged if x['library'] and same_file(x['library'], shim['path'])]
        test = {'unresolved': unresolved, 'needed_missing': missing, 'log': in_log, 'load_test': None}
        f.load_tests[kind] = test
        if shim['elf'] and (unresolved or missing or in_log) and f.params.load_test:
            test['load_test'] = load_test(f, probe, shim['path'])
    matched = [x for t in f.load_tests.values() for x in t['log']]
    f.load_tests_unmatched_log = [x for x in logged if x not in matched]


def load_test(f, probe, path):
    """dlopen path with LD_BIND_NOW=1 as the unit's user, with the unit's LD_PRELOAD, in a fresh Python.

    Returns {'ok': True | False | None, 'rc', 'output', 'as', 'ld_preload'}: False only when the loader
    itself failed (a symbol lookup or dlopen error), None when the test could not run (no runuser,
    interpreter not executable for the user, time limit)."""
    code = ('import ctypes,sys\ntry:\n ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)\n'
            'except OSError as e:\n print("dlopen: %s" % e); sys.exit(3)\n')
    env = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'LC_ALL': 'C', 'LD_BIND_NOW': '1'}
    if f.unit_env.get('LD_PRELOAD'):
        env['LD_PRELOAD'] = f.unit_env['LD_PRELOAD']
    # the system interpreter: the service user can run it (a virtualenv's may sit in a private home)
    python = '/usr/bin/python3' if os.access('/usr/bin/python3', os.X_OK) else (sys.executable or 'python3')
    argv = [python, '-S', '-c', code, path]
    # the same user (and groups) as the driver probe: vgpu_probe.user_argv, setpriv without a PAM session
    try:
        argv, as_user = user_argv(argv, which=probe.which, **(_probe_user(f) or {}))
    except ValueError:
        as_user = 'uid %d' % os.geteuid()
    timeout = max(0.3, min(LOAD_TEST_TIMEOUT, f.deadline - time.time()))
    rc, out, err = probe.run(argv, env=env, timeout=timeout)
    text = ' '.join((out + ' ' + err).split())
    if rc == 0:
        ok = True
    elif (rc == 3 and 'dlopen:' in text) or 'symbol lookup error' in text or 'undefined symbol' in text:
        ok = False
    else:
        ok = None
    return {'ok': ok, 'rc': rc, 'output': text[:400], 'as': as_user, 'ld_preload': env.get('LD_PRELOAD')}


def _probe_user(f):
    u = f.unit
    if u.get('dynamic_user'):
        return {'uid': u['uid'], 'groups': []}
    if (u.get('user') or 'root') in ('root', '0') or u.get('uid') in (None, 0):
        return None
    gid = None
    if u.get('group'):
        try:
            gid = resolve_gid(u['group'])
        except ValueError:
            gid = None
    return {'user': u['user'], 'uid': u['uid'], 'gid': gid, 'groups': list(u.get('gids') or [])}


def _best(results):
    """One result for a set of per-directory probes: a hang first (it blocks discovery), then any that worked
    (Ollama uses the directory whose runtime the driver serves), else the first."""
    for r in results:
        if r.get('timed_out'):
            return r
    for r in results:
        if r.get('ok'):
            return r
    return results[0] if results else None


def gather_driver_probe(f, probe):
    """The live driver-API probe (vgpu_probe), as the unit's user with the environment of its next start and
    Ollama's library dirs first, one per cuda_v* dir, all at once. When CUDA_VISIBLE_DEVICES hides the device in
    that environment, the same probes run without it as well: whether removing it would help is then known,
    not guessed."""
    want = f.params.driver_probe or 'auto'
    needed = log_mode(f) != 'gpu'
    if want == 'never' or (want == 'auto' and not needed):
        f.driver_probe = {'ran': False, 'reason': 'driver_probe=never' if want == 'never' else
                          'the current start is in GPU mode on the shim\'s library (driver_probe=auto)'}
        return
    if f.unit.get('user_error'):
        f.driver_probe = {'ran': False, 'reason': 'cannot run as the unit\'s user: %s' % f.unit['user_error']}
        return
    lib = f.params.ollama_lib_dir
    names = None
    if (f.discovery or {}).get('mechanism') == 'in_process':
        # the file in-process discovery settles on, opened by its path as that Ollama does
        pick = (f.resolution_after_restart or [{}])[0]
        if not pick.get('real'):
            f.driver_probe = {'ran': False, 'reason': 'in-process discovery (%s) finds no libcuda.so* file to '
                                                      'probe' % f.discovery['reasoned_for']}
            return
        names = [pick['real']]
        sets = [[lib] if os.path.isdir(lib) else []]
    else:
        sets = [[lib, d] for d in f.cuda_dirs] or [[lib] if os.path.isdir(lib) else []]
    user = _probe_user(f)
    env = dict(f.unit_env)
    specs = [(d, env, user, names) for d in sets]
    cvd = env.get('CUDA_VISIBLE_DEVICES')
    hides = cvd is not None and visible_device_count(cvd, max(1, len(f.pci['nvidia']))) == 0
    if hides:
        without = dict((k, v) for k, v in env.items() if k != 'CUDA_VISIBLE_DEVICES')
        specs += [(d, without, user, names) for d in sets]
    began = time.time()
    timeout = float(f.params.probe_timeout or PROBE_TIMEOUT)
    results = probe.driver_probes(specs, timeout)
    # a probe that ran out of time is tried once more with twice the time: a driver that waits for its host
    # side hangs again, a child that only starved on a busy machine (many VMs on few cores) answers now - a
    # hang is claimed only when both tries hit the limit
    retry = [i for i, r in enumerate(results) if r.get('timed_out') and not r.get('unkillable')]
    retried = []
    if retry:
        again = probe.driver_probes([specs[i] for i in retry], timeout * 2)
        for i, r in zip(retry, again):
            retried.append({'lib_dirs': specs[i][0], 'first_elapsed': results[i].get('elapsed'),
                            'first_last_call': results[i].get('last_call'), 'timeout': timeout * 2,
                            'timed_out_again': bool(r.get('timed_out'))})
            if not r.get('timed_out'):
                f.notes.append('the live driver probe (%s) ran out of its %.1f s in %s, then answered when tried '
                               'again with %.1f s: the machine was busy, the driver does not hang'
                               % (':'.join(specs[i][0]), timeout, results[i].get('last_call') or 'its start',
                                  timeout * 2))
            results[i] = r
    first, second = results[:len(sets)], results[len(sets):]
    f.driver_probe = {
        'ran': True, 'elapsed': round(time.time() - began, 3), 'retried': retried,
        'per_dir': [{'lib_dirs': d, 'ok': r.get('ok'), 'loaded': (r.get('cuda') or {}).get('loaded'),
                     'failed_call': (r.get('cuda') or {}).get('failed_call'), 'timed_out': r.get('timed_out')}
                    for d, r in zip(sets, first)],
        'next_start': _best(first),
        'without_visible_devices': _best(second) if second else None,
    }


def judged_probe(f):
    """The probe the DRIVER_* findings rest on: the environment after the CUDA_VISIBLE_DEVICES fix when that
    was probed too (a device hidden by it is VISIBLE_DEVICES, not a driver error), else the next start's."""
    dp = f.driver_probe or {}
    if not dp.get('ran'):
        return None
    return dp.get('without_visible_devices') or dp.get('next_start')


def probe_evidence(r):
    """A probe result trimmed for a finding's evidence."""
    if not r:
        return None
    c, n = r.get('cuda') or {}, r.get('nvml') or {}
    return {'ok': r.get('ok'), 'as_user': r.get('as_user'), 'elapsed': r.get('elapsed'), 'timed_out': r.get('timed_out'),
            'last_call': r.get('last_call'), 'error': r.get('error'), 'signal': r.get('signal'),
            'lib_dirs': r.get('lib_dirs'), 'ld_library_path': r.get('ld_library_path'), 'ld_preload': r.get('ld_preload'),
            'cuda_visible_devices': r.get('cuda_visible_devices'),
            'cuda': {'loaded': c.get('loaded'), 'loaded_as': c.get('loaded_as'), 'dlopen_error': c.get('dlopen_error'),
                     'calls': [dict((k, x.get(k)) for k in ('call', 'rc', 'error', 'ms', 'value', 'device', 'attr')
                                    if k in x)
                               for x in c.get('calls') or []],
                     'driver_version': c.get('driver_version'), 'devices': c.get('devices')},
            'nvml': {'loaded': n.get('loaded'), 'dlopen_error': n.get('dlopen_error'),
                     'calls': [dict((k, x.get(k)) for k in ('call', 'rc', 'error', 'ms', 'value') if k in x)
                               for x in n.get('calls') or []],
                     'driver_version': n.get('driver_version'), 'driver_major': n.get('driver_major')},
            'output': r.get('output')}


def probe_failure_text(r):
    """What went wrong in one driver probe, in a phrase."""
    if r.get('timed_out'):
        return 'hung in %s for more than %.1f s' % (r.get('last_call') or 'the driver', r.get('elapsed') or 0)
    if r.get('error'):
        return r['error']
    c = r.get('cuda') or {}
    if c.get('dlopen_error'):
        return 'libcuda.so.1 cannot be loaded: %s' % c['dlopen_error']
    fc = c.get('failed_call')
    if fc:
        return '%s returned %s %s' % (fc.get('call'), fc.get('rc'), fc.get('error'))
    if not c.get('devices'):
        return 'cuDeviceGetCount reports no device'
    return 'unknown'
