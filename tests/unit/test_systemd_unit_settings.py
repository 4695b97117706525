"""library/systemd_unit_settings.py and library/ld_so_preload.py: the edits vgpu_remediate makes on the host
(sandbox settings out of a drop-in, a drop-in moved aside, the shim out of /etc/ld.so.preload)."""
import os

import pytest
from module_harness import run_module, tree_state

import ld_so_preload as P
import systemd_unit_settings as M
from ansible.module_utils import vgpu_unit_syntax as X

STAMP = '20261203T120000Z'
SANDBOX = ('# sandbox for ollama\n'
           '[Unit]\n'
           'PrivateDevices=yes\n'
           '[Service]\n'
           'PrivateDevices=yes\n'
           'InaccessiblePaths=/dev/nvidia0 \\\n'
           '  /dev/nvidiactl\n'
           'Environment=OLLAMA_HOST=0.0.0.0\n')


# ------------------------------------------------------------------------------------------- pure functions

def test_remove_settings_takes_out_service_settings_whole_and_keeps_the_rest():
    out, removed = X.remove_settings(SANDBOX, ['PrivateDevices', 'InaccessiblePaths'])
    # a continued setting goes with all of its lines; [Unit] is not [Service]; comments stay
    assert out == ('# sandbox for ollama\n[Unit]\nPrivateDevices=yes\n[Service]\n'
                   'Environment=OLLAMA_HOST=0.0.0.0\n')
    assert removed == [{'key': 'PrivateDevices', 'line': 5, 'value': 'yes'},
                       {'key': 'InaccessiblePaths', 'line': 6, 'value': '/dev/nvidia0  /dev/nvidiactl'}]
    assert X.unit_settings_left(out) == 2


def test_remove_settings_keeps_other_bytes_and_comments_inside_a_continuation_go_with_it():
    text = '[Service]\r\nA=1\r\nDevicePolicy=closed \\\n# a comment inside\n  more\nB=2'
    out, removed = X.remove_settings(text, ['DevicePolicy'])
    assert out == '[Service]\r\nA=1\r\nB=2'
    assert [r['key'] for r in removed] == ['DevicePolicy']
    assert X.remove_settings(text, ['Nothing']) == (text, [])


def test_remove_settings_of_a_dropin_with_nothing_left():
    out, removed = X.remove_settings('[Service]\nPrivateDevices=yes\n', ['PrivateDevices'])
    assert out == '[Service]\n' and len(removed) == 1 and X.unit_settings_left(out) == 0


def test_parse_unit_spans_gives_first_and_last_line():
    assert X.parse_unit_spans(SANDBOX)[2] == ('Service', 'InaccessiblePaths', '/dev/nvidia0  /dev/nvidiactl', 6, 7)
    assert X.parse_unit_lines(SANDBOX)[2] == ('Service', 'InaccessiblePaths', '/dev/nvidia0  /dev/nvidiactl', 6)


def test_strip_preload_takes_out_entries_keeps_comments():
    text = '# global\n/usr/lib64/libvgpu-cuda.so:/opt/other.so  # ours and theirs\n/usr/lib64//libvgpu-cuda.so\n'
    out, removed = P.strip_preload(text, ['/usr/lib64/libvgpu-cuda.so'])
    assert out == '# global\n/opt/other.so # ours and theirs\n'
    assert removed == ['/usr/lib64/libvgpu-cuda.so', '/usr/lib64//libvgpu-cuda.so']
    assert P.strip_preload('/usr/lib64/libvgpu-cuda.so\n', ['/usr/lib64/libvgpu-cuda.so']) == (
        '', ['/usr/lib64/libvgpu-cuda.so'])
    assert P.strip_preload('/opt/other.so\n', ['/usr/lib64/libvgpu-cuda.so']) == ('/opt/other.so\n', [])


# ------------------------------------------------------------------------------------------- the module

@pytest.fixture
def tree(tmp_path):
    systemd_dir = tmp_path / 'etc' / 'systemd' / 'system'
    dropins = systemd_dir / 'ollama.service.d'
    dropins.mkdir(parents=True)
    (systemd_dir / 'ollama.service').write_text('[Service]\nExecStart=/usr/bin/ollama serve\nPrivateDevices=yes\n')
    (dropins / 'zz-sandbox.conf').write_text(SANDBOX)
    (dropins / 'zz-only.conf').write_text('[Service]\nPrivateDevices=yes\n')
    os.chmod(str(dropins / 'zz-sandbox.conf'), 0o640)
    return systemd_dir


def run(capsys, tree, check=False, **kw):
    args = dict(systemd_dir=str(tree), stamp=STAMP)
    args.update(kw)
    return run_module(M, args, capsys, check=check)


def test_edit_keeps_the_original_and_is_idempotent(capsys, tree):
    path = str(tree / 'ollama.service.d' / 'zz-sandbox.conf')
    res = run(capsys, tree, path=path, settings=['PrivateDevices', 'InaccessiblePaths'])
    assert res['changed'] and res['action'] == 'edited' and res['settings_left'] == 2
    assert res['backup'] == path + '.vgpu-disabled-' + STAMP
    with open(path) as f:
        assert f.read() == ('# sandbox for ollama\n[Unit]\nPrivateDevices=yes\n[Service]\n'
                            'Environment=OLLAMA_HOST=0.0.0.0\n')
    with open(res['backup']) as f:
        assert f.read() == SANDBOX
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o640) == oct(os.stat(res['backup']).st_mode & 0o777)
    assert res['diff']['before'] == SANDBOX
    again = run(capsys, tree, path=path, settings=['PrivateDevices', 'InaccessiblePaths'])
    assert not again['changed'] and again['action'] == 'none' and again['backup'] is None


def test_check_mode_plans_and_changes_nothing(capsys, tree):
    before = tree_state(str(tree))
    res = run(capsys, tree, check=True, path=str(tree / 'ollama.service.d' / 'zz-sandbox.conf'),
              settings=['PrivateDevices'])
    assert res['changed'] and res['action'] == 'edited' and 'PrivateDevices=yes\n[Service]\nInaccessible' in \
        res['diff']['after']
    assert tree_state(str(tree)) == before


def test_a_dropin_with_nothing_left_is_moved_aside_but_never_the_unit_file(capsys, tree):
    path = str(tree / 'ollama.service.d' / 'zz-only.conf')
    res = run(capsys, tree, path=path, settings=['PrivateDevices'])
    assert res['changed'] and res['action'] == 'moved' and res['backup'] == path + '.vgpu-disabled-' + STAMP
    assert not os.path.exists(path) and os.path.isfile(res['backup'])
    assert not run(capsys, tree, path=path, settings=['PrivateDevices'])['changed']
    unit = str(tree / 'ollama.service')
    res = run(capsys, tree, path=unit, settings=['PrivateDevices', 'ExecStart'])
    assert res['action'] == 'edited' and os.path.isfile(unit)


def test_move_aside_whole_file(capsys, tree):
    path = str(tree / 'ollama.service.d' / 'zz-sandbox.conf')
    res = run(capsys, tree, check=True, path=path, move_aside=True)
    assert res['changed'] and res['action'] == 'moved' and os.path.isfile(path)
    res = run(capsys, tree, path=path, move_aside=True)
    assert res['changed'] and not os.path.exists(path) and os.path.isfile(path + '.vgpu-disabled-' + STAMP)
    assert not run(capsys, tree, path=path, move_aside=True)['changed']


def test_refusals_change_nothing(capsys, tree, tmp_path):
    outside = tmp_path / 'usr' / 'lib' / 'systemd' / 'system' / 'ollama.service.d'
    outside.mkdir(parents=True)
    (outside / 'x.conf').write_text('[Service]\nPrivateDevices=yes\n')
    os.symlink(str(tree / 'ollama.service.d' / 'zz-only.conf'), str(tree / 'ollama.service.d' / 'link.conf'))
    os.mkdir(str(tree / 'ollama.service.d' / 'dir.conf'))
    os.symlink(str(outside), str(tree / 'evil.service.d'))
    (tree / 'ollama.service.d' / ('zz-sandbox.conf.vgpu-disabled-' + STAMP)).write_text('earlier')
    before = tree_state(str(tmp_path))
    for path, expect in ((str(outside / 'x.conf'), 'is not a unit file of'),
                         (str(tree / 'ollama.service.d' / 'link.conf'), 'is a symlink'),
                         (str(tree / 'ollama.service.d' / 'dir.conf'), 'not a regular file'),
                         (str(tree / 'evil.service.d' / 'x.conf'), 'outside'),
                         (str(tree / 'ollama.service.d' / 'zz-sandbox.conf'), 'exists already')):
        res = run(capsys, tree, path=path, settings=['PrivateDevices'])
        assert res.get('failed') and expect in res['msg'], (path, res['msg'])
    res = run(capsys, tree, path=str(tree / 'ollama.service'))
    assert res.get('failed') and 'give the settings' in res['msg']
    assert tree_state(str(tmp_path)) == before


def test_ld_so_preload_module(capsys, tmp_path):
    path = tmp_path / 'ld.so.preload'
    path.write_text('/usr/lib64/libvgpu-cuda.so /opt/other.so\n')
    args = dict(path=str(path), entries=['/usr/lib64/libvgpu-cuda.so'], stamp=STAMP)
    before = tree_state(str(tmp_path))
    res = run_module(P, args, capsys, check=True)
    assert res['changed'] and res['action'] == 'edited' and tree_state(str(tmp_path)) == before
    res = run_module(P, args, capsys)
    assert res['changed'] and path.read_text() == '/opt/other.so\n'
    backup = tmp_path / ('ld.so.preload.vgpu-backup-' + STAMP)
    assert backup.read_text() == '/usr/lib64/libvgpu-cuda.so /opt/other.so\n'
    assert not run_module(P, args, capsys)['changed']
    # the shim was all it loaded: the file goes (a second stamp: the first backup is there)
    path.write_text('/usr/lib64/libvgpu-cuda.so\n')
    res = run_module(P, dict(args, stamp='20261203T130000Z'), capsys)
    assert res['action'] == 'removed' and not path.exists()
    assert not run_module(P, args, capsys)['changed']
    os.symlink('/etc/hostname', str(path))
    res = run_module(P, args, capsys)
    assert res.get('failed') and 'symlink' in res['msg']
