"""roles/vgpu_remediate/filter_plugins/vgpu_remediate.py: doctor findings -> what remediate may do, and the
convergence rule (a fix that did not help is not tried again)."""
import vgpu_remediate as R

DROPIN = '/etc/systemd/system/ollama.service.d/vgpu.conf'


def finding(code, action, severity='error', **fix):
    fx = dict(fix, action=action)
    return {'code': code, 'severity': severity, 'summary': '%s summary' % code, 'fix': fx,
            'fix_text': '%s fix text' % code}


def plan(findings, **kw):
    kw.setdefault('warning_actions', ['relink', 'reinstall_shim', 'fix_shim_mode', 'remove_global_preload',
                                      'rewrite_dropin'])
    kw.setdefault('refuse_codes', ['NO_DEVICE', 'SNAP_OLLAMA', 'DRIVER_SHADOW'])
    kw.setdefault('artifacts', {'cuda': True, 'nvml': True})
    return R.vgpu_remediate_plan(findings, dropin_path=DROPIN, **kw)


def test_unset_env_from_editable_sources_goes_to_systemd_env_unset():
    p = plan([finding('VISIBLE_DEVICES', 'unset_env', variable='CUDA_VISIBLE_DEVICES',
                      variables=['CUDA_VISIBLE_DEVICES'], editable=True, keep=[DROPIN],
                      sources=[{'how': 'edit_environment_file', 'location': '/etc/default/ollama:3'}])])
    assert not p['refused'] and p['has_fixes']
    assert p['unset_env'] == ['CUDA_VISIBLE_DEVICES'] and p['unset_env_keep'] == [DROPIN]
    assert p['strip'] == []        # the module edits; no controller-side rewrite of the file


def test_unset_env_from_a_source_the_toolkit_does_not_edit_refuses_the_host():
    f = finding('VISIBLE_DEVICES', 'unset_env', variable='CUDA_VISIBLE_DEVICES', variables=['CUDA_VISIBLE_DEVICES'],
                editable=False, sources=[{'how': None, 'manual': 'delete line 1 of /usr/lib/ollama/env'}])
    f['fix_text'] = 'delete line 1 (CUDA_VISIBLE_DEVICES=...) of /usr/lib/ollama/env, then restart ollama.service'
    p = plan([f, finding('LINK_MISSING', 'relink', 'warning', target='/usr/lib64/libvgpu-cuda.so')])
    assert p['refused'] and not p['has_fixes'] and p['unset_env'] == [] and not p['relink']
    assert p['refusals'][0]['manual'] == f['fix_text']


def test_mode_fix_restarts_only_when_the_service_user_was_locked_out():
    p = plan([finding('PRELOAD_HIJACK_RISK', 'fix_shim_mode', paths=['/usr/lib64/libvgpu-cuda.so'])])
    assert p['fix_modes'] == ['/usr/lib64/libvgpu-cuda.so'] and p['fix_modes_restart'] is False
    p = plan([finding('SHIM_UNREADABLE', 'fix_shim_mode', paths=['/usr/lib64/libvgpu-cuda.so'])])
    assert p['fix_modes_restart'] is True
    p = plan([finding('SHIM_UNREADABLE', 'fix_shim_mode', paths=['/tmp'])])
    assert p['refused'] and 'never sets 0755' in p['refusals'][0]['manual']


HISTORY_CPU = {'version': 1, 'last_run': {
    'at': '20261203T120000Z', 'verdict': 'cpu', 'verdict_line': "CPU - only 'library=cpu' in the current start",
    'fixes': [{'code': 'PRELOAD_NOT_APPLIED', 'action': 'restart', 'summary': 'the running service ...'}]}}


def test_a_host_whose_last_fixes_did_not_help_is_refused_not_restarted_again():
    p = plan([finding('PRELOAD_NOT_APPLIED', 'restart', daemon_reload=False)], history=HISTORY_CPU, mode='cpu',
             summary='not healthy: CPU mode but no cause found')
    assert p['refused'] and not p['restart'] and not p['has_fixes']
    manual = p['refusals'][0]['manual']
    assert manual.startswith('fix restart (PRELOAD_NOT_APPLIED) was applied at 20261203T120000Z and did not help')
    assert 'CPU mode' in manual and 'not healthy: CPU mode but no cause found' in manual
    # nothing planned this time: still refused, so the operator sees why nothing happens
    assert plan([], history=HISTORY_CPU, mode='cpu')['refused']


def test_history_does_not_block_a_host_in_gpu_mode_a_successful_run_or_a_retry():
    f = [finding('LINK_MISSING', 'relink', 'warning', target='/usr/lib64/libvgpu-cuda.so', names=['libcuda.so.1'])]
    assert not plan(f, history=HISTORY_CPU, mode='gpu')['refused']
    ok = {'last_run': dict(HISTORY_CPU['last_run'], verdict='gpu')}
    assert not plan(f, history=ok, mode='cpu')['refused']
    assert not plan(f, history=HISTORY_CPU, mode='cpu', retry=True)['refused']
    assert not plan(f, history={}, mode='cpu')['refused']


def test_history_record_of_a_run():
    p = plan([finding('VISIBLE_DEVICES', 'unset_env', variables=['CUDA_VISIBLE_DEVICES'], editable=True, keep=[])])
    h = R.vgpu_remediate_history(p, 'gpu', '20261203T120000Z', 'GPU - 1 device', ['unset_env (...)'])
    assert h == {'version': 1, 'last_run': {'at': '20261203T120000Z', 'verdict': 'gpu', 'verdict_line': 'GPU - 1 device',
                                            'fixes': [{'code': 'VISIBLE_DEVICES', 'action': 'unset_env',
                                                       'summary': 'VISIBLE_DEVICES summary'}],
                                            'done': ['unset_env (...)']}}


def test_unset_label():
    label = R.vgpu_remediate_unset_label([
        {'how': 'edit_environment_file', 'variable': 'CUDA_VISIBLE_DEVICES', 'path': '/etc/default/ollama', 'line': 3,
         'backup': '/etc/default/.ollama.20261203T120000Z.vgpu-backup'},
        {'how': 'unset_environment', 'variable': 'CUDA_VISIBLE_DEVICES', 'path': None, 'line': None, 'backup': None},
        {'how': 'move_dropin', 'variable': 'CUDA_VISIBLE_DEVICES', 'path': '/etc/x.d/20-pass.conf', 'line': 2,
         'backup': '/etc/x.d/20-pass.conf.vgpu-disabled-20261203T120000Z'}])
    assert label == ('unset_env (CUDA_VISIBLE_DEVICES from /etc/default/ollama:3, original kept as '
                     '.ollama.20261203T120000Z.vgpu-backup; CUDA_VISIBLE_DEVICES from the manager environment '
                     '(unset-environment); CUDA_VISIBLE_DEVICES from /etc/x.d/20-pass.conf:2, moved to '
                     '20-pass.conf.vgpu-disabled-20261203T120000Z)')


def test_refused_codes_and_manual_errors_leave_the_host_alone():
    p = plan([finding('DRIVER_SHADOW', 'manual', 'warning'), finding('LINK_MISSING', 'relink', 'warning')])
    assert p['refused'] and not p['relink'] and p['not_acted_on'][0]['fix_text'] == '(host refused)'
    p = plan([finding('DRIVER_API_ERROR', 'manual')])
    assert p['refused'] and p['refusals'][0]['manual'] == 'DRIVER_API_ERROR fix text'
    # a warning whose fix is manual is reported, not acted on, and refuses nothing
    p = plan([finding('NVML_MISSING', 'manual', 'warning')])
    assert not p['refused'] and not p['has_fixes'] and p['not_acted_on'][0]['code'] == 'NVML_MISSING'


# the edits themselves (strip settings, move a drop-in aside, /etc/ld.so.preload) are tested with their modules:
# tests/unit/test_systemd_unit_settings.py

def test_settings_labels_say_what_the_host_did_moves_first_then_edits():
    stamp = '20261203T120000Z'
    moved = [{'changed': True, 'action': 'moved', 'path': '/etc/systemd/system/ollama.service.d/override.conf'},
             {'changed': False, 'action': 'none', 'path': '/etc/systemd/system/ollama.service.d/gone.conf'}]
    stripped = [{'changed': True, 'action': 'edited', 'path': '/etc/systemd/system/ollama.service.d/aa.conf'},
                {'changed': True, 'action': 'moved', 'path': '/etc/systemd/system/ollama.service.d/zz-sandbox.conf'},
                {'changed': False, 'action': 'none', 'path': '/etc/systemd/system/ollama.service.d/zz-other.conf'}]
    assert R.vgpu_remediate_settings_labels(moved, stripped, stamp) == [
        'move_conflicting_dropin (/etc/systemd/system/ollama.service.d/override.conf -> '
        'override.conf.vgpu-disabled-20261203T120000Z)',
        'override_sandbox (/etc/systemd/system/ollama.service.d/zz-sandbox.conf had no other setting: moved to '
        'zz-sandbox.conf.vgpu-disabled-20261203T120000Z)',
        'override_sandbox (edited /etc/systemd/system/ollama.service.d/aa.conf, original kept as '
        '.vgpu-disabled-20261203T120000Z)']
    assert R.vgpu_remediate_settings_labels([], [], stamp) == []


def test_sandbox_override_strips_only_editable_dropins_applied_after_ours():
    f = finding('SANDBOX_BLOCKS_DEVICES', 'override_sandbox', settings={'PrivateDevices': 'no'},
                set_by={'PrivateDevices': ['/etc/systemd/system/ollama.service.d/zz-sandbox.conf',
                                           '/etc/systemd/system/ollama.service.d/aa-early.conf',
                                           '/usr/lib/systemd/system/ollama.service.d/zz-pkg.conf']})
    p = plan([f], warning_actions=['override_sandbox'])
    assert p['sandbox_settings'] == {'PrivateDevices': 'no'}
    assert p['strip'] == [{'path': '/etc/systemd/system/ollama.service.d/zz-sandbox.conf',
                           'settings': ['PrivateDevices']}]
