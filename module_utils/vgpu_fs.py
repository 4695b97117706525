# -*- coding: utf-8 -*-
# Filesystem helpers for the vGPU modules (target side, Python 3.8+ stdlib only).
"""Symlink-safe atomic writes, backups, permission walks and checksums.

Rules every helper keeps: never write through a symlink (a link at the destination is replaced, its
target is untouched); write a temp file in the destination's own directory and rename it into place;
backups are hidden files in the same directory (``.<name>.<UTC timestamp>.vgpu-backup``) because
ldconfig scans loader dirs for ``lib*.so*`` names and would repoint a SONAME link at a visible backup
such as ``libvgpu-cuda.so.1234.2024-01-01@10:00~`` (Ansible's usual backup name).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import glob
import grp
import hashlib
import mmap
import os
import pwd
import random
import re
import shutil
import stat
import string
import time

from ansible.module_utils.vgpu_elf import ElfError, read_elf

BACKUP_SUFFIX = '.vgpu-backup'
TEMP_SUFFIX = '.vgpu-tmp'
DPKG_INFO_DIR = '/var/lib/dpkg/info'

# Strings found in NVIDIA's driver libraries and not in a guest shim (the shim talks to a paravirtual
# device, never to the NVIDIA kernel module).
NVIDIA_DRIVER_MARKERS = (b'NVIDIA UNIX', b'/dev/nvidiactl', b'/proc/driver/nvidia', b'nvidia-modprobe', b'NVRM version')
_DRIVER_NAME_RE = re.compile(r'^lib(cuda|nvidia-ml|nvcuvid|nvidia-[a-z-]+)\.so\.\d{3}\.\d+(\.\d+)?$')
DRIVER_SONAMES = ('libcuda.so.1', 'libnvidia-ml.so.1')


# ---------------------------------------------------------------------------------------------- checksums

def sha256_file(path, bufsize=1024 * 1024):
    """Hex sha256 of the file at path (follows symlinks)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            chunk = f.read(bufsize)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def normalize_sha256(value):
    """Accept 'abc…' or 'sha256:abc…' (any case); return 64 lowercase hex chars or raise ValueError."""
    v = (value or '').strip().lower()
    if v.startswith('sha256:'):
        v = v[len('sha256:'):]
    if not re.match(r'^[0-9a-f]{64}$', v):
        raise ValueError('sha256 must be 64 hexadecimal characters (optionally prefixed "sha256:"), got %r' % value)
    return v


# ---------------------------------------------------------------------------------------------- describing

def describe(path):
    """What is at path, without following a final symlink:
    {'kind': missing|symlink|file|directory|other, 'link': readlink text, 'resolved': absolute link target,
     'dangling': bool, 'mode', 'uid', 'gid', 'size'}."""
    try:
        st = os.lstat(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return {'kind': 'missing'}
        raise
    info = {'mode': stat.S_IMODE(st.st_mode), 'uid': st.st_uid, 'gid': st.st_gid, 'size': st.st_size}
    if stat.S_ISLNK(st.st_mode):
        link = os.readlink(path)
        info.update(kind='symlink', link=link, resolved=link_target_abspath(path, link),
                    dangling=not os.path.exists(path))
    elif stat.S_ISREG(st.st_mode):
        info['kind'] = 'file'
    elif stat.S_ISDIR(st.st_mode):
        info['kind'] = 'directory'
    else:
        info['kind'] = 'other'
    return info


def link_target_abspath(path, link):
    """The absolute, normalised path a symlink at path with text link names (one level, not resolved)."""
    if not os.path.isabs(link):
        link = os.path.join(os.path.dirname(path), link)
    return os.path.normpath(link)


def mode_string(mode):
    return '%04o' % mode


# ---------------------------------------------------------------------------------------------- owners

def _resolve_id(name, lookup, what):
    """Numeric id for a name or numeric string (None stays None); ValueError when unknown."""
    if name is None:
        return None
    name = str(name)
    if name.isdigit():
        return int(name)
    try:
        return lookup(name)[2]        # pw_uid / gr_gid
    except KeyError:
        raise ValueError('%s %r does not exist on this host' % (what, name))


def resolve_uid(owner):
    """uid for a user name or numeric string; ValueError when unknown."""
    return _resolve_id(owner, pwd.getpwnam, 'user')


def resolve_gid(group):
    """gid for a group name or numeric string; ValueError when unknown."""
    return _resolve_id(group, grp.getgrnam, 'group')


def user_ids(user):
    """(uid, [gids]) for a user name or number, including supplementary groups; ValueError if unknown."""
    uid = resolve_uid(user)
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        return uid, []
    gids = set([pw.pw_gid])
    for g in grp.getgrall():
        if pw.pw_name in g.gr_mem:
            gids.add(g.gr_gid)
    return uid, sorted(gids)


# ---------------------------------------------------------------------------------------------- writing

def _temp_name(directory, name):
    tag = ''.join(random.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    return os.path.join(directory, '.%s.%s%s' % (name, tag, TEMP_SUFFIX))


def _refuse_directory(path):
    if os.path.isdir(path) and not os.path.islink(path):
        raise OSError(errno.EISDIR, '%s is a directory' % path)


def set_attrs_nofollow(path, mode=None, uid=None, gid=None):
    """chmod/chown the file at path without following a symlink there. Returns True if anything changed.

    Opened with O_NOFOLLOW so a link swapped in meanwhile makes this fail (ELOOP) instead of
    changing the link's target."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0))
    try:
        st = os.fstat(fd)
        changed = False
        want_uid = st.st_uid if uid is None else uid
        want_gid = st.st_gid if gid is None else gid
        if (want_uid, want_gid) != (st.st_uid, st.st_gid):
            os.fchown(fd, want_uid, want_gid)
            changed = True
        # chown clears setuid/setgid bits, so chmod after it
        if mode is not None and (stat.S_IMODE(os.fstat(fd).st_mode) != mode or changed):
            os.fchmod(fd, mode)
            changed = changed or stat.S_IMODE(st.st_mode) != mode
        return changed
    finally:
        os.close(fd)


def _move_into_place(module, tmp, path):
    """rename tmp over path. module.atomic_move (SELinux context of the file it replaces) only when a regular
    file is there: for a new path it would chmod the file to 0666 & ~umask after the rename, and tmp lives
    in the same directory already, so a plain rename is atomic and keeps tmp's restrictive mode."""
    if module is None or not os.path.isfile(path) or os.path.islink(path):
        os.rename(tmp, path)
        return
    try:
        module.atomic_move(tmp, path, keep_dest_attrs=False)
    except TypeError:
        # ansible-core without keep_dest_attrs: it would copy the old file's attributes; we reset them below
        module.atomic_move(tmp, path)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _atomic_replace(path, fill, mode, uid, gid, module):
    """The one atomic-write sequence: temp file in path's own directory, fill(fd) writes the content, fsync,
    owner and mode on the temp file, rename over path (a symlink there is replaced, its target untouched),
    attributes again on the result, fsync of the directory. The temp file never outlives a failure."""
    _refuse_directory(path)
    directory, name = os.path.split(path)
    tmp = _temp_name(directory, name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), 0o600)
    try:
        try:
            fill(fd)
            os.fsync(fd)
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            if mode is not None:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        _move_into_place(module, tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    # atomic_move may have applied umask defaults to a new file: set ours again on the file itself
    set_attrs_nofollow(path, mode, uid, gid)
    _fsync_dir(directory)


def atomic_write(path, data, mode=0o644, uid=None, gid=None, module=None):
    """Write bytes to path atomically: temp file in the same dir, fsync, attributes, rename.

    A symlink at path is replaced by the file (its target is untouched); a directory at path raises."""
    _atomic_replace(path, lambda fd: _write_all(fd, data), mode, uid, gid, module)


def atomic_copy(src, dest, mode=0o644, uid=None, gid=None, module=None, expect_sha256=None):
    """Copy src to dest atomically (see atomic_write). expect_sha256: verify the temp copy before the
    rename, so a src that changed after validation never lands. Returns the sha256 written."""
    h = hashlib.sha256()

    def fill(fd):
        with open(src, 'rb') as f:
            while True:
                chunk = f.read(1024 * 1024)
                if not chunk:
                    break
                h.update(chunk)
                _write_all(fd, chunk)
        if expect_sha256 is not None and h.hexdigest() != expect_sha256:
            raise ValueError('%s changed while it was being copied (sha256 %s, expected %s)'
                             % (src, h.hexdigest(), expect_sha256))
    _atomic_replace(dest, fill, mode, uid, gid, module)
    return h.hexdigest()


def atomic_symlink(target, path):
    """Make path a symlink to target atomically: temp link in the same dir, then rename over path.

    An existing link or file at path is replaced (never followed); a directory at path raises."""
    _refuse_directory(path)
    directory, name = os.path.split(path)
    tmp = _temp_name(directory, name)
    os.symlink(target, tmp)
    try:
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(directory)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(directory):
    try:
        fd = os.open(directory or '.', os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------- backups

def backup_path(path, now=None):
    """A free name ``<dir>/.<name>.<YYYYmmddTHHMMSSZ>[-N].vgpu-backup`` (hidden: ldconfig ignores it)."""
    directory, name = os.path.split(path)
    stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))
    candidate = os.path.join(directory, '.%s.%s%s' % (name, stamp, BACKUP_SUFFIX))
    n = 1
    while os.path.lexists(candidate):
        candidate = os.path.join(directory, '.%s.%s-%d%s' % (name, stamp, n, BACKUP_SUFFIX))
        n += 1
    return candidate


def find_backups(path):
    """Backups made by make_backup for path, oldest first (timestamps sort lexically)."""
    directory, name = os.path.split(path)
    pattern = os.path.join(glob.escape(directory), '.%s.*%s' % (glob.escape(name), BACKUP_SUFFIX))
    stamp_re = re.compile(r'^\.%s\.\d{8}T\d{6}Z(-\d+)?%s$' % (re.escape(name), re.escape(BACKUP_SUFFIX)))

    def key(p):
        base = os.path.basename(p)
        m = re.search(r'\.(\d{8}T\d{6}Z)(?:-(\d+))?%s$' % re.escape(BACKUP_SUFFIX), base)
        return (m.group(1), int(m.group(2) or 0)) if m else ('', 0)
    found = [p for p in glob.glob(pattern) if stamp_re.match(os.path.basename(p))]
    return sorted(found, key=key)


def make_backup(path, now=None):
    """Keep the regular file (or symlink) at path as a hidden backup beside it. Returns its path.

    A regular file is kept as a hard link (else a copy): the original inode (owner, mode, times) at no
    cost in space. A symlink is kept as a new symlink with the same text (never followed). path itself is
    untouched, so the caller can then rename something over it atomically."""
    dest = backup_path(path, now)
    if os.path.islink(path):
        os.symlink(os.readlink(path), dest)
        return dest
    try:
        os.link(path, dest)
    except OSError:
        shutil.copy2(path, dest)
    return dest


# ---------------------------------------------------------------------------------------------- permission walks

def _traverse(path, depth=0):
    """(dirs, final): every real directory the kernel walks through to reach path, including the
    directory of each symlink met on the way, and the final real path. Raises OSError (ENOENT, ELOOP)."""
    if depth > 40:
        raise OSError(errno.ELOOP, 'too many levels of symbolic links', path)
    if not os.path.isabs(path):
        raise OSError(errno.EINVAL, 'not an absolute path', path)
    dirs = ['/']
    cur = '/'
    parts = [p for p in path.split('/') if p not in ('', '.')]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == '..':
            cur = os.path.dirname(cur) or '/'
        else:
            nxt = os.path.join(cur, part)
            st = os.lstat(nxt)
            if stat.S_ISLNK(st.st_mode):
                sub_dirs, cur = _traverse(link_target_abspath(nxt, os.readlink(nxt)), depth + 1)
                dirs.extend(sub_dirs)
            else:
                cur = nxt
        if not last:
            dirs.append(cur)
    out, seen = [], set()
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out, cur


def _writable_by_others(st):
    reasons = []
    if st.st_uid != 0:
        reasons.append('owned by uid %d, not root' % st.st_uid)
    if st.st_mode & stat.S_IWOTH:
        reasons.append('world-writable%s' % (' (sticky)' if st.st_mode & stat.S_ISVTX else ''))
    if st.st_mode & stat.S_IWGRP:
        reasons.append('group-writable (gid %d)' % st.st_gid)
    return reasons


def unsafe_path_components(path):
    """Components of path that a non-root user could change: the final file (after symlinks, as the
    loader opens it) and every directory walked to reach it, including those of intermediate links.

    Returns [{'path', 'mode', 'uid', 'gid', 'problem'}]; [] means only root can alter what is loaded.
    A path that cannot be resolved is reported as one entry with the OS error."""
    try:
        dirs, final = _traverse(os.path.normpath(path))
    except OSError as e:
        return [{'path': path, 'mode': None, 'uid': None, 'gid': None,
                 'problem': 'cannot be resolved: %s' % (e.strerror or e)}]
    out = []
    for p in dirs + [final]:
        try:
            st = os.stat(p)
        except OSError as e:
            out.append({'path': p, 'mode': None, 'uid': None, 'gid': None,
                        'problem': 'cannot stat: %s' % (e.strerror or e)})
            continue
        reasons = _writable_by_others(st)
        if reasons:
            out.append({'path': p, 'mode': mode_string(stat.S_IMODE(st.st_mode)), 'uid': st.st_uid,
                        'gid': st.st_gid, 'problem': ', '.join(reasons)})
    return out


def _may(st, uid, gids, bits_owner, bits_group, bits_other):
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & bits_owner)
    if st.st_gid in gids:
        return bool(st.st_mode & bits_group)
    return bool(st.st_mode & bits_other)


def readable_by(path, uid, gids):
    """Can a process with uid/gids open path for reading, as the loader would (following symlinks)?

    Each directory walked needs search (x) permission, the file needs read (r). POSIX mode bits only
    (ACLs and LSMs are not consulted). Returns (ok, problems) with problems a list of sentences."""
    gids = set(gids or [])
    try:
        dirs, final = _traverse(os.path.normpath(path))
    except OSError as e:
        return False, ['%s cannot be resolved: %s' % (path, e.strerror or e)]
    problems = []
    for d in dirs:
        st = os.stat(d)
        if not _may(st, uid, gids, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            problems.append('directory %s (mode %s, %d:%d) is not searchable by uid %d'
                            % (d, mode_string(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, uid))
    try:
        st = os.stat(final)
    except OSError as e:
        return False, problems + ['%s: %s' % (final, e.strerror or e)]
    if not _may(st, uid, gids, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH):
        problems.append('%s (mode %s, %d:%d) is not readable by uid %d'
                        % (final, mode_string(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, uid))
    return not problems, problems


# ---------------------------------------------------------------------------------------------- NVIDIA driver heuristic

def package_owner(path, dpkg_info_dir=DPKG_INFO_DIR):
    """Name of the dpkg package that lists path (also its /usr-merged or real-path alias), or None."""
    candidates = set([os.path.normpath(path)])
    try:
        candidates.add(os.path.realpath(path))
    except OSError:
        pass
    for p in list(candidates):
        if p.startswith('/usr/'):
            candidates.add(p[len('/usr'):])
        else:
            candidates.add('/usr' + p)
    wanted = set(c.encode('utf-8', 'surrogateescape') for c in candidates)
    for listing in glob.glob(os.path.join(dpkg_info_dir, '*.list')):
        try:
            with open(listing, 'rb') as f:
                for line in f:
                    if line.rstrip(b'\n') in wanted:
                        pkg = os.path.basename(listing)[:-len('.list')]
                        return pkg.split(':')[0]
        except (IOError, OSError):
            continue
    return None


def _file_contains(path, needles):
    """The needles found in the file at path (mmap, so a 90 MB driver library is cheap to scan)."""
    found = []
    with open(path, 'rb') as f:
        if os.fstat(f.fileno()).st_size == 0:
            return found
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            for n in needles:
                if mm.find(n) >= 0:
                    found.append(n.decode('ascii'))
        finally:
            mm.close()
    return found


def looks_like_nvidia_driver(path, reference=None, reference_soname=None, dpkg_info_dir=DPKG_INFO_DIR):
    """Reasons (sentences) to believe the regular file at path is a real NVIDIA driver library (or
    another package's file) rather than a copy of a shim; [] when nothing points that way.

    reference: the shim's path; a byte-identical file is never a driver. reference_soname: the shim's
    SONAME; a file whose SONAME is libcuda.so.1 / libnvidia-ml.so.1 and differs from it is suspicious.
    Heuristic, by design: a false positive costs the user one explicit ``replace_driver_libs``."""
    if reference is not None:
        try:
            if os.path.getsize(path) == os.path.getsize(reference) and sha256_file(path) == sha256_file(reference):
                return []
        except OSError:
            pass
    reasons = []
    pkg = package_owner(path, dpkg_info_dir)
    if pkg:
        reasons.append('it belongs to the package %s (dpkg)' % pkg)
    for name in sorted(set([os.path.basename(path), os.path.basename(os.path.realpath(path))])):
        if _DRIVER_NAME_RE.match(name):
            reasons.append('its name %s is a versioned NVIDIA driver library name' % name)
    try:
        markers = _file_contains(path, NVIDIA_DRIVER_MARKERS)
    except (IOError, OSError, ValueError):
        markers = []
    if markers:
        reasons.append('it contains NVIDIA driver strings (%s)' % ', '.join(repr(m) for m in markers))
    try:
        soname = read_elf(path).soname
    except (ElfError, IOError, OSError):
        soname = None
    if soname in DRIVER_SONAMES and soname != reference_soname:
        reasons.append('its SONAME is %s while the shim\'s is %s' % (soname, reference_soname or 'unknown'))
    return reasons
