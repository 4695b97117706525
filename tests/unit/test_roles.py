"""The roles' shared layout and their one restart handler (roles/vgpu), run through ansible-playbook on
localhost: the layout the roles compute equals module_utils/vgpu_layout.py (the modules' fallbacks), a
notification with vgpu_restart_unit "" restarts nothing while a set one runs the handler, and the renamed
variables still work and say so."""
import glob
import json
import os
import re
import subprocess

import pytest
import yaml

from ansible.module_utils import vgpu_layout

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = os.path.join(TOP, 'roles')
LAYOUT_VARS = ('vgpu_strategy', 'vgpu_shim_dir', 'vgpu_ollama_lib_dir', 'vgpu_link_dirs', 'vgpu_unit',
               'vgpu_unit_dropin', 'vgpu_unit_dropin_path', 'vgpu_restart_unit')

PLAY = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: vgpu
  tasks:
    - name: Something changed
      ansible.builtin.debug: {msg: changed}
      changed_when: true
      notify: Restart ollama
    - name: Layout
      ansible.builtin.debug:
        msg: "{{ {%s} }}"
""" % ', '.join("'%s': %s" % (v, v) for v in LAYOUT_VARS)


def run_play(tmp_path, *extra):
    play = tmp_path / 'play.yml'
    play.write_text(PLAY)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, 'ansible.cfg'), ANSIBLE_STDOUT_CALLBACK='json',
               ANSIBLE_ROLES_PATH=ROLES, ANSIBLE_LOCALHOST_WARNING='false')
    proc = subprocess.run(['ansible-playbook', '-i', 'localhost,', '-c', 'local', '--check', str(play)]
                          + list(extra), env=env, cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    out = json.loads(proc.stdout[proc.stdout.index('{'):])
    tasks = {t['task']['name'].split(' : ', 1)[-1]: t['hosts'].get('localhost', {}) for t in out['plays'][0]['tasks']}
    return tasks


@pytest.mark.parametrize('strategy', vgpu_layout.STRATEGIES)
def test_role_layout_equals_the_modules_fallbacks(tmp_path, strategy):
    layout = run_play(tmp_path, '-e', 'vgpu_strategy=%s' % strategy)['Layout']['msg']
    shim_dir = vgpu_layout.shim_dir(strategy)
    assert layout['vgpu_shim_dir'] == shim_dir
    assert layout['vgpu_ollama_lib_dir'] == vgpu_layout.OLLAMA_LIB_DIR
    assert layout['vgpu_link_dirs'] == vgpu_layout.default_link_dirs(strategy, shim_dir, vgpu_layout.OLLAMA_LIB_DIR)
    assert layout['vgpu_unit'] == vgpu_layout.UNIT
    assert layout['vgpu_unit_dropin'] == vgpu_layout.DROPIN
    assert layout['vgpu_unit_dropin_path'] == '/etc/systemd/system/%s.d/%s' % (vgpu_layout.UNIT, vgpu_layout.DROPIN)
    assert layout['vgpu_restart_unit'] == vgpu_layout.UNIT


def test_empty_restart_unit_means_no_restart(tmp_path):
    tasks = run_play(tmp_path, '-e', 'vgpu_restart_unit=')
    assert tasks['Something changed']['changed']
    handler = tasks['Restart ollama']
    assert handler.get('skipped') and handler.get('false_condition') == 'vgpu_restart_unit | length > 0', handler


def test_a_restart_unit_runs_the_one_handler(tmp_path):
    # a unit that cannot exist: the handler ran (and failed), it was not skipped
    tasks = run_play(tmp_path, '-e', 'vgpu_restart_unit=vgpu-test-no-such-unit.service')
    handler = tasks['Restart ollama']
    assert not handler.get('skipped'), handler
    assert handler.get('failed') or handler.get('changed'), handler


def test_renamed_variables_still_work_and_say_so(tmp_path):
    tasks = run_play(tmp_path, '-e', 'ollama_vgpu_unit_name=other.service', '-e', 'vgpu_links_strategy=library_path',
                     '-e', 'vgpu_shim_restart_unit=')
    layout = tasks['Layout']['msg']
    assert layout['vgpu_unit'] == 'other.service'
    assert layout['vgpu_strategy'] == 'library_path' and layout['vgpu_shim_dir'] == '/opt/vgpu/lib'
    assert layout['vgpu_restart_unit'] == ''
    msg = tasks['Warn about renamed variables']['msg']
    for old, new in (('ollama_vgpu_unit_name', 'vgpu_unit'), ('vgpu_links_strategy', 'vgpu_strategy'),
                     ('vgpu_shim_restart_unit', 'vgpu_restart_unit')):
        assert '%s -> %s' % (old, new) in msg
    assert tasks['Restart ollama'].get('skipped')


def test_nothing_renamed_nothing_said(tmp_path):
    assert run_play(tmp_path)['Warn about renamed variables'].get('skipped')


def test_one_restart_handler_and_every_role_depends_on_its_owner():
    handler_files = sorted(os.path.relpath(p, ROLES) for p in glob.glob(os.path.join(ROLES, '*', 'handlers', '*.yml')))
    assert handler_files == ['vgpu/handlers/main.yml']
    with open(os.path.join(ROLES, 'vgpu', 'handlers', 'main.yml')) as fh:
        handlers = yaml.safe_load(fh)
    assert [h['name'] for h in handlers] == ['Refresh loader cache', 'Restart ollama']   # ldconfig first
    for meta in glob.glob(os.path.join(ROLES, '*', 'meta', 'main.yml')):
        role = meta.split(os.sep)[-3]
        if role in ('vgpu', 'ollama_vgpu_unit'):
            continue
        with open(meta) as fh:
            deps = [d['role'] if isinstance(d, dict) else d for d in yaml.safe_load(fh).get('dependencies') or []]
        assert 'vgpu' in deps, role


def test_renamed_table_covers_every_old_name_the_defaults_read():
    with open(os.path.join(ROLES, 'vgpu', 'vars', 'main.yml')) as fh:
        renamed = yaml.safe_load(fh)['vgpu_renamed']
    text = ''
    for p in glob.glob(os.path.join(ROLES, '*', 'defaults', 'main.yml')):
        with open(p) as fh:
            text += fh.read()
    read = set(re.findall(r'\b((?:ollama_vgpu_unit|vgpu_shim|vgpu_links|vgpu_remediate|fleet_report)_[a-z_]+)\s*\|\s*default',
                          text)) - {'vgpu_shim_cuda_src', 'vgpu_shim_nvml_src'}   # read, not renamed
    assert read <= set(renamed), read - set(renamed)
