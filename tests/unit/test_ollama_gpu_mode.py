# -*- coding: utf-8 -*-
"""Unit tests for library/ollama_gpu_mode.py: main() in log_path mode against the corpus, the failure
messages, following a growing file, and the live-mode plumbing (systemctl/journalctl faked)."""
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

import ollama_gpu_mode as M
from ansible.module_utils import ollama_follow as F
from ansible.module_utils.ollama_follow import JournalSource   # the real one, while a test replaces F's
from ansible.module_utils import ollama_log as L
from ansible.module_utils import ollama_log_record as R

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'corpus')
EXPECTED = yaml.safe_load(open(os.path.join(CORPUS, 'expected.yml')))


class Exit(Exception):
    def __init__(self, result):
        Exception.__init__(self, result.get('msg', ''))
        self.result = result


def _exit_json(self, **kwargs):
    kwargs.setdefault('failed', False)
    raise Exit(kwargs)


def _fail_json(self, msg='', **kwargs):
    kwargs['failed'] = True
    kwargs['msg'] = msg
    raise Exit(kwargs)


@pytest.fixture(autouse=True)
def no_exit(monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', _fail_json)


def run(args):
    with patch_module_args(args):
        with pytest.raises(Exit) as info:
            M.main()
    return info.value.result


def corpus(name):
    return os.path.join(CORPUS, name)


# ------------------------------------------------------------------ log_path mode on the corpus

@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_log_path_corpus(name):
    want = EXPECTED[name]
    result = run({'log_path': corpus(name), 'expect': 'any', 'timeout': 0})
    assert result['failed'] is False and result['changed'] is False
    assert result['mode'] == want['mode']
    assert len(result['devices']) == want['devices']
    assert result['ollama_version'] == want['version']
    assert result['log_source'] == 'file:%s' % corpus(name)
    assert result['problems'] == [] and result['hint'] == ''
    for key in ('started_at', 'evidence', 'discovery_errors', 'waited', 'summary', 'starts', 'total_vram'):
        assert key in result


def test_gpu_result_values():
    result = run({'log_path': corpus('0.13.5-gpu-vh100-stderr-file.log'), 'timeout': 0, 'library': 'cuda',
                  'min_total_vram': '64 GiB'})
    assert result['failed'] is False and result['mode'] == 'gpu'
    dev = result['devices'][0]
    assert dev['description'] == 'vH100' and dev['total_bytes'] == R.parse_size('79.6 GiB')
    assert result['summary'] == 'GPU (1 device: vH100 79.6 GiB, CUDA, ollama 0.13.5)'
    assert result['started_at'] == '2025-12-01T08:03:10.200Z'
    assert result['total_vram'] == dev['total_bytes']
    assert any('inference compute' in e for e in result['evidence'])


def test_check_mode_is_a_normal_run():
    result = run({'log_path': corpus('0.12.6-gpu-journal-h100.log'), 'timeout': 0, '_ansible_check_mode': True})
    assert result['failed'] is False and result['changed'] is False and result['mode'] == 'gpu'


# ------------------------------------------------------------------ api_url: the API's answer in the same run

class FakeOllamaAPI(object):
    """An http.server thread on 127.0.0.1 that answers GET /api/version like Ollama (or with ``status``)."""

    def __init__(self, status=200, version='0.13.5'):
        api = self
        self.paths = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                api.paths.append(self.path)
                ok = self.path == '/api/version' and status == 200
                body = json.dumps({'version': version} if ok else {'error': 'nope'}).encode()
                self.send_response(status if self.path == '/api/version' else 404)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def closed_port_url():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return 'http://127.0.0.1:%d' % port


def test_api_url_answers(monkeypatch):
    monkeypatch.setenv('http_proxy', 'http://proxy.invalid:3128')     # never used for a loopback API
    with FakeOllamaAPI() as api:
        result = run({'log_path': corpus('0.12.6-gpu-journal-h100.log'), 'timeout': 0, 'api_url': api.url + '/',
                      '_ansible_check_mode': True})
    assert result['failed'] is False and result['mode'] == 'gpu'
    assert result['api'] == {'status': 200, 'version': '0.13.5', 'msg': 'OK'}
    assert api.paths == ['/api/version']


def test_api_url_closed_port_gives_status_0_within_the_deadline():
    began = time.monotonic()
    result = run({'log_path': corpus('0.12.6-gpu-journal-h100.log'), 'timeout': 0, 'api_url': closed_port_url()})
    took = time.monotonic() - began
    assert result['failed'] is False and result['mode'] == 'gpu'      # the API is reported, not failed on
    assert result['api']['status'] == 0 and result['api']['version'] is None
    assert 'refused' in result['api']['msg'].lower()
    assert 0.9 < took < 2.0                                            # timeout 0: at least one second


def test_api_url_waits_within_the_same_timeout():
    began = time.monotonic()
    result = run({'log_path': corpus('0.12.6-unknown-no-verdict.log'), 'timeout': 1.5, 'api_url': closed_port_url()})
    took = time.monotonic() - began
    assert result['failed'] and result['mode'] == 'unknown' and result['api']['status'] == 0
    assert 1.4 < took < 2.2                                            # one deadline for the log and the API


def test_api_url_error_status_is_reported():
    with FakeOllamaAPI(status=503) as api:
        result = run({'log_path': corpus('0.12.6-cpu-bare.log'), 'timeout': 0, 'api_url': api.url})
    assert result['failed'] and result['mode'] == 'cpu'
    assert result['api'] == {'status': 503, 'version': None, 'msg': 'HTTP 503 Service Unavailable'}
    assert len(api.paths) > 1                                         # retried until the deadline


def test_api_url_that_is_not_http_returns_at_once():
    began = time.monotonic()
    result = run({'log_path': corpus('0.12.6-gpu-journal-h100.log'), 'timeout': 0, 'api_url': '127.0.0.1:11434'})
    assert result['api']['status'] == 0 and 'http://' in result['api']['msg']
    assert time.monotonic() - began < 0.5


def test_no_api_url_no_api_key():
    assert 'api' not in run({'log_path': corpus('0.12.6-gpu-journal-h100.log'), 'timeout': 0})


# ------------------------------------------------------------------ failures

def test_cpu_when_gpu_expected_fails_with_what_and_hint():
    result = run({'log_path': corpus('0.12.6-cpu-preload-missing-journal.log'), 'timeout': 0})
    assert result['failed'] is True and result['changed'] is False
    assert result['mode'] == 'cpu'
    assert result['msg'].startswith('Ollama runs in CPU mode, expected GPU (found mode cpu, ollama 0.12.6')
    assert 'PRELOAD_MISSING_FILE' in result['msg'] and 'PRELOAD_MISSING_FILE' in result['hint']
    assert result['summary'].startswith('CPU (ollama 0.12.6) \u2014 Ollama runs in CPU mode')
    assert result['discovery_errors'][0]['kind'] == 'preload_failed'


def test_discovery_timeout_hint():
    result = run({'log_path': corpus('0.12.6-cpu-discovery-timeout-journal.log'), 'timeout': 0})
    assert result['failed'] and 'DISCOVERY_TIMEOUT' in result['msg']


def test_gpu_when_cpu_expected_fails():
    result = run({'log_path': corpus('0.12.6-gpu-journal-h100.log'), 'timeout': 0, 'expect': 'cpu'})
    assert result['failed'] and 'expected CPU' in result['msg'] and 'NVIDIA H100 80GB HBM3' in result['msg']


def test_cpu_expected_cpu_passes():
    result = run({'log_path': corpus('0.12.6-cpu-bare.log'), 'timeout': 0, 'expect': 'cpu'})
    assert result['failed'] is False and result['summary'] == 'CPU (ollama 0.12.6)'


def test_unknown_fails_after_timeout_while_the_file_is_being_written(tmp_path):
    path = str(tmp_path / 'ollama-stderr.log')
    with open(corpus('0.12.6-unknown-no-verdict.log')) as f:
        text = f.read()
    with open(path, 'w') as sink:          # a sink the (silent) service still holds open
        sink.write(text)
        sink.flush()
        began = time.monotonic()
        result = run({'log_path': path, 'timeout': 0.5})
    assert 0.45 < time.monotonic() - began < 1.5
    assert result['failed'] and result['mode'] == 'unknown' and result['log_complete'] is False
    assert 'no verdict' in result['msg'] and 'within 0.5 s' in result['msg'] and 'raise timeout' in result['msg']


def _saved_copy(tmp_path, name, age=600):
    path = str(tmp_path / name)
    with open(corpus(name)) as src, open(path, 'w') as dst:
        dst.write(src.read())
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_saved_file_without_verdict_fails_at_once_with_default_arguments(tmp_path):
    path = _saved_copy(tmp_path, '0.12.6-unknown-no-verdict.log')
    began = time.monotonic()
    result = run({'log_path': path})               # timeout: its default, 60 s
    took = time.monotonic() - began
    assert took < 1.0 and result['waited'] < 1.0
    assert result['failed'] and result['mode'] == 'unknown' and result['log_complete'] is True
    assert result['problems'] == [
        'no verdict: the log ends before its last Ollama start reported its compute devices '
        '(%s no process has it open for writing)' % path]
    assert 'saved before discovery finished' in result['hint'] and 'within' not in result['msg']


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_saved_corpus_files_return_at_once_with_default_arguments(tmp_path, name):
    path = _saved_copy(tmp_path, name)
    began = time.monotonic()
    result = run({'log_path': path, 'expect': 'any', 'library': ''})
    assert time.monotonic() - began < 1.0
    assert result['mode'] == EXPECTED[name]['mode'] and result['failed'] is False
    assert result['log_complete'] is True


def test_saved_file_just_copied_returns_within_the_recent_write_window(tmp_path):
    path = str(tmp_path / 'copy.log')
    with open(corpus('0.12.6-unknown-no-verdict.log')) as src, open(path, 'w') as dst:
        dst.write(src.read())
    began = time.monotonic()
    result = run({'log_path': path, 'expect': 'any'})
    assert time.monotonic() - began < F.RECENT_WRITE + 0.5 and result['log_complete'] is True


def test_unknown_with_expect_any_passes():
    result = run({'log_path': corpus('0.12.6-unknown-no-verdict.log'), 'timeout': 0, 'expect': 'any'})
    assert result['failed'] is False and result['mode'] == 'unknown'


def test_too_few_devices():
    result = run({'log_path': corpus('0.12.6-gpu-journal-h100.log'), 'timeout': 0, 'min_devices': 2})
    assert result['failed'] and '1 GPU device(s), at least 2 required' in result['msg']


def test_multi_gpu_meets_minimums():
    result = run({'log_path': corpus('0.9.0-gpu-multi-cuda-bare.log'), 'timeout': 0, 'min_devices': 4,
                  'min_total_vram': '160 GiB', 'library': 'CUDA'})
    assert result['failed'] is False and len(result['devices']) == 4


def test_too_little_vram():
    result = run({'log_path': corpus('0.11.8-gpu-low-vram-16gib.log'), 'timeout': 0, 'min_total_vram': '16 GiB'})
    assert result['failed'] and 'total VRAM 15.6 GiB, at least 16.0 GiB required' in result['msg']


def test_vram_as_bytes():
    result = run({'log_path': corpus('0.11.8-gpu-low-vram-16gib.log'), 'timeout': 0,
                  'min_total_vram': 8 * 1024 ** 3})
    assert result['failed'] is False


def test_vulkan_fallback_fails_a_cuda_requirement():
    result = run({'log_path': corpus('0.30.1-gpu-vulkan-fallback.log'), 'timeout': 0, 'library': 'cuda'})
    assert result['failed'] and result['msg'].startswith(
        'no CUDA device: Ollama found only Vulkan (1 device), so the CUDA shim is not in use '
        '(found mode gpu on Vulkan only with 1 GPU(s): Vulkan NVIDIA H100 80GB HBM3 79.6 GiB, ollama 0.30.1')
    assert 'fell back to Vulkan' in result['hint'] and 'playbooks/remediate.yml' in result['hint']
    assert result['mode'] == 'gpu' and result['verdict'] == 'other_library'
    assert result['libraries'] == ['Vulkan'] and result['required_libraries'] == ['cuda']
    assert result['library_devices'] == [] and len(result['devices']) == 1
    assert result['summary'].startswith('VULKAN ONLY (1 device: NVIDIA H100 80GB HBM3 79.6 GiB, Vulkan, '
                                        'ollama 0.30.1) \u2014 no CUDA device: ')


# v0.30.11's exact lines (see tests/unit/test_ollama_log.py for the upstream sources of each field)
VULKAN_ONLY_30 = '''\
time=2026-03-02T09:15:00.101Z level=INFO source=routes.go:1961 msg="server config" env="map[CUDA_VISIBLE_DEVICES: GGML_VK_VISIBLE_DEVICES: OLLAMA_HOST:http://127.0.0.1:11434 OLLAMA_VULKAN:true]"
time=2026-03-02T09:15:00.106Z level=INFO source=routes.go:2023 msg="Listening on 127.0.0.1:11434 (version 0.30.11)"
time=2026-03-02T09:15:00.107Z level=INFO source=runner.go:60 msg="discovering available GPUs..."
time=2026-03-02T09:15:01.010Z level=INFO source=runner.go:513 msg="failure during llama-server GPU discovery" OLLAMA_LIBRARY_PATH="[/usr/local/lib/ollama /usr/local/lib/ollama/cuda_v12]" extra_envs=map[] error="exit status 1" detail="ggml_cuda_init: failed to initialize CUDA: no CUDA-capable device is detected"
time=2026-03-02T09:15:01.512Z level=INFO source=types.go:32 msg="inference compute" id=0 filter_id=0 library=Vulkan compute=0.0 name=Vulkan0 description="NVIDIA H100 80GB HBM3" libdirs=ollama,vulkan driver=0.0 pci_id=0000:00:05.0 type=discrete total="79.6 GiB" available="79.1 GiB"
time=2026-03-02T09:15:01.513Z level=INFO source=routes.go:2073 msg="vram-based default context" total_vram="79.6 GiB" default_num_ctx=262144
'''


def test_vulkan_only_v0_30_11(tmp_path):
    path = tmp_path / 'vulkan-only.log'
    path.write_text(VULKAN_ONLY_30)
    result = run({'log_path': str(path), 'library': 'cuda'})
    assert result['failed'] and result['verdict'] == 'other_library' and result['mode'] == 'gpu'
    assert result['problems'] == ['no CUDA device: Ollama found only Vulkan (1 device), so the CUDA shim is not in use']
    assert result['summary'].startswith('VULKAN ONLY (1 device: NVIDIA H100 80GB HBM3 79.6 GiB, Vulkan, ollama 0.30.11)')
    assert result['discovery_errors'][0]['kind'] == 'discovery_failed'
    # expect=any does not excuse it: a GPU start is judged against the shim's library
    assert run({'log_path': str(path), 'library': 'cuda', 'expect': 'any'})['failed']
    # an explicit "any library": GPU mode
    for anything in ('', []):
        ok = run({'log_path': str(path), 'library': anything})
        assert ok['failed'] is False and ok['verdict'] == 'gpu' and ok['required_libraries'] == []
        assert ok['summary'].startswith('GPU (1 device: NVIDIA H100 80GB HBM3 79.6 GiB, Vulkan')
    # the module's own default is any library too (the gpu_mode role passes cuda from the inventory)
    assert run({'log_path': str(path)})['verdict'] == 'gpu'


def test_cuda_and_a_second_vulkan_gpu_counts_the_cuda_device(tmp_path):
    path = tmp_path / 'mixed.log'
    path.write_text(VULKAN_ONLY_30.replace(
        'id=0 filter_id=0 library=Vulkan compute=0.0 name=Vulkan0 description="NVIDIA H100 80GB HBM3" '
        'libdirs=ollama,vulkan driver=0.0',
        'id=0 filter_id=0 library=CUDA compute=9.0 name=CUDA0 description="NVIDIA H100 80GB HBM3" '
        'libdirs=ollama,cuda_v12 driver=12.8') + VULKAN_ONLY_30.splitlines()[4].replace(
        'id=0 filter_id=0', 'id=1 filter_id=1').replace('Vulkan0', 'Vulkan1').replace(
        '"NVIDIA H100 80GB HBM3"', '"AMD Radeon Pro W7600"').replace('0000:00:05.0', '0000:00:06.0') + '\n')
    result = run({'log_path': str(path), 'library': ['CUDA'], 'min_devices': 1})
    assert result['failed'] is False and result['verdict'] == 'gpu'
    assert result['libraries'] == ['CUDA', 'Vulkan'] and [d['name'] for d in result['library_devices']] == ['CUDA0']
    assert run({'log_path': str(path), 'library': 'cuda', 'min_devices': 2})['failed']


def test_library_accepts_a_comma_separated_text():
    result = run({'log_path': corpus('0.30.1-gpu-rocm-multi-journal.log'), 'timeout': 0, 'library': 'cuda,rocm'})
    assert result['failed'] is False and result['required_libraries'] == ['cuda', 'rocm']
    assert len(result['library_devices']) == 2


def test_low_vram_with_expect_any_and_minimum_applies_to_gpu_only():
    result = run({'log_path': corpus('0.12.6-cpu-bare.log'), 'timeout': 0, 'expect': 'any', 'min_devices': 3})
    assert result['failed'] is False


def test_bad_min_total_vram():
    result = run({'log_path': corpus('0.12.6-cpu-bare.log'), 'timeout': 0, 'min_total_vram': 'lots'})
    assert result['failed'] and 'is not a size' in result['msg']


def test_missing_log_path():
    result = run({'log_path': '/nonexistent/ollama.log', 'timeout': 0})
    assert result['failed'] and 'not a readable file' in result['msg'] and result['changed'] is False


def test_negative_timeout():
    result = run({'log_path': corpus('0.12.6-cpu-bare.log'), 'timeout': -1})
    assert result['failed'] and 'timeout' in result['msg']


# ------------------------------------------------------------------ following a growing file

def test_module_returns_within_a_second_of_the_compute_line(tmp_path):
    path = str(tmp_path / 'ollama-stderr.log')
    with open(path, 'w') as f:
        f.write(
            'time=2025-12-01T08:03:10.200Z level=INFO source=routes.go:1511 msg="server config" env="map[]"\n'
            'time=2025-12-01T08:03:10.205Z level=INFO source=routes.go:1570 '
            'msg="Listening on 127.0.0.1:11434 (version 0.13.5)"\n'
            'time=2025-12-01T08:03:10.206Z level=INFO source=runner.go:80 msg="discovering available GPUs..."\n')
    written = []
    # the service's stderr: StandardError=append: opens it once, the process holds it while it discovers
    sink = open(path, 'a')

    def writer():
        time.sleep(0.5)
        sink.write('time=2025-12-01T08:03:10.731Z level=INFO source=types.go:42 msg="inference compute" '
                   'id=GPU-00000000-0000-0000-0000-0000000005a1 library=CUDA compute=9.0 name=CUDA0 '
                   'description=vH100 libdirs=ollama,cuda_v12 driver=12.8 pci_id=0000:00:05.0 type=discrete '
                   'total="79.6 GiB" available="79.1 GiB"\n')
        sink.flush()
        written.append(time.monotonic())

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = run({'log_path': path, 'timeout': 30})
    finally:
        returned = time.monotonic()
        thread.join()
        sink.close()
    assert result['failed'] is False and result['mode'] == 'gpu'
    assert result['log_complete'] is False              # the service still holds its stderr open
    assert returned - written[0] < 1.0
    assert 0.4 < result['waited'] < 1.6


# ------------------------------------------------------------------ live mode plumbing (faked systemd)

class FakeModule(object):
    """Just enough of AnsibleModule for live_source(): canned `systemctl show` answers."""

    def __init__(self, show, start='@1764576190.100000'):
        self.show = show
        self.start = start
        self.commands = []

    def get_bin_path(self, name, required=False):
        return '/usr/bin/%s' % name

    def run_command(self, cmd):
        self.commands.append(cmd)
        if 'ExecMainStartTimestamp' in cmd:
            return 0, 'ExecMainStartTimestamp=%s\n' % self.start, ''
        return 0, ''.join('%s=%s\n' % kv for kv in self.show.items()), ''

    def fail_json(self, msg='', **kwargs):
        kwargs['msg'] = msg
        kwargs['failed'] = True
        raise Exit(kwargs)


RUNNING = {'Id': 'ollama.service', 'LoadState': 'loaded', 'ActiveState': 'active', 'SubState': 'running',
           'InvocationID': '5e3b2a8c1f0d4e7a9b6c3d2e1f0a9b8c', 'MainPID': '2210', 'StandardOutput': 'journal',
           'StandardError': 'inherit', 'FragmentPath': '/etc/systemd/system/ollama.service', 'DropInPaths': ''}


def test_journal_command_scopes_to_the_invocation():
    argv = SC.journal_command('/usr/bin/journalctl', 'ollama.service', 'abc', '2210', 'b00t')
    assert argv[:5] == ['/usr/bin/journalctl', '--no-pager', '--follow', '--no-tail', '--output=cat']
    assert argv[5:] == ['_SYSTEMD_INVOCATION_ID=abc', '+', '_SYSTEMD_UNIT=ollama.service', '_PID=2210',
                        '_BOOT_ID=b00t']
    assert SC.journal_command('/j', 'u.service', '', '7', None)[5:] == ['_SYSTEMD_UNIT=u.service', '_PID=7']


def test_live_journal_source(monkeypatch):
    started = []

    class FakeCommandSource(object):
        def __init__(self, argv, env=None):
            started.append(argv)

    monkeypatch.setattr(F, 'CommandSource', FakeCommandSource)
    monkeypatch.setattr(F, 'boot_id', lambda: 'b00t')
    source, description, accept, props = M.live_source(FakeModule(RUNNING), 'ollama', 'auto', time.time() + 5)
    assert isinstance(source, F.JournalSource) and accept is None
    assert started[0][0] == '/usr/bin/journalctl' and '--follow' in started[0]
    assert '_SYSTEMD_INVOCATION_ID=5e3b2a8c1f0d4e7a9b6c3d2e1f0a9b8c' in started[0]
    # the fallback when journalctl cannot follow: the same query, without --follow
    assert source.poll_argv == [a for a in started[0] if a not in ('--follow', '--no-tail')]
    assert description.startswith('journal:_SYSTEMD_INVOCATION_ID=5e3b2a8c1f0d4e7a9b6c3d2e1f0a9b8c + ')


def test_live_file_sink_from_the_unit_files(tmp_path, monkeypatch):
    unit = tmp_path / 'ollama.service'
    unit.write_text('[Service]\nExecStart=/usr/local/bin/ollama serve\n')
    dropin = tmp_path / 'log.conf'
    dropin.write_text('[Service]\nStandardError=append:/var/log/ollama-stderr.log\n')
    show = dict(RUNNING, StandardError='append', FragmentPath=str(unit), DropInPaths=str(dropin))
    module = FakeModule(show, start='@%f' % R.log_time_to_epoch('2025-12-01T08:03:10.100Z'))
    source, description, accept, props = M.live_source(module, 'ollama.service', 'auto', time.time() + 5)
    assert isinstance(source, F.FileSource) and source.path == '/var/log/ollama-stderr.log'
    assert description == 'file:/var/log/ollama-stderr.log'
    # the file's last start must be the current process's (not older than ExecMainStartTimestamp)
    with open(corpus('0.13.5-gpu-vh100-stderr-file.log')) as f:
        text = f.read()
    assert accept(L.parse_log(text)) is True
    first_start_only = text[:text.index('[GIN]')]
    assert accept(L.parse_log(first_start_only)) is False


def test_live_file_sink_with_path_in_show_output():
    show = dict(RUNNING, StandardError='append:/var/log/o.log')
    source, description, accept, props = M.live_source(FakeModule(show), 'ollama.service', 'auto', time.time() + 5)
    assert description == 'file:/var/log/o.log'


def test_live_source_file_forced_without_file_sink_fails():
    with pytest.raises(Exit) as info:
        M.live_source(FakeModule(RUNNING), 'ollama.service', 'file', time.time() + 5)
    assert 'has no file sink' in info.value.result['msg']


def test_unit_not_installed_fails_clearly():
    show = {'Id': 'ollama.service', 'LoadState': 'not-found', 'ActiveState': 'inactive', 'SubState': 'dead'}
    with pytest.raises(Exit) as info:
        M.live_source(FakeModule(show), 'ollama.service', 'auto', time.time() + 5)
    assert 'is not installed (LoadState=not-found)' in info.value.result['msg']
    assert info.value.result['mode'] == 'unknown'


def test_unit_not_running_fails_clearly():
    show = dict(RUNNING, ActiveState='failed', SubState='failed', MainPID='0')
    with pytest.raises(Exit) as info:
        M.live_source(FakeModule(show), 'ollama.service', 'auto', time.time() + 5)
    assert 'is not running (ActiveState=failed' in info.value.result['msg']
    assert 'systemctl start ollama.service' in info.value.result['msg']


def test_unit_logging_to_null_fails_clearly():
    show = dict(RUNNING, StandardError='null')
    with pytest.raises(Exit) as info:
        M.live_source(FakeModule(show), 'ollama.service', 'auto', time.time() + 5)
    assert 'cannot read it (StandardError=null)' in info.value.result['msg']


def test_live_main_with_fake_journalctl(monkeypatch):
    """main() end to end in live mode: systemctl answers faked, journalctl replaced by a script that
    prints a start, then the compute line 0.5 s later, then keeps following."""
    with open(corpus('0.12.6-gpu-journal-h100.log')) as f:
        journal = [line.split(': ', 1)[1] for line in f.read().splitlines() if 'ollama[' in line]
    script = ('import sys, time\n'
              'lines = %r\n'
              'print("\\n".join(lines[:-1]), flush=True)\n'
              'time.sleep(0.5)\n'
              'print(lines[-1], flush=True)\n'
              'time.sleep(60)\n' % journal)

    def fake_source(argv, poll_argv=None, env=None):
        assert '_SYSTEMD_INVOCATION_ID=5e3b2a8c1f0d4e7a9b6c3d2e1f0a9b8c' in argv
        return JournalSource([sys.executable, '-c', script])

    monkeypatch.setattr(F, 'JournalSource', fake_source)
    monkeypatch.setattr(M, 'systemctl_show', lambda module, unit, props: dict(RUNNING))
    began = time.monotonic()
    result = run({'timeout': 20})
    assert time.monotonic() - began < 1.5
    assert result['failed'] is False and result['mode'] == 'gpu'
    assert result['log_source'].startswith('journal:_SYSTEMD_INVOCATION_ID=')
    assert result['ollama_version'] == '0.12.6'


def test_early_failures_carry_the_reason_in_problems_and_summary():
    result = run({'log_path': '/nonexistent/ollama.log', 'timeout': 0, 'library': 'cuda'})
    assert result['problems'] == [result['msg']]
    assert result['verdict'] == 'unknown' and result['required_libraries'] == ['cuda']
    assert result['library_devices'] == [] and result['libraries'] == [] and result['log_complete'] is False
    assert result['summary'].startswith('UNKNOWN \u2014 log_path /nonexistent/ollama.log')


def test_live_unknown_reports_a_restart_while_waiting(monkeypatch):
    """A start that never reports, and systemd shows a new invocation afterwards: crash loop hint."""
    script = ('import time\n'
              'print(%r, flush=True)\n'
              'time.sleep(60)\n' % L.__name__)   # one line of noise, no start

    monkeypatch.setattr(F, 'JournalSource',
                        lambda argv, poll_argv=None, env=None: JournalSource([sys.executable, '-c', script]))
    monkeypatch.setattr(M, 'systemctl_show', lambda module, unit, props: dict(RUNNING))
    monkeypatch.setattr(M, 'try_systemctl_show', lambda module, unit, props: (
        {'InvocationID': 'ffff', 'ActiveState': 'activating', 'SubState': 'auto-restart'}, None))
    result = run({'timeout': 0.5})
    assert result['failed'] and result['mode'] == 'unknown'
    assert 'the unit restarted while waiting - now activating/auto-restart' in result['msg']
    assert 'within 0.5 s' in result['msg']


# ------------------------------------------------------ the systemctl/unit-syntax helpers this module added

from ansible.module_utils import vgpu_systemctl as SC   # noqa: E402
from ansible.module_utils import vgpu_unit_syntax as US   # noqa: E402


@pytest.mark.parametrize('value,expected', [
    ('journal', ('journal', None)), ('journal+console', ('journal', None)), ('kmsg', ('journal', None)),
    ('syslog', ('journal', None)), ('inherit', ('inherit', None)), ('', ('inherit', None)),
    ('null', ('none', None)), ('tty', ('other', 'tty')), ('fd:ollama', ('other', 'fd:ollama')),
    ('append', ('file', None)), ('append:/var/log/o.log', ('file', '/var/log/o.log')),
    ('file:/var/log/o.log', ('file', '/var/log/o.log')), ('truncate:/x', ('file', '/x')),
])
def test_classify_output(value, expected):
    assert SC.classify_output(value) == expected


def test_log_sink_last_assignment_wins_and_empty_resets():
    texts = {'/u': '[Service]\nStandardError=append:/a.log\n',
             '/d1': '[Service]\nStandardError=append:/b.log\n',
             '/d2': '[Unit]\nStandardError=append:/not-service.log\n'}
    show = {'StandardError': 'append', 'FragmentPath': '/u', 'DropInPaths': '/d1 /d2'}
    assert SC.log_sink(show, read=texts.get)['path'] == '/b.log'
    assert US.unit_files_setting(['[Service]\nStandardError=append:/a\n', '[Service]\nStandardError=\n'],
                                'StandardError') is None


def test_log_sink_inherit_follows_standard_output():
    show = {'StandardError': 'inherit', 'StandardOutput': 'append', 'FragmentPath': '/u', 'DropInPaths': ''}
    sink = SC.log_sink(show, read=lambda p: '[Service]\nStandardOutput=append:/var/log/ollama.log\n')
    assert sink == {'kind': 'file', 'path': '/var/log/ollama.log', 'setting': 'StandardOutput=append'}
    assert SC.log_sink({'StandardError': 'inherit', 'StandardOutput': 'journal'})['kind'] == 'journal'


def test_parse_systemd_timestamp():
    assert SC.parse_systemd_timestamp('@1795638908') == 1795638908.0
    assert SC.parse_systemd_timestamp('Wed 2026-11-25 20:35:54 UTC') == 1795638954.0
    assert SC.parse_systemd_timestamp('Wed 2026-11-25 20:35:54.250000 UTC') == 1795638954.25
    assert SC.parse_systemd_timestamp('') is None and SC.parse_systemd_timestamp('n/a') is None


# ------------------------------------------------------------------ the other signals, restart, fail=false

class FakeSmokeAPI(FakeOllamaAPI):
    """/api/version, plus /api/generate (loads ``model`` when it is ``pulled``) and /api/ps."""

    def __init__(self, pulled=('llama3.2:1b',), size_vram=1288490188):
        FakeOllamaAPI.__init__(self)
        api = self
        self.posted = []
        parent = self.server.RequestHandlerClass

        class Handler(parent):
            def _send(self, status, data):
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == '/api/ps':
                    api.paths.append(self.path)
                    return self._send(200, {'models': [{'name': m + ':latest' if ':' not in m else m,
                                                        'size_vram': size_vram} for m in pulled]})
                return parent.do_GET(self)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
                api.posted.append((self.path, body))
                if body.get('model') in pulled:
                    return self._send(200, {'model': body['model'], 'done': True})
                return self._send(404, {'error': 'model "%s" not found, try pulling it first' % body.get('model')})

        self.server.RequestHandlerClass = Handler


GPU_LOG = '0.12.6-gpu-journal-h100.log'


def test_smoke_load_in_vram_joins_the_summary():
    with FakeSmokeAPI() as api:
        result = run({'log_path': corpus(GPU_LOG), 'timeout': 0, 'api_url': api.url, 'api_required': True,
                      'smoke_model': 'llama3.2:1b'})
    assert result['failed'] is False and result['ok'] is True and result['problems'] == []
    assert result['smoke'] == {'model': 'llama3.2:1b', 'loaded': True, 'status': 200, 'error': '',
                               'size_vram': 1288490188}
    assert result['summary'].endswith('; smoke load of llama3.2:1b: 1.2 GiB in VRAM')
    # an empty prompt only loads the model
    assert api.posted == [('/api/generate', {'model': 'llama3.2:1b', 'prompt': '', 'stream': False,
                                             'keep_alive': '5m'})]


def test_smoke_model_on_the_cpu_fails_a_gpu_verdict():
    with FakeSmokeAPI(size_vram=0) as api:
        result = run({'log_path': corpus(GPU_LOG), 'timeout': 0, 'api_url': api.url, 'smoke_model': 'llama3.2:1b'})
    assert result['failed'] is True and result['ok'] is False
    assert result['problems'] == ['smoke model llama3.2:1b is loaded with size_vram 0: it runs on the CPU']
    assert result['msg'] == result['summary'] and ' \u2014 smoke model llama3.2:1b is loaded' in result['summary']


def test_smoke_model_not_pulled_says_how_to_pull_it():
    with FakeSmokeAPI(pulled=()) as api:
        result = run({'log_path': corpus(GPU_LOG), 'timeout': 0, 'api_url': api.url, 'smoke_model': 'qwen3:8b',
                      'fail': False})
    assert result['failed'] is False and result['ok'] is False
    assert result['problems'] == ['smoke load of qwen3:8b failed (HTTP 404): model "qwen3:8b" not found, try '
                                  'pulling it first - is it pulled? (ollama pull qwen3:8b)']


def test_smoke_model_without_api_url_is_refused():
    result = run({'log_path': corpus(GPU_LOG), 'timeout': 0, 'smoke_model': 'llama3.2:1b'})
    assert result['failed'] is True and 'needs api_url' in result['msg']


def test_api_required_makes_a_silent_api_a_problem():
    url = closed_port_url()
    result = run({'log_path': corpus(GPU_LOG), 'timeout': 0, 'api_url': url, 'api_required': True, 'fail': False})
    assert result['failed'] is False and result['ok'] is False and result['mode'] == 'gpu'
    assert result['problems'][0].startswith('the API at %s did not answer /api/version within 1 s (' % url)
    # without api_required the same answer is only reported
    result = run({'log_path': corpus(GPU_LOG), 'timeout': 0, 'api_url': url})
    assert result['failed'] is False and result['ok'] is True and result['api']['status'] == 0


def test_fail_false_records_a_wrong_verdict_and_an_early_stop():
    result = run({'log_path': corpus('0.12.6-cpu-bare.log'), 'timeout': 0, 'fail': False})
    assert result['failed'] is False and result['ok'] is False and result['mode'] == 'cpu'
    assert result['summary'].startswith('CPU') and result['problems']
    result = run({'log_path': '/nonexistent/ollama.log', 'timeout': 0, 'fail': False})
    assert result['failed'] is False and result['ok'] is False and result['summary'].startswith('UNKNOWN')


def test_restart_with_log_path_is_refused():
    result = run({'log_path': corpus(GPU_LOG), 'restart': True})
    assert result['failed'] is True and 'restart applies to the live unit' in result['msg']


def _fake_live(monkeypatch, calls):
    with open(corpus(GPU_LOG)) as f:
        journal = [line.split(': ', 1)[1] for line in f.read().splitlines() if 'ollama[' in line]
    script = 'print(%r, flush=True)\nimport time\ntime.sleep(60)\n' % '\n'.join(journal)

    def fake_source(argv, poll_argv=None, env=None):
        calls.append('follow')
        return JournalSource([sys.executable, '-c', script])

    def fake_run_command(self, argv, **kwargs):
        calls.append(argv[1:])
        return 0, '', ''

    monkeypatch.setattr(F, 'JournalSource', fake_source)
    monkeypatch.setattr(M, 'systemctl_show', lambda module, unit, props: dict(RUNNING))
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', lambda self, name, required=False: '/bin/' + name)
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', fake_run_command)


def test_restart_then_follow_the_new_start_in_one_run(monkeypatch):
    calls = []
    _fake_live(monkeypatch, calls)
    result = run({'timeout': 20, 'restart': True, 'unit': 'ollama.service'})
    assert calls[0] == ['restart', 'ollama.service'] and 'follow' in calls[1:]
    assert result['failed'] is False and result['changed'] is True and result['restarted'] is True
    assert result['mode'] == 'gpu' and result['ok'] is True


def test_restart_in_check_mode_reports_changed_and_judges_the_running_start(monkeypatch):
    calls = []
    _fake_live(monkeypatch, calls)
    result = run({'timeout': 20, 'restart': True, '_ansible_check_mode': True})
    assert ['restart', 'ollama.service'] not in calls
    assert result['changed'] is True and result['restarted'] is False and result['mode'] == 'gpu'


def test_no_restart_is_read_only(monkeypatch):
    calls = []
    _fake_live(monkeypatch, calls)
    result = run({'timeout': 20})
    assert calls == ['follow'] and result['changed'] is False and result['restarted'] is False


def test_failed_restart_names_systemctl_last_line_and_is_not_restarted(monkeypatch):
    calls = []
    _fake_live(monkeypatch, calls)
    monkeypatch.setattr(basic.AnsibleModule, 'run_command',
                        lambda self, argv, **kw: (1, '', 'Job for ollama.service failed.\nSee "systemctl status".'))
    result = run({'timeout': 5, 'restart': True})
    assert result['failed'] is True and result['restarted'] is False and result['changed'] is True
    assert result['msg'] == ('systemctl restart ollama.service failed (rc=1): See "systemctl status". - see '
                             'journalctl -u ollama.service -n 50')
