"""vgpu_doctor: one fake guest per failure code (tests/fixtures/doctor), ordering, loader emulation, read-only."""
import os
import shutil
import subprocess
import sys
import time

import pytest

from module_harness import FakeSystemctl, run_module, tree_state

import fakehost
import scenarios
import vgpu_doctor as M
from ansible.module_utils.vgpu_doctor import catalogue, engine, gather_unit, probes
from ansible.module_utils.vgpu_doctor import common as doctor_common
from ansible.module_utils.vgpu_doctor import params as doctor_params
from ansible.module_utils.vgpu_doctor import paths as doctor_paths
from ansible.module_utils import vgpu_elf, vgpu_loader


@pytest.fixture(scope='session')
def libs(elf, tmp_path_factory):  # noqa: F811
    return fakehost.build_libraries(elf, str(tmp_path_factory.getbasetemp() / 'doctor-libs'))


@pytest.fixture
def host(safe_tmp, libs):  # noqa: F811
    return fakehost.FakeHost(safe_tmp, libs)


def errors(res):
    return [f for f in res['findings'] if f['severity'] == 'error']


def codes(res, severity=None):
    return [f['code'] for f in res['findings'] if severity is None or f['severity'] == severity]


# ------------------------------------------------------------------------------------------ one scenario per code

@pytest.mark.parametrize('name', sorted(scenarios.SCENARIOS))
def test_scenario_puts_its_code_first(host, name):
    sc = scenarios.SCENARIOS[name]
    sc['build'](host)
    res = fakehost.diagnose(host, **sc['params'])
    assert res['findings'], res['summary']
    first = res['findings'][0]
    assert (first['code'], first['severity'], first['fix']['action']) == (sc['first'], sc['severity'], sc['action']), \
        [(f['code'], f['severity'], f['summary']) for f in res['findings']]
    # an error first means not healthy; a warning alone leaves the host healthy, and the summary names it
    assert res['healthy'] is (sc['severity'] != 'error')
    assert res['summary'].startswith(sc['first'] + ':') if sc['severity'] == 'error' else sc['first'] in res['summary']
    assert first['fix_text'] and first['summary']
    if sc['check']:
        sc['check'](host, res, first)


def test_every_code_has_a_scenario():
    assert set(s['first'] for s in scenarios.SCENARIOS.values()) == set(catalogue.CODES)
    assert set(catalogue.PRIORITY) == set(catalogue.CODES) == set(catalogue.CHECKS)
    assert all(s['build'].__doc__ for s in scenarios.SCENARIOS.values())


def test_every_catalogue_code_has_one_check_and_they_run_in_priority_order():
    # the checks register themselves with their code (@catalogue.check); diagnose() runs them in PRIORITY order
    assert set(catalogue.CHECKS) == set(catalogue.CODES) == set(catalogue.PRIORITY)
    assert len(catalogue.PRIORITY) == len(set(catalogue.PRIORITY))
    assert [code for code, _fn in engine.checks_in_order()] == list(catalogue.PRIORITY)
    assert all(fn.__name__ == 'check_' + code.lower() for code, fn in catalogue.CHECKS.items())
    with pytest.raises(ValueError):
        catalogue.check('NOT_A_CODE')
    with pytest.raises(ValueError):
        catalogue.check('NO_DEVICE')(lambda f: [])


def test_go_glob_follows_go_filepath_glob(tmp_path):
    """Go's filepath.Glob, as Ollama before 0.12.4 lists libcuda.so*: names sorted per directory, '*' matches
    dot files, '[^x]' negates, directories expanded before their names, a malformed pattern matches nothing."""
    for rel in ('b/lib/libcuda.so.1', 'a/lib/libcuda.so', 'a/lib/.libcuda.so.hidden', 'a/lib64/libcuda.so.2',
                'a/lib/libcudart.so.12', 'c/libcuda.so'):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text('')
    os.symlink('/nonexistent', str(tmp_path / 'a' / 'lib' / 'libcuda.so.9'))   # dangling: Go still lists it
    (tmp_path / 'a' / 'lib.txt').write_text('')                               # not a directory: not descended
    base = str(tmp_path)
    got = [os.path.relpath(p, base) for p in vgpu_loader.go_glob(base + '/*/lib*/libcuda.so*')]
    assert got == ['a/lib/libcuda.so', 'a/lib/libcuda.so.9', 'a/lib64/libcuda.so.2', 'b/lib/libcuda.so.1']
    assert [os.path.relpath(p, base) for p in vgpu_loader.go_glob(base + '/a/lib/*cuda.so*')] == [
        'a/lib/.libcuda.so.hidden', 'a/lib/libcuda.so', 'a/lib/libcuda.so.9']
    assert [os.path.relpath(p, base) for p in vgpu_loader.go_glob(base + '/[^ab]/libcuda.so')] == ['c/libcuda.so']
    assert [os.path.relpath(p, base) for p in vgpu_loader.go_glob(base + '/[a-b]/lib/libcuda.so.?')] == [
        'a/lib/libcuda.so.9', 'b/lib/libcuda.so.1']
    assert vgpu_loader.go_glob(base + '/a/lib/libcuda.so') == [base + '/a/lib/libcuda.so']   # no meta: Lstat
    assert vgpu_loader.go_glob(base + '/a/lib/nothing') == []
    assert vgpu_loader.go_glob(base + '/[/libcuda.so*') == []          # ErrBadPattern: nothing
    assert vgpu_loader.go_glob(base + '/nonexistent/*') == []
    assert vgpu_loader.go_glob(base + '/*/') == []


def test_readme_lists_every_scenario():
    with open(os.path.join(fakehost.HERE, 'README.md')) as f:
        text = f.read()
    for name, sc in scenarios.SCENARIOS.items():
        assert '`%s`' % name in text and sc['first'] in text


def test_documentation_names_every_code_and_action():
    for code in catalogue.CODES:
        assert code in M.RETURN and code in M.DOCUMENTATION
    for action in catalogue.ACTIONS:
        assert 'C(%s)' % action in M.RETURN


# ------------------------------------------------------------------------------------------ healthy hosts

def test_healthy_preload_host(host):
    # the runners resolve libnvidia-ml.so.1 to the preloaded NVML shim by its SONAME: only the simulator's
    # build has one (the stand-in built here does not), so without it this skips with the reason
    scenarios._need(host, 'nvml')
    host.healthy()
    res = fakehost.diagnose(host)
    assert errors(res) == [] and codes(res) == [], res['findings']
    assert res['healthy'] is True and res['summary'].startswith('healthy (GPU mode')
    assert res['verdict']['mode'] == 'gpu' and res['verdict']['ollama_version'] == '0.12.6'
    assert sorted((r['runner'], r['name']) for r in res['resolution']) == [
        ('cuda_v12', 'libcuda.so.1'), ('cuda_v12', 'libnvidia-ml.so.1'),
        ('cuda_v13', 'libcuda.so.1'), ('cuda_v13', 'libnvidia-ml.so.1')]
    for r in res['resolution']:
        assert r['ok'] and r['is_shim'] and r['env'] == 'running'
        assert r['step'] == 'LD_PRELOAD (SONAME %s)' % r['name']
    assert [l['state'] for l in res['links']] == ['ok'] * 10
    main, runner = res['processes']
    assert (main['role'], runner['role'], runner['pid']) == ('main', 'runner', fakehost.RUNNER_PID)
    assert main['shim_mapped'] and runner['shim_mapped']
    assert res['service']['user'] == 'nobody' and res['service']['uid'] == 65534


def test_healthy_library_path_host(host):
    """Shims and their name links in /opt/vgpu/lib, no LD_PRELOAD: the runner finds the shim through the
    service's LD_LIBRARY_PATH, after Ollama's own dirs (which hold no libcuda.so.1)."""
    lib = host.P('/opt/vgpu/lib')
    host.shim, host.nvml = os.path.join(lib, 'libvgpu-cuda.so'), os.path.join(lib, 'libvgpu-nvml.so')
    host.install('cuda', host.shim)
    host.install('nvml', host.nvml)
    host.make_links(dirs=[lib])
    host.unit()
    path = ':'.join([lib, os.path.join(host.ollama, 'cuda_v12'), host.ollama])
    host.vgpu_dropin(preload=[], environment={'LD_LIBRARY_PATH': path, 'OLLAMA_LIBRARY_PATH': path,
                                              'OLLAMA_LLM_LIBRARY': 'cuda_v12'})
    host.running(maps=[])
    host.pci()
    host.log('gpu-0.12.6.log')
    res = fakehost.diagnose(host, strategy='library_path', link_dirs=None)
    assert errors(res) == [] and res['healthy'], res['findings']
    assert [l['path'] for l in res['links']] == [os.path.join(lib, n) for n in ('libcuda.so.1', 'libnvidia-ml.so.1')]
    for r in res['resolution']:
        assert r['ok'] and r['step'] == 'LD_LIBRARY_PATH' and os.path.dirname(r['path']) == lib


def test_no_device_is_info_when_not_required(host):
    scenarios.SCENARIOS['no_device']['build'](host)
    host.log('gpu-0.12.6.log')
    res = fakehost.diagnose(host, require_pci_device=False)
    assert codes(res) == ['NO_DEVICE'] and res['findings'][0]['severity'] == 'info'
    assert res['healthy'] is True


def test_cpu_verdict_without_cause_is_not_healthy(host):
    host.healthy(log='cpu-0.12.6.log')
    res = fakehost.diagnose(host)
    assert errors(res) == [] and res['healthy'] is False
    assert res['summary'].startswith('not healthy: CPU mode')


# ------------------------------------------------------------------------------------------ evidence decides severity

def test_missing_links_are_only_a_warning_when_the_preloaded_shim_stands_in(host):
    """The reference shim's SONAME is libcuda.so.1: preloaded, it satisfies libggml-cuda.so's DT_NEEDED
    even with the links gone, so a missing link is a warning (and the host stays healthy)."""
    host.healthy()
    scenarios._remove_ollama_links(host)
    res = fakehost.diagnose(host)
    missing = [f for f in res['findings'] if f['code'] == 'LINK_MISSING']
    assert [f['severity'] for f in missing] == ['warning', 'warning']
    assert missing[0]['evidence']['runner_resolves_shim'] is True
    assert 'LD_PRELOAD (SONAME libcuda.so.1)' in missing[0]['summary']
    assert res['healthy'] is True and errors(res) == []


def test_errors_come_before_warnings_and_follow_the_priority(host):
    """A bad shim after an upgrade: SHIM_BAD (the more basic cause) before LINK_MISSING; warnings last."""
    scenarios.SCENARIOS['link_missing_after_upgrade']['build'](host)
    host.install('truncated', host.shim)
    host.write(host.P('/etc/ld.so.preload'), '')   # present but empty: no finding
    res = fakehost.diagnose(host)
    got = [(f['severity'], f['code']) for f in res['findings']]
    assert got[0] == ('error', 'SHIM_BAD')
    assert ('error', 'LINK_MISSING') in got
    ranks = [(catalogue.SEVERITIES.index(s), catalogue.PRIORITY.index(c)) for s, c in got]
    assert ranks == sorted(ranks)


def test_order_findings_rule():
    f = lambda code, sev: catalogue.finding(code, sev, code, {}, 'manual', '')  # noqa: E731
    got = catalogue.order_findings([f('DISCOVERY_TIMEOUT', 'error'), f('NO_DEVICE', 'info'), f('LINK_MISSING', 'warning'),
                            f('PRELOAD_NOT_APPLIED', 'error'), f('SHIM_BAD', 'error'), f('SNAP_OLLAMA', 'warning')])
    assert [(x['severity'], x['code']) for x in got] == [
        ('error', 'SHIM_BAD'), ('error', 'PRELOAD_NOT_APPLIED'), ('error', 'DISCOVERY_TIMEOUT'),
        ('warning', 'SNAP_OLLAMA'), ('warning', 'LINK_MISSING'), ('info', 'NO_DEVICE')]


def test_latent_undefined_symbol_is_a_warning_when_the_cuda_shim_is_preloaded(host):
    host.healthy()
    host.install('nvml_needs_cuda', host.nvml)
    res = fakehost.diagnose(host)
    und = [f for f in res['findings'] if f['code'] == 'SHIM_UNDEFINED_SYMBOL']
    assert len(und) == 1 and und[0]['severity'] == 'warning'
    assert und[0]['evidence']['load_test']['ok'] is True
    assert und[0]['fix']['action'] == 'manual'
    assert res['healthy'] is True


def test_no_load_test_for_a_clean_shim(host):
    host.healthy()
    res = fakehost.diagnose(host)
    assert not [c for c in host.calls if c[0] == 'run' and any('ctypes' in a for a in c[1])]
    assert res['healthy']


def test_dangling_link_is_a_warning_while_another_dir_supplies_the_shim(host):
    host.healthy()
    host.install('cuda_own_soname', host.shim)
    host.link(os.path.join(host.ollama, 'libcuda.so.1'), host.P('/usr/lib64/libvgpu-cuda.so.old'))
    res = fakehost.diagnose(host)
    wrong = [f for f in res['findings'] if f['code'] == 'LINK_WRONG']
    assert [f['severity'] for f in wrong] == ['warning'] and 'dangles' in wrong[0]['summary']
    r = [x for x in res['resolution'] if x['runner'] == 'cuda_v12' and x['name'] == 'libcuda.so.1'][0]
    assert r['path'] == os.path.join(host.ollama, 'cuda_v12', 'libcuda.so.1') and r['step'] == 'LD_LIBRARY_PATH'
    assert r['skipped'][0]['reason'].startswith('dangling symlink')


def test_runner_search_order_0_12(host):
    """A stale copy in cuda_v12 (not in lib/ollama): discovery of 0.12+ searches lib/ollama first and finds the
    link there; the stale copy is a warning."""
    host.healthy(log='cpu-0.12.6.log')
    host.install('cuda_own_soname', host.shim)
    stale = host.install('cuda_stale', os.path.join(host.ollama, 'cuda_v12', 'libcuda.so.1'))
    res = fakehost.diagnose(host)
    r = [x for x in res['resolution'] if x['runner'] == 'cuda_v12' and x['name'] == 'libcuda.so.1'][0]
    assert r['path'] != stale and r['ok']
    assert res['discovery']['mechanism'] == 'runner'
    wrong = [f for f in res['findings'] if f['code'] == 'LINK_WRONG']
    assert [f['severity'] for f in wrong] == ['warning']
    assert wrong[0]['fix'] == {'action': 'relink', 'target': host.shim, 'names': ['libcuda.so.1'], 'paths': [stale],
                               'replace_files': True}


def test_in_process_discovery_before_0_12_4(host):
    """Ollama 0.5.7 globs lib/ollama, LD_LIBRARY_PATH and the fixed dirs (discover/gpu.go:513-577@v0.5.7) and
    opens the files by path: the stale copy in cuda_v12 is never looked at, the lib/ollama link is."""
    host.healthy(log='cpu-0.5.7.log')
    host.install('cuda_own_soname', host.shim)
    host.install('cuda_stale', os.path.join(host.ollama, 'cuda_v12', 'libcuda.so.1'))
    res = fakehost.diagnose(host)
    assert res['discovery']['mechanism'] == 'in_process' and '0.5.7' in res['discovery']['reasoned_for']
    r = res['resolution'][0]
    assert r['runner'] == 'in-process discovery' and r['ok']
    assert r['search_path'][0] == os.path.join(host.ollama, 'libcuda.so*')
    assert r['search_path'][-1] == host.P('/usr/local/lib*/libcuda.so*')
    assert r['path'] == os.path.join(host.ollama, 'libcuda.so.1') and r['real'] == host.shim
    assert [c['path'] for c in r['candidates']] == [host.shim]   # every link resolves to the one shim


def test_in_process_discovery_ignores_preload_and_cache(host):
    """0.5.7 with the shim only preloaded and in ld.so.cache, no libcuda.so* link in any glob: CPU mode
    upstream, so the missing links are an error, not the 0.12+ warning"""
    host.healthy(log='cpu-0.5.7.log')
    host.install('cuda_own_soname', host.shim)
    for d in host.link_dirs():
        for n in ('libcuda.so.1', 'libnvidia-ml.so.1'):
            if os.path.lexists(os.path.join(d, n)):
                os.unlink(os.path.join(d, n))
    host.cache([('libcuda.so.1', host.shim)])
    res = fakehost.diagnose(host)
    r = res['resolution'][0]
    assert not r['ok'] and r['error'].startswith('no file matches libcuda.so*')
    missing = [f for f in res['findings'] if f['code'] == 'LINK_MISSING']
    assert missing and missing[0]['severity'] == 'error'
    assert missing[0]['evidence']['discovery']['mechanism'] == 'in_process'


def test_missing_dropin_is_a_warning_while_links_work(host):
    host.healthy()
    os.unlink(os.path.join(host.dropin_dir, 'vgpu.conf'))
    host.running(maps=[])
    res = fakehost.diagnose(host)
    na = [f for f in res['findings'] if f['code'] == 'PRELOAD_NOT_APPLIED']
    assert [(f['severity'], f['fix']['action']) for f in na] == [('warning', 'rewrite_dropin')]
    assert na[0]['evidence']['dropin_exists'] is False


def test_missing_dropin_is_an_error_when_nothing_else_supplies_the_shim(host):
    host.healthy(log='cpu-0.12.6.log')
    host.install('cuda_own_soname', host.shim)
    scenarios._remove_ollama_links(host)
    host.cache([])
    os.unlink(os.path.join(host.dropin_dir, 'vgpu.conf'))
    host.running(maps=[])
    res = fakehost.diagnose(host)
    na = [f for f in res['findings'] if f['code'] == 'PRELOAD_NOT_APPLIED']
    assert na[0]['severity'] == 'error'


def test_daemon_reload_needed(host):
    host.healthy(log='cpu-0.12.6.log')
    host.props['NeedDaemonReload'] = 'yes'
    res = fakehost.diagnose(host)
    first = res['findings'][0]
    assert (first['code'], first['fix']['action'], first['fix']['daemon_reload']) == \
        ('PRELOAD_NOT_APPLIED', 'restart', True)


def test_dropin_written_without_daemon_reload(host):
    """vgpu.conf is on disk but systemd still has the old environment and the process runs without it:
    restart after a daemon-reload; the drop-in itself is fine (no rewrite)."""
    host.healthy(log='cpu-0.12.6.log')
    env = dict(host.unit_environment())
    del env['LD_PRELOAD']
    host.props['Environment'] = ' '.join('%s=%s' % kv for kv in env.items())
    host.running(env=env, maps=[])
    res = fakehost.diagnose(host)
    assert [(f['code'], f['fix']['action'], f['fix'].get('daemon_reload')) for f in errors(res)] == [
        ('PRELOAD_NOT_APPLIED', 'restart', True)]
    ev = errors(res)[0]['evidence']
    assert ev['files_vs_systemd'][0]['variable'] == 'LD_PRELOAD' and ev['files_vs_systemd'][0]['systemd'] is None
    assert res['service']['reload_pending'] is True


def test_log_read_from_the_journal_of_the_current_invocation(host):
    """journalctl (a stand-in script here) is asked for the unit's current invocation, without --follow."""
    host.healthy(log=None)
    log = host.log('cpu-discovery-timeout-0.12.6.log')
    bindir = host.P('/fakebin')
    os.makedirs(bindir)
    argv_file = host.P('/fakebin/argv')
    host.write(os.path.join(bindir, 'journalctl'), '#!/bin/sh\necho "$@" > %s\ncat %s\n' % (argv_file, log), 0o755)
    probe = fakehost.FakeProbe(host)
    probe.which = lambda name: os.path.join(bindir, name) if name == 'journalctl' else doctor_paths.Probe.which(probe, name)
    res = engine.doctor(host.params(log_path=None), doctor_paths.SystemPaths(host.root), probe)
    with open(argv_file) as f:
        argv = f.read().split()
    # the same scope as ollama_gpu_mode (vgpu_systemd.journal_command): this invocation, or this main PID
    assert argv[:3] == ['--no-pager', '--output=cat', '_SYSTEMD_INVOCATION_ID=%s' % host.props['InvocationID']]
    assert argv[3:5] == ['+', '_SYSTEMD_UNIT=ollama.service']
    assert res['log_source'].startswith('journal:') and res['verdict']['mode'] == 'cpu'
    assert res['findings'][0]['code'] == 'DISCOVERY_TIMEOUT' and res['elapsed'] < 3.0
    # log_timeout > 0 follows the journal until the verdict is there (the stand-in ends: no wait)
    res = engine.doctor(host.params(log_path=None, log_timeout=20), doctor_paths.SystemPaths(host.root), probe)
    with open(argv_file) as f:
        assert f.read().split()[:4] == ['--no-pager', '--follow', '--no-tail', '--output=cat']
    assert res['verdict']['mode'] == 'cpu' and res['elapsed'] < 3.0


def test_preload_failure_fixed_since_start_needs_a_restart(host):
    host.healthy(log='cpu-preload-failed-0.12.6.log')
    res = fakehost.diagnose(host)
    first = res['findings'][0]
    assert (first['code'], first['fix']['action']) == ('PRELOAD_NOT_APPLIED', 'restart')
    assert first['evidence']['paths'] == [host.shim]


def test_earlier_conflicting_dropin_is_a_warning(host):
    host.healthy()
    host.dropin('50-old.conf', '[Service]\nEnvironment="LD_PRELOAD=/nonexistent/libold.so"\n')
    res = fakehost.diagnose(host)
    c = [f for f in res['findings'] if f['code'] == 'PRELOAD_CONFLICT']
    assert [(f['severity'], f['fix']['action']) for f in c] == [('warning', 'move_conflicting_dropin')]
    assert c[0]['evidence']['applied_after_ours'] is False and res['healthy']


def test_driver_present_but_not_first_is_a_warning(host):
    host.healthy()
    real = host.install('driver', host.P('/usr/lib/nvidia/libcuda.so.535.104.05'))
    host.link(host.P('/usr/lib/nvidia/libcuda.so.1'), 'libcuda.so.535.104.05')
    host.cache([('libcuda.so.1', host.P('/usr/lib/nvidia/libcuda.so.1'))])
    res = fakehost.diagnose(host)
    d = [f for f in res['findings'] if f['code'] == 'DRIVER_SHADOW']
    assert [(f['severity'], f['evidence']['real_path']) for f in d] == [('warning', real)]
    assert res['healthy']


def test_nvml_shim_not_named_by_the_caller_is_not_a_driver(host):
    """An ad-hoc doctor run without nvml_shim (its default) on a host provisioned with the NVML shim: the
    libnvidia-ml.so.1 links point at the toolkit's own libvgpu-nvml.so, which is no NVIDIA driver (it was
    reported as DRIVER_SHADOW because its SONAME differs from the CUDA shim's)."""
    host.healthy()
    res = fakehost.diagnose(host, nvml_shim=None)
    assert [f['code'] for f in res['findings'] if f['code'] == 'DRIVER_SHADOW'] == []
    assert any("toolkit's NVML shim but nvml_shim was not given" in n for n in res['notes'])
    # a real NVML library elsewhere is still one
    real = host.install('nvml', host.P('/usr/lib/nvidia/libnvidia-ml.so.535.104.05'))
    host.link(host.P('/usr/lib/nvidia/libnvidia-ml.so.1'), 'libnvidia-ml.so.535.104.05')
    host.cache([('libnvidia-ml.so.1', host.P('/usr/lib/nvidia/libnvidia-ml.so.1'))])
    res = fakehost.diagnose(host, nvml_shim=None)
    assert [f['evidence']['real_path'] for f in res['findings'] if f['code'] == 'DRIVER_SHADOW'] == [real]


def test_snap_beside_upstream_is_a_warning(host):
    host.healthy()
    os.makedirs(host.P('/snap/ollama'))
    res = fakehost.diagnose(host)
    assert [(f['code'], f['severity']) for f in res['findings']] == [('SNAP_OLLAMA', 'warning')]


def test_discovery_timeout_in_a_gpu_start_is_a_warning(host):
    host.healthy()
    with open(host.log_path, 'a') as f:
        f.write('Nov 25 10:00:02 fh1 ollama[2210]: time=2025-11-25T10:00:02.000Z level=INFO source=runner.go:463 '
                'msg="failure during GPU discovery" OLLAMA_LIBRARY_PATH="[/usr/local/lib/ollama '
                '/usr/local/lib/ollama/cuda_v13]" extra_envs=map[] error="failed to finish discovery before timeout"\n')
    res = fakehost.diagnose(host)
    assert [(f['code'], f['severity']) for f in res['findings']] == [('DISCOVERY_TIMEOUT', 'warning')]


def test_protect_kernel_tunables_alone_is_a_warning(host):
    host.healthy()
    host.unit('ProtectKernelTunables=yes')
    host.props['ProtectKernelTunables'] = 'yes'
    res = fakehost.diagnose(host)
    assert [(f['code'], f['severity'], f['fix']['settings']) for f in res['findings']] == [
        ('SANDBOX', 'warning', {'ProtectKernelTunables': 'no'})]
    assert res['findings'][0]['evidence']['set_by'] == {
        'ProtectKernelTunables': [host.P('/etc/systemd/system/ollama.service')]}


def test_visible_device_count():
    assert doctor_common.visible_device_count('0', 1) == 1
    assert doctor_common.visible_device_count('', 1) == 0
    assert doctor_common.visible_device_count('-1', 1) == 0
    assert doctor_common.visible_device_count('1', 1) == 0
    assert doctor_common.visible_device_count('0,0', 2) == 1
    assert doctor_common.visible_device_count('GPU-8a3c', 1) is None


# ------------------------------------------------------------------------------------------ UnsetEnvironment=

def _unset_in_our_dropin(host, variable):
    """Our drop-in as vgpu_dropin renders it with extra UnsetEnvironment (the unset_env fix's way)."""
    from ansible.module_utils.vgpu_dropin import render
    host.dropin('vgpu.conf', render([host.shim, host.nvml], {}, {'UnsetEnvironment': variable}))


def test_unset_environment_in_our_dropin_removes_the_variable(host):
    """override.conf keeps CUDA_VISIBLE_DEVICES=-1, our drop-in unsets it, the service was restarted: the
    doctor sees the variable gone - no VISIBLE_DEVICES, no PRELOAD_CONFLICT about override.conf."""
    scenarios.SCENARIOS['visible_devices']['build'](host)
    override = os.path.join(host.dropin_dir, 'override.conf')
    ours = os.path.join(host.dropin_dir, 'vgpu.conf')
    _unset_in_our_dropin(host, 'CUDA_VISIBLE_DEVICES')
    host.running()
    host.log('gpu-0.12.6.log')
    res = fakehost.diagnose(host)
    assert res['findings'] == [] and res['healthy'], res['findings']
    env = res['environment']
    assert 'CUDA_VISIBLE_DEVICES' not in env['unit'] and 'CUDA_VISIBLE_DEVICES' not in env['sources']
    assert env['unset'] == [{'entry': 'CUDA_VISIBLE_DEVICES', 'path': ours}]
    assert env['unset_by'] == {'CUDA_VISIBLE_DEVICES': ours}
    assert any(n.startswith(override) and 'not a conflict' in n for n in res['notes'])


def test_unset_of_a_variable_we_do_not_need_is_no_conflict(host):
    """Another drop-in's UnsetEnvironment= of a variable our drop-in does not set and the layout does not need
    (here: it removes override.conf's CUDA_VISIBLE_DEVICES=-1) is no PRELOAD_CONFLICT."""
    scenarios.SCENARIOS['visible_devices']['build'](host)
    clean = host.dropin('00-clean.conf', '[Service]\nUnsetEnvironment=CUDA_VISIBLE_DEVICES OLLAMA_LLM_LIBRARY\n')
    host.running()
    host.log('gpu-0.12.6.log')
    res = fakehost.diagnose(host)
    assert res['findings'] == [] and res['environment']['unset_by'] == {'CUDA_VISIBLE_DEVICES': clean}


def test_unset_environment_not_yet_applied(host):
    """The unset is in the files, but the process still has the variable: restart it (no unset_env again);
    when systemd has not read the drop-in yet (UnsetEnvironment empty in systemctl show) daemon-reload first."""
    scenarios.SCENARIOS['visible_devices']['build'](host)    # running with CUDA_VISIBLE_DEVICES=-1
    _unset_in_our_dropin(host, 'CUDA_VISIBLE_DEVICES')
    res = fakehost.diagnose(host)
    assert [(f['code'], f['fix']['action'], f['fix']['daemon_reload']) for f in res['findings']] == [
        ('VISIBLE_DEVICES', 'restart', False), ('PRELOAD_NOT_APPLIED', 'restart', False)]
    assert res['findings'][0]['evidence']['value'] is None
    assert res['findings'][1]['evidence']['differences'] == [
        {'variable': 'CUDA_VISIBLE_DEVICES', 'running': '-1', 'unit': None,
         'source': 'UnsetEnvironment= in %s' % os.path.join(host.dropin_dir, 'vgpu.conf')}]
    host.props['UnsetEnvironment'] = ''
    res = fakehost.diagnose(host)
    assert [(f['code'], f['fix']['action']) for f in res['findings']] == [
        ('VISIBLE_DEVICES', 'restart'), ('PRELOAD_NOT_APPLIED', 'restart')]
    assert res['findings'][1]['fix']['daemon_reload'] is True and res['service']['reload_pending'] is True


@pytest.mark.parametrize('entry,reported', [
    ('CUDA_VISIBLE_DEVICES=-1', False),     # NAME=VALUE with the value it has: removed
    ('CUDA_VISIBLE_DEVICES=0', True),       # another value: kept
])
def test_unset_environment_assignment_form(host, entry, reported):
    scenarios.SCENARIOS['visible_devices']['build'](host)
    _unset_in_our_dropin(host, entry)
    host.running()
    assert ('VISIBLE_DEVICES' in codes(fakehost.diagnose(host))) is reported


def test_unset_environment_reset_by_a_later_dropin(host):
    """zz-reset.conf's empty UnsetEnvironment= empties the list: the variable reaches the service again."""
    scenarios.SCENARIOS['visible_devices']['build'](host)
    _unset_in_our_dropin(host, 'CUDA_VISIBLE_DEVICES')
    host.dropin('zz-reset.conf', '[Service]\nUnsetEnvironment=\n')
    host.running()
    res = fakehost.diagnose(host)
    assert res['findings'][0]['code'] == 'VISIBLE_DEVICES' and res['environment']['unset'] == []


def test_unset_environment_ignored_by_a_systemd_without_it(host):
    """systemctl show prints no UnsetEnvironment (systemd < 235): the setting is ignored, so is it here."""
    scenarios.SCENARIOS['visible_devices']['build'](host)
    _unset_in_our_dropin(host, 'CUDA_VISIBLE_DEVICES')
    show = host.show

    def old_show(unit, properties):
        props, err = show(unit, properties)
        props.pop('UnsetEnvironment', None)
        return props, err
    host.show = old_show
    res = fakehost.diagnose(host)
    assert res['findings'][0]['code'] == 'VISIBLE_DEVICES'
    assert any('older than 235' in n for n in res['notes'])


def test_dropin_that_unsets_ld_preload_is_the_conflict(host):
    """A hardening drop-in with UnsetEnvironment=LD_PRELOAD takes our preload away whatever its name: it is the
    PRELOAD_CONFLICT to move; our drop-in is fine and is not reported for a rewrite."""
    host.healthy(log='cpu-0.12.6.log')
    host.install('cuda_own_soname', host.shim)
    scenarios._remove_ollama_links(host)
    host.cache([])
    path = host.dropin('00-hardening.conf', '[Service]\nUnsetEnvironment=LD_PRELOAD\n')
    host.running()
    res = fakehost.diagnose(host)
    c = [f for f in res['findings'] if f['code'] == 'PRELOAD_CONFLICT']
    assert [(f['severity'], f['fix']) for f in c] == [
        ('error', {'action': 'move_conflicting_dropin', 'path': path, 'variables': ['LD_PRELOAD']})]
    assert c[0]['evidence']['unsets'] == ['LD_PRELOAD'] and c[0]['evidence']['values'] == {'LD_PRELOAD': '(unset)'}
    assert 'unsets LD_PRELOAD' in c[0]['summary'] and 'gets no LD_PRELOAD' in c[0]['summary']
    assert 'rewrite_dropin' not in [f['fix']['action'] for f in res['findings']]
    assert 'LD_PRELOAD' not in res['environment']['unit']


# ------------------------------------------------------------------------------------------ intended preload

def test_intended_nvml_only_preload(host):
    """The operator's drop-in preloads only the NVML shim (libcuda.so.1 comes from the links): told so with
    preload, the doctor no longer asks for the CUDA shim in LD_PRELOAD; by default it still does."""
    host.healthy()
    host.vgpu_dropin(preload=[host.nvml])
    host.running()
    res = fakehost.diagnose(host)
    assert [(f['code'], f['severity'], f['fix']['action']) for f in res['findings']] == [
        ('PRELOAD_NOT_APPLIED', 'warning', 'rewrite_dropin')]
    assert host.shim in res['findings'][0]['summary']
    res = fakehost.diagnose(host, preload=[host.nvml])
    assert res['findings'] == [] and res['healthy'], res['findings']


def test_intended_preload_is_what_the_unit_must_have(host):
    host.healthy()
    res = fakehost.diagnose(host, preload=[host.nvml + '/'])     # normalized, as the module's path type does
    assert res['findings'] == []
    res = fakehost.diagnose(host, preload=[host.nvml, host.shim])
    na = [f for f in res['findings'] if f['code'] == 'PRELOAD_NOT_APPLIED']
    assert [f['evidence']['problems'] for f in na] == [
        ['LD_PRELOAD does not have %s, %s in this order' % (host.nvml, host.shim)]]
    assert na[0]['evidence']['intended_preload'] == [host.nvml, host.shim]
    other = host.P('/usr/lib64/libextra.so')
    res = fakehost.diagnose(host, preload=[host.shim, host.nvml, other])
    assert [f['summary'] for f in res['findings'] if f['code'] == 'PRELOAD_NOT_APPLIED'] == [
        'the unit\'s environment is not the preload layout: LD_PRELOAD of the unit does not contain %s' % other]
    # library_path with the role's default (no preload): only LD_LIBRARY_PATH is asked for
    assert doctor_params.intended_preload(host.params(strategy='library_path', preload=[])) == []
    with pytest.raises(ValueError):
        host.params(preload=['relative/lib.so'])


def test_undefined_symbol_with_an_intended_nvml_only_preload_is_manual(host):
    """Rendering the drop-in again would not add the CUDA shim the inventory leaves out: a person decides."""
    scenarios.SCENARIOS['shim_undefined_symbol']['build'](host)
    res = fakehost.diagnose(host, preload=[host.nvml])
    first = res['findings'][0]
    assert (first['code'], first['severity'], first['fix']) == ('SHIM_UNDEFINED_SYMBOL', 'error', {'action': 'manual'})
    assert 'vgpu_dropin_preload' in first['fix_text'] and host.shim in first['fix_text']
    assert 'PRELOAD_NOT_APPLIED' not in codes(res)


# ------------------------------------------------------------------------------------------ conflicting drop-ins

def test_conflicting_dropin_yields_only_the_conflict_fix(host):
    """zz-debug.conf overrides our (correct) LD_PRELOAD with the NVML shim alone; the links still carry the
    runners: one finding, moving zz-debug.conf - our drop-in is not reported for a rewrite."""
    host.healthy()
    path = host.dropin('zz-debug.conf', '[Service]\nEnvironment="LD_PRELOAD=%s" "OLLAMA_DEBUG=1"\n' % host.nvml)
    host.running()
    res = fakehost.diagnose(host)
    assert [(f['code'], f['severity'], f['fix']) for f in res['findings']] == [
        ('PRELOAD_CONFLICT', 'warning', {'action': 'move_conflicting_dropin', 'path': path,
                                         'variables': ['LD_PRELOAD']})]
    # once it is moved aside (and the service restarted) nothing is left
    os.rename(path, path + '.vgpu-disabled-20261125T222600Z')
    host.running()
    assert fakehost.diagnose(host)['findings'] == []


def test_conflicting_dropin_and_a_wrong_dropin_of_ours(host):
    """When our drop-in is wrong too (here: gone), rewriting it is still asked for, beside the move."""
    host.healthy()
    path = host.dropin('zz-debug.conf', '[Service]\nEnvironment="LD_PRELOAD=%s"\n' % host.nvml)
    os.unlink(os.path.join(host.dropin_dir, 'vgpu.conf'))
    host.running()
    res = fakehost.diagnose(host)
    assert sorted((f['code'], f['fix']['action'], f['fix']['path']) for f in res['findings']) == [
        ('PRELOAD_CONFLICT', 'move_conflicting_dropin', path),
        ('PRELOAD_NOT_APPLIED', 'rewrite_dropin', os.path.join(host.dropin_dir, 'vgpu.conf'))]


def test_undefined_symbol_from_a_conflicting_preload_moves_that_dropin(host):
    """zz-debug.conf preloads the NVML shim alone, which needs the CUDA shim's symbols: the fix is moving
    zz-debug.conf (vgpu.conf preloads the CUDA shim first), not rendering vgpu.conf again."""
    scenarios.SCENARIOS['shim_undefined_symbol']['build'](host)
    host.vgpu_dropin()
    path = host.dropin('zz-debug.conf', '[Service]\nEnvironment="LD_PRELOAD=%s"\n' % host.nvml)
    host.running()
    res = fakehost.diagnose(host)
    und = [f for f in res['findings'] if f['code'] == 'SHIM_UNDEFINED_SYMBOL']
    assert und[0]['fix'] == {'action': 'move_conflicting_dropin', 'path': path, 'variables': ['LD_PRELOAD']}
    assert 'rewrite_dropin' not in [f['fix']['action'] for f in res['findings']]


# ------------------------------------------------------------------------------------------ facts from other sources

def test_without_systemd_the_unit_files_are_read(host):
    host.healthy()
    host.systemd = False
    res = fakehost.diagnose(host)
    assert res['service']['active_state'] == 'unknown' and res['service']['user'] == 'nobody'
    assert res['environment']['unit']['LD_PRELOAD'] == '%s:%s' % (host.shim, host.nvml)
    assert res['environment']['running'] is None and res['processes'] == []
    assert any('systemd not queried' in n for n in res['notes'])
    assert errors(res) == []


def test_log_read_from_the_units_file_sink(host):
    host.healthy(log=None)
    log = host.log('cpu-discovery-timeout-0.12.6.log')
    host.unit('StandardError=append:%s' % log)
    host.props['StandardError'] = 'append'
    res = fakehost.diagnose(host, log_path=None)
    assert res['log_source'] == 'file:%s' % log
    assert res['verdict']['mode'] == 'cpu' and res['findings'][0]['code'] == 'DISCOVERY_TIMEOUT'


def test_no_log_means_no_verdict(host):
    host.healthy(log=None)
    host.props['StandardError'] = 'null'
    res = fakehost.diagnose(host)
    assert res['verdict'] is None and res['healthy'] is True
    assert any('cannot read' in n for n in res['notes'])


# ------------------------------------------------------------------------------------------ loader emulation

def test_emulate_loader_order_and_skips(host, libs):
    a, b, c = (host.P('/opt/%s' % n) for n in 'abc')
    for d in (a, b, c):
        os.makedirs(d)
    host.install('aarch64', os.path.join(a, 'libcuda.so.1'))            # wrong machine: skipped
    host.install('cuda', os.path.join(b, 'libcuda.so.1'), mode=0o700)  # unreadable for nobody: skipped
    host.install('cuda', os.path.join(c, 'libcuda.so.1'))
    r = vgpu_loader.emulate_loader('libcuda.so.1', [], [a, b, c], {}, [], vgpu_elf.host_machine(), 65534, [65534])
    assert r['path'] == os.path.join(c, 'libcuda.so.1') and r['step'] == 'LD_LIBRARY_PATH'
    assert r['skipped'][0]['reason'].startswith('wrong ELF class or machine: is built for aarch64')
    unreadable = 'not readable by the service user (%s' % os.path.join(b, 'libcuda.so.1')
    assert r['skipped'][1]['reason'].startswith(unreadable)
    # an object already loaded with that SONAME wins over every search
    r = vgpu_loader.emulate_loader('libcuda.so.1', [{'path': '/x/libvgpu.so', 'soname': 'libcuda.so.1', 'step': 'LD_PRELOAD'}],
                         [c], {}, [], vgpu_elf.host_machine())
    assert r['path'] == '/x/libvgpu.so' and r['step'] == 'LD_PRELOAD (SONAME libcuda.so.1)'
    # the cache, then the built-in dirs
    r = vgpu_loader.emulate_loader('libcuda.so.1', [], [], {'libcuda.so.1': [os.path.join(c, 'libcuda.so.1')]}, [a],
                         vgpu_elf.host_machine())
    assert r['step'] == 'ld.so.cache'
    # a truncated file is found and fails (the loader does not go on searching)
    host.install('truncated', os.path.join(a, 'libcuda.so.1'))
    r = vgpu_loader.emulate_loader('libcuda.so.1', [], [a, c], {}, [], vgpu_elf.host_machine())
    assert r['path'] == os.path.join(a, 'libcuda.so.1') and r['error']


_WHICH_LOADED = '''
import ctypes, os, sys
ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW)
seen = set()
for line in open('/proc/self/maps'):
    parts = line.split(None, 5)
    if len(parts) == 6 and parts[5].strip() in sys.argv[2:]:
        seen.add(parts[5].strip())
print('\\n'.join(sorted(seen)))
'''


@pytest.mark.parametrize('case', ['preload_soname', 'second_dir', 'stale_first', 'wrong_machine_first',
                                  'dangling_first', 'preload_other_soname'])
def test_emulation_agrees_with_the_real_loader(host, libs, case):
    """The real glibc loader, asked to dlopen a library with DT_NEEDED libcuda.so.1 (like libggml-cuda.so),
    maps the file emulate_loader names."""
    a, b, lib = host.P('/opt/a'), host.P('/opt/b'), host.P('/opt/lib64')
    for d in (a, b, lib):
        os.makedirs(d)
    shim = host.install('cuda', os.path.join(lib, 'libvgpu-cuda.so'))
    own = host.install('cuda_own_soname', os.path.join(lib, 'libvgpu-own.so'))
    stale = host.install('cuda_stale', os.path.join(lib, 'libvgpu-stale.so'))
    needs = os.path.join(lib, 'libneeds.so')
    host.write(os.path.join(lib, 'needs.c'), 'int cuInit(unsigned int); int probe(void) { return cuInit(0); }\n')
    subprocess.run(['gcc', '-shared', '-fPIC', '-o', needs, os.path.join(lib, 'needs.c'), shim], check=True)
    preload = []
    host.link(os.path.join(b, 'libcuda.so.1'), shim)
    if case == 'preload_soname':
        preload = [shim]
        os.unlink(os.path.join(b, 'libcuda.so.1'))
    elif case == 'stale_first':
        shutil.copyfile(stale, os.path.join(a, 'libcuda.so.1'))
        stale = os.path.join(a, 'libcuda.so.1')
    elif case == 'wrong_machine_first':
        host.install('aarch64', os.path.join(a, 'libcuda.so.1'))
    elif case == 'dangling_first':
        host.link(os.path.join(a, 'libcuda.so.1'), os.path.join(lib, 'gone.so'))
    elif case == 'preload_other_soname':
        preload = [own]
    objs = [{'path': p, 'soname': vgpu_elf.read_elf(p).soname, 'step': 'LD_PRELOAD'} for p in preload]
    r = vgpu_loader.emulate_loader('libcuda.so.1', objs, [a, b], {}, [], vgpu_elf.host_machine())
    candidates = sorted(set(os.path.realpath(p) for p in (shim, own, stale)))
    env = {'PATH': '/usr/bin:/bin', 'LD_LIBRARY_PATH': '%s:%s' % (a, b), 'LD_PRELOAD': ':'.join(preload)}
    out = subprocess.run([sys.executable, '-S', '-c', _WHICH_LOADED, needs] + candidates, env=env, check=True,
                         stdout=subprocess.PIPE).stdout.decode().split()
    assert sorted(out) == sorted(set([os.path.realpath(r['path'])] + [os.path.realpath(p) for p in preload])), \
        (case, r)


def test_ld_so_cache_round_trip(tmp_path):
    p = str(tmp_path / 'ld.so.cache')
    fakehost.write_ld_so_cache(p, [('libcuda.so.1', '/usr/lib64/libcuda.so.1'), ('libc.so.6', '/lib/libc.so.6'),
                                   ('libcuda.so.1', '/usr/lib/x86_64-linux-gnu/libcuda.so.1')])
    with open(p, 'rb') as f:
        got = vgpu_loader.parse_ld_so_cache(f.read(), vgpu_elf.EM_X86_64)
    assert got == {'libcuda.so.1': ['/usr/lib64/libcuda.so.1', '/usr/lib/x86_64-linux-gnu/libcuda.so.1'],
                   'libc.so.6': ['/lib/libc.so.6']}
    with pytest.raises(ValueError):
        vgpu_loader.parse_ld_so_cache(b'garbage', vgpu_elf.EM_X86_64)


@pytest.mark.skipif(not os.path.exists('/etc/ld.so.cache') or not shutil.which('ldconfig'),
                    reason='no system loader cache')
def test_ld_so_cache_parser_agrees_with_ldconfig_p():
    with open('/etc/ld.so.cache', 'rb') as f:
        parsed = vgpu_loader.parse_ld_so_cache(f.read(), vgpu_elf.host_machine())
    out = subprocess.run(['ldconfig', '-p'], stdout=subprocess.PIPE, check=True).stdout.decode()
    listed = vgpu_loader.parse_ldconfig_p(out, vgpu_elf.host_machine())
    assert parsed and parsed == listed


def test_load_test_reports_the_loader_error(host, libs):
    host.healthy()
    host.install('nvml_needs_cuda', host.nvml)
    facts = fakehost.gather(host, load_test=False)
    facts.unit_env = {'LD_PRELOAD': host.nvml}
    lt = probes.load_test(facts, fakehost.FakeProbe(host), host.nvml)
    assert lt['ok'] is False and 'cuDeviceGetCount' in lt['output'] and lt['as'] == 'nobody'
    facts.unit_env = {'LD_PRELOAD': '%s:%s' % (host.shim, host.nvml)}
    assert probes.load_test(facts, fakehost.FakeProbe(host), host.nvml)['ok'] is True


# ------------------------------------------------------------------------------------------ the module: read-only, fast

def _module_args(host, **kw):
    p = host.params(**kw)
    return dict((k, v) for k, v in p._asdict().items() if v is not None)


@pytest.mark.parametrize('check', [False, True])
def test_module_never_modifies_the_host(host, capsys, monkeypatch, check):
    scenarios.SCENARIOS['shim_undefined_symbol']['build'](host)      # runs the load test too
    host.write(host.P('/etc/ld.so.preload'), '%s\n' % host.shim)
    fake = FakeSystemctl(dict(host.show('ollama.service', gather_unit.DOCTOR_UNIT_PROPERTIES)[0])).install(monkeypatch)
    before = tree_state(host.root)
    res = run_module(M, _module_args(host), capsys, check=check)
    assert tree_state(host.root) == before
    assert res['changed'] is False and not res.get('failed'), res
    assert [f['code'] for f in res['findings']][:2] == ['GLOBAL_PRELOAD', 'SHIM_UNDEFINED_SYMBOL']
    assert all(c[1] in ('show', 'show-environment') for c in fake.calls)   # read-only queries only
    for key in ('findings', 'healthy', 'verdict', 'resolution', 'summary', 'elapsed', 'links', 'service',
                'environment', 'processes', 'shims', 'log_source', 'notes'):
        assert key in res


def test_module_refuses_bad_parameters(capsys):
    res = run_module(M, {'shim': 'relative/libvgpu-cuda.so'}, capsys)
    assert res['failed'] and 'absolute path' in res['msg']
    res = run_module(M, {'preload': ['/usr/lib64/libvgpu-nvml.so', 'libvgpu-cuda.so']}, capsys)
    assert res['failed'] and 'preload must list absolute paths' in res['msg']


def test_broken_host_is_diagnosed_within_three_seconds(host):
    scenarios.SCENARIOS['shim_undefined_symbol']['build'](host)
    began = time.time()
    res = fakehost.diagnose(host)
    assert time.time() - began < 3.0 and res['elapsed'] < 3.0


def test_this_machine_is_diagnosed_within_three_seconds():
    """The real / (no Ollama here): every gatherer runs against the real loader cache, /proc and /sys."""
    params = doctor_params.normalize_params(dict(unit='ollama.service', strategy='preload', shim=None, nvml_shim=None,
                                     shim_sha256=None, nvml_sha256=None, link_names=None, link_dirs=None,
                                     ollama_lib_dir='/usr/local/lib/ollama', dropin='vgpu.conf',
                                     require_pci_device=False, log_timeout=0, log_path=None, load_test=True, root='/'))
    began = time.time()
    res = engine.doctor(params, doctor_paths.SystemPaths('/'), doctor_paths.Probe(None))
    assert time.time() - began < 3.0
    assert res['findings'][0]['code'] == 'SHIM_BAD'


def test_vulkan_only_start_is_not_the_shim(host):
    """Ollama 0.30+ has Vulkan on by default: with the CUDA shim failing (cuInit 100) the start still logs a
    library=Vulkan device. That is not GPU mode through the shim: not healthy, the probe runs (driver_probe auto)
    and names the failing call."""
    if 'cuda' not in host.libs.get('from_simulator', []):
        pytest.skip('needs the simulator\'s reference shim (simulator/build.sh)')
    host.healthy(log='vulkan-only-0.32.15.log')
    host.dropin('50-simulated-host.conf', '[Service]\nEnvironment="VGPU_SIM_DEVICE_COUNT=0"\n')
    host.running()
    res = fakehost.diagnose(host)
    assert res['verdict']['mode'] == 'gpu' and res['verdict']['verdict'] == 'other_library'
    assert res['healthy'] is False and res['driver_probe']['ran'] is True
    assert codes(res, 'error')[0] == 'DRIVER_API_ERROR'
    assert 'GPU mode on Vulkan only, not the CUDA shim' in res['summary']


def test_probe_evidence_keeps_which_attribute_each_call_read():
    """cuDeviceGetAttribute is called three times (75/76: compute capability, 18: integrated): the evidence
    must say which one each call read."""
    r = {'ok': True, 'cuda': {'calls': [{'call': 'cuDeviceGetAttribute', 'rc': 0, 'error': 'CUDA_SUCCESS',
                                         'ms': 0.001, 'value': 9, 'device': 0, 'attr': 75, 'extra': 'x'}]}}
    assert probes.probe_evidence(r)['cuda']['calls'] == [{'call': 'cuDeviceGetAttribute', 'rc': 0,
                                                     'error': 'CUDA_SUCCESS', 'ms': 0.001, 'value': 9,
                                                     'device': 0, 'attr': 75}]


def test_a_probe_that_only_starved_is_tried_again_and_is_not_a_hang(host):
    """Many VMs on few cores: the probe child can run out of probe_timeout without any driver call hanging.
    The doctor tries a timed-out probe once more with twice the time; when that one answers, there is no
    DRIVER_HANG, only a note (seen on 31 simulated hosts on 2 cores)."""
    host.healthy()

    class Starved(fakehost.FakeProbe):
        calls = []

        def driver_probes(self, specs, timeout):
            self.calls.append(timeout)
            real = fakehost.FakeProbe.driver_probes(self, specs, timeout)
            if len(self.calls) == 1:
                return [dict(r, ok=False, timed_out=True, last_call='cuInit', elapsed=timeout) for r in real]
            return real
    probe = Starved(host)
    res = engine.doctor(host.params(driver_probe='always', probe_timeout=0.5), doctor_paths.SystemPaths(host.root), probe)
    assert probe.calls == [0.5, 1.0]
    assert [f['code'] for f in res['findings'] if f['code'] == 'DRIVER_HANG'] == [] and res['healthy']
    assert res['driver_probe']['retried'] and not any(r['timed_out_again'] for r in res['driver_probe']['retried'])
    assert any('then answered when tried again' in n for n in res['notes'])
