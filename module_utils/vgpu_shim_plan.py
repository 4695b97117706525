# -*- coding: utf-8 -*-
# The vgpu_shim module's validation and planning (target side, Python 3.8+ stdlib only).
"""Validate-then-plan for library/vgpu_shim.py: one Shim per shim of the call (its problems, warnings and
plan steps, and applying them), the consumer files on the host (Consumer, load_consumers) and the loader
path file (plan_loader_conf). Nothing here changes the host except Shim.apply.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import stat

from ansible.module_utils.vgpu_elf import ElfError, consumer_needs, read_elf, shim_problems
from ansible.module_utils.vgpu_fs import (
    atomic_copy, backup_path, describe, make_backup, mode_string, normalize_sha256, set_attrs_nofollow,
    sha256_file, unsafe_path_components,
)
from ansible.module_utils.vgpu_layout import OLLAMA_LIB_DIR
from ansible.module_utils.vgpu_shim_consumers import CONSUMER_SYMBOL_PATTERNS, REQUIRED_SYMBOLS


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


def validate_src(src, required, expect_sha, machine, label='src'):
    """(elf_info, sha256, problems): everything wrong with src, most basic first. label names the file in
    the messages (src, or the installed file validated in place)."""
    try:
        st = os.stat(src)
    except OSError as e:
        return None, None, ['%s %s does not exist or cannot be read (%s)' % (label, src, e.strerror)]
    if stat.S_ISDIR(st.st_mode):
        return None, None, ['%s %s is a directory; give the path of the shim library file' % (label, src)]
    if not stat.S_ISREG(st.st_mode):
        return None, None, ['%s %s is not a regular file' % (label, src)]
    problems = []
    try:
        sha = sha256_file(src)
    except (IOError, OSError) as e:
        return None, None, ['%s %s cannot be read: %s' % (label, src, e.strerror)]
    try:
        info = read_elf(src)
    except ElfError as e:
        info = None
        header = shim_problems(e.partial, machine=machine, header_only=True) if e.partial else []
        if header:
            problems.extend('%s %s %s' % (label, src, p) for p in header)
        else:
            problems.append(str(e))
    except (IOError, OSError) as e:
        return None, sha, ['%s %s cannot be read: %s' % (label, src, e.strerror)]
    if info is not None:
        problems.extend('%s %s %s' % (label, src, p) for p in shim_problems(info, required, machine))
    if expect_sha and sha != expect_sha:
        problems.append('%s %s has sha256 %s, expected %s: the staged file is not the intended build'
                        % (label, src, sha, expect_sha))
    return info, sha, problems


# Where Ollama's install.sh puts the CUDA backend (lib/ollama next to its bin/): the files whose undefined
# cu* symbols a shim must export (keep in sync with the consumers default in DOCUMENTATION).
DEFAULT_CONSUMERS = [
    os.path.join(OLLAMA_LIB_DIR, 'cuda_v*', 'libggml-cuda.so'), os.path.join(OLLAMA_LIB_DIR, 'libggml-cuda.so'),
    os.path.join(OLLAMA_LIB_DIR, 'runners', 'cuda_v*', 'libggml_cuda_v*.so'),   # 0.5.x (make/gpu.make:72-73@v0.5.7)
    '/usr/lib/ollama/cuda_v*/libggml-cuda.so', '/usr/lib/ollama/libggml-cuda.so',
]


class Consumer(object):
    """One file matched by consumers: what it needs from each kind of shim, or why it was not read."""

    def __init__(self, path):
        self.path = path
        self.error = None
        self.needs, self.weak = {}, {}
        try:
            info = read_elf(path)
        except ElfError as e:
            self.error = str(e)
            return
        except (IOError, OSError) as e:
            self.error = '%s cannot be read: %s' % (path, e.strerror or e)
            return
        for kind in sorted(CONSUMER_SYMBOL_PATTERNS):
            self.needs[kind], self.weak[kind] = consumer_needs(info, kind)

    def result(self):
        return dict(path=self.path, symbols=self.needs, weak_symbols=self.weak, error=self.error)


def load_consumers(patterns):
    """([Consumer], problems): the files the patterns match, each once, in order (a pattern's matches
    sorted). A pattern that matches nothing is skipped: the file is not installed (yet)."""
    consumers, problems, seen = [], [], set()
    for pattern in patterns or []:
        if not pattern or not os.path.isabs(pattern):
            problems.append('consumers entries must be absolute paths or glob patterns, got %r' % (pattern,))
            continue
        for path in sorted(glob.glob(pattern)):
            if path not in seen:
                seen.add(path)
                consumers.append(Consumer(path))
    return consumers, problems


def render_state(path, info):
    if info['kind'] == 'missing':
        return '%s: absent\n' % path
    if info['kind'] == 'symlink':
        return '%s: symlink -> %s\n' % (path, info['link'])
    if info['kind'] != 'file':
        return '%s: %s\n' % (path, info['kind'])
    return ('%s: regular file\nsha256: %s\nsoname: %s\nmode: %s\nowner: %d\ngroup: %d\n'
            % (path, info['sha256'], info.get('soname'), mode_string(info['mode']), info['uid'], info['gid']))


LOADER_CONF_HEADER = '# Managed by Ansible (vgpu toolkit): paravirtual GPU shim libraries\n'


class Shim(object):
    """One shim of the call: what is wrong with it, or its plan."""

    def __init__(self, spec):
        self.src = spec.get('src')
        self.dest = spec.get('dest')
        self.kind = spec.get('kind') or 'cuda'
        self.sha256 = spec.get('sha256')
        self.required = spec.get('required_symbols')
        if self.required is None:
            self.required = REQUIRED_SYMBOLS[self.kind]
        self.problems, self.warnings, self.plan = [], [], []
        self.consumers_checked, self.consumer_missing = [], []
        self.needs_src = False
        self.info = self.sha = self.before = self.after = self.backup_file = None

    def check(self, machine, mode, uid, gid, backup, create_parent, consumers=()):
        """Validate and plan; never changes anything."""
        if not self.dest or not os.path.isabs(self.dest):
            self.problems.append('dest must be an absolute path, got %r' % (self.dest,))
            return
        if self.sha256:
            try:
                self.sha256 = normalize_sha256(self.sha256)
            except ValueError as e:
                self.problems.append(str(e))
                return
        dest, dest_dir = self.dest, os.path.dirname(self.dest)
        parent = describe(dest_dir)
        if parent['kind'] == 'missing' and not create_parent:
            self.problems.append('the directory %s for dest does not exist; create it first (ansible.builtin.file '
                                 'state=directory mode=0755) or set create_parent' % dest_dir)
            return
        if parent['kind'] not in ('missing', 'directory'):
            self.problems.append('the parent %s of dest is a %s, not a directory' % (dest_dir, parent['kind']))
            return
        self.before = inspect_dest(dest) if parent['kind'] == 'directory' else {'kind': 'missing'}
        if self.before['kind'] == 'directory':
            self.problems.append('dest %s is a directory; give the full path of the library file to install, '
                                 'e.g. %s/%s' % (dest, dest, os.path.basename(self.src or 'libvgpu-%s.so' % self.kind)))
            return
        if self.before['kind'] == 'other':
            self.problems.append('dest %s is a special file (not a regular file, link or directory); remove it '
                                 'first' % dest)
            return
        if self.src:
            self.info, self.sha, problems = validate_src(self.src, self.required, self.sha256, machine)
        elif not self.sha256:
            problems = ['%s: give src (the shim to install) or sha256 (to validate the installed file)' % dest]
        elif self.before['kind'] == 'file' and self.before['sha256'] == self.sha256:
            # the intended build is already installed: validate it where it is, nothing to upload
            self.info, self.sha, problems = validate_src(dest, self.required, None, machine, label='installed')
        else:
            self.needs_src = True
            return
        self.problems.extend(problems)
        if problems:
            return
        self.check_consumers(consumers, 'src' if self.src else 'installed', self.src or dest)
        if self.problems:
            return

        if parent['kind'] == 'missing':
            self.plan.append({'action': 'create_dir', 'path': dest_dir})
        if self.before['kind'] == 'missing':
            self.plan.append({'action': 'install', 'path': dest})
        elif self.before['kind'] == 'symlink':
            # never write through: the link itself is replaced by the file, its target stays as it is
            self.plan.append({'action': 'replace_symlink', 'path': dest, 'old_target': self.before['link']})
        elif self.before['sha256'] != self.sha:
            if backup:
                self.backup_file = backup_path(dest)
                self.plan.append({'action': 'backup', 'path': dest, 'backup_file': self.backup_file})
            self.plan.append({'action': 'replace', 'path': dest, 'old_sha256': self.before['sha256']})
        elif (self.before['mode'], self.before['uid'], self.before['gid']) != (mode, uid, gid):
            self.plan.append({'action': 'set_attributes', 'path': dest,
                              'old': {'mode': mode_string(self.before['mode']), 'uid': self.before['uid'],
                                      'gid': self.before['gid']},
                              'new': {'mode': mode_string(mode), 'uid': uid, 'gid': gid}})
        self.after = {'kind': 'file', 'sha256': self.sha, 'soname': self.info.soname, 'mode': mode, 'uid': uid,
                      'gid': gid}

        interposed = self.info.interposed_symbols()
        if interposed:
            self.warnings.append('%s exports libc/loader functions (%s): preloaded (LD_PRELOAD) it would replace '
                                 'them in the whole Ollama process and hijack its backend loading '
                                 '(PRELOAD_INTERPOSES_LOADER). Use the library_path strategy for this shim, or '
                                 'rebuild it without these exports.' % (self.src or dest, ', '.join(interposed)))
        unsafe = unsafe_path_components(dest_dir) if parent['kind'] == 'directory' else []
        if unsafe:
            self.warnings.append('%s can be changed by a non-root user (%s): anything loaded from there can be '
                                 'replaced (PRELOAD_HIJACK_RISK).' % (dest_dir, '; '.join(
                                     '%s %s' % (u['path'], u['problem']) for u in unsafe)))

    def check_consumers(self, consumers, label, path):
        """Host evidence: every strong undefined symbol of kind's namespace in each consumer file must be
        exported by this shim (the loader resolves them against it, RTLD_NOW for libggml-cuda.so)."""
        if self.kind not in CONSUMER_SYMBOL_PATTERNS:
            return
        have = set(self.info.exported_symbols())
        for c in consumers:
            if c.error:
                continue
            self.consumers_checked.append(c.path)
            missing = [n for n in c.needs[self.kind] if n not in have]
            if missing:
                self.consumer_missing.append(dict(dest=self.dest, consumer=c.path, symbols=missing))
                self.problems.append(
                    '%s %s does not export %s, which %s on this host references (undefined there): the loader '
                    'would refuse that file with "undefined symbol: %s". Rebuild the shim to export %s, or '
                    'upgrade/remove that file' % (label, path, ', '.join(missing), c.path, missing[0],
                                                  'them' if len(missing) > 1 else 'it'))

    def result(self):
        out = dict(dest=self.dest, kind=self.kind, sha256=self.sha, soname=self.info.soname,
                   needed=self.info.needed, symbols=len(self.info.exported_symbols()),
                   interposed_symbols=self.info.interposed_symbols(), machine=self.info.machine_name,
                   consumers_checked=self.consumers_checked, plan=self.plan)
        if self.backup_file:
            out['backup_file'] = self.backup_file
        return out

    def apply(self, module, mode, uid, gid):
        for step in self.plan:
            if step['action'] == 'create_dir':
                if not os.path.isdir(step['path']):
                    os.makedirs(step['path'], 0o755)
                    set_attrs_nofollow(step['path'], 0o755, 0, 0)
            elif step['action'] == 'backup':
                self.backup_file = step['backup_file'] = make_backup(self.dest)
            elif step['action'] == 'set_attributes':
                set_attrs_nofollow(self.dest, mode, uid, gid)
            else:
                atomic_copy(self.src or self.dest, self.dest, mode=mode, uid=uid, gid=gid, module=module,
                            expect_sha256=self.sha)


def plan_loader_conf(path, state, dirs):
    """(plan step or None, before text, after text, problems) for the loader path file."""
    info = describe(path)
    if info['kind'] in ('directory', 'other'):
        return None, '', '', ['loader_conf %s is a %s, not a file; remove it or choose another path'
                              % (path, 'directory' if info['kind'] == 'directory' else 'special file')]
    if not os.path.isdir(os.path.dirname(path)):
        return None, '', '', ['the directory of loader_conf %s does not exist' % path]
    before = ''
    if info['kind'] == 'file':
        with open(path, 'rb') as f:
            before = f.read().decode('utf-8', 'replace')
    elif info['kind'] == 'symlink':
        before = 'symlink -> %s\n' % info['link']
    if state == 'absent':
        step = {'action': 'remove_loader_conf', 'path': path} if info['kind'] != 'missing' else None
        return step, before, '', []
    after = LOADER_CONF_HEADER + ''.join(d + '\n' for d in dirs)
    if info['kind'] == 'file' and before == after and (info['mode'], info['uid'], info['gid']) == (0o644, 0, 0):
        return None, before, after, []
    return {'action': 'write_loader_conf', 'path': path, 'content': after}, before, after, []
