# -*- coding: utf-8 -*-
# Gathering the unit: systemd properties, files, environment of the next start, conflicts (target side).
"""The unit's side of the facts: ``systemctl show`` (or the unit files when systemd is not running), the
environment its next start gets and where each variable comes from, the service user, conflicting drop-ins.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible.module_utils.vgpu_doctor.catalogue import PROCESS_VARIABLES, SANDBOX_SETTINGS
from ansible.module_utils.vgpu_doctor.common import is_true, read_small
from ansible.module_utils.vgpu_doctor.params import intended_preload
from ansible.module_utils.vgpu_fs import resolve_gid, user_ids
from ansible.module_utils.vgpu_manager_env import manager_environment, parse_show_environment
from ansible.module_utils.vgpu_systemctl import parse_systemd_timestamp, read_proc_environ, shown_environment
from ansible.module_utils.vgpu_systemd import (
    CONFLICT_VARIABLES, dropin_files, environment_details, find_conflicts, find_unit_file,
)
from ansible.module_utils.vgpu_unit_env import describe_source, predict_environment, source_text
from ansible.module_utils.vgpu_unit_syntax import (
    environment_of_text, parse_unit_text, unit_files_setting, variables_unset_by,
)


DOCTOR_UNIT_PROPERTIES = ('Id', 'LoadState', 'ActiveState', 'SubState', 'MainPID', 'InvocationID', 'User', 'Group',
                   'SupplementaryGroups', 'DynamicUser', 'Environment', 'UnsetEnvironment', 'PrivateDevices',
                   'ProtectKernelTunables', 'FragmentPath', 'DropInPaths', 'StandardOutput', 'StandardError',
                   'ExecMainStartTimestamp', 'NeedDaemonReload', 'ExecStart', 'EnvironmentFiles', 'PassEnvironment')


def _unit_texts(f):
    files = ([f.unit['unit_file']] if f.unit.get('unit_file') else []) + list(f.dropins)
    return [(p, read_small(p, 1024 * 1024) or '') for p in files]


def setting_sources(f, key, section='Service'):
    """Files that assign key (in the order systemd applies them), with the value each sets."""
    out = []
    for path, text in _unit_texts(f):
        for sec, k, v in parse_unit_text(text):
            if sec == section and k == key:
                out.append({'path': path, 'value': v})
    return out


def gather_unit(f, probe):
    p = f.params
    unit = p.unit
    unit_dirs = f.paths.unit_dirs
    props, err = probe.show(unit, DOCTOR_UNIT_PROPERTIES)
    systemd_up = props is not None and props.get('LoadState') not in (None, '')
    f.unit = {'name': unit, 'props': props if systemd_up else None, 'systemd_error': None if systemd_up else err,
              'unit_file': find_unit_file(unit, unit_dirs)}
    f.dropin_path = os.path.join(f.paths.systemd_dir, unit + '.d', p.dropin)
    f.dropins = dropin_files(unit, unit_dirs)
    props = f.unit['props']
    # UnsetEnvironment= (systemd 235+) removes variables after every Environment=; `systemctl show` lists it
    # apart from Environment (an unknown property is not printed at all: a systemd that ignores the setting)
    honour_unset = props is None or 'UnsetEnvironment' in props
    details = environment_details(unit, unit_dirs, honour_unset=honour_unset)
    f.unit_env_files, f.env_sources = details['environment'], details['sources']
    f.unset, f.unset_by = details['unset'], details['unset_by']
    if not honour_unset and details['unset']:
        f.notes.append('systemd reports no UnsetEnvironment property (older than 235): UnsetEnvironment= in %s '
                       'is ignored by it' % ', '.join(sorted(set(u['path'] for u in details['unset']))))
    our_text = read_small(f.dropin_path)
    f.our_env = environment_of_text(our_text, unit) if our_text is not None else {}
    texts = [t for _p, t in _unit_texts(f)]
    if props is not None:
        f.unit_env_shown = shown_environment(props, details['assigned'])
        f.unit['load_state'] = props.get('LoadState')
        f.unit['active_state'] = props.get('ActiveState')
        f.unit['sub_state'] = props.get('SubState')
        try:
            f.unit['main_pid'] = int(props.get('MainPID') or 0)
        except ValueError:
            f.unit['main_pid'] = 0
        f.unit['need_daemon_reload'] = is_true(props.get('NeedDaemonReload'))
        user = props.get('User') or None
        group = props.get('Group') or None
        supplementary = (props.get('SupplementaryGroups') or '').split()
        dynamic = is_true(props.get('DynamicUser'))
        sandbox = dict((k, props.get(k) or '') for k in SANDBOX_SETTINGS)
        f.unit['fragment_path'] = props.get('FragmentPath') or f.unit['unit_file']
        f.unit['exec_start'] = props.get('ExecStart') or ''
        f.unit['started'] = parse_systemd_timestamp(props.get('ExecMainStartTimestamp'))
    else:
        # systemd not running (container, chroot) or no systemctl: the unit's own files
        f.unit_env_shown = dict(f.unit_env_files)
        f.unit.update(load_state='loaded' if f.unit['unit_file'] else 'not-found', active_state='unknown',
                      sub_state='unknown', main_pid=0, need_daemon_reload=False,
                      fragment_path=f.unit['unit_file'], exec_start=unit_files_setting(texts, 'ExecStart') or '',
                      started=None)
        user = unit_files_setting(texts, 'User')
        group = unit_files_setting(texts, 'Group')
        supplementary = (unit_files_setting(texts, 'SupplementaryGroups') or '').split()
        dynamic = is_true(unit_files_setting(texts, 'DynamicUser'))
        sandbox = dict((k, unit_files_setting(texts, k) or '') for k in SANDBOX_SETTINGS)
        f.notes.append('systemd not queried (%s): unit facts come from its files' % (err or 'not running'))
    # what the next start gets: the files, when systemd has not read them yet (edited without daemon-reload)
    f.unit['reload_pending'] = bool(f.unit['need_daemon_reload'] or any(
        f.unit_env_files.get(v) != f.unit_env_shown.get(v) for v in PROCESS_VARIABLES))
    f.unit['sandbox'] = sandbox
    f.unit['user'] = user or 'root'
    _predict_next_start(f, probe, props)
    f.unit['group'] = group
    f.unit['dynamic_user'] = dynamic
    f.unit['uid'], f.unit['gids'], f.unit['user_error'] = None, [], None
    if dynamic:
        # a DynamicUser= uid exists only while the unit runs and owns nothing: judge by "other" bits
        f.unit['uid'], f.unit['gids'] = 61183, []
    else:
        try:
            uid, gids = user_ids(f.unit['user'])
            gids = set(gids)
            for g in ([group] if group else []) + supplementary:
                try:
                    gids.add(resolve_gid(g))
                except ValueError:
                    pass
            f.unit['uid'], f.unit['gids'] = uid, sorted(gids)
        except ValueError as e:
            f.unit['user_error'] = str(e)
    if f.unit['load_state'] != 'loaded':
        f.notes.append('unit %s is not installed (LoadState=%s)' % (unit, f.unit['load_state']))
    elif not f.unit['main_pid']:
        f.notes.append('unit %s has no running main process (ActiveState=%s): process checks skipped'
                       % (unit, f.unit['active_state']))
    f.conflicts = _unit_conflicts(f, unit, unit_dirs)


def _predict_next_start(f, probe, props):
    """f.unit_env: the whole environment of the next start (after the daemon-reload a fix runs), from every
    source systemd uses - the manager's environment, PassEnvironment=, Environment=, EnvironmentFile= - with the
    source of each variable (f.env_records, file and line)."""
    shown = probe.show_environment() if props is not None else None
    manager = manager_environment(parse_show_environment(shown) if shown is not None else None, f.paths.root)
    if shown is None and props is not None:
        f.notes.append('systemctl show-environment gave nothing: the manager environment is predicted from '
                       'system.conf and the kernel command line only')
    predicted = predict_environment(f.params.unit, f.paths.unit_dirs, manager=manager,
                                    pid1_environ=read_proc_environ(1, f.paths.proc), user=f.unit['user'],
                                    props=None if f.unit['reload_pending'] else props, root=f.paths.root)
    if f.unit['reload_pending']:
        # the files say something systemd has not loaded yet: the Environment= values systemd shows now are the
        # ones a restart without daemon-reload would use
        for v in PROCESS_VARIABLES:
            if f.unit_env_files.get(v) != f.unit_env_shown.get(v):
                f.notes.append('%s: the unit files say %r, systemd has %r loaded (daemon-reload pending); the '
                               'next start is judged after a daemon-reload' % (
                                   v, f.unit_env_files.get(v), f.unit_env_shown.get(v)))
    f.predicted = predicted
    f.notes.extend(predicted['notes'])
    f.unit_env = dict(predicted['environment'])
    f.env_records = predicted['sources']
    f.env_sources = dict((v, None if r.get('kind') == 'manager' else r.get('setting_path')
                          if r.get('kind') == 'pass_environment' else r.get('path'))
                         for v, r in predicted['sources'].items())
    f.unset_by = dict((v, r['path']) for v, r in predicted['unset_by'].items())


def _unit_conflicts(f, unit, unit_dirs):
    """Other drop-ins and the unit file that set a CONFLICT_VARIABLES variable the service gets, or that
    remove one our drop-in sets or the layout needs with UnsetEnvironment= (which wins whatever the file's
    name). A variable a file sets but an UnsetEnvironment= elsewhere (ours: the unset_env fix) removes does not
    reach the service: not a conflict."""
    needed = set(f.our_env)
    if intended_preload(f.params):
        needed.add('LD_PRELOAD')
    if f.params.strategy == 'library_path':
        needed.add('LD_LIBRARY_PATH')
    conflicts = []
    for c in find_conflicts(unit, unit_dirs, f.dropin_path, CONFLICT_VARIABLES):
        moot = [v for v in c['variables'] if v in f.unset_by and f.unset_by[v] != c['path']]
        if moot:
            f.notes.append('%s sets %s, which UnsetEnvironment= in %s removes: not a conflict' % (
                c['path'], ', '.join(moot), ', '.join(sorted(set(f.unset_by[v] for v in moot)))))
        c['variables'] = [v for v in c['variables'] if v not in moot]
        conflicts.append(c)
    # the unit file itself can set them too (find_conflicts looks at drop-ins only)
    if f.unit['unit_file']:
        names = [n for n in CONFLICT_VARIABLES if f.env_sources.get(n) == f.unit['unit_file']]
        conflicts.append({'path': f.unit['unit_file'], 'variables': names, 'overrides_ours': False,
                          'unit_file': True})
    # EnvironmentFile= files, PassEnvironment= and the manager's environment can set them too
    for name in CONFLICT_VARIABLES:
        rec = f.env_records.get(name)
        if not rec or rec.get('kind') not in ('environment_file', 'pass_environment', 'manager'):
            continue
        where = source_text(rec)
        c = next((x for x in conflicts if x.get('source_location') == where), None)
        if c is None:
            c = {'path': rec.get('path') if rec.get('kind') == 'environment_file' else rec.get('setting_path'),
                 'variables': [], 'overrides_ours': name in f.our_env, 'external': rec.get('kind'),
                 'source_location': where, 'source': describe_source(rec)}
            conflicts.append(c)
        c['variables'].append(name)
    # UnsetEnvironment= of another file that takes one of them away from the service
    for path, text in _unit_texts(f):
        if path == f.dropin_path:
            continue
        unsets = [v for v in variables_unset_by(text, unit)
                  if v in CONFLICT_VARIABLES and v in needed and f.unset_by.get(v) == path]
        if not unsets:
            continue
        c = next((x for x in conflicts if x['path'] == path), None)
        if c is None:
            if path == f.unit['unit_file']:
                c = {'path': path, 'variables': [], 'overrides_ours': False, 'unit_file': True}
            else:
                c = {'path': path, 'variables': [],
                     'overrides_ours': os.path.basename(path) > os.path.basename(f.dropin_path)}
            conflicts.append(c)
        c['variables'] += [v for v in unsets if v not in c['variables']]
        c['unsets'] = unsets
    return [c for c in conflicts if c['variables']]
