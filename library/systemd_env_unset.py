#!/usr/bin/python
# -*- coding: utf-8 -*-
# Take environment variables out of every place that gives them to a systemd unit, at their source.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: systemd_env_unset
short_description: Stop a systemd unit from getting environment variables, by removing them where they are set
description:
  - Works out, in systemd's own precedence, every source that gives I(variables) to the next start of I(unit) -
    the service manager's environment (C(DefaultEnvironment=) in C(system.conf) and its drop-ins,
    C(systemctl set-environment), C(systemd.setenv=) on the kernel command line), C(PassEnvironment=),
    C(Environment=) of the unit file and its drop-ins, and C(EnvironmentFile=) files (globs, optional C(-) files,
    systemd's quoting and continuation rules) - and takes each assignment out where it is written. Every
    source is removed, not only the one that wins, so that none below it takes its place.
  - "What it edits: an C(Environment=) word in the unit file or a drop-in of I(systemd_dir) (a drop-in left
    without any setting is moved aside whole as C(<name>.vgpu-disabled-<stamp>), which systemd ignores); the
    name in a C(PassEnvironment=) line there; the assignment's lines in an C(EnvironmentFile=) file; the word in
    a C(DefaultEnvironment=) line of C(/etc/systemd/system.conf) or C(/etc/systemd/system.conf.d/*.conf); and
    C(systemctl unset-environment) for the runtime manager environment. The rest of each file is kept byte for
    byte; the original is kept as a hidden backup C(.<name>.<stamp>.vgpu-backup) beside it."
  - "What it refuses (fails, changing nothing, with the exact manual step): a file outside C(/etc), a symlink (it
    never writes through one), a file not owned by root or writable by others, a unit file outside
    I(systemd_dir), C(systemd.setenv=) on the kernel command line, an environment generator. All sources of all
    I(variables) are planned first; if one is refused nothing is changed."
  - After the edits it runs C(systemctl daemon-reload) (unit files and the manager configuration are re-read
    then; C(unset-environment) alone does not remove a C(DefaultEnvironment=) variable) and checks the result - it
    fails when a variable would still reach the next start.
  - It never restarts the unit; I(restart_required) says whether the running process still has a variable.
version_added: "1.0.0"
author: vgpu toolkit contributors
options:
  unit:
    description: The systemd unit.
    type: str
    default: ollama.service
  variables:
    description: Names of the variables the unit must no longer get.
    type: list
    elements: str
    required: true
  systemd_dir:
    description: The admin unit directory, the only one whose unit file and drop-ins are edited.
    type: path
    default: /etc/systemd/system
  keep_files:
    description:
      - Unit files or drop-ins whose C(Environment=) assignments of I(variables) stay (for example the toolkit's own
        drop-in, whose value must win once the others are gone). The result check then accepts the value that
        comes from one of them.
    type: list
    elements: path
    default: []
  stamp:
    description:
      - Time stamp used in the names of the backups and moved-aside files (UTC, C(YYYYmmddTHHMMSSZ)); default
        now. A playbook passes one stamp to every task of a run so their backups can be told apart by run.
    type: str
  daemon_reload:
    description: Run C(systemctl daemon-reload) after editing unit files or the manager configuration.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Plans every removal and reports it (with the diff), changes nothing.
  diff_mode:
    support: full
    description: One before/after entry per file edited (and one for the manager environment).
notes:
  - Needs root. Values are read as systemd reads them; C(systemctl show-environment) and C(/proc/1/environ)
    (for C(PassEnvironment=)) are asked when systemd runs.
seealso:
  - module: vgpu_doctor
    description: Names the source of every variable it reports (file and line), which is what this module edits.
'''

EXAMPLES = r'''
- name: Stop Ollama from getting CUDA_VISIBLE_DEVICES (wherever it is set)
  systemd_env_unset:
    unit: ollama.service
    variables: [CUDA_VISIBLE_DEVICES]
  register: unset
  notify: Restart ollama

- name: See what would be removed, and from which files
  systemd_env_unset:
    variables: [CUDA_VISIBLE_DEVICES, OLLAMA_LLM_LIBRARY]
  check_mode: true
  diff: true
'''

RETURN = r'''
actions:
  description: One entry per source taken out (planned in check mode) - C(how) (edit_unit_file,
    edit_environment_file, edit_pass_environment, edit_system_conf, unset_environment, move_dropin), C(variable),
    C(path), C(line), C(source) (a sentence), C(backup) (the kept original, or the moved file).
  returned: always
  type: list
  elements: dict
refused:
  description: Sources that may not be edited, with C(manual) (what a person must do) and C(reason).
    Non-empty only in a failed result.
  returned: failure
  type: list
  elements: dict
next_start:
  description: For each of I(variables), the value the next start still gets - null (gone), or after success
    only a value from one of I(keep_files).
  returned: always
  type: dict
restart_required:
  description: The unit's running main process still has one of I(variables) in its environment.
  returned: always
  type: bool
daemon_reloaded:
  description: Whether C(systemctl daemon-reload) was run.
  returned: always
  type: bool
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vgpu_edit import run_stamp
from ansible.module_utils.vgpu_fs import atomic_write, make_backup
from ansible.module_utils.vgpu_env_file import remove_env_file_assignments
from ansible.module_utils.vgpu_manager_env import manager_environment, parse_show_environment
from ansible.module_utils.vgpu_systemctl import read_proc_environ, try_systemctl_show
from ansible.module_utils.vgpu_systemd import unit_search_dirs, valid_unit_name
from ansible.module_utils.vgpu_unit_env import describe_source, editable_file, predict_environment, removal_plan
from ansible.module_utils.vgpu_unit_syntax import remove_setting_words, unit_settings_left, valid_env_name

PROC_ROOT = '/proc'
# edits after which systemd must re-read its configuration
RELOAD_HOWS = ('edit_unit_file', 'edit_pass_environment', 'edit_system_conf')
SHOW_PROPERTIES = ['LoadState', 'User', 'MainPID', 'EnvironmentFiles', 'PassEnvironment']
# how -> (section, key, word kind) of the file line it edits
_WORD_EDITS = {'edit_unit_file': ('Service', 'Environment', 'assignment'),
               'edit_pass_environment': ('Service', 'PassEnvironment', 'name'),
               'edit_system_conf': ('Manager', 'DefaultEnvironment', 'assignment')}


def _read(path):
    with open(path, 'rb') as f:
        return f.read().decode('utf-8')


def ask_systemd(module, unit):
    """(props or None, manager env or None, pid1 environ or None)."""
    props, _err = try_systemctl_show(module, unit, SHOW_PROPERTIES)
    if props is None or props.get('LoadState') in (None, ''):
        return None, None, None
    shown = None
    systemctl = module.get_bin_path('systemctl', required=False)
    rc, out, _e = module.run_command([systemctl, 'show-environment'])
    if rc == 0:
        shown = parse_show_environment(out)
    return props, shown, read_proc_environ(1, PROC_ROOT)


def predict(module, unit, dirs):
    props, shown, pid1 = ask_systemd(module, unit)
    manager = manager_environment(shown) if shown is not None else None
    user = (props or {}).get('User') or None
    return predict_environment(unit, dirs, manager=manager, pid1_environ=pid1, user=user, props=props), props


def plan_removals(predicted, variables, unit, systemd_dir, keep=()):
    """(edits {path: {'how', 'variables', 'hows'}}, unsets [variable], actions, refused)."""
    edits, unsets, actions, refused = {}, [], [], []
    for name in variables:
        for fix in removal_plan(predicted, name, unit, systemd_dir):
            if fix['kind'] == 'environment' and fix['path'] in keep:
                continue
            entry = {'how': fix['how'], 'variable': name, 'path': fix['path'], 'line': fix['line'],
                     'source': fix['source']}
            if not fix['editable']:
                refused.append(dict(entry, manual=fix['manual'], reason=fix['reason']))
                continue
            actions.append(entry)
            if fix['how'] == 'unset_environment':
                if name not in unsets:
                    unsets.append(name)
                continue
            e = edits.setdefault(fix['path'], {'how': fix['how'], 'variables': [], 'hows': set()})
            e['hows'].add(fix['how'])
            if name not in e['variables']:
                e['variables'].append(name)
    return edits, unsets, actions, refused


def edited_text(path, edit):
    """(before, after) of one file with the edit's variables taken out."""
    before = _read(path)
    after = before
    for how in sorted(edit['hows']):
        if how == 'edit_environment_file':
            after, _gone = remove_env_file_assignments(after, edit['variables'])
        else:
            section, key, kind = _WORD_EDITS[how]
            after, _gone = remove_setting_words(after, section, key, edit['variables'], kind)
    return before, after


def main():
    module = AnsibleModule(
        argument_spec=dict(
            unit=dict(type='str', default='ollama.service'),
            variables=dict(type='list', elements='str', required=True),
            systemd_dir=dict(type='path', default='/etc/systemd/system'),
            keep_files=dict(type='list', elements='path', default=[]),
            stamp=dict(type='str'),
            daemon_reload=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    unit = p['unit']
    if not valid_unit_name(unit):
        module.fail_json(msg='unit %r is not a valid unit name (e.g. ollama.service)' % unit)
    bad = [v for v in p['variables'] if not valid_env_name(v)]
    if bad or not p['variables']:
        module.fail_json(msg='variables must be environment variable names ([A-Za-z_][A-Za-z0-9_]*), got %r'
                         % (bad or p['variables']))
    stamp, stamp_epoch = run_stamp(module, p['stamp'])
    systemd_dir = os.path.normpath(p['systemd_dir'])
    dirs = unit_search_dirs(systemd_dir)

    predicted, props = predict(module, unit, dirs)
    keep = [os.path.normpath(k) for k in p['keep_files']]
    edits, unsets, actions, refused = plan_removals(predicted, p['variables'], unit, systemd_dir, keep)
    next_start = dict((v, predicted['environment'].get(v)) for v in p['variables'])
    running = None
    if props and (props.get('MainPID') or '0') != '0':
        running = read_proc_environ(props['MainPID'], PROC_ROOT)
    restart_required = bool(running) and any(v in running for v in p['variables'])
    result = dict(changed=False, actions=actions, next_start=next_start, restart_required=restart_required,
                  daemon_reloaded=False)
    if refused:
        module.fail_json(msg='%s not changed: %s' % (unit, ' / '.join('%s comes from %s, which the toolkit does '
                                                                      'not edit: %s' % (r['variable'], r['source'],
                                                                                        r['manual'])
                                                                      for r in refused)),
                         refused=refused, **result)
    if props is None and unsets:
        module.fail_json(msg='systemd is not running: cannot unset %s in the manager environment' % ', '.join(unsets),
                         **result)

    # plan every file change first: all files are read and checked before any is written
    changes, diffs = [], []
    for path in sorted(edits):
        ok, why = editable_file(path)
        if not ok:
            module.fail_json(msg='%s changed while being planned: %s' % (path, why), **result)
        try:
            before, after = edited_text(path, edits[path])
        except (IOError, OSError, UnicodeDecodeError) as e:
            module.fail_json(msg='cannot read %s: %s' % (path, e), **result)
        if before == after:
            continue
        is_dropin = os.path.dirname(path).endswith('.d') and path.endswith('.conf') and \
            os.path.dirname(os.path.dirname(path)) == systemd_dir
        move = is_dropin and unit_settings_left(after) == 0
        changes.append({'path': path, 'before': before, 'after': after, 'move': move})
        diffs.append({'before_header': path, 'after_header': '%s (moved aside)' % path if move else path,
                      'before': before, 'after': '' if move else after})
    if unsets:
        diffs.append({'before_header': 'systemctl show-environment', 'after_header': 'systemctl show-environment',
                      'before': ''.join('%s=%s\n' % (v, predicted['environment'].get(v, '')) for v in unsets),
                      'after': ''})
    changed = bool(changes or unsets)
    result['changed'] = changed
    if module._diff:
        result['diff'] = diffs
    if module.check_mode or not changed:
        module.exit_json(**result)

    # apply: backup, then an atomic write (or a move aside) per file
    reload_needed = False
    for c in changes:
        path = c['path']
        if os.path.islink(path) or not os.path.isfile(path):
            module.fail_json(msg='%s is no longer a regular file; stopped before changing it' % path, **result)
        for a in actions:
            if a['path'] == path:
                a['backup'] = None
        if c['move']:
            dest = '%s.vgpu-disabled-%s' % (path, stamp)
            if os.path.lexists(dest):
                module.fail_json(msg='%s exists already; not moving %s over it' % (dest, path), **result)
            os.rename(path, dest)
            for a in actions:
                if a['path'] == path:
                    a.update(how='move_dropin', backup=dest)
        else:
            backup = make_backup(path, now=stamp_epoch)
            st = os.stat(path)
            atomic_write(path, c['after'].encode('utf-8'), mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid,
                         module=module)
            for a in actions:
                if a['path'] == path:
                    a['backup'] = backup
        reload_needed = reload_needed or bool(edits[path]['hows'] & set(RELOAD_HOWS))
    systemctl = module.get_bin_path('systemctl', required=False)
    for v in unsets:
        rc, _out, err = module.run_command([systemctl, 'unset-environment', v])
        if rc != 0:
            module.fail_json(msg='systemctl unset-environment %s failed (rc=%d): %s' % (v, rc, err.strip()), **result)
    if reload_needed and p['daemon_reload'] and props is not None:
        rc, _out, err = module.run_command([systemctl, 'daemon-reload'])
        if rc != 0:
            module.fail_json(msg='systemctl daemon-reload failed (rc=%d): %s' % (rc, err.strip()), **result)
        result['daemon_reloaded'] = True

    # the result, asked again: no variable may reach the next start any more
    again, _props = predict(module, unit, dirs)
    result['next_start'] = dict((v, again['environment'].get(v)) for v in p['variables'])
    left = dict((v, val) for v, val in result['next_start'].items() if val is not None and not (
        again['sources'].get(v, {}).get('kind') == 'environment' and again['sources'][v].get('path') in keep))
    if left:
        module.fail_json(msg='after the edits %s would still get %s' % (unit, ', '.join(
            '%s=%s (from %s)' % (v, val, describe_source(again['sources'].get(v))) for v, val in sorted(left.items()))),
            **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
