#!/usr/bin/python
# -*- coding: utf-8 -*-
# Install one vGPU shim library after proving it is one (target side, Python 3.8+ stdlib only).

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: vgpu_shim
short_description: Validate and install one vGPU shim library
description:
  - Checks that I(src) is a usable shim for this host before touching I(dest) - a regular file, ELF64,
    little-endian, built for this host's machine (x86-64 or aarch64), a shared object (ET_DYN, not an
    executable), matching I(sha256), and exporting every one of I(required_symbols) from its dynamic
    symbol table. Any failed check leaves the host exactly as it was.
  - Then installs it at I(dest) atomically (a temp file in the same directory renamed into place).
    A symlink at I(dest) is replaced by the file; its target is never written. A directory at I(dest)
    is an error.
  - Idempotent - the same content with the wrong mode, owner or group is fixed in place, without a rewrite.
  - Reports libc/loader functions the shim exports (C(dlopen), C(dlsym), C(open), C(stat), ...) as
    I(interposed_symbols) with a warning - preloaded, such a shim hijacks Ollama's own library loading
    (failure code PRELOAD_INTERPOSES_LOADER); use the library_path strategy for it.
  - The parent directory of I(dest) must exist (create it with M(ansible.builtin.file) first).
version_added: "1.0.0"
author: vgpu toolkit contributors
options:
  src:
    description:
      - The shim file on the target (staged there, for example with M(ansible.builtin.copy)).
      - A symlink to a regular file is accepted; it is read through.
    type: path
    required: true
  dest:
    description: Where the shim is installed, for example C(/usr/lib64/libvgpu-cuda.so).
    type: path
    required: true
  kind:
    description:
      - Which library the shim replaces; selects the default I(required_symbols).
      - C(cuda) - the driver API (stands in for C(libcuda.so.1)); C(nvml) - C(libnvidia-ml.so.1);
        C(cudart) - the runtime API.
    type: str
    choices: [cuda, nvml, cudart]
    default: cuda
  sha256:
    description:
      - Expected sha256 of I(src) (64 hex characters, optionally prefixed C(sha256:)). Recommended - it is
        what tells a stale copy from the intended build.
    type: str
  required_symbols:
    description:
      - Exports the shim must define (global or weak, function or object, in the dynamic symbol table).
      - Default for C(cuda) - cuInit, cuDriverGetVersion, cuDeviceGetCount, cuDeviceGet, cuDeviceGetAttribute,
        cuDeviceGetName, cuDeviceTotalMem_v2, cuGetProcAddress_v2, cuGetErrorString.
      - Default for C(nvml) - nvmlInit_v2, nvmlDeviceGetCount_v2, nvmlShutdown.
      - Default for C(cudart) - cudaGetDeviceCount, cudaGetDevice, cudaSetDevice, cudaMemGetInfo,
        cudaDriverGetVersion, cudaRuntimeGetVersion, cudaGetErrorString.
      - An empty list checks no symbols.
    type: list
    elements: str
  backup:
    description:
      - Keep the file being replaced as C(.<name>.<UTC timestamp>.vgpu-backup) in the same directory.
      - The name is hidden on purpose - ldconfig scans loader directories for C(lib*.so*) names and
        would point a SONAME link at a visible backup.
    type: bool
    default: true
  mode:
    description: Permissions of I(dest), octal string.
    type: str
    default: '0755'
  owner:
    description: Owner of I(dest) (name or uid).
    type: str
    default: root
  group:
    description: Group of I(dest) (name or gid).
    type: str
    default: root
attributes:
  check_mode:
    support: full
    description: Validates everything and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Before/after sha256, SONAME, mode and owner of I(dest).
notes:
  - The ELF reader is pure Python (module_utils/vgpu_elf.py); it reads section headers, or the
    PT_DYNAMIC segment when section headers are stripped.
  - A warning is also given when I(dest) or one of its directories is writable by a non-root user
    (failure code PRELOAD_HIJACK_RISK).
seealso:
  - module: cuda_links
  - module: systemd_dropin_env
'''

EXAMPLES = r'''
- name: Stage the CUDA shim
  ansible.builtin.copy:
    src: files/libvgpu-cuda.so
    dest: /var/tmp/vgpu/libvgpu-cuda.so
    mode: '0644'

- name: Install the CUDA shim
  vgpu_shim:
    src: /var/tmp/vgpu/libvgpu-cuda.so
    dest: /usr/lib64/libvgpu-cuda.so
    kind: cuda
    sha256: "{{ vgpu_cuda_shim_sha256 }}"
  register: cuda_shim

- name: Install the NVML shim, checking one extra export
  vgpu_shim:
    src: /var/tmp/vgpu/libvgpu-nvml.so
    dest: /usr/lib64/libvgpu-nvml.so
    kind: nvml
    required_symbols: [nvmlInit_v2, nvmlDeviceGetCount_v2, nvmlShutdown, nvmlDeviceGetHandleByIndex_v2]
'''

RETURN = r'''
dest:
  description: The installed path.
  returned: always
  type: str
sha256:
  description: sha256 of the shim (I(src), and I(dest) after the run).
  returned: always
  type: str
soname:
  description: DT_SONAME of the shim, or null when it has none.
  returned: always
  type: str
needed:
  description: DT_NEEDED entries of the shim.
  returned: always
  type: list
  elements: str
symbols:
  description: Number of exported (defined global/weak function or object) dynamic symbols.
  returned: always
  type: int
interposed_symbols:
  description: Exported libc/loader functions (PRELOAD_INTERPOSES_LOADER); empty is good.
  returned: always
  type: list
  elements: str
  sample: [dlopen, dlsym]
machine:
  description: ELF machine of the shim, for example C(x86-64).
  returned: always
  type: str
backup_file:
  description: Backup of the replaced file, when one was (or in check mode would be) made.
  returned: when a regular file with other content was replaced and I(backup) is true
  type: str
plan:
  description: The changes, in order - C(install) (new file), C(replace) (other content),
    C(replace_symlink) (a link at I(dest)), C(backup), C(set_attributes) (mode/owner/group only).
  returned: always
  type: list
  elements: dict
changed:
  description: Whether I(dest) was (or in check mode would be) changed.
  returned: always
  type: bool
'''

import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vgpu_elf import (
    ElfError, REQUIRED_SYMBOLS, host_machine, read_elf, shim_problems,
)
from ansible.module_utils.vgpu_fs import (
    atomic_copy, backup_path, describe, make_backup, mode_string, normalize_sha256, resolve_gid,
    resolve_uid, set_attrs_nofollow, sha256_file, unsafe_path_components,
)


def parse_mode(value):
    try:
        mode = int(str(value), 8)
    except ValueError:
        raise ValueError('mode must be an octal string such as "0755", got %r' % (value,))
    if not 0 <= mode <= 0o7777:
        raise ValueError('mode %r is out of range' % (value,))
    return mode


def inspect_dest(path):
    """What is at dest now: describe() plus sha256 and soname of a regular file."""
    info = describe(path)
    if info['kind'] == 'file':
        info['sha256'] = sha256_file(path)
        try:
            info['soname'] = read_elf(path).soname
        except (ElfError, IOError, OSError):
            info['soname'] = None
    return info


def validate_src(src, required, expect_sha, machine):
    """(elf_info, sha256, problems): everything wrong with src, most basic first."""
    try:
        st = os.stat(src)
    except OSError as e:
        return None, None, ['src %s does not exist or cannot be read (%s); stage the shim there first, '
                            'for example with ansible.builtin.copy' % (src, e.strerror)]
    if stat.S_ISDIR(st.st_mode):
        return None, None, ['src %s is a directory; give the path of the shim library file' % src]
    if not stat.S_ISREG(st.st_mode):
        return None, None, ['src %s is not a regular file' % src]
    problems = []
    try:
        sha = sha256_file(src)
    except (IOError, OSError) as e:
        return None, None, ['src %s cannot be read: %s' % (src, e.strerror)]
    try:
        info = read_elf(src)
    except ElfError as e:
        info = None
        header = shim_problems(e.partial, machine=machine, header_only=True) if e.partial else []
        if header:
            problems.extend('src %s %s' % (src, p) for p in header)
        else:
            problems.append(str(e))
    except (IOError, OSError) as e:
        return None, sha, ['src %s cannot be read: %s' % (src, e.strerror)]
    if info is not None:
        problems.extend('src %s %s' % (src, p) for p in shim_problems(info, required, machine))
    if expect_sha and sha != expect_sha:
        problems.append('src %s has sha256 %s, expected %s: the staged file is not the intended build'
                        % (src, sha, expect_sha))
    return info, sha, problems


def render_state(path, info):
    if info['kind'] == 'missing':
        return '%s: absent\n' % path
    if info['kind'] == 'symlink':
        return '%s: symlink -> %s\n' % (path, info['link'])
    if info['kind'] != 'file':
        return '%s: %s\n' % (path, info['kind'])
    return ('%s: regular file\nsha256: %s\nsoname: %s\nmode: %s\nowner: %d\ngroup: %d\n'
            % (path, info['sha256'], info.get('soname'), mode_string(info['mode']), info['uid'], info['gid']))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path', required=True),
            dest=dict(type='path', required=True),
            kind=dict(type='str', default='cuda', choices=['cuda', 'nvml', 'cudart']),
            sha256=dict(type='str'),
            required_symbols=dict(type='list', elements='str'),
            backup=dict(type='bool', default=True),
            mode=dict(type='str', default='0755'),
            owner=dict(type='str', default='root'),
            group=dict(type='str', default='root'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    src, dest = p['src'], p['dest']
    required = p['required_symbols'] if p['required_symbols'] is not None else REQUIRED_SYMBOLS[p['kind']]

    # ---- validate parameters and src; any problem fails before dest is touched
    problems = []
    if not os.path.isabs(dest):
        problems.append('dest must be an absolute path, got %r' % dest)
    try:
        mode = parse_mode(p['mode'])
    except ValueError as e:
        problems.append(str(e))
        mode = None
    uid = gid = None
    try:
        uid = resolve_uid(p['owner'])
    except ValueError as e:
        problems.append(str(e))
    try:
        gid = resolve_gid(p['group'])
    except ValueError as e:
        problems.append(str(e))
    expect_sha = None
    if p['sha256']:
        try:
            expect_sha = normalize_sha256(p['sha256'])
        except ValueError as e:
            problems.append(str(e))
    machine = host_machine()
    info, sha, src_problems = validate_src(src, required, expect_sha, machine)
    problems.extend(src_problems)
    if problems:
        module.fail_json(msg='Refusing to install %s: %s. Nothing was changed.' % (dest, '; '.join(problems)),
                         problems=problems, src=src, dest=dest)

    dest_dir = os.path.dirname(dest)
    if not os.path.isdir(dest_dir):
        module.fail_json(msg='The directory %s for dest does not exist; create it first (ansible.builtin.file '
                             'state=directory mode=0755). Nothing was changed.' % dest_dir)
    before = inspect_dest(dest)
    if before['kind'] == 'directory':
        module.fail_json(msg='dest %s is a directory; give the full path of the library file to install, '
                             'e.g. %s/%s. Nothing was changed.' % (dest, dest, os.path.basename(src)))
    if before['kind'] == 'other':
        module.fail_json(msg='dest %s is a special file (not a regular file, link or directory); remove it '
                             'first. Nothing was changed.' % dest)

    # ---- plan
    plan = []
    backup_file = None
    if before['kind'] == 'missing':
        plan.append({'action': 'install', 'path': dest})
    elif before['kind'] == 'symlink':
        # never write through: the link itself is replaced by the file, its target stays as it is
        plan.append({'action': 'replace_symlink', 'path': dest, 'old_target': before['link']})
    elif before['sha256'] != sha:
        if p['backup']:
            backup_file = backup_path(dest)
            plan.append({'action': 'backup', 'path': dest, 'backup_file': backup_file})
        plan.append({'action': 'replace', 'path': dest, 'old_sha256': before['sha256']})
    elif (before['mode'], before['uid'], before['gid']) != (mode, uid, gid):
        plan.append({'action': 'set_attributes', 'path': dest,
                     'old': {'mode': mode_string(before['mode']), 'uid': before['uid'], 'gid': before['gid']},
                     'new': {'mode': mode_string(mode), 'uid': uid, 'gid': gid}})
    changed = bool(plan)

    interposed = info.interposed_symbols()
    warnings = []
    if interposed:
        warnings.append('%s exports libc/loader functions (%s): preloaded (LD_PRELOAD) it would replace them '
                        'in the whole Ollama process and hijack its backend loading (PRELOAD_INTERPOSES_LOADER). '
                        'Use the library_path strategy for this shim, or rebuild it without these exports.'
                        % (src, ', '.join(interposed)))
    unsafe = unsafe_path_components(dest_dir)
    if unsafe:
        warnings.append('%s can be changed by a non-root user (%s): anything loaded from there can be '
                        'replaced (PRELOAD_HIJACK_RISK).' % (dest_dir, '; '.join(
                            '%s %s' % (u['path'], u['problem']) for u in unsafe)))

    after_info = {'kind': 'file', 'sha256': sha, 'soname': info.soname, 'mode': mode, 'uid': uid, 'gid': gid}
    result = dict(
        changed=changed, dest=dest, sha256=sha, soname=info.soname, needed=info.needed,
        symbols=len(info.exported_symbols()), interposed_symbols=interposed,
        machine=info.machine_name, plan=plan,
    )
    if backup_file:
        result['backup_file'] = backup_file
    if module._diff:
        result['diff'] = {'before': render_state(dest, before), 'after': render_state(dest, after_info),
                          'before_header': dest, 'after_header': '%s (from %s)' % (dest, src)}
    for w in warnings:
        module.warn(w)

    if not changed or module.check_mode:
        module.exit_json(**result)

    # ---- apply
    try:
        if plan[-1]['action'] == 'set_attributes':
            set_attrs_nofollow(dest, mode, uid, gid)
        else:
            if backup_file:
                backup_file = make_backup(dest)
                result['backup_file'] = backup_file
            atomic_copy(src, dest, mode=mode, uid=uid, gid=gid, module=module, expect_sha256=sha)
    except (IOError, OSError, ValueError) as e:
        module.fail_json(msg='Installing %s failed: %s' % (dest, e), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
