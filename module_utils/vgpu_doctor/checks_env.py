# -*- coding: utf-8 -*-
# Checks of the service's environment: one function per failure code (target side, Python 3.8+ stdlib).
"""PRELOAD_MISSING_FILE, PRELOAD_INTERPOSES_LOADER, PRELOAD_CONFLICT, LLM_LIBRARY_MISMATCH, VISIBLE_DEVICES,
SANDBOX, PRELOAD_NOT_APPLIED, PRELOAD_HIJACK_RISK.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible.module_utils.vgpu_doctor.catalogue import LOADER_VARIABLES, PROCESS_VARIABLES, check, finding
from ansible.module_utils.vgpu_doctor.common import is_true, split_preload, visible_device_count
from ansible.module_utils.vgpu_doctor.gather_unit import setting_sources
from ansible.module_utils.vgpu_doctor.judge import (
    applied_by, conflict_paths, desired_env_problems, env_fix, resolution_ok, short_resolution, unset_fix,
)
from ansible.module_utils.vgpu_doctor.log_evidence import log_mode, preload_failures
from ansible.module_utils.vgpu_doctor.params import intended_preload
from ansible.module_utils.vgpu_doctor.probes import probe_failure_text
from ansible.module_utils.vgpu_fs import readable_by
from ansible.module_utils.vgpu_unit_env import describe_source


@check('PRELOAD_MISSING_FILE')
def check_preload_missing_file(f):
    out = []
    shim_paths = dict((s['path'], k) for k, s in f.shims.items())
    logged = preload_failures(f)
    entries = [(o['path'], o.get('source'), 'unit') for o in f.preload_entries]
    # (a bare name that no search finds stays as written and does not exist either)
    running = split_preload((f.running_env or {}).get('LD_PRELOAD'))
    entries += [(p, None, 'running') for p in running if p not in [e[0] for e in entries]]
    for path, src, where in entries:
        if os.path.exists(path):
            continue
        lines = [x['line'] for x in logged if x['path'] == path]
        ev = {'entry': path, 'ld_preload': (f.unit_env if where == 'unit' else f.running_env or {}).get('LD_PRELOAD'),
              'set_by': src, 'environment': where, 'log_lines': lines}
        if path in shim_paths:
            action, fix, text = 'reinstall_shim', {'path': path, 'kind': shim_paths[path]}, \
                'install the shim again at %s (it is missing), then restart %s' % (path, f.params.unit)
        elif where == 'running':
            action, fix, text = 'restart', {'daemon_reload': False}, \
                'restart %s: the running process still has an old LD_PRELOAD' % f.params.unit
        elif src == f.dropin_path:
            action, fix, text = 'rewrite_dropin', {'path': src}, \
                'render %s again with the installed shim paths, daemon-reload, restart' % src
        elif (f.env_records.get('LD_PRELOAD') or {}).get('kind') == 'environment' and src \
                and src != f.unit.get('unit_file'):
            action, fix, text = 'move_conflicting_dropin', {'path': src, 'variables': ['LD_PRELOAD']}, \
                'move %s out of the way (it sets LD_PRELOAD to a missing file), daemon-reload, restart' % src
        else:
            # the unit file, an EnvironmentFile=, PassEnvironment= or the manager's environment
            action, fix, text = unset_fix(f, ['LD_PRELOAD'])
        if where == 'unit':
            ev['source'] = describe_source(f.env_records.get('LD_PRELOAD'))
        out.append(finding('PRELOAD_MISSING_FILE', 'error', 'LD_PRELOAD names %s, which does not exist%s'
                           % (path, ' ("cannot be preloaded" in the log)' if lines else ''), ev, action, text, **fix))
    # a logged failure whose file exists now: SHIM_UNREADABLE or PRELOAD_NOT_APPLIED report it
    return out


@check('PRELOAD_INTERPOSES_LOADER')
def check_preload_interposes_loader(f):
    out = []
    for o in f.preload_entries + f.global_preload['entries']:
        if not o.get('interposed'):
            continue
        out.append(finding('PRELOAD_INTERPOSES_LOADER', 'error',
                           '%s (preloaded via %s) exports libc/loader functions %s: they replace libc\'s in the '
                           'service and its runners and can hijack backend loading' % (
                               o['path'], o['step'], ', '.join(o['interposed'][:8])),
                           {'path': o['path'], 'interposed': o['interposed'], 'via': o['step']},
                           'switch_strategy', 'redeploy with vgpu_strategy=library_path (no LD_PRELOAD: the shim '
                           'is found as libcuda.so.1 through LD_LIBRARY_PATH), or rebuild the shim without those '
                           'exports', strategy='library_path'))
    return out


@check('PRELOAD_CONFLICT')
def check_preload_conflict(f):
    out = []
    ours_env = f.our_env
    for c in f.conflicts:
        unsets = c.get('unsets') or []
        loader_vars = [v for v in c['variables'] if v in LOADER_VARIABLES]
        wins = [v for v in loader_vars if applied_by(f, v) == c['path']]
        harmful = [v for v in wins if v in ours_env or v == 'LD_PRELOAD' and intended_preload(f.params)
                   or v == 'LD_LIBRARY_PATH' and f.params.strategy == 'library_path']
        harmful = [v for v in harmful if f.unit_env.get(v) != ours_env.get(v)]
        sev = 'error' if harmful and resolution_ok(f) is not True else 'warning'
        values = dict((v, '(unset)' if v in unsets else
                       f.unit_env.get(v) if f.env_sources.get(v) == c['path'] else '(overridden)')
                      for v in c['variables'])
        ev = {'path': c['path'], 'variables': c['variables'], 'values': values,
              'applied_after_ours': c['overrides_ours'], 'effective_from_this_file': wins,
              'our_dropin': f.dropin_path, 'our_values': dict((v, ours_env.get(v)) for v in c['variables'])}
        if unsets:
            ev['unsets'] = unsets
        sets = [v for v in c['variables'] if v not in unsets]
        what = ' and '.join(x for x in ('sets %s' % ', '.join(sets) if sets else '',
                                        'unsets %s (UnsetEnvironment=)' % ', '.join(unsets) if unsets else '') if x)
        if c.get('unit_file') and unsets:
            action, fix, text = 'manual', {'path': c['path'], 'variables': c['variables']}, \
                'remove %s from the unit file %s (an Ollama upgrade rewrites it anyway), daemon-reload, restart' % (
                    ', '.join(['UnsetEnvironment=%s' % v for v in unsets] + sets), c['path'])
        elif c.get('unit_file') or c.get('external'):
            # the unit file (an Ollama upgrade rewrites it anyway), an EnvironmentFile=, PassEnvironment= or the
            # manager's environment: the assignment goes where it is written
            action, fix, text = unset_fix(f, sets)
        else:
            action, fix, text = 'move_conflicting_dropin', {'path': c['path'], 'variables': c['variables']}, \
                'move %s out of %s (it %s%s), daemon-reload and restart %s' % (
                    c['path'], os.path.dirname(c['path']), what,
                    ', and wins over %s' % os.path.basename(f.dropin_path) if wins else '', f.params.unit)
        if c.get('external'):
            ev['source'] = c['source']
        out.append(finding('PRELOAD_CONFLICT', sev, '%s also %s%s' % (
            c['source'] if c.get('external') else c['path'], what,
            (' so the service gets no %s' % ', '.join(wins) if set(wins) <= set(unsets) else
             ' and its value is the one the service gets') if wins else ''), ev, action, text, **fix))
    return out


_CPU_LIBRARIES = re.compile(r'^cpu(_|$)')


@check('LLM_LIBRARY_MISMATCH')
def check_llm_library_mismatch(f):
    value = f.unit_env.get('OLLAMA_LLM_LIBRARY')
    if value is None or not os.path.isdir(f.params.ollama_lib_dir):
        return []
    try:
        existing = sorted(n for n in os.listdir(f.params.ollama_lib_dir)
                          if os.path.isdir(os.path.join(f.params.ollama_lib_dir, n)))
    except OSError:
        existing = []
    if value in existing and not _CPU_LIBRARIES.match(value):
        return []
    if value == '':
        return []
    cudas = [os.path.basename(d) for d in f.cuda_dirs]
    suggest = 'cuda_v12' if 'cuda_v12' in cudas else (cudas[-1] if cudas else None)
    forced_cpu = bool(_CPU_LIBRARIES.match(value))
    action, fix, text = env_fix(f, 'OLLAMA_LLM_LIBRARY', 'OLLAMA_LLM_LIBRARY=%s' % value)
    fix['suggest'] = suggest
    if action == 'rewrite_dropin':
        text = 'set OLLAMA_LLM_LIBRARY to %s in the inventory (existing dirs: %s), render %s again, daemon-reload, ' \
               'restart' % (suggest or 'an existing cuda_v* dir', ', '.join(existing), f.dropin_path)
    summary = ('OLLAMA_LLM_LIBRARY=%s forces the CPU backend' % value if forced_cpu else
               'OLLAMA_LLM_LIBRARY=%s names no directory in %s (has: %s): Ollama skips every GPU backend'
               % (value, f.params.ollama_lib_dir, ', '.join(existing) or 'none'))
    return [finding('LLM_LIBRARY_MISMATCH', 'error', summary,
                    {'value': value, 'set_by': f.env_sources.get('OLLAMA_LLM_LIBRARY'), 'existing_dirs': existing,
                     'running_value': (f.running_env or {}).get('OLLAMA_LLM_LIBRARY')}, action, text, **fix)]


@check('VISIBLE_DEVICES')
def check_visible_devices(f):
    value = f.unit_env.get('CUDA_VISIBLE_DEVICES')
    running = (f.running_env or {}).get('CUDA_VISIBLE_DEVICES')
    if value is None and running is None:
        return []
    shown = value if value is not None else running
    physical = max(1, len(f.pci['nvidia']))
    visible = visible_device_count(shown, physical)
    action, fix, text = env_fix(f, 'CUDA_VISIBLE_DEVICES', 'CUDA_VISIBLE_DEVICES')
    if value is None:
        action, fix, text = 'restart', {'daemon_reload': False}, \
            'restart %s: only the running process still has CUDA_VISIBLE_DEVICES' % f.params.unit
    sev = 'error' if visible == 0 else 'warning'
    summary = 'CUDA_VISIBLE_DEVICES=%r %s' % (shown, 'hides every device' if visible == 0 else
                                             'is set (shows %s of %d device(s))' % (
                                                 visible if visible is not None else 'an unknown number', physical))
    return [finding('VISIBLE_DEVICES', sev, summary, {'value': value, 'running_value': running,
                                                      'set_by': f.env_sources.get('CUDA_VISIBLE_DEVICES'),
                                                      'devices': physical, 'visible': visible},
                    action, text, **fix)]


@check('SANDBOX')
def check_sandbox(f):
    """PrivateDevices=yes gives the service a /dev without the paravirtual device's node: an error.
    ProtectKernelTunables=yes makes /sys and /proc/sys read-only (still readable): a warning."""
    on = dict((k, v) for k, v in f.unit['sandbox'].items() if is_true(v))
    if not on:
        return []
    set_by = dict((k, [s['path'] for s in setting_sources(f, k)]) for k in on)
    ours_dir, ours_name = os.path.split(f.dropin_path)
    later = [p for ps in set_by.values() for p in ps
             if os.path.dirname(p) == ours_dir and os.path.basename(p) > ours_name]
    sev = 'error' if 'PrivateDevices' in on else 'warning'
    what = 'device nodes are hidden from the service' if 'PrivateDevices' in on else \
        '/sys and /proc/sys are read-only for the service'
    settings = ', '.join('%s=%s' % kv for kv in sorted(on.items()))
    return [finding('SANDBOX', sev, 'the unit has %s: %s' % (settings, what),
                    {'settings': on, 'set_by': set_by}, 'override_sandbox',
                    'write %s into %s%s, daemon-reload, restart' % (
                        ', '.join('%s=no' % k for k in sorted(on)), f.dropin_path,
                        ' and move %s (applied after it)' % ', '.join(later) if later else ''),
                    settings=dict((k, 'no') for k in sorted(on)), path=f.dropin_path, set_by=set_by)]


@check('PRELOAD_NOT_APPLIED')
def check_preload_not_applied(f):
    out = []
    problems = desired_env_problems(f, f.unit_env)
    # a variable that our drop-in has right but another file overrides (or unsets): that file's PRELOAD_CONFLICT
    # (or PRELOAD_MISSING_FILE) carries the fix - moving it; rendering our drop-in again would change nothing
    ours_wrong = set(v for v, _t in desired_env_problems(f, f.our_env))
    conflicts = conflict_paths(f)
    explained = [(v, t) for v, t in problems if v not in ours_wrong and applied_by(f, v) in conflicts]
    problems = [t for v, t in problems if (v, t) not in explained]
    if problems:
        ok = resolution_ok(f)
        ev = {'problems': problems, 'unit_environment': dict((k, f.unit_env.get(k)) for k in PROCESS_VARIABLES
                                                             if k in f.unit_env),
              'dropin': f.dropin_path, 'dropin_exists': os.path.exists(f.dropin_path),
              'intended_preload': intended_preload(f.params), 'runner_resolves_shim': ok}
        if explained:
            ev['explained_by_conflicts'] = [t for _v, t in explained]
        out.append(finding('PRELOAD_NOT_APPLIED', 'warning' if ok else 'error',
                           'the unit\'s environment is not the %s layout: %s' % (f.params.strategy, problems[0]),
                           ev, 'rewrite_dropin', 'render %s for the %s strategy (systemd_dropin_env), '
                           'daemon-reload, restart %s' % (f.dropin_path, f.params.strategy, f.params.unit),
                           path=f.dropin_path, strategy=f.params.strategy))
    # the current start could not preload a file that is there and readable now: fixed since, not applied
    uid, gids = f.unit.get('uid'), f.unit.get('gids')
    healed = [x for x in preload_failures(f) if os.path.exists(x['path'])
              and (uid is None or readable_by(x['path'], uid, gids)[0])]
    if healed and next_start_outlook(f)[0]:
        out.append(finding('PRELOAD_NOT_APPLIED', 'error', 'the current start could not preload %s, which is in '
                           'place and readable now: the service has not been restarted since it was fixed'
                           % ', '.join(sorted(set(x['path'] for x in healed))),
                           {'log_lines': [x['line'] for x in healed], 'paths': sorted(set(x['path'] for x in healed))},
                           'restart', 'restart %s' % f.params.unit, daemon_reload=bool(f.unit.get('reload_pending'))))
    running = f.running_env
    if running is None:
        return out
    diffs = []
    for v in PROCESS_VARIABLES:
        if running.get(v) != f.unit_env.get(v):
            diffs.append({'variable': v, 'running': running.get(v), 'unit': f.unit_env.get(v)})
    reload_needed = f.unit.get('reload_pending')
    if not diffs and not reload_needed:
        return out
    file_diffs = [{'variable': v, 'files': f.unit_env_files.get(v), 'systemd': f.unit_env_shown.get(v)}
                  for v in PROCESS_VARIABLES if f.unit_env_files.get(v) != f.unit_env_shown.get(v)]
    main = [pr for pr in f.processes if pr['role'] == 'main']
    ev = {'main_pid': f.unit.get('main_pid'), 'differences': diffs, 'need_daemon_reload': bool(reload_needed),
          'files_vs_systemd': file_diffs,
          'shim_mapped_in_main': main[0]['shim_mapped'] if main else None,
          'resolution_now': [short_resolution(r) for r in f.resolution],
          'resolution_after_restart': [short_resolution(r) for r in f.resolution_after_restart or []]}
    for d in diffs:
        d['source'] = describe_source(f.env_records.get(d['variable'])) if d['variable'] in f.env_records else \
            ('UnsetEnvironment= in %s' % f.unset_by[d['variable']] if d['variable'] in f.unset_by else 'not set')
    what = ', '.join(d['variable'] for d in diffs)
    helps, why_not = next_start_outlook(f)
    ev['restart_predicted_to_help'] = helps
    if why_not:
        ev['next_start_problems'] = why_not
    summary = 'the running service (PID %s) %s' % (
        f.unit.get('main_pid'),
        'does not have the environment its next start gets (%s differ%s)' % (
            what, '; systemd has not reloaded the changed unit files' if reload_needed else '')
        if diffs else 'runs on unit files systemd has not reloaded (daemon-reload needed)')
    if not helps:
        # a restart would apply the difference but the next start has problems of its own (their findings carry
        # the fixes): restarting for this finding alone is not predicted to change the outcome
        out.append(finding('PRELOAD_NOT_APPLIED', 'warning', summary + '; a restart alone would not help: '
                           + why_not[0], ev, 'manual', 'fix what the other findings name first (%s); the restart '
                           'that follows their fixes applies this difference too' % '; '.join(why_not)))
        return out
    sev = ('error' if log_mode(f) != 'gpu' else 'warning') if diffs else 'warning'
    out.append(finding('PRELOAD_NOT_APPLIED', sev, summary, ev, 'restart',
                       '%srestart %s' % ('daemon-reload, then ' if reload_needed else '', f.params.unit),
                       daemon_reload=bool(reload_needed)))
    return out


def next_start_outlook(f):
    """(helps, reasons): whether a plain restart is predicted to bring the unit up in GPU mode - the next
    start's environment has the layout's variables, every runner resolves the shim, nothing hides the device,
    the start does not fail, and the driver probe (when it ran with that environment) answered. reasons says
    what stands in the way."""
    why = []
    if f.predicted and f.predicted['start_fails']:
        why.append(f.predicted['start_fails'][0])
    why.extend(t for _v, t in desired_env_problems(f, f.unit_env))
    if resolution_ok(f) is False:
        bad = [r for r in f.resolution_after_restart or [] if not r['ok']]
        why.append('runner %s would load %s as %s, not the shim' % (bad[0]['runner'], bad[0]['path'] or 'nothing',
                                                                   bad[0]['name']))
    cvd = f.unit_env.get('CUDA_VISIBLE_DEVICES')
    if cvd is not None and visible_device_count(cvd, max(1, len(f.pci['nvidia']))) == 0:
        why.append('the next start still gets CUDA_VISIBLE_DEVICES=%s (from %s)' % (
            cvd, describe_source(f.env_records.get('CUDA_VISIBLE_DEVICES'))))
    if check_llm_library_mismatch(f):
        why.append('the next start still gets OLLAMA_LLM_LIBRARY=%s' % f.unit_env.get('OLLAMA_LLM_LIBRARY'))
    probe = (f.driver_probe or {}).get('next_start')
    if probe and not probe.get('ok'):
        why.append('the driver API fails under the next start\'s environment (%s)' % probe_failure_text(probe))
    return not why, why


@check('PRELOAD_HIJACK_RISK')
def check_preload_hijack_risk(f):
    if not f.unsafe:
        return []
    paths = [u['path'] for u in f.unsafe if u['mode'] is not None]
    return [finding('PRELOAD_HIJACK_RISK', 'error', '%d path(s) that decide what the service loads are writable by '
                    'non-root users: %s' % (len(f.unsafe), '; '.join('%s (%s)' % (u['path'], u['problem'])
                                                                     for u in f.unsafe[:4])),
                    {'components': f.unsafe}, 'fix_shim_mode',
                    'chown root:root and chmod go-w %s' % ', '.join(paths), paths=paths)]
