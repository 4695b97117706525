#!/usr/bin/python
# -*- coding: utf-8 -*-
# Point every libcuda.so.1 (and friends) the loader or Ollama may find at the shim, in one call.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: cuda_links
short_description: Ensure the library-name symlinks that point at a vGPU shim
description:
  - For every directory in I(dirs) (plus each existing C(<ollama_lib_dir>/cuda_v*) directory when
    I(discover_ollama_dirs)) and every name in I(names), makes C(<dir>/<name>) a symlink to I(target).
  - I(links) does the same for several targets in one call (for example C(libcuda.so.1) to the CUDA shim and
    C(libnvidia-ml.so.1) to the NVML shim); every set is validated and planned before any link changes.
  - Validates every path of every set first and changes nothing if any is wrong (all-or-nothing) - a directory
    where a link should go, the same link path planned by two sets, a link path that is another set's target,
    a regular file without I(replace_files), a real NVIDIA driver library without
    I(replace_driver_libs), a missing or non-regular I(target).
  - Each link is made atomically - a temporary symlink in the same directory renamed over the path. An
    existing symlink is never followed; one that points elsewhere or dangles is replaced.
  - A link that already resolves to I(target) through a relative text (ldconfig rewrites
    C(/usr/lib64/libcuda.so.1) to C(libvgpu-cuda.so) when the shim's SONAME is libcuda.so.1) counts as
    unchanged.
  - Missing directories are reported as C(skipped) (reason C(directory missing)), so a host whose Ollama has
    no C(cuda_v13) does not get one invented. With I(create_missing_dirs=true) they are created (mode 0755).
  - With I(state=absent) only links that point at I(target) are removed; where this module had backed up a
    regular file at that path, the newest backup is put back.
version_added: "1.0.0"
author: vgpu toolkit contributors
options:
  target:
    description:
      - The installed shim (a regular file, not a symlink), for example C(/usr/lib64/libvgpu-cuda.so).
      - With I(state=absent) it need not exist any more; it only selects which links to remove.
      - One of I(target) and I(links) is required; they are mutually exclusive.
    type: path
  names:
    description:
      - Link names to create in each directory for I(target), for example C(libcuda.so.1), or
        C(libnvidia-ml.so.1) for the NVML shim.
      - Not used with I(links) (each set has its own I(names)).
    type: list
    elements: str
    default: [libcuda.so.1]
  links:
    description:
      - Several C({target, names}) sets handled in one call, in order; each behaves like I(target) and I(names)
        and shares every other option.
      - All sets are validated and planned first; if any is refused nothing is changed.
      - No link path may be planned by two sets (the same name listed under two targets), and no set may
        place a link where another set's target is.
    type: list
    elements: dict
    suboptions:
      target:
        description: The installed shim this set's links point at, as I(target).
        type: path
        required: true
      names:
        description: Link names for this set, as I(names).
        type: list
        elements: str
        default: [libcuda.so.1]
  dirs:
    description: Directories to place the links in.
    type: list
    elements: path
    default: [/usr/lib64, /usr/local/lib, /usr/local/lib/ollama, /usr/local/lib/ollama/cuda_v12,
              /usr/local/lib/ollama/cuda_v13]
  ollama_lib_dir:
    description: Ollama's library directory; its C(cuda_v*) subdirectories are added when I(discover_ollama_dirs).
    type: path
    default: /usr/local/lib/ollama
  discover_ollama_dirs:
    description: Add every existing C(<ollama_lib_dir>/cuda_v*) directory to I(dirs) (future CUDA backends).
    type: bool
    default: true
  create_missing_dirs:
    description:
      - Create missing directories from I(dirs) (mode 0755, root) instead of skipping them.
      - Off by default - a missing C(cuda_v13) means this Ollama has no such backend.
    type: bool
    default: false
  replace_files:
    description:
      - Replace a regular file found where a link should go (a stale copy of a shim is the usual case). It
        is kept as C(.<name>.<UTC timestamp>.vgpu-backup) in the same directory when I(backup) is true.
      - Without it such a file fails the task and is listed.
    type: bool
    default: false
  replace_driver_libs:
    description:
      - Also replace a file that looks like a real NVIDIA driver library - one owned by a dpkg package,
        named like C(libcuda.so.535.104.05), containing NVIDIA driver strings (C(/dev/nvidiactl),
        C(NVIDIA UNIX), ...), or with SONAME libcuda.so.1/libnvidia-ml.so.1 while the shim's SONAME differs.
      - A byte-identical copy of I(target) is never considered a driver.
    type: bool
    default: false
  backup:
    description:
      - Keep what a link replaces - a regular file, or another symlink (its text, never followed) - as a hidden
        backup in the same directory (C(.<name>.<UTC>.vgpu-backup)); hidden because ldconfig would otherwise
        read a C(lib*.so*) backup and repoint SONAME links at it.
      - I(state=absent) restores the newest such backup.
    type: bool
    default: true
  state:
    type: str
    choices: [present, absent]
    default: present
    description: C(present) makes the links; C(absent) removes links that point at I(target).
attributes:
  check_mode:
    support: full
    description: Validates and reports every link's planned action; changes nothing.
  diff_mode:
    support: full
    description: C(path -> target) lines before and after, for every set.
seealso:
  - module: vgpu_shim
'''

EXAMPLES = r'''
- name: Point every libcuda.so.1 at the CUDA shim
  cuda_links:
    target: /usr/lib64/libvgpu-cuda.so
  register: cuda_links_result

- name: NVML links beside them
  cuda_links:
    target: /usr/lib64/libvgpu-nvml.so
    names: [libnvidia-ml.so.1]

- name: CUDA and NVML links in one call
  cuda_links:
    links:
      - target: /usr/lib64/libvgpu-cuda.so
        names: [libcuda.so.1]
      - target: /usr/lib64/libvgpu-nvml.so
        names: [libnvidia-ml.so.1]
  register: cuda_links_result

- name: Replace a stale regular-file copy left by an old install
  cuda_links:
    target: /usr/lib64/libvgpu-cuda.so
    replace_files: true

- name: Roll back (remove our links, restore what they replaced)
  cuda_links:
    target: /usr/lib64/libvgpu-cuda.so
    state: absent
'''

RETURN = r'''
links:
  description:
    - One entry per C(<dir>/<name>), in order; with I(links), the entries of each set one after the other.
    - C(target) and C(name) - the set's target and the link name the entry belongs to.
    - C(action) is one of C(created), C(replaced), C(unchanged), C(removed), C(restored) (absent, a backup put
      back), C(skipped), C(backed_up_and_replaced).
    - C(before)/C(after) - the link text, null when absent, or C(regular file sha256=...).
  returned: always
  type: list
  elements: dict
  sample:
    - {path: /usr/local/lib/ollama/cuda_v12/libcuda.so.1, target: /usr/lib64/libvgpu-cuda.so, name: libcuda.so.1,
       before: null, after: /usr/lib64/libvgpu-cuda.so, action: created}
    - {path: /usr/local/lib/ollama/cuda_v13/libcuda.so.1, target: /usr/lib64/libvgpu-cuda.so, name: libcuda.so.1,
       before: null, after: null, action: skipped, reason: directory missing}
dirs:
  description: The directories considered (after discovery and de-duplication).
  returned: always
  type: list
  elements: str
changed:
  description: Whether any link was (or in check mode would be) created, replaced, removed or restored.
  returned: always
  type: bool
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vgpu_elf import ElfError, read_elf
from ansible.module_utils.vgpu_fs import (
    atomic_symlink, backup_path, describe, find_backups, looks_like_nvidia_driver, make_backup, sha256_file,
)
from ansible.module_utils.vgpu_layout import OLLAMA_LIB_DIR, cuda_dirs, default_link_dirs, unique_dirs

# Fallbacks for a task that passes nothing (the roles always pass theirs): the preload layout's link dirs.
DEFAULT_DIRS = default_link_dirs('preload')
DEFAULT_NAMES = ['libcuda.so.1']
CHANGING = ('created', 'replaced', 'removed', 'restored', 'backed_up_and_replaced')


def candidate_dirs(dirs, ollama_lib_dir, discover):
    """dirs + discovered cuda_v* dirs, de-duplicated by path and by real path (first wins)."""
    wanted = unique_dirs(list(dirs) + (cuda_dirs(ollama_lib_dir) if discover else []))
    out, seen = [], set()
    for d in wanted:
        key = os.path.realpath(d) if os.path.exists(d) else d
        if key not in seen:
            seen.update([d, key])
            out.append(d)
    return out


def points_at(info, target):
    """Does the symlink described by info resolve to target directly (relative text or dir aliases allowed,
    a chain through another link not)?"""
    if info['resolved'] == target:
        return True
    if info['dangling'] or os.path.islink(info['resolved']):
        return False
    try:
        return os.path.realpath(info['resolved']) == os.path.realpath(target)
    except OSError:
        return False


def show(info):
    kind = info['kind']
    if kind == 'missing':
        return None
    if kind == 'symlink':
        return info['link']
    if kind == 'file':
        return 'regular file sha256=%s' % info.get('sha256', '?')
    return kind


def plan_links(p, sets):
    """(dirs, items, errors) - every path's intended action for every (target, names, target_soname) set,
    in order, and every reason to refuse any of them."""
    dirs = candidate_dirs(p['dirs'], p['ollama_lib_dir'], p['discover_ollama_dirs'])
    usable, errors = usable_dirs(dirs)
    planned = []
    for target, names, target_soname in sets:
        set_items, set_errors = plan_set(p, usable, target, names, target_soname)
        planned.append(set_items)
        errors.extend(set_errors)
    errors.extend(conflicts(planned, [target for target, _names, _soname in sets]))
    return dirs, [it for set_items in planned for it in set_items], errors


def usable_dirs(dirs):
    """([(dir, exists)], errors) - a dangling symlink counts as a missing directory, anything else that is not
    a directory (or a link to one) is refused."""
    usable, errors = [], []
    for d in dirs:
        dinfo = describe(d)
        if dinfo['kind'] == 'directory' or (dinfo['kind'] == 'symlink' and os.path.isdir(d)):
            usable.append((d, True))
        elif dinfo['kind'] == 'missing' or (dinfo['kind'] == 'symlink' and dinfo['dangling']):
            usable.append((d, False))
        else:
            errors.append('%s is not a directory (%s); remove it or drop it from dirs' % (d, dinfo['kind']))
    return usable, errors


def conflicts(planned, targets):
    """Reasons to refuse a plan of several sets (their item lists, their targets): a path planned by two sets,
    a link that would be placed over another set's target."""
    errors, owner = [], {}
    targets = dict((os.path.realpath(t), t) for t in targets)
    for index, set_items in enumerate(planned):
        for it in set_items:
            first = owner.setdefault(it['path'], (index, it['target']))
            if first[0] != index:
                errors.append('%s is planned by two sets (targets %s and %s); list each name in one set only'
                              % (it['path'], first[1], it['target']))
            # the link itself is not followed: a link to another shim is replaced, not that shim
            where = os.path.join(os.path.realpath(os.path.dirname(it['path'])), os.path.basename(it['path']))
            other = targets.get(where)
            if other is not None and other != it['target'] and it['action'] in CHANGING:
                errors.append('%s is the target of another set (%s); a link there would replace that shim'
                              % (it['path'], other))
    return errors


def plan_set(p, usable, target, names, target_soname):
    """(items, errors) for one target and its names over the usable dirs."""
    items, errors = [], []
    present = p['state'] == 'present'
    target_real = os.path.realpath(target)
    for d, exists in usable:
        for name in names:
            path = os.path.join(d, name)
            item = {'path': path, 'target': target, 'name': name, 'before': None, 'after': None, 'action': None}
            items.append(item)
            if not exists:
                if present and p['create_missing_dirs']:
                    item.update(action='created', after=target, create_dir=d)
                else:
                    item.update(action='skipped', reason='directory missing')
                continue
            info = describe(path)
            if info['kind'] == 'file':
                info['sha256'] = sha256_file(path)
            item['before'] = show(info)
            if info['kind'] == 'symlink' and info['dangling']:
                item['dangling'] = True
            if not present:
                if info['kind'] == 'symlink' and points_at(info, target):
                    backups = find_backups(path)
                    if p['backup'] and backups:
                        kept = backups[-1]
                        item.update(action='restored', backup_file=kept,
                                    after=os.readlink(kept) if os.path.islink(kept) else 'regular file (from %s)' % kept)
                    else:
                        item.update(action='removed', after=None)
                else:
                    item.update(action='unchanged', after=item['before'])
                    if info['kind'] != 'missing':
                        item['reason'] = 'not a link to %s' % target
                continue
            if os.path.realpath(path) == target_real and info['kind'] != 'symlink':
                errors.append('%s is the target itself; install the shim under its own name (for example '
                              'libvgpu-cuda.so) so the link name stays free' % path)
                continue
            if info['kind'] == 'missing':
                item.update(action='created', after=target)
            elif info['kind'] == 'symlink':
                if points_at(info, target):
                    item.update(action='unchanged', after=info['link'])
                elif p['backup']:
                    # another link (a driver's, an older shim's): its text is kept, state=absent puts it back
                    item.update(action='replaced', after=target, backup_file=backup_path(path))
                else:
                    item.update(action='replaced', after=target)
            elif info['kind'] == 'directory':
                errors.append('%s is a directory where a link should go; remove it or drop %s from dirs'
                              % (path, d))
            elif info['kind'] == 'file':
                identical = info['sha256'] == sha256_file(target)
                if not p['replace_files']:
                    errors.append('%s is a regular file (%s), not a link; set replace_files: true to back it up '
                                  'and replace it with a link' % (
                                      path, 'an identical copy of the shim' if identical
                                      else 'sha256 %s' % info['sha256']))
                    continue
                reasons = [] if identical else looks_like_nvidia_driver(path, target, target_soname)
                if reasons and not p['replace_driver_libs']:
                    errors.append('%s looks like a real NVIDIA driver library (%s); it would shadow or be shadowed '
                                  'by the shim (DRIVER_SHADOW). Uninstall the driver package, or set '
                                  'replace_driver_libs: true to back it up and replace it'
                                  % (path, '; '.join(reasons)))
                    continue
                if reasons:
                    item['driver_reasons'] = reasons
                if p['backup']:
                    item.update(action='backed_up_and_replaced', after=target, backup_file=backup_path(path))
                else:
                    item.update(action='replaced', after=target)
            else:
                errors.append('%s is a special file (%s); remove it first' % (path, info['kind']))
    return items, errors


def diff_text(items, key):
    lines = []
    for it in items:
        if it['action'] == 'skipped':
            continue
        v = it[key]
        if v is None:
            lines.append('%s (absent)' % it['path'])
        elif v.startswith('regular file'):
            lines.append('%s (%s)' % (it['path'], v))
        else:
            lines.append('%s -> %s' % (it['path'], v))
    return '\n'.join(lines) + ('\n' if lines else '')


def apply(items):
    """Carry out the plan. Returns [(item, error)] for anything that failed."""
    failures = []
    for it in items:
        action = it['action']
        if action not in CHANGING:
            continue
        try:
            if it.get('create_dir') and not os.path.isdir(it['create_dir']):
                os.makedirs(it['create_dir'], 0o755)
                os.chmod(it['create_dir'], 0o755)
            if action in ('created', 'replaced', 'backed_up_and_replaced'):
                # a planned backup_file: keep what is there (a file, or another link's text) first
                if it.get('backup_file'):
                    it['backup_file'] = make_backup(it['path'])
                atomic_symlink(it['target'], it['path'])
            elif action == 'removed':
                os.unlink(it['path'])
            elif action == 'restored':
                # rename the backup over the link: the path never goes missing
                os.rename(it['backup_file'], it['path'])
        except (IOError, OSError) as e:
            failures.append((it, str(e)))
            break
    return failures


def check_target(module, target, raw, state):
    """Reasons to refuse one set's target (raw: as given, for the message)."""
    if not target or not os.path.isabs(target):
        return ['target must be an absolute path, got %r' % raw]
    if state != 'present':
        return []
    tinfo = describe(target)
    if tinfo['kind'] == 'missing' and module.check_mode:
        # --check on a fresh host: the shim task before this one only said it would install it
        module.warn('target %s does not exist yet; the links are planned anyway (check mode). A real run '
                    'fails unless an earlier task installs it.' % target)
    elif tinfo['kind'] == 'missing':
        return ['target %s does not exist; install the shim first (vgpu_shim)' % target]
    elif tinfo['kind'] == 'symlink':
        return ['target %s is a symlink (-> %s); point the links at the installed shim file itself'
                % (target, tinfo['link'])]
    elif tinfo['kind'] != 'file':
        return ['target %s is a %s, not a regular file' % (target, tinfo['kind'])]
    return []


def soname_of(target):
    try:
        return read_elf(target).soname
    except (ElfError, IOError, OSError):
        return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            target=dict(type='path'),
            names=dict(type='list', elements='str', default=list(DEFAULT_NAMES)),
            links=dict(type='list', elements='dict', options=dict(
                target=dict(type='path', required=True),
                names=dict(type='list', elements='str', default=list(DEFAULT_NAMES)),
            )),
            dirs=dict(type='list', elements='path', default=list(DEFAULT_DIRS)),
            ollama_lib_dir=dict(type='path', default=OLLAMA_LIB_DIR),
            discover_ollama_dirs=dict(type='bool', default=True),
            create_missing_dirs=dict(type='bool', default=False),
            replace_files=dict(type='bool', default=False),
            replace_driver_libs=dict(type='bool', default=False),
            backup=dict(type='bool', default=True),
            state=dict(type='str', default='present', choices=['present', 'absent']),
        ),
        required_one_of=[('target', 'links')],
        mutually_exclusive=[('target', 'links'), ('names', 'links')],
        supports_check_mode=True,
    )
    p = module.params
    given = p['links'] if p['links'] is not None else [dict(target=p['target'], names=p['names'])]
    # (target, names, raw target) per set; an empty target is kept as is so that it is refused below
    sets = [(os.path.normpath(s['target']) if s['target'] else s['target'], s['names'], s['target'])
            for s in given]

    # ---- validate parameters and every target
    errors = []
    if not sets:
        errors.append('links must list at least one {target, names} set')
    for _target, names, _raw in sets:
        for name in names:
            if not name or '/' in name or name in ('.', '..') or name.startswith('.'):
                errors.append('names must be plain file names (no "/", not hidden), got %r' % name)
    for d in p['dirs']:
        if not os.path.isabs(d):
            errors.append('dirs must be absolute paths, got %r' % d)
    if not os.path.isabs(p['ollama_lib_dir']):
        errors.append('ollama_lib_dir must be an absolute path, got %r' % p['ollama_lib_dir'])
    if not errors:
        for target, _names, raw in sets:
            errors.extend(check_target(module, target, raw, p['state']))
    if errors:
        module.fail_json(msg='%s. Nothing was changed.' % '; '.join(errors), errors=errors)

    # ---- plan every set (and refuse as a whole)
    present = p['state'] == 'present'
    dirs, items, errors = plan_links(p, [(t, n, soname_of(t) if present else None) for t, n, _raw in sets])
    if errors:
        module.fail_json(msg='Refusing to change any link: %s. Nothing was changed.' % '; '.join(errors),
                         errors=errors, links=items, dirs=dirs)

    changed = any(it['action'] in CHANGING for it in items)
    result = dict(changed=changed, links=items, dirs=dirs)
    for it in items:
        if it.get('driver_reasons'):
            module.warn('%s looked like an NVIDIA driver library (%s); replacing it as replace_driver_libs asked'
                        % (it['path'], '; '.join(it['driver_reasons'])))
    if module._diff:
        header = 'links to %s' % ', '.join(t for t, _n, _raw in sets)
        result['diff'] = {'before': diff_text(items, 'before'), 'after': diff_text(items, 'after'),
                          'before_header': header, 'after_header': header}
    if not changed or module.check_mode:
        module.exit_json(**result)

    # ---- apply, set after set
    failures = apply(items)
    if failures:
        it, err = failures[0]
        module.fail_json(msg='Changing %s failed (%s); links before it in the list were already changed, '
                             'the rest were not. Fix the cause and run again.' % (it['path'], err), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
