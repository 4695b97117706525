# -*- coding: utf-8 -*-
"""Fleet report (roles/fleet_report): the record filter, and the JSON / JUnit / HTML templates rendered from a
sample fleet - JSON validated against files/fleet-report.schema.json, JUnit parsed with xml.etree, HTML
parsed with html.parser. The last test runs the role's write step through ansible-playbook itself.

    python tests/unit/test_report.py DIR     writes the sample report to DIR (used for docs/fleet-report.png)
"""
import html.parser
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET

import jinja2
import jsonschema
import pytest


TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(TOP, 'roles', 'fleet_report')
SCHEMA = json.load(open(os.path.join(ROLE, 'files', 'fleet-report.schema.json')))

_spec = importlib.util.spec_from_file_location('fleet_report_filters',
                                               os.path.join(ROLE, 'filter_plugins', 'fleet_report.py'))
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)

SHIM_SHA = 'a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90'
OLD_SHA = '0' * 63 + '1'
NOW = 1767225600.0  # 2026-01-01T00:00:00Z


def stat(path, sha=SHIM_SHA, mtime=NOW, exists=True):
    return {'exists': exists, 'isreg': exists, 'path': path, 'checksum': sha if exists else None,
            'mtime': mtime, 'mode': '0755'}


def device(total_bytes=85469849190, description='NVIDIA vH100 80GB HBM3'):
    return {'id': 'GPU-8a3c5f1e-2b7d-4e90-9c61-5d2f7a0b3e48', 'filter_id': None, 'library': 'CUDA',
            'variant': None, 'name': 'CUDA0', 'description': description, 'compute': '9.0', 'driver': '12.8',
            'pci_id': '0000:00:05.0', 'type': 'discrete', 'libdirs': 'ollama,cuda_v12', 'total': '79.6 GiB',
            'available': '79.1 GiB', 'total_bytes': total_bytes, 'available_bytes': 84932978278}


def finding(code, severity, summary, fix_text=None):
    return {'code': code, 'severity': severity, 'summary': summary, 'evidence': {}, 'fix': {'action': 'manual'},
            'fix_text': fix_text}


def gpu_host(name, version='0.13.5', **extra):
    raw = {
        'host': name, 'reachable': True, 'strategy': 'preload',
        'gpu_mode': {'mode': 'gpu', 'devices': [device()], 'ollama_version': version,
                     'started_at': '2026-01-01T00:00:00.000Z', 'problems': [],
                     'summary': 'GPU (1 device: NVIDIA vH100 80GB HBM3 79.6 GiB, CUDA, ollama %s)' % version},
        'gpu_mode_problems': [], 'gpu_mode_summary': 'GPU (1 device: NVIDIA vH100 80GB HBM3 79.6 GiB, CUDA, ollama %s)'
                                                     % version,
        'api_version': version,
        'shim': stat('/usr/lib64/libvgpu-cuda.so', mtime=NOW - 86400), 'shim_expected_sha256': SHIM_SHA,
        'nvml_shim': stat('/usr/lib64/libvgpu-nvml.so', sha='b' * 64, mtime=NOW - 86400),
        'nvml_expected_sha256': '',
        'dropin': stat('/etc/systemd/system/ollama.service.d/vgpu.conf', sha='c' * 64, mtime=NOW - 3600),
        'doctor_available': True,
        'doctor': {'healthy': True, 'findings': [], 'summary': 'healthy (GPU mode, 1 device)'},
    }
    raw.update(extra)
    return raw


def cpu_gpu_mode(version='0.30.1'):
    return {'mode': 'cpu', 'devices': [], 'ollama_version': version, 'started_at': '2026-01-01T00:05:00.000Z',
            'problems': ["mode is cpu, expected gpu: only 'library=cpu' in the current start"],
            'summary': "CPU - only 'library=cpu' in the current start"}


def sample_raws():
    """A fleet with every verdict and the awkward cases: no doctor, a wrong shim checksum, characters that
    must be escaped in XML/HTML, a control character, an unreachable host, a host with no record at all."""
    return [
        gpu_host('gpu-vm-01'),
        gpu_host('gpu-vm-02', version='0.30.1'),
        gpu_host('gpu-vm-03', doctor={'healthy': True, 'findings': [
            finding('PRELOAD_HIJACK_RISK', 'warning', '/usr/lib64 is group-writable (0775)',
                    'chmod 0755 /usr/lib64'),
            finding('NO_DEVICE', 'info', 'no PCI device with vendor 0x10de (simulated host)')]}),
        gpu_host('gpu-vm-04', version='0.30.1', gpu_mode=cpu_gpu_mode(),
                 gpu_mode_problems=cpu_gpu_mode()['problems'], gpu_mode_summary=cpu_gpu_mode()['summary'],
                 doctor={'healthy': False, 'findings': [
                     finding('VISIBLE_DEVICES', 'error',
                             'CUDA_VISIBLE_DEVICES=-1 (set by zz-local.conf) leaves no device visible',
                             'remove CUDA_VISIBLE_DEVICES from /etc/systemd/system/ollama.service.d/zz-local.conf'),
                     finding('PRELOAD_CONFLICT', 'warning', 'zz-local.conf also sets CUDA_VISIBLE_DEVICES')]}),
        gpu_host('gpu-vm-05', shim=stat('/usr/lib64/libvgpu-cuda.so', sha=OLD_SHA, mtime=NOW - 7200)),
        gpu_host('gpu-vm-06', doctor_available=False, doctor={},
                 gpu_mode_summary='GPU (1 device: <vH100> & "friends"\x07, CUDA, ollama 0.13.5)'),
        {'host': 'gpu-vm-07', 'reachable': False,
         'unreachable_msg': 'Failed to connect to the host via ssh: connect to host 10.0.0.7 port 22: No route to host '
                            '(tried "gpu-vm-07" && 10.0.0.7)'},
        {},  # gpu-vm-08 failed before recording anything
    ]


SAMPLE_HOSTS = ['gpu-vm-01', 'gpu-vm-02', 'gpu-vm-03', 'gpu-vm-04', 'gpu-vm-05', 'gpu-vm-06', 'gpu-vm-07',
                'gpu-vm-08']


def sample_report():
    return F.fleet_report(F.fleet_report_records(sample_raws(), SAMPLE_HOSTS), '2026-01-01T00:10:00Z')


def to_nice_json(data, indent=4, sort_keys=True):
    # Ansible's to_nice_json, without importing ansible.plugins here: that import at collection time changes
    # warning handling for the module tests that run in the same process
    return json.dumps(data, indent=indent, sort_keys=sort_keys, separators=(',', ': '), ensure_ascii=False)


def render(name, data):
    # the template module's settings: trim_blocks on, lstrip_blocks off
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE, 'templates')), trim_blocks=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters['to_nice_json'] = to_nice_json
    return env.get_template(name).render(fleet_report_data=data)


# ------------------------------------------------------------------ the record filter

def by_host(report):
    return dict((h['host'], h) for h in report['hosts'])


def test_verdicts_and_problems():
    hosts = by_host(sample_report())
    assert [hosts[h]['verdict'] for h in SAMPLE_HOSTS] == [
        'ok', 'ok', 'warn', 'fail', 'fail', 'ok', 'unreachable', 'unreachable']
    assert hosts['gpu-vm-01']['problem'] is None
    assert hosts['gpu-vm-03']['problem'].startswith('PRELOAD_HIJACK_RISK: ')
    # the top finding, not the first problem of the log, is what the failure says
    assert hosts['gpu-vm-04']['problem'].startswith('VISIBLE_DEVICES: CUDA_VISIBLE_DEVICES=-1')
    assert hosts['gpu-vm-04']['mode'] == 'cpu' and hosts['gpu-vm-04']['devices'] == []
    assert 'expected ' + SHIM_SHA[:16] + '...' in hosts['gpu-vm-05']['problem']
    assert hosts['gpu-vm-05']['shim']['matches'] is False
    assert hosts['gpu-vm-06']['doctor'] == 'not available' and hosts['gpu-vm-06']['healthy'] is None
    assert 'No route to host' in hosts['gpu-vm-07']['problem']
    assert 'failed before its state was collected' in hosts['gpu-vm-08']['problem']


def test_record_fields():
    h = by_host(sample_report())['gpu-vm-01']
    assert h['ollama_version'] == '0.13.5' and h['mode'] == 'gpu'
    assert h['devices'] == [{'name': 'NVIDIA vH100 80GB HBM3', 'id': 'GPU-8a3c5f1e-2b7d-4e90-9c61-5d2f7a0b3e48',
                             'library': 'CUDA', 'compute': '9.0', 'driver': '12.8', 'vram': '79.6 GiB',
                             'vram_bytes': 85469849190}]
    assert h['vram_total'] == '79.6 GiB'
    assert h['shim'] == {'path': '/usr/lib64/libvgpu-cuda.so', 'present': True, 'sha256': SHIM_SHA,
                         'expected_sha256': SHIM_SHA, 'matches': True, 'mtime': '2025-12-31T00:00:00Z'}
    assert h['nvml_shim']['matches'] is None  # no checksum expected
    # the drop-in is the newest of drop-in and shims
    assert h['last_change'] == '2025-12-31T23:00:00Z'
    assert h['last_change_path'] == '/etc/systemd/system/ollama.service.d/vgpu.conf'


def test_findings_sorted_by_severity_keeping_the_doctors_order():
    raw = gpu_host('h', doctor={'healthy': False, 'findings': [
        finding('LINK_MISSING', 'warning', 'w1'), finding('NO_DEVICE', 'info', 'i'),
        finding('SHIM_BAD', 'error', 'e1'), finding('LINK_WRONG', 'warning', 'w2'),
        finding('DRIVER_SHADOW', 'error', 'e2')]})
    rec = F.fleet_report_host(raw)
    assert [f['code'] for f in rec['findings']] == ['SHIM_BAD', 'DRIVER_SHADOW', 'LINK_MISSING', 'LINK_WRONG',
                                                    'NO_DEVICE']
    assert rec['verdict'] == 'fail' and rec['problem'] == 'SHIM_BAD: e1'


def test_doctor_failure_is_a_warning_not_a_crash():
    rec = F.fleet_report_host(gpu_host('h', doctor={'failed': True, 'msg': 'MODULE FAILURE'}))
    assert rec['verdict'] == 'warn' and rec['doctor'] == 'error: MODULE FAILURE'
    assert rec['problem'] == 'vgpu_doctor did not run: error: MODULE FAILURE'


def test_unknown_mode_without_problems_still_fails():
    rec = F.fleet_report_host(gpu_host('h', gpu_mode={'mode': 'unknown', 'devices': []}, gpu_mode_problems=[]))
    assert rec['verdict'] == 'fail' and rec['problem'] == 'mode is unknown, not gpu'


def test_totals():
    r = sample_report()
    assert r['totals'] == {'ok': 3, 'warn': 1, 'fail': 2, 'unreachable': 2, 'hosts': 8, 'gpu': 5, 'cpu': 1,
                           'vram_total_bytes': 5 * 85469849190, 'vram_total': '398.0 GiB'}
    assert r['ollama_versions'] == {'0.13.5': 4, '0.30.1': 2, 'unknown': 2}
    assert [h['host'] for h in r['hosts']] == sorted(SAMPLE_HOSTS)
    assert r['doctor_available'] is True


def test_helpers():
    assert F.fleet_report_bytes(0) == '0 B'
    assert F.fleet_report_bytes(1536) == '1.5 KiB'
    assert F.fleet_report_bytes(85469849190) == '79.6 GiB'
    assert F.fleet_report_time(0) == '1970-01-01T00:00:00Z'
    assert F.fleet_report_time(None) is None and F.fleet_report_time('x') is None


# ------------------------------------------------------------------ JSON

def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_json_validates():
    text = render('fleet-report.json.j2', sample_report())
    data = json.loads(text)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    assert data == json.loads(json.dumps(sample_report()))


def test_json_of_an_empty_fleet_validates():
    data = json.loads(render('fleet-report.json.j2', F.fleet_report([], '2026-01-01T00:00:00Z')))
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    assert data['totals']['hosts'] == 0


@pytest.mark.parametrize('breakage', ['no_verdict', 'bad_verdict', 'ok_with_problem', 'fail_without_problem',
                                      'bad_sha', 'extra_key', 'bad_time'])
def test_schema_rejects(breakage):
    data = json.loads(json.dumps(sample_report()))
    h = data['hosts'][0]
    if breakage == 'no_verdict':
        del h['verdict']
    elif breakage == 'bad_verdict':
        h['verdict'] = 'green'
    elif breakage == 'ok_with_problem':
        h['problem'] = 'something'
    elif breakage == 'fail_without_problem':
        h['verdict'], h['problem'] = 'fail', None
    elif breakage == 'bad_sha':
        h['shim']['sha256'] = 'xyz'
    elif breakage == 'extra_key':
        h['colour'] = 'green'
    elif breakage == 'bad_time':
        data['generated_at'] = 'yesterday'
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(data)


# ------------------------------------------------------------------ JUnit

def test_junit_parses_with_one_testcase_per_host():
    report = sample_report()
    root = ET.fromstring(render('fleet-report.junit.xml.j2', report).encode('utf-8'))
    assert root.tag == 'testsuites'
    suites = root.findall('testsuite')
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.get('tests'), suite.get('failures'), suite.get('errors')) == ('8', '2', '2')
    cases = suite.findall('testcase')
    assert [c.get('name').split(':')[0] for c in cases] == [h['host'] for h in report['hosts']]
    hosts = by_host(report)
    for c in cases:
        h = hosts[c.get('name').split(':')[0]]
        failure, error = c.find('failure'), c.find('error')
        if h['verdict'] == 'fail':
            assert failure is not None and error is None
            assert failure.get('message') == h['problem']
        elif h['verdict'] == 'unreachable':
            assert error is not None and error.get('type') == 'UNREACHABLE' and error.get('message') == h['problem']
        else:
            assert failure is None and error is None
    vm4 = [c for c in cases if c.get('name').startswith('gpu-vm-04')][0]
    assert vm4.find('failure').get('type') == 'VISIBLE_DEVICES'
    assert 'remove CUDA_VISIBLE_DEVICES' in vm4.find('failure').text
    vm5 = [c for c in cases if c.get('name').startswith('gpu-vm-05')][0]
    assert vm5.find('failure').get('type') == 'MODE_GPU'  # no finding: the verdict's problem names it
    vm3 = [c for c in cases if c.get('name').startswith('gpu-vm-03')][0]
    assert 'PRELOAD_HIJACK_RISK' in vm3.find('system-out').text


def test_junit_escapes_markup_and_control_characters():
    text = render('fleet-report.junit.xml.j2', sample_report())
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    assert '\x07' not in text
    root = ET.fromstring(text.encode('utf-8'))
    vm6 = [c for c in root.iter('testcase') if c.get('name').startswith('gpu-vm-06')][0]
    assert '<vH100> & "friends"\ufffd' in vm6.find('system-out').text


# ------------------------------------------------------------------ HTML

VOID = {'meta', 'br', 'link', 'img', 'input', 'hr'}


class Page(html.parser.HTMLParser):
    """Collects rows, totals, scripts and external references, and checks that tags nest."""

    def __init__(self):
        html.parser.HTMLParser.__init__(self, convert_charrefs=True)
        self.stack, self.errors, self.rows, self.ids, self.external = [], [], [], {}, []
        self.scripts, self.in_script, self.headers, self._cell, self._row = [], False, [], None, None
        self._id = None
        self.doctype = None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('src', 'href'):
            if a.get(k):
                self.external.append(a[k])
        if tag not in VOID:
            self.stack.append(tag)
        if tag == 'script':
            self.in_script = True
            self.scripts.append('')
        if tag == 'tr' and self.stack.count('tbody'):
            self._row = {'class': a.get('class'), 'verdict': a.get('data-verdict'), 'host': a.get('data-host'),
                         'cells': []}
        if tag in ('td', 'th'):
            self._cell = ''
            if self._row is not None and tag == 'td':
                self._row['cells'].append({'sort': a.get('data-sort')})
        if a.get('id'):
            self._id = (a['id'], '')

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append('</%s> closes %s' % (tag, self.stack[-1] if self.stack else 'nothing'))
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()
        if tag == 'script':
            self.in_script = False
        if tag == 'th' and self._cell is not None:
            self.headers.append(self._cell.strip())
        if tag == 'td' and self._row is not None:
            self._row['cells'][-1]['text'] = ' '.join(self._cell.split())
        if tag in ('td', 'th'):
            self._cell = None
        if tag == 'tr' and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        if self._id and tag in ('b', 'div', 'span', 'td'):
            self.ids[self._id[0]] = self._id[1].strip()
            self._id = None

    def handle_data(self, data):
        if self.in_script:
            self.scripts[-1] += data
        if self._cell is not None:
            self._cell += data
        if self._id:
            self._id = (self._id[0], self._id[1] + data)


def parse_page(text):
    p = Page()
    p.feed(text)
    p.close()
    return p


def test_html_structure():
    report = sample_report()
    text = render('fleet-report.html.j2', report)
    assert text.startswith('<!DOCTYPE html>')
    p = parse_page(text)
    assert p.doctype == 'DOCTYPE html'
    assert p.errors == [] and p.stack == []
    assert p.external == []  # self-contained: no src/href at all
    assert p.headers == ['Host', 'Verdict', 'Mode', 'Ollama', 'Devices', 'VRAM', 'Problem / top finding',
                         'Shim sha256', 'Last change (UTC)']
    assert [r['host'] for r in p.rows] == [h['host'] for h in report['hosts']]
    for row, h in zip(p.rows, report['hosts']):
        assert row['class'] == 'v-' + h['verdict'] and row['verdict'] == h['verdict']
        assert len(row['cells']) == len(p.headers)
        assert row['cells'][1]['text'] == h['verdict']
    t = report['totals']
    assert p.ids['total-hosts'] == str(t['hosts']) and p.ids['total-ok'] == str(t['ok'])
    assert p.ids['total-fail'] == str(t['fail']) and p.ids['total-unreachable'] == str(t['unreachable'])
    # sortable: one inline script that wires every header
    assert len(p.scripts) == 1 and "addEventListener('click'" in p.scripts[0]
    rows = by_host(report)
    vm4 = [r for r in p.rows if r['host'] == 'gpu-vm-04'][0]
    assert vm4['cells'][6]['text'].startswith(rows['gpu-vm-04']['problem'])
    assert 'remove CUDA_VISIBLE_DEVICES' in vm4['cells'][6]['text']
    vm5 = [r for r in p.rows if r['host'] == 'gpu-vm-05'][0]
    assert ('expected ' + SHIM_SHA[:12]) in vm5['cells'][7]['text']
    vm1 = [r for r in p.rows if r['host'] == 'gpu-vm-01'][0]
    assert vm1['cells'][5]['sort'] == '85469849190' and vm1['cells'][5]['text'] == '79.6 GiB'


def test_html_escapes():
    text = render('fleet-report.html.j2', sample_report())
    assert '<vH100>' not in text and '&lt;vH100&gt; &amp; &#34;friends&#34;' in text


@pytest.mark.skipif(not shutil.which('chromium'), reason="Debian's chromium is not installed")
@pytest.mark.parametrize('fragment, order', [
    ('', SAMPLE_HOSTS),
    ('#sort=1', ['gpu-vm-04', 'gpu-vm-05', 'gpu-vm-07', 'gpu-vm-08', 'gpu-vm-03', 'gpu-vm-01', 'gpu-vm-02',
                 'gpu-vm-06']),
    ('#sort=0-desc', list(reversed(SAMPLE_HOSTS))),
])
def test_html_renders_and_sorts_in_a_browser(tmp_path, fragment, order):
    """The page's own script sorts it (a #sort=N[-desc] fragment clicks header N on load)."""
    page = tmp_path / 'fleet.html'
    page.write_text(render('fleet-report.html.j2', sample_report()))
    dom = subprocess.run(
        ['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run', '--user-data-dir=' + tempfile.mkdtemp(),
         '--dump-dom', 'file://%s%s' % (page, fragment)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True, timeout=120, check=True).stdout
    assert re.findall(r'<tr class="v-[a-z]+" data-host="([^"]+)"', dom) == order
    if fragment:
        assert 'aria-sort="%s"' % ('descending' if fragment.endswith('-desc') else 'ascending') in dom


# ------------------------------------------------------------------ the role itself, through ansible-playbook

def test_role_writes_valid_files_through_ansible(tmp_path):
    """The write step as report.yml runs it: the role's filter plugin loads, and Ansible's own template engine
    renders (it ignores autoescape blocks: the templates must escape every value themselves)."""
    hostvars = {}
    for name, raw in zip(SAMPLE_HOSTS, sample_raws()):
        hostvars[name] = {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}
        if raw:
            hostvars[name]['fleet_report_raw'] = raw
    inv = tmp_path / 'hosts.yml'
    inv.write_text(json.dumps({'ollama': {'hosts': hostvars}}))
    play = tmp_path / 'write.yml'
    play.write_text(textwrap.dedent('''\
        - hosts: ollama
          gather_facts: false
          tasks:
            - ansible.builtin.include_role:
                name: fleet_report
                tasks_from: write.yml
        '''))
    env = dict(os.environ, ANSIBLE_ROLES_PATH=os.path.join(TOP, 'roles'), ANSIBLE_CONFIG=os.path.join(TOP, 'ansible.cfg'),
               ANSIBLE_NOCOLOR='1', ANSIBLE_CALLBACK_RESULT_FORMAT='json')
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', str(inv), str(play),
                          '-e', 'fleet_report_dir=%s' % tmp_path, '-e', 'fleet_report_name=fleet-test'],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                         timeout=180)
    assert out.returncode == 0, out.stdout
    data = json.loads((tmp_path / 'fleet-test.json').read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    # the same report as the filter gives directly, but for the time it was made
    want = json.loads(json.dumps(sample_report()))
    want['generated_at'] = data['generated_at']
    assert data == want
    root = ET.parse(str(tmp_path / 'fleet-test.xml')).getroot()
    assert len(root.findall('testsuite/testcase')) == 8
    vm6 = [c for c in root.iter('testcase') if c.get('name').startswith('gpu-vm-06')][0]
    assert '<vH100> & "friends"' in vm6.find('system-out').text
    html_text = (tmp_path / 'fleet-test.html').read_text()
    p = parse_page(html_text)
    assert p.errors == [] and p.stack == [] and len(p.rows) == 8
    assert '<vH100>' not in html_text and '&lt;vH100&gt; &amp; &#34;friends&#34;' in html_text
    assert 'gpu-vm-04: FAIL - VISIBLE_DEVICES' in out.stdout
    assert '8 host(s): 3 ok, 1 warn, 2 fail, 2 unreachable' in out.stdout


if __name__ == '__main__':
    target = sys.argv[1] if len(sys.argv) > 1 else '.'
    report = sample_report()
    for tpl, ext in (('fleet-report.json.j2', 'json'), ('fleet-report.junit.xml.j2', 'xml'),
                     ('fleet-report.html.j2', 'html')):
        with open(os.path.join(target, 'fleet-sample.' + ext), 'w') as f:
            f.write(render(tpl, report))
    print(os.path.join(target, 'fleet-sample.html'))
