#!/usr/bin/python3
"""Print one line per path under the places provisioning and rollback touch - type, mode, owner, and the
link target or the content's sha256, size and mtime of regular files - then the loader's view of
libcuda/libnvidia-ml (ldconfig -p). Equal output before provisioning and after rollback = the host is back.
Directory mtimes are left out: adding and removing an entry changes them and nothing else."""
import hashlib
import os
import stat
import subprocess
import sys

ROOTS = ['/usr/lib64', '/usr/local/lib', '/etc/systemd/system/ollama.service',
         '/etc/systemd/system/ollama.service.d', '/etc/ld.so.conf.d', '/etc/ld.so.preload', '/var/cache/vgpu',
         '/opt/vgpu']


def describe(path):
    st = os.lstat(path)
    head = '%s %04o %d:%d' % (path, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        return head + ' link -> ' + os.readlink(path)
    if stat.S_ISDIR(st.st_mode):
        return head + ' dir'
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
        return head + ' file %s %d %d' % (h.hexdigest(), st.st_size, st.st_mtime_ns)
    return head + ' other'


def walk(root):
    if not os.path.lexists(root):
        yield root + ' absent'
        return
    yield describe(root)
    if os.path.isdir(root) and not os.path.islink(root):
        for d, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs + files):
                yield describe(os.path.join(d, name))


def main():
    out = []
    for root in ROOTS:
        out.extend(walk(root))
    cache = subprocess.run(['ldconfig', '-p'], stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    out.extend('ld.so.cache: ' + l.strip() for l in cache.splitlines() if 'libcuda' in l or 'libnvidia' in l)
    sys.stdout.write('\n'.join(out) + '\n')


if __name__ == '__main__':
    main()
