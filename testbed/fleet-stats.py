#!/usr/bin/env python3
"""Memory of each simulated host started by testbed/fleet-up.sh.

Per host: PSS of every process of the host (the nspawn process and all its descendants: systemd,
journald, sshd, ollama, ...) plus what its volatile root holds in tmpfs (the overlay's upper layer).
PSS splits shared pages (the read-only rootfs, libpython) fairly between hosts, so the sum over hosts
is what the fleet really costs. Prints a table and, with --json, one JSON object."""
import glob
import json
import os
import sys


def children_map():
    kids = {}
    for stat in glob.glob('/proc/[0-9]*/stat'):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            kids.setdefault(int(fields[1]), []).append(int(stat.split('/')[2]))
        except (OSError, IndexError, ValueError):
            pass
    return kids


def descendants(pid, kids):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def pss_kib(pid):
    try:
        with open('/proc/%d/smaps_rollup' % pid) as f:
            for line in f:
                if line.startswith('Pss:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tmpfs_kib(init_pid):
    """Used KiB of the host's own tmpfs mounts (/run, /tmp, /dev/shm, ...), and of its overlay
    upper layer when that lives on a tmpfs of this machine."""
    used = 0
    root = '/proc/%d/root' % init_pid
    with open('/proc/%d/mounts' % init_pid) as f:
        mounts = [line.split() for line in f]
    for fields in mounts:
        dev, mnt, fstype, opts = fields[0], fields[1], fields[2], fields[3]
        if fstype == 'tmpfs' and 'ro' not in opts.split(','):
            st = os.statvfs(root + mnt)
            used += (st.f_blocks - st.f_bfree) * st.f_frsize // 1024
        elif fstype == 'overlay' and mnt == '/':
            upper = [o[len('upperdir='):] for o in opts.split(',') if o.startswith('upperdir=')]
            if upper and is_tmpfs(upper[0]):
                st = os.statvfs(upper[0])
                used += (st.f_blocks - st.f_bfree) * st.f_frsize // 1024
    return used


def is_tmpfs(path):
    best, fstype = '', ''
    with open('/proc/self/mounts') as f:
        for line in f:
            mnt, typ = line.split()[1:3]
            if (path == mnt or path.startswith(mnt.rstrip('/') + '/')) and len(mnt) >= len(best):
                best, fstype = mnt, typ
    return fstype == 'tmpfs'


def main():
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fleet = os.path.join(os.environ.get('VGPU_BUILD_DIR', os.path.join(top, '.build')),
                         'fleet-' + os.environ.get('FLEET_NAME', 'sim'))
    kids = children_map()
    hosts = []
    for pidfile in sorted(glob.glob(os.path.join(fleet, '*.pid'))):
        name = os.path.basename(pidfile)[:-4]
        pid = int(open(pidfile).read())
        if not os.path.exists('/proc/%d' % pid):
            continue
        procs = descendants(pid, kids)
        pss = sum(pss_kib(p) for p in procs)
        init = kids.get(pid, [])
        tmpfs = tmpfs_kib(init[0]) if init else 0
        hosts.append({'host': name, 'processes': len(procs), 'pss_mib': round(pss / 1024, 1),
                      'tmpfs_mib': round(tmpfs / 1024, 1), 'total_mib': round((pss + tmpfs) / 1024, 1)})
    if '--json' in sys.argv:
        print(json.dumps({'hosts': hosts}))
        return
    print('%-6s %6s %9s %10s %10s' % ('host', 'procs', 'PSS MiB', 'tmpfs MiB', 'total MiB'))
    for h in hosts:
        print('%-6s %6d %9.1f %10.1f %10.1f' % (h['host'], h['processes'], h['pss_mib'], h['tmpfs_mib'], h['total_mib']))
    if hosts:
        tot = [h['total_mib'] for h in hosts]
        print('hosts=%d  mean=%.1f MiB  max=%.1f MiB  fleet=%.1f MiB' % (len(tot), sum(tot) / len(tot), max(tot), sum(tot)))


if __name__ == '__main__':
    main()
