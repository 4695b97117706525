"""library/systemd_dropin_env.py: rendering, validation, conflicts and restart detection, with systemctl faked."""
import os
import stat

import pytest

from module_harness import FakeSystemctl, refused_unchanged, run_module, tree_state

import systemd_dropin_env as M
from ansible.module_utils import vgpu_dropin as DR
from ansible.module_utils import vgpu_fs
from ansible.module_utils import vgpu_systemctl as SC
from ansible.module_utils import vgpu_unit_syntax as US

HEADER = u'# Managed by Ansible (vgpu toolkit) \u2014 do not edit\n'


@pytest.fixture
def host(safe_tmp, monkeypatch):
    """A root-only tree: systemd_dir with ollama.service, /usr/lib64 with two shim files, a fake /proc."""
    r = safe_tmp
    systemd_dir = os.path.join(r, 'etc/systemd/system')
    lib64 = os.path.join(r, 'usr/lib64')
    proc = os.path.join(r, 'proc')
    for d in (systemd_dir, lib64, proc):
        os.makedirs(d)
    with open(os.path.join(systemd_dir, 'ollama.service'), 'w') as f:
        f.write('[Service]\nUser=ollama\nExecStart=/usr/local/bin/ollama serve\nEnvironment="PATH=/usr/bin:/bin"\n')
    libs = []
    for n in ('libvgpu-cuda.so', 'libvgpu-nvml.so'):
        p = os.path.join(lib64, n)
        with open(p, 'wb') as f:
            f.write(b'\x7fELF fake')
        os.chmod(p, 0o755)
        libs.append(p)
    monkeypatch.setattr(M, 'PROC_ROOT', proc)

    class Host(object):
        pass
    h = Host()
    h.root, h.systemd_dir, h.lib64, h.libs, h.proc = r, systemd_dir, lib64, libs, proc
    h.dropin = os.path.join(systemd_dir, 'ollama.service.d', 'vgpu.conf')
    return h


def set_environ(host, pid, env):
    d = os.path.join(host.proc, str(pid))
    if not os.path.isdir(d):
        os.mkdir(d)
    with open(os.path.join(d, 'environ'), 'wb') as f:
        f.write(b''.join(('%s=%s' % kv).encode() + b'\0' for kv in sorted(env.items())))


def run(capsys, host, check=False, **kw):
    args = dict(systemd_dir=host.systemd_dir, preload=host.libs)
    args.update(kw)
    return run_module(M, args, capsys, check=check)


def refused(capsys, host, monkeypatch, expect, **kw):
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    return refused_unchanged(host.root, lambda: run(capsys, host, **kw), expect)


def expected_text(host):
    return HEADER + u'[Service]\nEnvironment="LD_PRELOAD=%s:%s"\n' % tuple(host.libs)


def write_dropin(host):
    """Our drop-in as the module writes it, already in place."""
    os.makedirs(os.path.dirname(host.dropin))
    with open(host.dropin, 'w') as f:
        f.write(expected_text(host))


# ------------------------------------------------------------------------------------------- rendering

def test_render_exact_text():
    text = DR.render(['/usr/lib64/libvgpu-cuda.so', '/usr/lib64/libvgpu-nvml.so'],
                    {'OLLAMA_LLM_LIBRARY': 'cuda_v12', 'LD_LIBRARY_PATH': '/opt/vgpu/lib:/usr/local/lib/ollama',
                     'ODD': 'a "b" \\c 50% $HOME'},
                    {'LimitMEMLOCK': 'infinity', 'CPUWeight': '100'})
    assert text == (
        HEADER +
        u'[Service]\n'
        u'Environment="LD_PRELOAD=/usr/lib64/libvgpu-cuda.so:/usr/lib64/libvgpu-nvml.so"\n'
        u'Environment="LD_LIBRARY_PATH=/opt/vgpu/lib:/usr/local/lib/ollama"\n'
        u'Environment="ODD=a \\"b\\" \\\\c 50%% $HOME"\n'
        u'Environment="OLLAMA_LLM_LIBRARY=cuda_v12"\n'
        u'CPUWeight=100\n'
        u'LimitMEMLOCK=infinity\n')
    assert '\r' not in text
    # what systemd would read back
    assert US.environment_of_text(text, 'ollama.service') == {
        'LD_PRELOAD': '/usr/lib64/libvgpu-cuda.so:/usr/lib64/libvgpu-nvml.so',
        'LD_LIBRARY_PATH': '/opt/vgpu/lib:/usr/local/lib/ollama', 'ODD': 'a "b" \\c 50% $HOME',
        'OLLAMA_LLM_LIBRARY': 'cuda_v12'}


def test_render_library_path_strategy_has_no_preload():
    text = DR.render([], {'OLLAMA_LLM_LIBRARY': 'cuda_v12'}, {})
    assert 'LD_PRELOAD' not in text and text.endswith('Environment="OLLAMA_LLM_LIBRARY=cuda_v12"\n')


# ------------------------------------------------------------------------------------------- present

def test_write_then_idempotent(capsys, host, monkeypatch):
    fake = FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    res = run(capsys, host)
    assert res['changed'] and not res.get('failed')
    assert [a['action'] for a in res['plan']] == ['create_dir', 'write', 'daemon_reload']
    assert res['daemon_reloaded'] and len(fake.commands('daemon-reload')) == 1
    with open(host.dropin, 'rb') as f:
        assert f.read().decode('utf-8') == expected_text(host)
    st = os.lstat(host.dropin)
    assert stat.S_IMODE(st.st_mode) == 0o644 and (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_IMODE(os.stat(os.path.dirname(host.dropin)).st_mode) == 0o755
    assert res['restart_required'] is False and res['active_state'] == 'inactive'
    assert res['effective_environment']['LD_PRELOAD'] == ':'.join(host.libs)
    assert res['environment_sources']['LD_PRELOAD'] == host.dropin
    assert res['dropins'] == [host.dropin] and res['conflicts'] == []
    assert res['managed_variables'] == ['LD_PRELOAD']
    assert res['diff']['before'] == '' and res['diff']['after'] == expected_text(host)
    assert sorted(os.listdir(os.path.dirname(host.dropin))) == ['vgpu.conf']     # no temp files left

    again = run(capsys, host)
    assert not again['changed'] and again['plan'] == []
    assert len(fake.commands('daemon-reload')) == 1


def test_check_mode_changes_nothing(capsys, host, monkeypatch):
    fake = FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    before = tree_state(host.root)
    res = run(capsys, host, check=True)
    assert res['changed'] and res['diff']['after'] == expected_text(host)
    assert tree_state(host.root) == before
    assert fake.commands('daemon-reload') == [] and not res['daemon_reloaded']


def test_restart_required_after_change(capsys, host, monkeypatch):
    """The service runs with the old environment: after writing + reload, systemd's Environment has LD_PRELOAD,
    the process does not."""
    set_environ(host, 4242, {'PATH': '/usr/bin:/bin'})
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': '4242',
                   'Environment': 'PATH=/usr/bin:/bin'},
                  after_reload={'Environment': 'PATH=/usr/bin:/bin LD_PRELOAD=%s' % ':'.join(host.libs)}
                  ).install(monkeypatch)
    res = run(capsys, host)
    assert res['changed'] and res['restart_required'] is True
    assert res['restart_reasons'] == [{'variable': 'LD_PRELOAD', 'running': None, 'effective': ':'.join(host.libs)}]
    assert res['active_state'] == 'active' and res['main_pid'] == 4242


def test_restart_required_in_check_mode_uses_planned_content(capsys, host, monkeypatch):
    set_environ(host, 4242, {'PATH': '/usr/bin:/bin'})
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': '4242',
                   'Environment': 'PATH=/usr/bin:/bin'}).install(monkeypatch)
    res = run(capsys, host, check=True)
    assert res['restart_required'] is True and res['restart_reasons'][0]['variable'] == 'LD_PRELOAD'


def test_correct_dropin_but_never_restarted(capsys, host, monkeypatch):
    """PRELOAD_NOT_APPLIED: nothing to change, yet the running process lacks the preload."""
    write_dropin(host)
    set_environ(host, 77, {'PATH': '/usr/bin:/bin'})
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': '77',
                   'Environment': 'PATH=/usr/bin:/bin LD_PRELOAD=%s' % ':'.join(host.libs)}).install(monkeypatch)
    res = run(capsys, host)
    assert not res['changed'] and res['restart_required'] is True


def test_running_process_already_has_it(capsys, host, monkeypatch):
    write_dropin(host)
    set_environ(host, 77, {'PATH': '/usr/bin:/bin', 'LD_PRELOAD': ':'.join(host.libs)})
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': '77',
                   'Environment': 'PATH=/usr/bin:/bin LD_PRELOAD=%s' % ':'.join(host.libs)}).install(monkeypatch)
    res = run(capsys, host)
    assert not res['changed'] and res['restart_required'] is False and res['restart_reasons'] == []


def test_absent_removes_and_reports_restart(capsys, host, monkeypatch):
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    run(capsys, host)
    set_environ(host, 9, {'LD_PRELOAD': ':'.join(host.libs)})
    fake = FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': '9',
                          'Environment': 'LD_PRELOAD=%s' % ':'.join(host.libs)},
                         after_reload={'Environment': 'PATH=/usr/bin:/bin'}).install(monkeypatch)
    res = run(capsys, host, state='absent')
    assert res['changed'] and [a['action'] for a in res['plan']] == ['remove', 'daemon_reload']
    assert not os.path.exists(host.dropin)
    assert res['content'] is None and res['diff']['after'] == '' and res['diff']['before'] == expected_text(host)
    assert res['managed_variables'] == ['LD_PRELOAD'] and res['restart_required'] is True
    assert len(fake.commands('daemon-reload')) == 1
    again = run(capsys, host, state='absent')
    assert not again['changed']


def test_conflicts_reported(capsys, host, monkeypatch):
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    d = os.path.dirname(host.dropin)
    os.makedirs(d)
    with open(os.path.join(d, 'override.conf'), 'w') as f:
        f.write('[Service]\nEnvironment="LD_PRELOAD=/other.so" "LD_LIBRARY_PATH=/x"\n')
    with open(os.path.join(d, '00-hide.conf'), 'w') as f:
        f.write('[Service]\nEnvironment=CUDA_VISIBLE_DEVICES=\nEnvironment=HARMLESS=1\n')
    res = run(capsys, host)
    assert res['conflicts'] == [
        {'path': os.path.join(d, '00-hide.conf'), 'variables': ['CUDA_VISIBLE_DEVICES'], 'overrides_ours': False},
        {'path': os.path.join(d, 'override.conf'), 'variables': ['LD_PRELOAD', 'LD_LIBRARY_PATH'],
         'overrides_ours': False},
    ]
    # "override.conf" < "vgpu.conf": ours wins; a zz- file would win over ours
    with open(os.path.join(d, 'zz-late.conf'), 'w') as f:
        f.write('[Service]\nEnvironment=LD_PRELOAD=/late.so\n')
    res = run(capsys, host)
    late = [c for c in res['conflicts'] if c['path'].endswith('zz-late.conf')][0]
    assert late['overrides_ours'] is True
    assert res['effective_environment']['LD_PRELOAD'] == '/late.so'
    assert any('PRELOAD_CONFLICT' in w and 'its values win' in w for w in res['warnings'])


def test_variable_unset_by_another_file_is_reported_and_asks_for_no_restart(capsys, host, monkeypatch):
    """systemctl show lists Environment= before UnsetEnvironment=: a preload another drop-in removes must not
    make every run ask for a restart (the running process can never have it); it is a warning instead."""
    write_dropin(host)
    with open(os.path.join(os.path.dirname(host.dropin), 'zz-debug.conf'), 'w') as f:
        f.write('[Service]\nUnsetEnvironment=LD_PRELOAD\n')
    set_environ(host, 77, {'PATH': '/usr/bin:/bin'})
    # as systemd shows it: Environment= as assigned, the unset list apart
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': '77',
                   'Environment': 'PATH=/usr/bin:/bin LD_PRELOAD=%s' % ':'.join(host.libs),
                   'UnsetEnvironment': 'LD_PRELOAD'}).install(monkeypatch)
    res = run(capsys, host)
    assert not res['changed'] and res['restart_required'] is False, res['restart_reasons']
    assert 'LD_PRELOAD' not in res['effective_environment']
    assert any('removed again by UnsetEnvironment= in' in w and 'zz-debug.conf' in w for w in res['warnings'])


def test_dropin_symlink_replaced_not_written_through(capsys, host, monkeypatch):
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    os.makedirs(os.path.dirname(host.dropin))
    victim = os.path.join(host.root, 'victim.conf')
    with open(victim, 'w') as f:
        f.write('keep me\n')
    os.symlink(victim, host.dropin)
    res = run(capsys, host)
    assert res['changed'] and res['plan'][0]['action'] == 'replace_symlink'
    assert not os.path.islink(host.dropin)
    assert open(victim).read() == 'keep me\n'


def test_mode_drift_fixed(capsys, host, monkeypatch):
    fake = FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    run(capsys, host)
    os.chmod(host.dropin, 0o600)
    res = run(capsys, host)
    assert [a['action'] for a in res['plan']] == ['set_attributes']
    assert stat.S_IMODE(os.stat(host.dropin).st_mode) == 0o644
    assert len(fake.commands('daemon-reload')) == 1      # attributes alone need no reload


def test_environment_and_extra(capsys, host, monkeypatch):
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    env = {'LD_LIBRARY_PATH': host.lib64, 'OLLAMA_LLM_LIBRARY': 'cuda_v12', 'WEIRD': 'a "q" \\ 5% $X', 'NUM': 3}
    res = run(capsys, host, preload=[], environment=env, extra={'LimitMEMLOCK': 'infinity', 'NoNewPrivileges': True})
    assert res['changed']
    text = open(host.dropin).read()
    assert 'LD_PRELOAD' not in text and 'LimitMEMLOCK=infinity\n' in text and 'NoNewPrivileges=yes\n' in text
    eff = res['effective_environment']
    assert eff['WEIRD'] == 'a "q" \\ 5% $X' and eff['NUM'] == '3' and eff['PATH'] == '/usr/bin:/bin'
    assert res['managed_variables'] == ['LD_LIBRARY_PATH', 'NUM', 'OLLAMA_LLM_LIBRARY', 'WEIRD']


def test_unsafe_library_path_dir_warns(capsys, host, monkeypatch):
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    os.chmod(host.lib64, 0o777)
    res = run(capsys, host, preload=[], environment={'LD_LIBRARY_PATH': host.lib64})
    assert res['changed'] and any('PRELOAD_HIJACK_RISK' in w for w in res['warnings'])


def test_preload_through_symlink_to_root_file(capsys, host, monkeypatch):
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    link = os.path.join(host.lib64, 'libcuda.so.1')
    os.symlink(host.libs[0], link)
    res = run(capsys, host, preload=[link])
    assert res['changed'] and res['effective_environment']['LD_PRELOAD'] == link


def test_interposing_preload_warns(capsys, host, monkeypatch, elf):
    import shutil
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    shutil.copy(elf['interpose'], host.libs[0])
    res = run(capsys, host)
    assert res['changed'] and res['preload_interposed'] == {host.libs[0]: ['dlopen', 'dlsym', 'open']}
    assert any('PRELOAD_INTERPOSES_LOADER' in w for w in res['warnings'])


def test_without_systemd_uses_unit_file(capsys, host, monkeypatch):
    fake = FakeSystemctl(show_rc=1).install(monkeypatch)
    res = run(capsys, host)
    assert res['changed'] and os.path.isfile(host.dropin)
    assert not res['daemon_reloaded'] and fake.commands('daemon-reload') == []
    assert res['active_state'] == 'unknown' and res['restart_required'] is False
    assert any('daemon-reload skipped' in w for w in res['warnings'])


def test_unit_known_to_systemd_only(capsys, host, monkeypatch):
    os.unlink(os.path.join(host.systemd_dir, 'ollama.service'))
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    assert run(capsys, host)['changed']


def test_daemon_reload_failure_reported(capsys, host, monkeypatch):
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}, reload_rc=1).install(monkeypatch)
    res = run(capsys, host)
    assert res.get('failed') and 'daemon-reload failed' in res['msg'] and 'is in place' in res['msg']


# ------------------------------------------------------------------------------------------- refusals

def test_preload_writable_by_group(capsys, host, monkeypatch):
    os.chmod(host.libs[1], 0o775)
    res = refused(capsys, host, monkeypatch, 'group-writable')
    assert host.libs[1] in res['msg'] and '0775' in res['msg'] and 'PRELOAD_HIJACK_RISK' in res['msg']


def test_preload_in_world_writable_dir(capsys, host, monkeypatch):
    os.chmod(host.lib64, 0o777)
    res = refused(capsys, host, monkeypatch, 'world-writable')
    assert '%s (mode 0777' % host.lib64 in res['msg']


def test_preload_not_owned_by_root(capsys, host, monkeypatch):
    os.chown(host.libs[0], 1000, 1000)
    refused(capsys, host, monkeypatch, 'owned by uid 1000, not root')


def test_preload_parent_not_owned_by_root(capsys, host, monkeypatch):
    os.chown(host.lib64, 1000, 0)
    refused(capsys, host, monkeypatch, 'owned by uid 1000')


def test_preload_missing_file(capsys, host, monkeypatch):
    missing = os.path.join(host.lib64, 'libvgpu-gone.so')
    res = refused(capsys, host, monkeypatch, 'PRELOAD_MISSING_FILE', preload=[host.libs[0], missing])
    assert missing in res['msg']


def test_preload_relative_dir_and_colon(capsys, host, monkeypatch):
    refused(capsys, host, monkeypatch, 'not an absolute path', preload=['lib/x.so'])
    refused(capsys, host, monkeypatch, 'not a regular file', preload=[host.lib64])
    refused(capsys, host, monkeypatch, 'separator', preload=[host.libs[0] + ':/x.so'])


@pytest.mark.parametrize('name', ['../evil.conf', 'a/b.conf', 'vgpu', '.hidden.conf', 'a..conf', 'sp ace.conf'])
def test_bad_dropin_names(capsys, host, monkeypatch, name):
    refused(capsys, host, monkeypatch, 'must be a plain file name ending in .conf', name=name)


def test_unit_not_installed(capsys, host, monkeypatch):
    os.unlink(os.path.join(host.systemd_dir, 'ollama.service'))
    FakeSystemctl({'LoadState': 'not-found', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    before = tree_state(host.root)
    res = run(capsys, host)
    assert res.get('failed') and 'unit ollama.service is not installed' in res['msg']
    assert tree_state(host.root) == before


def test_absent_for_a_unit_that_is_gone(capsys, host, monkeypatch):
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    run(capsys, host)
    os.unlink(os.path.join(host.systemd_dir, 'ollama.service'))
    FakeSystemctl({'LoadState': 'not-found', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    res = run(capsys, host, state='absent')
    assert res['changed'] and not res.get('failed') and not os.path.exists(host.dropin)


def test_unit_not_installed_without_systemd(capsys, host, monkeypatch):
    FakeSystemctl(show_rc=1).install(monkeypatch)
    res = run(capsys, host, unit='nothere.service')
    assert res.get('failed') and 'unit nothere.service is not installed' in res['msg']


def test_unit_masked(capsys, host, monkeypatch):
    FakeSystemctl({'LoadState': 'masked'}).install(monkeypatch)
    res = run(capsys, host)
    assert res.get('failed') and 'masked' in res['msg']


def test_invalid_unit_name(capsys, host, monkeypatch):
    refused(capsys, host, monkeypatch, 'not a valid unit name', unit='../../etc/passwd')


@pytest.mark.parametrize('env,expect', [
    ({'A': 'x\ny'}, 'control character'),
    ({'LD_PRELOAD': '/x.so'}, 'preload option'),
    ({'BAD-NAME': 'x'}, 'not a valid variable name'),
    ({'FLAG': True}, 'boolean'),
])
def test_bad_environment(capsys, host, monkeypatch, env, expect):
    refused(capsys, host, monkeypatch, expect, environment=env)


@pytest.mark.parametrize('extra,expect', [
    ({'Environment': 'A=1'}, 'environment option'),
    ({'LimitMEMLOCK': 'infinity\nExecStartPre=/bin/evil'}, 'control character'),
    ({'bad key': 'x'}, 'not a systemd setting name'),
    ({'LimitMEMLOCK': 'infinity\\'}, 'ends in a backslash'),
])
def test_bad_extra(capsys, host, monkeypatch, extra, expect):
    refused(capsys, host, monkeypatch, expect, extra=extra)


# ------------------------------------------------------------------------------------------- extra allow-list

ALLOWED_SAMPLE = {
    # the whole systemd.exec(5) rlimit family, LimitCPU= ... LimitRTTIME=
    'LimitCPU': 'infinity', 'LimitFSIZE': 'infinity', 'LimitDATA': 'infinity', 'LimitSTACK': '8M',
    'LimitCORE': 0, 'LimitRSS': 'infinity', 'LimitNOFILE': 65536, 'LimitAS': 'infinity', 'LimitNPROC': 4096,
    'LimitMEMLOCK': 'infinity', 'LimitLOCKS': 'infinity', 'LimitSIGPENDING': 1024, 'LimitMSGQUEUE': 819200,
    'LimitNICE': 0, 'LimitRTPRIO': 0, 'LimitRTTIME': 'infinity',
    'Nice': -5, 'OOMScoreAdjust': -500, 'MemoryMax': '60G', 'MemoryHigh': '56G', 'CPUQuota': '800%',
    'TasksMax': 4096, 'DeviceAllow': '/dev/vgpu0 rw', 'PrivateDevices': False, 'ProtectKernelTunables': False,
    'CapabilityBoundingSet': 'CAP_IPC_LOCK', 'NoNewPrivileges': True, 'TimeoutStartSec': 120,
    'TimeoutStopSec': '30s', 'RestartSec': 5, 'MemoryMin': '',
}


def test_extra_allow_list_is_written_sorted(capsys, host, monkeypatch):
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    res = run(capsys, host, extra=ALLOWED_SAMPLE)
    assert res['changed'] and not res.get('failed'), res.get('msg')
    body = res['content'].split('\n')[3:-1]            # after header, [Service], LD_PRELOAD
    assert body == ['%s=%s' % (k, {True: 'yes', False: 'no'}.get(v, v) if isinstance(v, bool) else v)
                    for k, v in sorted(ALLOWED_SAMPLE.items())]
    assert 'LimitNOFILE=65536' in body and 'PrivateDevices=no' in body and 'MemoryMin=' in body


def test_extra_allow_list_has_every_rlimit_and_what_remediate_writes():
    limits = sorted(k for k in DR.EXTRA_ALLOWED if k.startswith('Limit'))
    assert len(limits) == 16 and 'LimitRTTIME' in limits and 'LimitCPU' in limits
    # vgpu_remediate's override_sandbox fix writes these into vgpu_dropin_extra
    from ansible.module_utils.vgpu_doctor.catalogue import SANDBOX_SETTINGS
    assert set(SANDBOX_SETTINGS) <= DR.EXTRA_ALLOWED


@pytest.mark.parametrize('key,value,why', [
    ('ExecStartPre', '/bin/rm -rf /', 'runs a command'),
    ('ExecStart', '/tmp/evil serve', 'runs a command'),
    ('ExecStopPost', '/bin/true', 'runs a command'),
    ('User', 'root', 'who the service runs as'),
    ('Group', 'root', 'who the service runs as'),
    ('DynamicUser', True, 'who the service runs as'),
    ('SupplementaryGroups', 'disk', 'who the service runs as'),
    ('AmbientCapabilities', 'CAP_SYS_ADMIN', 'who the service runs as'),
    ('Environment', 'LD_PRELOAD=/tmp/x.so', 'environment option'),
    ('EnvironmentFile', '/tmp/env', 'environment option'),
    ('PassEnvironment', 'LD_PRELOAD', 'environment option'),
    ('UnsetEnvironment', 'LD_PRELOAD', 'environment option'),
    ('StandardError', 'null', 'ollama_gpu_mode reads'),
    ('StandardOutput', 'file:/tmp/o', 'ollama_gpu_mode reads'),
    ('WorkingDirectory', '/tmp', 'which files the service sees'),
    ('RootDirectory', '/srv/chroot', 'which files the service sees'),
    ('BindReadOnlyPaths', '/tmp/evil.so:/usr/lib64/libvgpu-cuda.so', 'which files the service sees'),
    ('Restart', 'no', 'comes back'),
    ('PrivateNetwork', True, 'reach its API'),
    ('LimitGPU', 1, "not one of systemd's resource limits"),
    ('KillMode', 'none', 'not a resource or sandbox setting'),
    ('Frobnicate', 'yes', 'not a resource or sandbox setting'),
])
def test_extra_refused_keys_name_the_key_the_reason_and_the_allowed_set(capsys, host, monkeypatch, key, value,
                                                                         why):
    res = refused(capsys, host, monkeypatch, 'extra key %s is refused: ' % key, extra={key: value})
    assert why in res['msg']
    assert 'extra takes only resource and sandbox settings - resource limits Limit{CPU,FSIZE' in res['msg']
    assert 'LimitRTTIME' in res['msg'] or 'RTTIME}' in res['msg']
    for allowed in ('MemoryMax', 'PrivateDevices', 'ProtectKernelTunables', 'OOMScoreAdjust', 'TimeoutStopSec'):
        assert allowed in res['msg']
    assert 'LimitMEMLOCK' in res['allowed_extra'] and key not in res['allowed_extra']


def test_extra_refusal_changes_nothing_on_an_existing_dropin_in_check_mode_too(capsys, host, monkeypatch):
    fake = FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': '0'}).install(monkeypatch)
    res = run(capsys, host, extra={'LimitMEMLOCK': 'infinity'})
    assert res['changed']
    before = tree_state(host.root)
    calls = len(fake.calls)
    for check in (True, False):
        res = run(capsys, host, check=check, extra={'LimitMEMLOCK': 'infinity', 'ExecStartPre': '/bin/rm -rf /'})
        assert res.get('failed') and 'ExecStartPre' in res['msg'] and 'Nothing was changed' in res['msg']
        assert res['errors'][0].startswith('extra key ExecStartPre is refused')
    assert tree_state(host.root) == before
    assert len(fake.calls) == calls          # refused before systemctl was even asked
    with open(host.dropin) as f:
        assert 'ExecStartPre' not in f.read()


def test_extra_refusals_are_all_listed_with_the_allowed_set_once(capsys, host, monkeypatch):
    res = refused(capsys, host, monkeypatch, 'extra key ExecStartPre is refused',
                  extra={'ExecStartPre': '/bin/true', 'User': 'root', 'LimitMEMLOCK': 'infinity'})
    assert [e.split(':')[0] for e in res['errors'][:2]] == ['extra key ExecStartPre is refused',
                                                            'extra key User is refused']
    assert res['msg'].count('extra takes only resource and sandbox settings') == 1


def test_dropin_path_is_directory(capsys, host, monkeypatch):
    os.makedirs(host.dropin)
    refused(capsys, host, monkeypatch, 'not a drop-in file')


def test_all_errors_listed(capsys, host, monkeypatch):
    os.chmod(host.libs[0], 0o777)
    res = refused(capsys, host, monkeypatch, 'world-writable', name='x/y.conf',
                  preload=[host.libs[0], '/nonexistent/lib.so'])
    assert len(res['errors']) >= 3


# ------------------------------------------------------------------------------------------- vgpu_fs walks

def test_unsafe_path_components_follows_links(safe_tmp):
    lib = os.path.join(safe_tmp, 'lib')
    evil = os.path.join(safe_tmp, 'evil')
    os.mkdir(lib)
    os.mkdir(evil)
    os.chmod(evil, 0o777)
    real = os.path.join(evil, 'real.so')
    open(real, 'w').close()
    # the link lives in a safe dir, but the file it names sits in a world-writable one
    link = os.path.join(lib, 'libcuda.so.1')
    os.symlink(real, link)
    bad = vgpu_fs.unsafe_path_components(link)
    assert [b['path'] for b in bad] == [evil]
    # a link to a directory on the way: its target's dirs are checked too
    hop = os.path.join(safe_tmp, 'hop')
    os.symlink(evil, hop)
    assert [b['path'] for b in vgpu_fs.unsafe_path_components(os.path.join(hop, 'real.so'))] == [evil]
    assert vgpu_fs.unsafe_path_components(os.path.join(safe_tmp, 'missing.so'))[0]['problem'].startswith(
        'cannot be resolved')
    os.chmod(evil, 0o755)
    assert vgpu_fs.unsafe_path_components(link) == []


def test_readable_by(safe_tmp):
    d = os.path.join(safe_tmp, 'shims')
    os.mkdir(d)
    f = os.path.join(d, 'libvgpu-cuda.so')
    open(f, 'w').close()
    os.chmod(f, 0o644)
    assert vgpu_fs.readable_by(f, 1000, [1000]) == (True, [])
    os.chmod(d, 0o750)                       # group root only: user 1000 cannot search it
    ok, problems = vgpu_fs.readable_by(f, 1000, [1000])
    assert not ok and 'not searchable by uid 1000' in problems[0]
    assert vgpu_fs.readable_by(f, 1000, [0])[0]               # in group root: fine
    os.chmod(d, 0o755)
    os.chmod(f, 0o600)
    ok, problems = vgpu_fs.readable_by(f, 1000, [1000])
    assert not ok and 'not readable by uid 1000' in problems[0]
    assert vgpu_fs.readable_by(f, 0, [0]) == (True, [])
    os.chown(f, 1000, 1000)
    assert vgpu_fs.readable_by(f, 1000, [1000])[0]            # owner bits apply
    link = os.path.join(safe_tmp, 'link.so')
    os.symlink(f, link)
    assert vgpu_fs.readable_by(link, 1000, [1000])[0]
    assert not vgpu_fs.readable_by(os.path.join(d, 'nope.so'), 1000, [1000])[0]


def test_atomic_write_never_follows_symlink(safe_tmp):
    victim = os.path.join(safe_tmp, 'victim')
    with open(victim, 'w') as f:
        f.write('original')
    path = os.path.join(safe_tmp, 'file.conf')
    os.symlink(victim, path)
    vgpu_fs.atomic_write(path, b'new', 0o640, 0, 0)
    assert not os.path.islink(path) and open(path).read() == 'new'
    assert open(victim).read() == 'original'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    d = os.path.join(safe_tmp, 'dir.conf')
    os.mkdir(d)
    with pytest.raises(OSError):
        vgpu_fs.atomic_write(d, b'x')


def test_check_mode_tolerates_a_preload_library_not_installed_yet(capsys, host, monkeypatch):
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    missing = os.path.join(host.lib64, 'libvgpu-new.so')
    before = tree_state(host.root)
    res = run(capsys, host, check=True, preload=[missing])
    assert not res.get('failed'), res
    assert res['changed'] and missing in res['diff']['after']
    assert any('does not exist yet' in w for w in res['warnings'])
    assert tree_state(host.root) == before
    refused(capsys, host, monkeypatch, 'PRELOAD_MISSING_FILE', preload=[missing])


def test_environment_file_that_overrides_ours_is_reported_and_asks_for_no_restart(capsys, host, monkeypatch):
    """EnvironmentFile= wins over every Environment= line (execute.c:5140,1999@v252.31 - the files are merged
    after Environment=): when it sets LD_PRELOAD, a restart gives the process that file's value again, so a
    running process that already has it needs no restart - the drop-in's value is reported as overridden."""
    write_dropin(host)
    envfile = os.path.join(host.root, 'etc/default/ollama')
    os.makedirs(os.path.dirname(envfile))
    with open(envfile, 'w') as f:
        f.write('# site settings\nLD_PRELOAD=/opt/other.so\n')
    with open(os.path.join(os.path.dirname(host.dropin), '10-site.conf'), 'w') as f:
        f.write('[Service]\nEnvironmentFile=-%s\n' % envfile)
    set_environ(host, 77, {'PATH': '/usr/bin:/bin', 'LD_PRELOAD': '/opt/other.so'})
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': '77', 'User': 'ollama',
                   'Environment': 'PATH=/usr/bin:/bin LD_PRELOAD=%s' % ':'.join(host.libs),
                   'EnvironmentFiles': '%s (ignore_errors=yes)' % envfile}).install(monkeypatch)
    res = run(capsys, host)
    assert not res['changed'] and res['restart_required'] is False, res['restart_reasons']
    assert res['overridden'] == [{'variable': 'LD_PRELOAD', 'ours': ':'.join(host.libs),
                                  'next_start': '/opt/other.so', 'kind': 'environment_file',
                                  'source': 'EnvironmentFile %s line 2 (named by %s line 2)'
                                  % (envfile, os.path.join(os.path.dirname(host.dropin), '10-site.conf'))}]
    assert any('restarting does not apply it' in w and envfile in w for w in res['warnings'])
    # the running process differs from what the file gives: a restart changes it, so it is asked for
    set_environ(host, 77, {'PATH': '/usr/bin:/bin'})
    res = run(capsys, host)
    assert res['restart_required'] is True
    assert res['restart_reasons'] == [{'variable': 'LD_PRELOAD', 'running': None, 'effective': '/opt/other.so'}]


def test_manager_environment_does_not_override_the_dropin(capsys, host, monkeypatch):
    """The manager's environment (systemctl set-environment) is the lowest layer: our Environment= wins."""
    write_dropin(host)
    set_environ(host, 77, {'PATH': '/usr/bin:/bin', 'LD_PRELOAD': ':'.join(host.libs)})
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': '77',
                   'Environment': 'PATH=/usr/bin:/bin LD_PRELOAD=%s' % ':'.join(host.libs)},
                  manager_env={'PATH': '/usr/bin', 'LD_PRELOAD': '/from/manager.so'}).install(monkeypatch)
    res = run(capsys, host)
    assert res['overridden'] == [] and res['restart_required'] is False


def test_variable_set_only_in_the_manager_environment_is_what_the_next_start_gets(capsys, host, monkeypatch):
    """state=absent: once our drop-in is gone, a manager-environment LD_PRELOAD is what the service gets; a
    process that runs with it needs no restart."""
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0'}).install(monkeypatch)
    run(capsys, host)
    set_environ(host, 9, {'PATH': '/usr/bin:/bin', 'LD_PRELOAD': '/from/manager.so'})
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': '9',
                   'Environment': 'PATH=/usr/bin:/bin LD_PRELOAD=%s' % ':'.join(host.libs)},
                  after_reload={'Environment': 'PATH=/usr/bin:/bin'},
                  manager_env={'PATH': '/usr/bin', 'LD_PRELOAD': '/from/manager.so'}).install(monkeypatch)
    res = run(capsys, host, state='absent')
    assert res['changed'] and res['restart_required'] is False, res['restart_reasons']


def _set_start(host, pid, started):
    """A fake /proc/PID/stat (starttime in ticks since boot) and /proc/stat (btime) for a process that started
    at ``started`` (epoch seconds)."""
    tck = os.sysconf('SC_CLK_TCK')
    btime = int(started) - 1000
    with open(os.path.join(host.proc, 'stat'), 'w') as f:
        f.write('cpu  1 2 3 4\nbtime %d\nprocesses 7\n' % btime)
    d = os.path.join(host.proc, str(pid))
    if not os.path.isdir(d):
        os.mkdir(d)
    ticks = int(round((started - btime) * tck))
    fields = ['S'] + ['0'] * 18 + [str(ticks)] + ['0'] * 10
    with open(os.path.join(d, 'stat'), 'w') as f:
        f.write('%d (ollama (srv)) %s\n' % (pid, ' '.join(fields)))


def test_process_start_time_reads_proc_stat(host):
    _set_start(host, 31, 1700000000.5)
    assert abs(SC.process_start_time(31, host.proc) - 1700000000.5) < 0.02
    assert SC.process_start_time(32, host.proc) is None


def test_changed_extra_setting_requires_a_restart_though_the_environment_is_the_same(capsys, host, monkeypatch):
    """PrivateDevices= takes effect only at a start: a drop-in rewritten with it needs a restart even when every
    variable the process has is already right (remediate's SANDBOX fix depends on this)."""
    write_dropin(host)
    set_environ(host, 77, {'PATH': '/usr/bin:/bin', 'LD_PRELOAD': ':'.join(host.libs)})
    _set_start(host, 77, os.lstat(host.dropin).st_mtime + 5)
    FakeSystemctl({'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': '77',
                   'Environment': 'PATH=/usr/bin:/bin LD_PRELOAD=%s' % ':'.join(host.libs)}).install(monkeypatch)
    res = run(capsys, host, extra={'PrivateDevices': 'no'})
    assert res['changed'] and res['restart_required'] is True
    assert res['restart_reasons'] == [{'setting': 'PrivateDevices', 'before': None, 'after': 'no'}]
    # the service restarted after the write: nothing more to do
    _set_start(host, 77, os.lstat(host.dropin).st_mtime + 1)
    again = run(capsys, host, extra={'PrivateDevices': 'no'})
    assert not again['changed'] and again['restart_required'] is False, again['restart_reasons']
    # a process older than the drop-in (written, never restarted) has not got the setting either
    _set_start(host, 77, os.lstat(host.dropin).st_mtime - 30)
    stale = run(capsys, host, extra={'PrivateDevices': 'no'})
    assert not stale['changed'] and stale['restart_required'] is True
    assert stale['restart_reasons'][0]['setting'] == 'PrivateDevices'
    assert stale['restart_reasons'][0]['reason'] == 'drop-in written after the process started'
