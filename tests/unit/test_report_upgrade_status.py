# -*- coding: utf-8 -*-
"""The per-host status lines of playbooks/upgrade.yml (playbooks/templates/upgrade-status.j2): one line per
host saying what happened and what state the host is left in, including hosts the rollout never reached."""
import os

import jinja2

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GPU = 'GPU (1 device: NVIDIA vH100 80GB HBM3 79.6 GiB, CUDA, ollama 0.30.1)'


def status(state, **kw):
    st = {'state': state, 'phase': 'done', 'from': '0.13.5', 'to': '0.30.1', 'verdict': '', 'problem': '',
          'step': '', 'findings': [], 'doctor': ''}
    st.update(kw)
    return st


def render(hosts, hostvars, stopping=False):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(TOP, 'playbooks', 'templates')),
                             trim_blocks=True, undefined=jinja2.StrictUndefined)
    # Ansible's hostvars: every inventory host is there, with or without the fact
    hv = dict((h, {}) for h in hosts)
    for h, st in hostvars.items():
        hv[h] = {'ollama_upgrade_status': st}
    text = env.get_template('upgrade-status.j2').render(
        hostvars=hv, ollama_upgrade_lines_for=hosts, ollama_upgrade_stopping=stopping)
    return text.strip().split('\n')


def test_rollout_stopped_at_a_host_that_failed_the_gate():
    hosts = ['a', 'b', 'c', 'd']
    lines = render(hosts, {
        'a': status('upgraded', verdict=GPU),
        'b': status('current', **{'from': '0.30.1', 'verdict': GPU}),
        'c': status('failed', phase='gate', step='Fail when the verdict is not the expected one',
                    problem='Ollama runs in CPU mode, expected GPU.', findings=['VISIBLE_DEVICES', 'PRELOAD_CONFLICT'],
                    doctor="VISIBLE_DEVICES: CUDA_VISIBLE_DEVICES='-1' hides every device"),
    }, stopping=True)
    assert lines == [
        'a: UPGRADED 0.13.5 -> 0.30.1 - ' + GPU,
        'b: ALREADY 0.30.1 (installer not run; vGPU state re-applied) - ' + GPU,
        'c: FAILED in gate - Ollama runs in CPU mode, expected GPU. | left as: Ollama 0.30.1 installed and vGPU '
        "state re-applied, but the gate failed | doctor: VISIBLE_DEVICES, PRELOAD_CONFLICT - VISIBLE_DEVICES: "
        "CUDA_VISIBLE_DEVICES='-1' hides every device",
        'd: NOT REACHED - the rollout stopped before this host; nothing was changed on it',
    ]


def test_busy_host_and_pending_hosts():
    lines = render(['a', 'b'], {'a': status('busy', phase='drain', step='Refuse to upgrade a host that still serves a model',
                                            problem='not drained: llama3.2:1b still loaded after 120 s')})
    assert lines == ['a: BUSY, NOT UPGRADED (still 0.13.5) - not drained: llama3.2:1b still loaded after 120 s',
                     'b: PENDING']


def test_failure_before_the_gate_names_the_step_and_the_state_left():
    lines = render(['a'], {'a': status('failed', phase='install', step='Check that the staged tarball is the checked artifact',
                                       problem='the staged tarball has sha256 x', to='0.13.5',
                                       doctor='healthy (GPU mode)')})
    assert lines == ["a: FAILED in install at 'Check that the staged tarball is the checked artifact' - the staged "
                     "tarball has sha256 x | left as: the installer may have run partly (Ollama 0.13.5 on disk), vGPU "
                     "state not re-applied | doctor: healthy (GPU mode)"]


def test_host_without_status_before_others_is_reported_not_hidden():
    lines = render(['a', 'b', 'c'], {'b': status('upgraded', verdict=GPU)}, stopping=True)
    assert lines[0].startswith('a: NO STATUS - unreachable, or failed outside the upgrade steps')
    assert lines[2].startswith('c: NOT REACHED')


def test_check_mode_lines():
    lines = render(['a', 'b'], {'a': status('checked', phase='check'),
                                'b': status('checked', phase='check', **{'from': '0.30.1'})})
    assert lines == ['a: WOULD UPGRADE 0.13.5 -> 0.30.1 (check mode: drained, nothing changed)',
                     'b: ALREADY 0.30.1 (check mode: drained, nothing changed)']


def test_ansible_renders_the_same_lines(tmp_path):
    """Through Ansible's own template lookup, as upgrade.yml uses it (its engine differs from plain Jinja2)."""
    import json
    import subprocess
    import sys
    sts = {'a': status('upgraded', verdict=GPU),
           'c': status('failed', phase='gate', problem='Ollama runs in CPU mode, expected GPU.',
                       findings=['VISIBLE_DEVICES'], doctor="VISIBLE_DEVICES: CUDA_VISIBLE_DEVICES='-1' hides every device")}
    hosts = dict((h, {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}) for h in 'acd')
    for h, st in sts.items():
        hosts[h]['ollama_upgrade_status'] = st
    (tmp_path / 'hosts.yml').write_text(json.dumps({'ollama': {'hosts': hosts}}))
    (tmp_path / 'templates').mkdir()
    (tmp_path / 'templates' / 'upgrade-status.j2').write_text(
        open(os.path.join(TOP, 'playbooks', 'templates', 'upgrade-status.j2')).read())
    (tmp_path / 'play.yml').write_text(
        "- hosts: a\n  gather_facts: false\n  tasks:\n    - ansible.builtin.copy:\n        dest: %s/out.txt\n"
        "        content: \"{{ lookup('ansible.builtin.template', 'upgrade-status.j2', template_vars="
        "{'ollama_upgrade_lines_for': ['a', 'c', 'd'], 'ollama_upgrade_stopping': true}) }}\"\n" % tmp_path)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i',
                          str(tmp_path / 'hosts.yml'), str(tmp_path / 'play.yml')], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert out.returncode == 0, out.stdout
    got = (tmp_path / 'out.txt').read_text().strip().split('\n')
    assert got == render(['a', 'c', 'd'], sts, stopping=True)
