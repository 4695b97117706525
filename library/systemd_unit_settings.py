#!/usr/bin/python
# -*- coding: utf-8 -*-
# Take settings out of a systemd unit file or drop-in on the host, or move the whole file aside.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: systemd_unit_settings
short_description: Remove settings from a systemd unit file or drop-in, or move the file aside
description:
  - Takes the I(settings) of I(section) out of the unit file or drop-in at I(path), each setting whole (a setting
    continued over several lines with a backslash goes with all of its lines). Every other line - comments, other
    sections, other settings - is kept byte for byte. Parsing follows systemd.syntax(7) (the toolkit's one
    unit-file parser, C(vgpu_unit_syntax)).
  - The original is kept as C(<name>.vgpu-disabled-<stamp>) beside it (systemd ignores that name), then the file is
    rewritten atomically with its owner and mode.
  - A drop-in (a file in a C(.d) directory) left without any setting is not rewritten but moved aside whole, as
    C(<name>.vgpu-disabled-<stamp>). The unit file itself is never moved for that reason.
  - With I(move_aside=true) the file is moved aside whole, whatever it contains (a conflicting drop-in).
  - "What it refuses (fails, changing nothing): a path outside I(systemd_dir) (only the unit files of
    I(systemd_dir) and the drop-ins of its C(.d) directories are edited), a symlink (it never writes through one),
    a directory or other non-regular file, a file that is not UTF-8, a moved-aside name that exists already."
  - A missing I(path) is not an error - there is nothing to take out (a second run after the file was moved).
  - It does not run C(systemctl daemon-reload) and never restarts the unit; a changed result needs both.
version_added: "1.0.0"
author: vgpu toolkit contributors
options:
  path:
    description: The unit file or drop-in, in I(systemd_dir) or one of its C(<unit>.d) directories.
    type: path
    required: true
  settings:
    description: Names of the settings to take out (for example C(PrivateDevices)). Required unless I(move_aside).
    type: list
    elements: str
    default: []
  section:
    description: The section the I(settings) are taken out of.
    type: str
    default: Service
  move_aside:
    description: Move the whole file aside (as C(<name>.vgpu-disabled-<stamp>)) instead of editing it.
    type: bool
    default: false
  systemd_dir:
    description: The admin unit directory, the only one whose files are edited or moved.
    type: path
    default: /etc/systemd/system
  stamp:
    description:
      - Time stamp in the name of the moved-aside file or the kept original (UTC, C(YYYYmmddTHHMMSSZ)); default
        now. A playbook passes one stamp to every task of a run.
    type: str
attributes:
  check_mode:
    support: full
    description: Plans the edit or the move and reports it (with the diff), changes nothing.
  diff_mode:
    support: full
    description: The file before and after (empty after a move).
notes:
  - Needs write access to the file's directory (root for C(/etc/systemd/system)).
seealso:
  - module: systemd_env_unset
    description: Takes environment variables out where they are set (Environment= words, EnvironmentFile= lines).
  - module: ld_so_preload
    description: Takes entries out of C(/etc/ld.so.preload).
'''

EXAMPLES = r'''
- name: Take sandbox settings out of a drop-in applied after ours
  systemd_unit_settings:
    path: /etc/systemd/system/ollama.service.d/zz-hardening.conf
    settings: [PrivateDevices, DevicePolicy]
    stamp: "{{ stamp }}"
  register: stripped
  notify: Restart ollama

- name: Move a conflicting drop-in aside
  systemd_unit_settings:
    path: /etc/systemd/system/ollama.service.d/override.conf
    move_aside: true
'''

RETURN = r'''
action:
  description: C(edited) (settings taken out, the original kept as I(backup)), C(moved) (the file is now I(backup)),
    or C(none) (nothing to take out, or no file). Planned in check mode.
  returned: always
  type: str
  sample: edited
path:
  description: The file (normalised).
  returned: always
  type: str
backup:
  description: The kept original (C(edited)) or where the file was moved (C(moved)); null for C(none).
  returned: always
  type: str
  sample: /etc/systemd/system/ollama.service.d/zz-hardening.conf.vgpu-disabled-20261203T120000Z
removed:
  description: The settings taken out - C({key, line, value}) (line is the setting's first line).
  returned: always
  type: list
  elements: dict
settings_left:
  description: How many settings the file has after the edit (any section); null when there is no file.
  returned: always
  type: int
'''

import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vgpu_edit import read_for_edit, run_stamp
from ansible.module_utils.vgpu_fs import atomic_write
from ansible.module_utils.vgpu_unit_syntax import remove_settings, unit_settings_left

DISABLED_SUFFIX = '.vgpu-disabled-'


def disabled_name(path, stamp):
    """Where a file is moved aside or its original kept: <name>.vgpu-disabled-<stamp> (systemd ignores it)."""
    return '%s%s%s' % (path, DISABLED_SUFFIX, stamp)


def is_dropin(path):
    return os.path.dirname(path).endswith('.d')


def allowed(path, systemd_dir):
    """None when ``path`` is a unit file of systemd_dir or a drop-in of one of its .d directories, else why not.
    The directory is resolved: a symlinked .d directory pointing elsewhere is refused too."""
    if not os.path.isabs(path):
        return '%s is not an absolute path' % path
    parent = os.path.dirname(path)
    top = os.path.normpath(systemd_dir)
    if not (parent == top or (os.path.dirname(parent) == top and parent.endswith('.d'))):
        return ('%s is not a unit file of %s or a drop-in in one of its <unit>.d directories (files elsewhere belong '
                'to a package or are generated: change them there, or copy the unit to %s)' % (path, top, top))
    real_parent = os.path.realpath(parent)
    real_top = os.path.realpath(top)
    if not (real_parent == real_top or os.path.dirname(real_parent) == real_top):
        return '%s resolves to %s, outside %s' % (parent, real_parent, top)
    return None


def plan(path, settings, section, move_aside, text):
    """(action, after, removed): what happens to the file with content ``text`` - 'moved' (after None), 'edited'
    or 'none'. A drop-in left without settings is moved aside, never the unit file."""
    if move_aside:
        return 'moved', None, []
    after, removed = remove_settings(text, settings, section)
    if not removed:
        return 'none', text, []
    if is_dropin(path) and unit_settings_left(after) == 0:
        return 'moved', None, removed
    return 'edited', after, removed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            settings=dict(type='list', elements='str', default=[]),
            section=dict(type='str', default='Service'),
            move_aside=dict(type='bool', default=False),
            systemd_dir=dict(type='path', default='/etc/systemd/system'),
            stamp=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    path = os.path.normpath(p['path'])
    stamp, _epoch = run_stamp(module, p['stamp'])
    if not p['move_aside'] and not p['settings']:
        module.fail_json(msg='give the settings to take out of %s (settings: [PrivateDevices, ...]), or '
                             'move_aside: true to move the whole file aside' % path)
    result = dict(changed=False, action='none', path=path, backup=None, removed=[], settings_left=None)
    why = allowed(path, p['systemd_dir'])
    if why:
        module.fail_json(msg='%s: not changed. %s' % (path, why), **result)
    found = read_for_edit(module, path, 'take %s out of the file by hand' % ', '.join(p['settings']) if p['settings']
                          else 'move the file aside by hand', result)
    if found is None:
        module.exit_json(**result)       # no file: nothing to take out (moved by an earlier run)
    st, raw, before = found

    action, after, removed = plan(path, p['settings'], p['section'], p['move_aside'], before)
    dest = disabled_name(path, stamp) if action != 'none' else None
    result.update(action=action, backup=dest, removed=removed, changed=action != 'none',
                  settings_left=unit_settings_left(after) if after is not None else 0)
    if dest and os.path.lexists(dest):
        module.fail_json(msg='%s exists already: not changed; move it away or give another stamp' % dest, **result)
    if module._diff:
        result['diff'] = {'before_header': path, 'before': before,
                          'after_header': '%s (moved to %s)' % (path, os.path.basename(dest)) if action == 'moved'
                          else path, 'after': after or ''}
    if module.check_mode or action == 'none':
        module.exit_json(**result)

    try:
        if action == 'moved':
            os.rename(path, dest)
        else:
            # the original first (a copy with its owner and mode), then the edited text over the file
            atomic_write(dest, raw, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, module=module)
            atomic_write(path, after.encode('utf-8'), mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                         module=module)
    except (IOError, OSError) as e:
        module.fail_json(msg='%s %s failed: %s' % ('moving' if action == 'moved' else 'writing', path, e), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
