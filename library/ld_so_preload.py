#!/usr/bin/python
# -*- coding: utf-8 -*-
# Take libraries out of /etc/ld.so.preload on the host.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: ld_so_preload
short_description: Remove entries from /etc/ld.so.preload
description:
  - Takes I(entries) out of the global preload file I(path) (glibc's C(/etc/ld.so.preload), which loads its
    libraries into every process). Entries are separated by blanks, C(:) or newlines and compared as normalised
    paths; comments (C(#) to the end of the line) and lines without a removed entry are kept as written. A line
    that loses some entries is rewritten with the rest separated by a blank.
  - The original is kept as C(<path>.vgpu-backup-<stamp>) (root-owned, C(0644)), then the file is rewritten
    atomically (C(0644), root-owned) - or removed when no entry is left in it.
  - "What it refuses (fails, changing nothing): a symlink (it never writes through one), a directory or other
    non-regular file, a file that is not UTF-8, a backup name that exists already."
  - A missing I(path), or one without any of I(entries), is left as it is (C(changed=false)).
version_added: "1.0.0"
author: vgpu toolkit contributors
options:
  path:
    description: The preload file.
    type: path
    default: /etc/ld.so.preload
  entries:
    description: Libraries to take out (absolute paths, as written in the file).
    type: list
    elements: str
    required: true
  stamp:
    description: Time stamp in the name of the backup (UTC, C(YYYYmmddTHHMMSSZ)); default now.
    type: str
attributes:
  check_mode:
    support: full
    description: Plans the edit and reports it (with the diff), changes nothing.
  diff_mode:
    support: full
    description: The file before and after (empty after a removal).
notes:
  - Needs root. Processes started before the change keep the libraries they loaded; restart them.
seealso:
  - module: systemd_unit_settings
    description: Takes settings out of systemd unit files and drop-ins.
'''

EXAMPLES = r'''
- name: Take the shim out of the global preload file
  ld_so_preload:
    entries: [/usr/lib64/libvgpu-cuda.so]
    stamp: "{{ stamp }}"
  register: preload
  notify: Restart ollama
'''

RETURN = r'''
action:
  description: C(edited) (entries taken out), C(removed) (no entry was left, the file is gone) or C(none).
    Planned in check mode.
  returned: always
  type: str
removed:
  description: The entries taken out, as written in the file.
  returned: always
  type: list
  elements: str
backup:
  description: The kept original; null when nothing changed.
  returned: always
  type: str
  sample: /etc/ld.so.preload.vgpu-backup-20261203T120000Z
'''

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vgpu_edit import read_for_edit, run_stamp
from ansible.module_utils.vgpu_fs import atomic_write

MODE = 0o644


def strip_preload(text, entries=None):
    """(new_text, removed): ``text`` of a preload file without ``entries`` (separated by blanks, ':' or newlines;
    compared as normalised paths; comments kept). new_text is '' when no entry is left."""
    drop = set(os.path.normpath(e) for e in entries or [] if e)
    out, removed = [], []
    left = 0
    for raw in (text or '').splitlines():
        body, hash_, comment = raw.partition('#')
        words = [w for w in re.split(r'[:\s]+', body) if w]
        kept = [w for w in words if os.path.normpath(w) not in drop]
        removed.extend(w for w in words if os.path.normpath(w) in drop)
        left += len(kept)
        if words and not kept:
            if comment:
                out.append(hash_ + comment)
            continue
        if len(kept) != len(words):
            out.append(' '.join(kept) + ((' ' + hash_ + comment) if comment else ''))
        else:
            out.append(raw)
    if not left:
        return '', removed
    return '\n'.join(out) + '\n', removed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', default='/etc/ld.so.preload'),
            entries=dict(type='list', elements='str', required=True),
            stamp=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    path = os.path.normpath(p['path'])
    stamp, _epoch = run_stamp(module, p['stamp'])
    result = dict(changed=False, action='none', path=path, removed=[], backup=None)
    found = read_for_edit(module, path, 'take %s out of it by hand' % ', '.join(p['entries']), result)
    if found is None:
        module.exit_json(**result)
    _st, raw, before = found

    after, removed = strip_preload(before, p['entries'])
    if not removed:
        module.exit_json(**result)
    backup = '%s.vgpu-backup-%s' % (path, stamp)
    result.update(changed=True, action='edited' if after else 'removed', removed=removed, backup=backup)
    if os.path.lexists(backup):
        module.fail_json(msg='%s exists already: not changed; move it away or give another stamp' % backup, **result)
    if module._diff:
        result['diff'] = {'before_header': path, 'before': before,
                          'after_header': path if after else '%s (removed)' % path, 'after': after}
    if module.check_mode:
        module.exit_json(**result)
    try:
        atomic_write(backup, raw, mode=MODE, uid=0, gid=0, module=module)
        if after:
            atomic_write(path, after.encode('utf-8'), mode=MODE, uid=0, gid=0, module=module)
        else:
            os.unlink(path)
    except (IOError, OSError) as e:
        module.fail_json(msg='changing %s failed: %s' % (path, e), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
