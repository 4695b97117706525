# -*- coding: utf-8 -*-
# The glibc dynamic loader's search, emulated from files (target side, Python 3.8+ stdlib).
"""Where the dynamic loader (and Go's filepath.Glob) would find a library on this host - read, never loaded.

* ``parse_ld_so_cache(data, machine)`` / ``parse_ldconfig_p(text, machine)``: /etc/ld.so.cache entries.
* ``system_search_dirs(paths, probe, machine)``: the loader's built-in directories.
* ``loader_candidate(path, machine, uid, gids)``: whether the loader takes, skips or fails on a file.
* ``emulate_loader(name, preloaded, search_path, cache, default_dirs, machine)``: glibc's search order for a
  DT_NEEDED name (preloaded SONAME, LD_PRELOAD, LD_LIBRARY_PATH, ld.so.cache, default dirs).
* ``go_glob(pattern)``: Go's ``filepath.Glob`` (how Ollama before 0.12.4 lists libcuda.so* candidates).
* ``read_elf_cached(path)``: vgpu_elf.read_elf once per file version.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import re
import stat
import struct

from ansible.module_utils.vgpu_elf import EM_AARCH64, EM_X86_64, ElfError, read_elf, shim_problems
from ansible.module_utils.vgpu_fs import readable_by

_ELF_CACHE = {}


def read_elf_cached(path):
    """read_elf() once per file version: libc.so.6 is met several times per run (keyed by inode, size and
    mtime, so a replaced file is read again)."""
    try:
        st = os.stat(path)
        key = (realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        return read_elf(path)   # raises the ElfError with the reason
    if key not in _ELF_CACHE:
        if len(_ELF_CACHE) > 64:
            _ELF_CACHE.clear()
        try:
            _ELF_CACHE[key] = read_elf(path)
        except ElfError as e:
            _ELF_CACHE[key] = e
    found = _ELF_CACHE[key]
    if isinstance(found, ElfError):
        raise found
    return found


def realpath(path):
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return path


# ------------------------------------------------------------------------------------------ loader emulation

_CACHE_OLD = b'ld.so-1.7.0'
_CACHE_NEW = b'glibc-ld.so.cache1.1'
_FLAG_TYPE_MASK, _FLAG_ELF_LIBC6, _FLAG_REQUIRED_MASK = 0x00ff, 0x0003, 0xff00
_CACHE_ARCH_FLAGS = {EM_X86_64: 0x0300, EM_AARCH64: 0x0a00}


def parse_ld_so_cache(data, machine=None):
    """{name: [path, ...]} from the bytes of /etc/ld.so.cache, entries for this machine in cache order.

    Understands the new format (glibc >= 2.32 writes only that) and the old one, alone or followed by the
    new one. Raises ValueError on anything else."""
    def entries_new(base):
        if len(data) < base + 48:
            raise ValueError('ld.so.cache is truncated')
        endian = '>' if bytearray(data[base + 28:base + 29])[0] == 3 else '<'
        nlibs, _len_strings = struct.unpack_from(endian + 'II', data, base + 20)
        if base + 48 + nlibs * 24 > len(data):
            raise ValueError('ld.so.cache is truncated (%d entries)' % nlibs)
        for i in range(nlibs):
            flags, key, value, _osv, hwcap = struct.unpack_from(endian + 'iIIIQ', data, base + 48 + i * 24)
            yield flags, _cstr(base + key), _cstr(base + value), hwcap

    def _cstr(off):
        end = data.find(b'\0', off)
        if off >= len(data) or end < 0:
            raise ValueError('ld.so.cache string offset %d out of range' % off)
        return data[off:end].decode('utf-8', 'surrogateescape')

    if data.startswith(_CACHE_NEW):
        rows = list(entries_new(0))
    elif data.startswith(_CACHE_OLD):
        (nlibs,) = struct.unpack_from('<I', data, 12)
        strings = 16 + nlibs * 12
        new_at = (strings + 7) & ~7
        if data[new_at:new_at + len(_CACHE_NEW)] == _CACHE_NEW:
            rows = list(entries_new(new_at))
        else:
            rows = []
            for i in range(nlibs):
                flags, key, value = struct.unpack_from('<iII', data, 16 + i * 12)
                rows.append((flags, _cstr(strings + key), _cstr(strings + value), 0))
    else:
        raise ValueError('not an ld.so.cache file (unknown magic)')
    want = _CACHE_ARCH_FLAGS.get(machine)
    out = {}
    for flags, name, path, _hwcap in rows:
        if flags & _FLAG_TYPE_MASK != _FLAG_ELF_LIBC6:
            continue
        if want is not None and flags & _FLAG_REQUIRED_MASK != want:
            continue
        out.setdefault(name, []).append(path)
    return out


_LDCONFIG_P_RE = re.compile(r'^\s*(\S+)\s+\(([^)]*)\)(?:\s+OS ABI:[^=]*)?\s+=>\s+(\S.*)$')


def parse_ldconfig_p(text, machine=None):
    """{name: [path]} from `ldconfig -p` output (the fallback when the cache file cannot be parsed)."""
    arch = {EM_X86_64: 'x86-64', EM_AARCH64: 'AArch64'}.get(machine)
    out = {}
    for line in (text or '').splitlines():
        m = _LDCONFIG_P_RE.match(line)
        if not m:
            continue
        tags = [t.strip() for t in m.group(2).split(',')]
        if 'libc6' not in tags or (arch and arch not in tags):
            continue
        out.setdefault(m.group(1), []).append(m.group(3).strip())
    return out


def system_search_dirs(paths, probe, machine):
    """The loader's built-in directories: from `ld.so --help` on a real host (glibc >= 2.33), else the
    distribution layout (Debian multiarch dirs, or /lib64 + /usr/lib64)."""
    if paths.root == '/' and machine == EM_X86_64:
        for interp in ('/lib64/ld-linux-x86-64.so.2', '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'):
            if os.path.exists(interp):
                rc, out, _err = probe.run([interp, '--help'], timeout=1.0)
                dirs = [line.strip().rsplit(' (', 1)[0] for line in out.splitlines()
                        if line.strip().endswith('(system search path)')]
                if rc == 0 and dirs:
                    return dirs, 'ld.so --help'
                break
    triplet = {EM_X86_64: 'x86_64-linux-gnu', EM_AARCH64: 'aarch64-linux-gnu'}.get(machine, 'x86_64-linux-gnu')
    if os.path.isdir(paths.join('/lib/' + triplet)) or os.path.isdir(paths.join('/usr/lib/' + triplet)):
        dirs = ['/lib/' + triplet, '/usr/lib/' + triplet, '/lib', '/usr/lib']
    else:
        dirs = ['/lib64', '/usr/lib64']
    return [paths.join(d) for d in dirs], 'distribution layout'


def loader_candidate(path, machine, uid=None, gids=None):
    """How the loader treats path when it meets it in a search: ('skip', reason) to go on searching,
    ('load', None) when this file is the one, ('fail', reason) when it is the one but cannot load."""
    try:
        st = os.stat(path)
    except OSError as e:
        if os.path.islink(path):
            return 'skip', 'dangling symlink (-> %s)' % os.readlink(path)
        return 'skip', 'missing' if e.errno in (errno.ENOENT, errno.ENOTDIR) else e.strerror
    if not stat.S_ISREG(st.st_mode):
        return 'skip', 'not a regular file'
    if uid is not None:
        ok, problems = readable_by(path, uid, gids or [])
        if not ok:
            return 'skip', 'not readable by the service user (%s)' % '; '.join(problems)
    try:
        info = read_elf_cached(path)
    except ElfError as e:
        if e.partial is not None and shim_problems(e.partial, (), machine, header_only=True):
            # glibc skips a file of the wrong class or machine and goes on searching
            return 'skip', 'wrong ELF class or machine: %s' % '; '.join(shim_problems(e.partial, (), machine, True))
        return 'fail', str(e)
    except (IOError, OSError) as e:
        return 'fail', str(e)
    bad = shim_problems(info, (), machine, header_only=True)
    if bad:
        return 'skip', 'wrong ELF class or machine: %s' % '; '.join(bad)
    return 'load', None


def emulate_loader(name, preloaded, search_path, cache, default_dirs, machine, uid=None, gids=None):
    """Where the dynamic loader finds DT_NEEDED ``name`` for a runner, in glibc's order:
    an already loaded object with that SONAME (LD_PRELOAD, /etc/ld.so.preload), LD_LIBRARY_PATH,
    /etc/ld.so.cache, the built-in directories. (DT_RPATH/DT_RUNPATH of the loading library are not
    read: Ollama's backends carry none that precede LD_LIBRARY_PATH.)

    preloaded: [{'path', 'soname', 'step'}] objects loaded before; search_path: [dir] (LD_LIBRARY_PATH).
    Returns {'name', 'path', 'step', 'error', 'skipped': [{'path', 'reason'}]}."""
    res = {'name': name, 'path': None, 'step': None, 'error': None, 'skipped': []}
    for obj in preloaded:
        if obj.get('soname') == name:
            res.update(path=obj['path'], step='%s (SONAME %s)' % (obj['step'], name))
            return res
    steps = [('LD_LIBRARY_PATH', [os.path.join(d, name) for d in search_path]),
             ('ld.so.cache', list(cache.get(name, []))),
             ('default dirs', [os.path.join(d, name) for d in default_dirs])]
    seen = set()
    for step, candidates in steps:
        for cand in candidates:
            if cand in seen:
                continue
            seen.add(cand)
            verdict, reason = loader_candidate(cand, machine, uid, gids)
            if verdict == 'skip':
                if reason != 'missing':
                    res['skipped'].append({'path': cand, 'reason': reason})
                continue
            res.update(path=cand, step=step, error=reason if verdict == 'fail' else None)
            return res
    return res


# ------------------------------------------------------------------------------------------ Go's filepath.Glob

def _go_pattern(pattern):
    """A compiled regular expression for one path element of a Go filepath.Match pattern, or None when the
    pattern is malformed (Go's ErrBadPattern). Go's rules: '*' is any run of non-separator characters (dot
    files included), '?' one such character, '[...]' a class ('^' negates, 'a-z' ranges), '\\' escapes."""
    out, i, n = ['(?s)'], 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == '*':
            out.append('[^/]*')
        elif c == '?':
            out.append('[^/]')
        elif c == '\\':
            if i >= n:
                return None
            out.append(re.escape(pattern[i]))
            i += 1
        elif c == '[':
            negate = i < n and pattern[i] == '^'
            if negate:
                i += 1
            ranges = []
            while True:
                if i >= n:
                    return None                   # unterminated class
                if pattern[i] == ']' and ranges:
                    i += 1
                    break
                lo, i = _class_char(pattern, i)
                if lo is None:
                    return None
                hi = lo
                if i < n and pattern[i] == '-':
                    hi, i = _class_char(pattern, i + 1)
                    if hi is None or hi < lo:
                        return None
                ranges.append((lo, hi))
            body = ''.join(re.escape(a) if a == b else '%s-%s' % (re.escape(a), re.escape(b)) for a, b in ranges)
            out.append('[%s%s]' % ('^/' if negate else '', body))
        else:
            out.append(re.escape(c))
    try:
        return re.compile(''.join(out) + r'\Z')
    except re.error:
        return None


def _class_char(pattern, i):
    """(character, next index) of one class member in a Go pattern; (None, i) when malformed."""
    if i >= len(pattern) or pattern[i] in '-]':
        return None, i
    if pattern[i] == '\\':
        i += 1
        if i >= len(pattern):
            return None, i
    return pattern[i], i + 1


def _has_meta(text):
    return any(c in text for c in '*?[\\')


def go_glob(pattern):
    """Go's filepath.Glob(pattern) on this host: the paths that match, each directory's names in sorted order,
    directories expanded before the names below them; I/O errors and malformed patterns give nothing (Ollama
    ignores Glob's error). A pattern without meta characters is returned when the path exists (Lstat)."""
    if not _has_meta(pattern):
        return [pattern] if os.path.lexists(pattern) else []
    if pattern.endswith('/'):
        return []           # the last element is "", which no directory entry matches
    absolute = pattern.startswith('/')
    elements = [e for e in pattern.split('/') if e]
    # the leading elements without meta characters are taken as written (Go's Split keeps them literal)
    first = next(i for i, e in enumerate(elements) if _has_meta(e))
    base = ('/' if absolute else '') + '/'.join(elements[:first])
    matches = [base or '.'] if not base or os.path.isdir(base) else []
    for pos in range(first, len(elements)):
        element = elements[pos]
        last = pos == len(elements) - 1
        rx = _go_pattern(element) if _has_meta(element) else None
        if _has_meta(element) and rx is None:
            return []
        found = []
        for d in matches:
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue
            for name in names:
                if (rx.match(name) is None) if rx is not None else (name != element):
                    continue
                path = name if d == '.' and not base else os.path.join(d, name)
                if last or os.path.isdir(path):
                    found.append(path)
        matches = found
    return matches
