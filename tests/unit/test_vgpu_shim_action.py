"""action_plugins/vgpu_shim.py end to end: the real ansible command, local connection, temp dirs.

Proves the controller-side half: a wrong build is refused before anything is sent, a shim is uploaded
only when the host lacks that build (a no-op run uploads nothing), check mode validates an uploaded
artifact on the host and changes nothing."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from module_harness import tree_state


@pytest.fixture
def run(repo_root, tmp_path):
    """run(args, check=False): ansible localhost -m vgpu_shim -a <json>; returns the task result."""
    return lambda args, check=False: _ansible(repo_root, tmp_path, args, check)


def _ansible(top, tmp_path, args, check):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(top, 'ansible.cfg'), ANSIBLE_STDOUT_CALLBACK='json',
               ANSIBLE_LOAD_CALLBACK_PLUGINS='1', ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'ansible-local'),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / 'ansible-remote'))
    argv = [os.path.join(os.path.dirname(sys.executable), 'ansible'), 'localhost', '-c', 'local',
            '-i', 'localhost,', '-m', 'vgpu_shim', '-a', json.dumps(args),
            '-e', 'ansible_python_interpreter=%s' % sys.executable]
    if check:
        argv.append('--check')
    out = subprocess.run(argv, cwd=top, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=120)
    data = json.loads(out.stdout[out.stdout.index('{'):])
    return data['plays'][0]['tasks'][0]['hosts']['localhost']


@pytest.fixture
def world(tmp_path, elf):
    if os.geteuid() != 0:
        pytest.skip('installs root-owned files')
    ctl = tmp_path / 'controller'
    lib = tmp_path / 'host' / 'usr' / 'lib64'
    ctl.mkdir()
    lib.mkdir(parents=True)
    (tmp_path / 'host' / 'etc').mkdir()
    for name in ('cuda', 'nvml', 'cuda_v2', 'no_cuinit'):
        shutil.copy(elf[name], str(ctl / os.path.basename(elf[name])))

    class World(object):
        root = tmp_path / 'host'
        libdir = str(lib)
        conf = str(tmp_path / 'host' / 'etc' / 'vgpu.conf')

        @staticmethod
        def artifact(name):
            return str(ctl / os.path.basename(elf[name]))

        @classmethod
        def args(cls, cuda='cuda', **kw):
            a = dict(shims=[dict(src=cls.artifact(cuda), dest=os.path.join(cls.libdir, 'libvgpu-cuda.so'),
                                 kind='cuda'),
                            dict(src=cls.artifact('nvml'), dest=os.path.join(cls.libdir, 'libvgpu-nvml.so'),
                                 kind='nvml')],
                     loader_conf=cls.conf)
            a.update(kw)
            return a
    return World


def test_upload_only_what_the_host_lacks(world, tmp_path, run, sha):
    first = run(world.args())
    assert first.get('changed') and not first.get('failed'), first
    assert first['uploaded'] == [os.path.join(world.libdir, 'libvgpu-cuda.so'),
                                 os.path.join(world.libdir, 'libvgpu-nvml.so')]
    # the result names the controller artifacts, not the temp copies
    assert [s['src'] for s in first['shims']] == [world.artifact('cuda'), world.artifact('nvml')]
    assert sha(os.path.join(world.libdir, 'libvgpu-cuda.so')) == sha(world.artifact('cuda'))

    again = run(world.args())
    assert not again.get('changed') and again['uploaded'] == [], again

    # a new CUDA build: only that one travels; the old one is kept as a hidden backup
    newer = run(world.args(cuda='cuda_v2'))
    assert newer['changed'] and newer['uploaded'] == [os.path.join(world.libdir, 'libvgpu-cuda.so')]
    assert [a['action'] for a in newer['plan']] == ['backup', 'replace']
    # Ansible's temp dirs are gone
    assert not [p for p in os.listdir(str(tmp_path / 'ansible-remote')) if p.startswith('ansible-tmp')]


def test_wrong_sha256_is_refused_before_anything_is_sent(world, tmp_path, run, sha):
    args = world.args()
    args['shims'][1]['sha256'] = '0' * 64
    before = tree_state(str(world.root))
    res = run(args)
    assert res.get('failed')
    assert 'has sha256 %s, expected %s' % (sha(world.artifact('nvml')), '0' * 64) in res['msg']
    assert 'nothing was sent to the host' in res['msg'] and 'uploaded' not in res
    assert tree_state(str(world.root)) == before


def test_missing_and_directory_artifacts_are_refused(world, tmp_path, run):
    args = world.args()
    args['shims'][0]['src'] = str(tmp_path / 'nope.so')
    res = run(args)
    assert res.get('failed') and 'is missing or not a regular file on the controller' in res['msg']
    args['shims'][0]['src'] = str(tmp_path)
    res = run(args)
    assert res.get('failed') and 'is a directory on the controller' in res['msg']
    assert os.listdir(world.libdir) == []


def test_check_mode_validates_on_the_host_and_changes_nothing(world, run):
    before = tree_state(str(world.root))
    good = run(world.args(), check=True)
    assert good['changed'] and len(good['uploaded']) == 2
    assert [a['action'] for a in good['plan']] == ['install', 'install', 'write_loader_conf']
    bad = run(world.args(cuda='no_cuinit'), check=True)
    assert bad.get('failed') and 'does not export required symbol cuInit' in bad['msg']
    assert tree_state(str(world.root)) == before


def test_remote_src_passes_through(world, run):
    res = run(dict(src=world.artifact('cuda'), remote_src=True, dest=os.path.join(world.libdir, 'libvgpu-cuda.so')))
    assert res['changed'] and 'uploaded' not in res and res['soname'] == 'libvgpu-cuda.so'
