#!/usr/bin/python3
"""End-state fingerprint of one provisioned host, as JSON on stdout (bench/run compares the two
playbooks' results). Only what the provisioning decides: shim files, every libcuda.so.1 /
libnvidia-ml.so.1 the loader may find, the loader path file, the unit's drop-ins, ldconfig's view,
the running service's LD_* environment and the current start's inference compute verdict. No times,
no pids. Python 3 stdlib only (runs on the host)."""
import glob
import hashlib
import json
import os
import re
import subprocess


def describe(path):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if os.path.islink(path):
        return {'link': os.readlink(path)}
    if os.path.isdir(path):
        return {'dir': oct(st.st_mode & 0o7777), 'owner': '%d:%d' % (st.st_uid, st.st_gid)}
    with open(path, 'rb') as f:
        data = f.read()
    return {'sha256': hashlib.sha256(data).hexdigest(), 'mode': oct(st.st_mode & 0o7777),
            'owner': '%d:%d' % (st.st_uid, st.st_gid)}


def run(argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True).stdout


def main():
    fp = {}
    dirs = ['/usr/lib64', '/usr/local/lib', '/usr/local/lib/ollama'] + sorted(
        glob.glob('/usr/local/lib/ollama/*/'))
    for d in dirs:
        d = d.rstrip('/')
        for name in ('libcuda.so.1', 'libnvidia-ml.so.1'):
            fp[os.path.join(d, name)] = describe(os.path.join(d, name))
    for path in sorted(glob.glob('/usr/lib64/libvgpu-*') + glob.glob('/usr/lib64/.libvgpu-*')):
        fp[path] = describe(path)
    for path in ['/etc/ld.so.conf.d/vgpu.conf', '/etc/systemd/system/ollama.service.d']:
        fp[path] = describe(path)
    for path in sorted(glob.glob('/etc/systemd/system/ollama.service.d/*')):
        fp[path] = describe(path)
    fp['ldconfig'] = sorted(l.strip() for l in run(['ldconfig', '-p']).splitlines()
                            if 'libcuda' in l or 'libnvidia-ml' in l or 'vgpu' in l)
    show = dict(l.split('=', 1) for l in run(['systemctl', 'show', 'ollama.service', '-p', 'MainPID',
                                              '-p', 'InvocationID', '-p', 'ActiveState']).splitlines() if '=' in l)
    fp['active'] = show.get('ActiveState')
    env = {}
    try:
        with open('/proc/%s/environ' % show.get('MainPID', '0'), 'rb') as f:
            for item in f.read().split(b'\0'):
                k, _, v = item.decode('utf-8', 'replace').partition('=')
                if k.startswith('LD_') or k.startswith('OLLAMA_'):
                    env[k] = v
    except OSError:
        env = None
    fp['environ'] = env
    lines = run(['journalctl', '--no-pager', '-o', 'cat',
                 '_SYSTEMD_INVOCATION_ID=%s' % show.get('InvocationID', '')]).splitlines()
    fp['inference_compute'] = [re.sub(r'^time=\S+ ', '', l) for l in lines if 'msg="inference compute"' in l]
    # not compared (leading underscore): when the current start logged its last inference compute line,
    # for the converge's verdict latency
    fp['_invocation'] = show.get('InvocationID')
    stamps = []
    for line in run(['journalctl', '--no-pager', '-o', 'json',
                     '_SYSTEMD_INVOCATION_ID=%s' % show.get('InvocationID', '')]).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if 'msg="inference compute"' in str(entry.get('MESSAGE')):
            stamps.append(int(entry['__REALTIME_TIMESTAMP']) / 1e6)
    fp['_compute_line_t'] = max(stamps) if stamps else None
    print(json.dumps(fp, sort_keys=True))


if __name__ == '__main__':
    main()
