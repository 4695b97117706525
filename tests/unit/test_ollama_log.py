# -*- coding: utf-8 -*-
"""Unit tests for module_utils/ollama_log.py and ollama_verdict.py: tokenizer, prefixes, sizes, start/verdict
rules, the corpus of real-format logs (tests/corpus/expected.yml) and judging a start against the libraries
(following a live log and opening it: test_ollama_follow.py)."""
import os
import time

import pytest
import yaml

from ansible.module_utils import ollama_log as L
from ansible.module_utils import ollama_log_record as R
from ansible.module_utils import ollama_verdict as V

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'corpus')
EXPECTED = yaml.safe_load(open(os.path.join(CORPUS, 'expected.yml')))

# literal lines, one per era (formats: the log rows of simulator/fidelity.json)
IC_037 = ('time=2024-08-01T10:00:00.000Z level=INFO source=types.go:105 msg="inference compute" '
          'id=GPU-452cac9f-6960-839c-4fb3-0cec83699196 library=cuda compute=8.6 driver=12.4 '
          'name="NVIDIA GeForce RTX 3090" total="23.7 GiB" available="23.4 GiB"')
IC_05 = ('time=2025-01-27T17:06:44.790+01:00 level=INFO source=types.go:131 msg="inference compute" '
         'id=GPU-7d5c1b0e-2f43-9a61-c8b4-55e0f3a91d27 library=cuda variant=v12 compute=8.9 driver=12.6 '
         'name="NVIDIA GeForce RTX 4090" total="23.6 GiB" available="22.1 GiB"')
CPU_05 = ('time=2025-02-03T08:00:12.315Z level=INFO source=types.go:131 msg="inference compute" id=0 '
          'library=cpu variant="" compute="" driver=0.0 name="" total="31.3 GiB" available="28.5 GiB"')
IC_12 = ('time=2025-11-25T10:00:01.377Z level=INFO source=types.go:112 msg="inference compute" '
         'id=GPU-3f6e2d1c-0b9a-4877-a665-544332211000 library=CUDA compute=9.0 name=CUDA0 '
         'description="NVIDIA H100 80GB HBM3" libdirs=ollama,cuda_v12 driver=12.8 pci_id=0000:00:05.0 '
         'type=discrete total="79.6 GiB" available="79.1 GiB"')
IC_30_FILTER = ('time=2026-02-11T09:30:02.113+01:00 level=INFO source=types.go:42 msg="inference compute" '
                'id=GPU-5c2a1b0d9e8f7a6b filter_id=0 library=ROCm compute=gfx1100 name=ROCm0 '
                'description="AMD Radeon RX 7900 XTX" libdirs=ollama,rocm driver=60342.13 '
                'pci_id=0000:03:00.0 type=discrete total="24.0 GiB" available="23.6 GiB"')
CPU_12 = ('time=2025-11-25T10:05:00.412Z level=INFO source=types.go:60 msg="inference compute" id=cpu '
          'library=cpu compute="" name=cpu description=cpu libdirs=ollama driver="" pci_id="" type="" '
          'total="31.3 GiB" available="29.8 GiB"')
ZERO_VRAM = ('time=2025-11-25T10:05:00.412Z level=INFO source=routes.go:1605 msg="entering low vram mode" '
             '"total vram"="0 B" threshold="20.0 GiB"')
LOW_VRAM_16 = ('time=2025-09-10T22:02:49.002+02:00 level=INFO source=routes.go:1425 msg="entering low vram '
               'mode" "total vram"="15.6 GiB" threshold="20.0 GiB"')
CONFIG_12 = ('time=2025-11-25T10:00:00.101Z level=INFO source=routes.go:1511 msg="server config" '
             'env="map[CUDA_VISIBLE_DEVICES: OLLAMA_DEBUG:INFO OLLAMA_HOST:http://127.0.0.1:11434]"')
LISTEN_12 = ('time=2025-11-25T10:00:00.105Z level=INFO source=routes.go:1564 '
             'msg="Listening on 127.0.0.1:11434 (version 0.12.6)"')
CONFIG_GOLOG = ('2025/02/28 12:37:36 routes.go:1215: INFO server config env="map[CUDA_VISIBLE_DEVICES: '
                'OLLAMA_HOST:http://127.0.0.1:11434 OLLAMA_SCHED_SPREAD:false]"')
DISCOVERY_TIMEOUT = ('time=2025-11-25T10:10:30.017Z level=INFO source=runner.go:463 msg="failure during GPU '
                     'discovery" OLLAMA_LIBRARY_PATH="[/usr/local/lib/ollama /usr/local/lib/ollama/cuda_v12]" '
                     'extra_envs=map[] error="failed to finish discovery before timeout"')
PRELOAD = ("ERROR: ld.so: object '/usr/lib64/libvgpu-cuda.so' from LD_PRELOAD cannot be preloaded "
           "(cannot open shared object file): ignored.")


def lines(*items):
    return '\n'.join(items) + '\n'


def stamped(line, age=0.0):
    """``line`` with its ``time=`` stamp moved to ``age`` seconds ago (as Ollama would write it now)."""
    at = time.time() - age
    stamp = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(at)) + '.%03dZ' % int(at % 1 * 1000)
    return 'time=' + stamp + line[line.index(' '):]


# ------------------------------------------------------------------ corpus

@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_corpus_file(name):
    want = EXPECTED[name]
    with open(os.path.join(CORPUS, name), newline='') as f:
        result = L.parse_log(f.read())
    assert result['mode'] == want['mode']
    assert len(result['devices']) == want['devices']
    assert result['ollama_version'] == want['version']
    libs = sorted(set(d['library'] for d in result['devices']))
    assert libs == ([want['library']] if want['library'] else [])
    assert result['starts'] == want['starts']
    assert [e['kind'] for e in result['discovery_errors']] == want.get('errors', [])
    for dev in result['devices']:
        assert isinstance(dev['total_bytes'], int) and dev['total_bytes'] > 0
        assert isinstance(dev['available_bytes'], int)
    if result['mode'] != 'unknown':
        assert result['evidence'], 'a verdict must show the lines it rests on'


def test_corpus_is_big_enough_and_complete():
    files = [n for n in os.listdir(CORPUS) if n.endswith('.log')]
    assert len(files) >= 20
    assert sorted(files) == sorted(EXPECTED)


def test_corpus_crlf_file_really_has_crlf():
    with open(os.path.join(CORPUS, '0.12.6-gpu-crlf.log'), 'rb') as f:
        assert b'\r\n' in f.read()


# ------------------------------------------------------------------ sizes and times

@pytest.mark.parametrize('text,expected', [
    ('79.6 GiB', int(round(79.6 * 1024 ** 3))),
    ('512 MiB', 512 * 1024 ** 2),
    ('0 B', 0),
    ('23.7 GiB', int(round(23.7 * 1024 ** 3))),
    ('1.5 KiB', 1536),
    ('2 TiB', 2 * 1024 ** 4),
    ('16GB', 16 * 1000 ** 3),
    ('500 MB', 500 * 1000 ** 2),
    ('3 KB', 3000),
    ('1 TB', 1000 ** 4),
    ('16 G', 16 * 1024 ** 3),
    ('16gib', 16 * 1024 ** 3),
    (1024, 1024),
    ('1024', 1024),
    ('lots', None),
    ('', None),
    (None, None),
    ('12 parsecs', None),
])
def test_parse_size(text, expected):
    assert R.parse_size(text) == expected


def test_format_size_matches_ollama():
    assert R.format_size(R.parse_size('79.6 GiB')) == '79.6 GiB'
    assert R.format_size(512 * 1024 ** 2) == '512.0 MiB'
    assert R.format_size(0) == '0 B'
    assert R.format_size(2 * 1024 ** 4) == '2048.0 GiB'


def test_log_time_to_epoch():
    assert R.log_time_to_epoch('2024-08-01T10:00:00.000Z') == 1722506400.0
    assert R.log_time_to_epoch('2024-08-01T12:00:00.500+02:00') == 1722506400.5
    assert R.log_time_to_epoch('2024-08-01T05:00:00-05:00') == 1722506400.0
    assert R.log_time_to_epoch('garbage') is None
    assert R.log_time_to_epoch(None) is None
    # Go's log package writes local time without a zone
    local = R.log_time_to_epoch('2025/02/28 12:37:36')
    assert local == time.mktime((2025, 2, 28, 12, 37, 36, 0, 0, -1))


def test_written_epoch_allows_for_a_stamp_cut_to_the_second():
    assert R.written_epoch('2024-08-01T10:00:00.000Z') == 1722506400.0
    assert R.written_epoch('2024-08-01T10:00:00Z') == 1722506401.0
    assert R.written_epoch('2025/02/28 12:37:36') == R.log_time_to_epoch('2025/02/28 12:37:36') + 1.0
    assert R.written_epoch(None) is None and R.written_epoch('garbage') is None


def test_verdict_written_is_the_stamp_of_the_last_verdict_record():
    assert L.parse_log(lines(CONFIG_12, LISTEN_12))['verdict_written'] is None
    assert L.parse_log(lines(LISTEN_12, IC_12))['verdict_written'] == R.log_time_to_epoch('2025-11-25T10:00:01.377Z')
    # zero VRAM without a compute line is the CPU verdict's record; after one, the compute line stays it
    zero = L.parse_log(lines(LISTEN_12, ZERO_VRAM))
    assert zero['mode'] == 'cpu' and zero['verdict_written'] == R.log_time_to_epoch('2025-11-25T10:05:00.412Z')
    later = ZERO_VRAM.replace('10:05:00.412Z', '10:06:00.000Z')
    assert L.parse_log(lines(LISTEN_12, CPU_12, later))['verdict_written'] == \
        R.log_time_to_epoch('2025-11-25T10:05:00.412Z')
    # records without time= (some captures): no stamp, no credit
    bare = 'level=INFO source=types.go:112 msg="inference compute" id=GPU-1 library=CUDA total="8.0 GiB"'
    assert L.parse_log(lines(LISTEN_12, bare))['verdict_written'] is None


# ------------------------------------------------------------------ tokenizer

def test_tokenize_quoted_keys_and_values():
    tokens, open_quote = R.tokenize(LOW_VRAM_16)
    assert ('total vram', '15.6 GiB') in tokens
    assert ('threshold', '20.0 GiB') in tokens
    assert ('msg', 'entering low vram mode') in tokens
    assert not open_quote


def test_tokenize_go_escapes():
    fields = R.parse_fields(r'msg="say \"hi\"" path="C:\\Users\\x" tab="a\tb" u="\u00e9\x41" n="l1\nl2"')
    assert fields['msg'] == 'say "hi"'
    assert fields['path'] == 'C:\\Users\\x'
    assert fields['tab'] == 'a\tb'
    assert fields['u'] == '\u00e9A'
    assert fields['n'] == 'l1\nl2'


def test_tokenize_bare_values_with_brackets_and_maps():
    fields = R.parse_fields(DISCOVERY_TIMEOUT)
    assert fields['OLLAMA_LIBRARY_PATH'] == '[/usr/local/lib/ollama /usr/local/lib/ollama/cuda_v12]'
    assert fields['extra_envs'] == 'map[]'
    assert fields['error'] == 'failed to finish discovery before timeout'
    assert R.parse_fields('a=map[K:1 L:2] b=c')['a'] == 'map[K:1 L:2]'
    assert R.parse_fields('paths=[/nix/store/x/libcuda.so.565.77] n=1')['paths'] == '[/nix/store/x/libcuda.so.565.77]'
    # an unbalanced bracket falls back to the first blank
    assert R.parse_fields('a=[x b=c')['b'] == 'c'


def test_tokenize_empty_values_and_words():
    tokens, _ = R.tokenize(CPU_12)
    fields = dict(t for t in tokens if t[1] is not None)
    assert fields['compute'] == '' and fields['driver'] == '' and fields['pci_id'] == ''
    tokens, _ = R.tokenize('server config env="map[]"')
    assert tokens[:2] == [('server', None), ('config', None)]


def test_tokenize_reports_open_quote():
    assert R.tokenize('msg="server config" env="map[A: B:')[1] is True
    assert R.tokenize('msg="x" "open key')[1] is True
    assert R.tokenize('msg="x" y=1')[1] is False


def test_first_occurrence_of_a_key_wins():
    assert R.parse_fields('library=cuda library=cpu')['library'] == 'cuda'


def test_never_reads_source_line_numbers():
    # same record, other source line: same verdict (source= is just another field)
    a = L.parse_log(lines(LISTEN_12, IC_12))
    b = L.parse_log(lines(LISTEN_12.replace('routes.go:1564', 'routes.go:9'),
                          IC_12.replace('types.go:112', 'somewhere_else.go:1')))
    assert a['mode'] == b['mode'] == 'gpu'
    assert a['devices'] == b['devices']


# ------------------------------------------------------------------ prefixes

@pytest.mark.parametrize('prefix,pid', [
    ('Nov 25 10:00:00 host ollama[123]: ', '123'),
    ('jan 27 17:06:44 desktop ollama[1646734]: ', '1646734'),
    ('M\u00e4r 05 09:00:01 gpu7 ollama[902]: ', '902'),
    ('d\u00e9c. 03 14:20:05 poste ollama[6610]: ', '6610'),
    ('11\u6708 25 10:00:00 host ollama[77]: ', '77'),
    ('Nov  5 10:00:00 host ollama[5]: ', '5'),
    ('Nov 25 10:00:00.123456 host ollama[123]: ', '123'),
    ('2025-11-25T10:00:00+0000 fh5 ollama[5120]: ', '5120'),
    ('2025-11-25T10:00:00.123456+00:00 fh5 ollama[5120]: ', '5120'),
    ('Tue 2025-11-25 10:00:00 UTC fh5 ollama[5120]: ', '5120'),
    ('1732528800.123456 fh5 ollama[5120]: ', '5120'),
])
def test_journald_prefixes(prefix, pid):
    content, meta = R.strip_prefixes(prefix + IC_12)
    assert content == IC_12
    assert meta['prefixed'] and meta['pid'] == pid


@pytest.mark.parametrize('line', [
    'ollama-1  | ' + IC_12,
    'ollama  | ' + IC_12,
    '2a0f2f93ed9f_llms-ollama-1  | ' + IC_12,
    '2025-01-01T00:00:00.000000000Z ' + IC_12,
    'ollama-1  | 2025-01-01T00:00:00.000000000Z ' + IC_12,
    '> ' + IC_12,
    '> > ' + IC_12,
    '>     ' + IC_12,
    '    ' + IC_12,
    '\t' + IC_12 + '\r',
    'some-pod-7f9c ollama ' + IC_12,          # unknown prefix in front of an slog record
])
def test_other_prefixes(line):
    assert R.strip_prefixes(line)[0] == IC_12.rstrip('\r')


def test_prefix_regex_never_eats_slog_or_golog_lines():
    for line in (IC_12, CONFIG_GOLOG, ZERO_VRAM, PRELOAD):
        content, meta = R.strip_prefixes(line)
        assert content == line and not meta['prefixed']


def test_docker_timestamp_before_a_loader_error_keeps_the_text():
    content, _ = R.strip_prefixes('2025-01-01T00:00:00.000000000Z ' + PRELOAD)
    assert content == PRELOAD


# ------------------------------------------------------------------ devices by era

def test_device_fields_0_3_7():
    dev = L.parse_log(lines(LISTEN_12, IC_037))['devices'][0]
    assert dev['id'] == 'GPU-452cac9f-6960-839c-4fb3-0cec83699196'
    assert dev['library'] == 'cuda' and dev['variant'] is None
    assert dev['name'] == 'NVIDIA GeForce RTX 3090'
    assert dev['compute'] == '8.6' and dev['driver'] == '12.4'
    assert dev['total'] == '23.7 GiB' and dev['total_bytes'] == R.parse_size('23.7 GiB')
    assert dev['available_bytes'] == R.parse_size('23.4 GiB')


def test_device_fields_0_12():
    dev = L.parse_log(lines(CONFIG_12, LISTEN_12, IC_12))['devices'][0]
    assert dev['library'] == 'CUDA' and dev['name'] == 'CUDA0'
    assert dev['description'] == 'NVIDIA H100 80GB HBM3'
    assert dev['pci_id'] == '0000:00:05.0' and dev['type'] == 'discrete'
    assert dev['libdirs'] == 'ollama,cuda_v12'
    assert dev['total_bytes'] == R.parse_size('79.6 GiB')


def test_device_fields_0_30_filter_id_rocm():
    dev = L.parse_log(lines(LISTEN_12, IC_30_FILTER))['devices'][0]
    assert dev['filter_id'] == '0' and dev['library'] == 'ROCm' and dev['compute'] == 'gfx1100'


@pytest.mark.parametrize('library', ['cuda', 'CUDA', 'rocm', 'ROCm', 'Vulkan', 'vulkan', 'Metal', 'oneapi'])
def test_any_non_cpu_library_is_gpu(library):
    line = IC_12.replace('library=CUDA', 'library=%s' % library)
    result = L.parse_log(lines(LISTEN_12, line))
    assert result['mode'] == 'gpu' and result['devices'][0]['library'] == library


def test_rocm_id_zero_is_not_cpu():
    line = ('time=2024-08-02T09:14:34.933Z level=INFO source=types.go:105 msg="inference compute" id=0 '
            'library=rocm compute=gfx1030 driver=6.3 name=1002:73bf total="16.0 GiB" available="15.9 GiB"')
    assert L.parse_log(lines(LISTEN_12, line))['mode'] == 'gpu'


@pytest.mark.parametrize('cpu_line', [CPU_05, CPU_12])
def test_cpu_lines_are_cpu(cpu_line):
    result = L.parse_log(lines(LISTEN_12, cpu_line))
    assert result['mode'] == 'cpu' and result['devices'] == [] and result['cpu_records'] == 1


def test_multi_gpu_one_device_per_line():
    second = IC_12.replace('GPU-3f6e2d1c', 'GPU-4a7f3e2d').replace('CUDA0', 'CUDA1').replace('00:05.0', '00:06.0')
    result = L.parse_log(lines(LISTEN_12, IC_12, second))
    assert [d['name'] for d in result['devices']] == ['CUDA0', 'CUDA1']
    assert V.total_vram_bytes(result['devices']) == 2 * R.parse_size('79.6 GiB')


def test_a_repeated_compute_line_is_one_device():
    result = L.parse_log(lines(LISTEN_12, IC_12, IC_12))
    assert len(result['devices']) == 1


# ------------------------------------------------------------------ vram signals

def test_low_vram_mode_on_a_16_gib_gpu_is_not_cpu():
    line = IC_05.replace('23.6 GiB', '15.6 GiB')
    result = L.parse_log(lines(LISTEN_12, line, LOW_VRAM_16))
    assert result['mode'] == 'gpu'
    assert result['total_vram_zero'] is False
    assert result['low_vram'] == {'total_vram': '15.6 GiB', 'threshold': '20.0 GiB'}


def test_low_vram_alone_is_unknown_not_cpu():
    assert L.parse_log(lines(LISTEN_12, LOW_VRAM_16))['mode'] == 'unknown'


@pytest.mark.parametrize('zero', [ZERO_VRAM, ZERO_VRAM.replace('"total vram"', 'total_vram')])
def test_zero_vram_without_compute_line_is_cpu(zero):
    result = L.parse_log(lines(LISTEN_12, zero))
    assert result['mode'] == 'cpu' and result['total_vram_zero']
    assert zero in result['evidence']


def test_compute_lines_win_over_zero_vram():
    # inconsistent input: the inference compute lines decide
    assert L.parse_log(lines(LISTEN_12, IC_12, ZERO_VRAM))['mode'] == 'gpu'


# ------------------------------------------------------------------ starts

def test_config_and_listening_are_one_start():
    result = L.parse_log(lines(CONFIG_12, LISTEN_12, IC_12))
    assert result['starts'] == 1
    assert result['started_at'] == '2025-11-25T10:00:00.101Z'
    assert result['ollama_version'] == '0.12.6'


def test_pre_slog_server_config_is_a_start():
    result = L.parse_log(lines(CONFIG_GOLOG, IC_05))
    assert result['starts'] == 1 and result['mode'] == 'gpu'
    assert result['started_at'] == '2025-02-28T12:37:36'
    assert result['ollama_version'] is None


def test_listening_without_config_each_is_a_start():
    result = L.parse_log(lines(LISTEN_12, CPU_12, LISTEN_12, IC_12))
    assert result['starts'] == 2 and result['mode'] == 'gpu'


def test_only_the_last_start_counts_gpu_then_cpu():
    result = L.parse_log(lines(CONFIG_12, LISTEN_12, IC_12, CONFIG_12, LISTEN_12, CPU_12, ZERO_VRAM))
    assert result['starts'] == 2 and result['mode'] == 'cpu' and result['devices'] == []


def test_only_the_last_start_counts_cpu_then_gpu():
    result = L.parse_log(lines(CONFIG_GOLOG, LISTEN_12, CPU_05, CONFIG_GOLOG, LISTEN_12, IC_05))
    assert result['starts'] == 2 and result['mode'] == 'gpu'


def test_a_new_start_without_verdict_is_unknown_even_after_a_gpu_start():
    result = L.parse_log(lines(CONFIG_12, LISTEN_12, IC_12, CONFIG_12, LISTEN_12))
    assert result['mode'] == 'unknown' and result['starts'] == 2


def test_journald_pid_separates_two_listening_lines():
    a = 'Nov 25 10:00:00 h ollama[10]: '
    b = 'Nov 25 10:00:09 h ollama[11]: '
    # process 10 printed its config and died before Listening; process 11 prints only Listening
    result = L.parse_log(lines(a + CONFIG_12, b + LISTEN_12, b + IC_12))
    assert result['starts'] == 2 and result['start_pid'] == '11'


def test_no_start_at_all_is_unknown():
    result = L.parse_log(lines('hello', '[GIN] 2025/12/01 - 08:00:05 | 200 | 38.2us | 127.0.0.1 | GET "/"'))
    assert result['mode'] == 'unknown' and result['starts'] == 0


def test_compute_lines_without_any_start_line_still_count():
    # an excerpt of just the device lines
    assert L.parse_log(lines(IC_12))['mode'] == 'gpu'


# ------------------------------------------------------------------ discovery errors

def test_discovery_errors_are_exposed_with_kinds():
    result = L.parse_log(lines(CONFIG_12, LISTEN_12, DISCOVERY_TIMEOUT, CPU_12, ZERO_VRAM))
    assert [e['kind'] for e in result['discovery_errors']] == ['discovery_timeout']
    assert 'failed to finish discovery before timeout' in result['discovery_errors'][0]['line']


def test_loader_error_before_a_start_belongs_to_that_start():
    a = 'Nov 25 10:00:00 h ollama[10]: '
    b = 'Nov 25 10:05:00 h ollama[11]: '
    result = L.parse_log(lines(a + CONFIG_12, a + LISTEN_12, a + IC_12,
                               b + PRELOAD, b + CONFIG_12, b + LISTEN_12, b + CPU_12))
    assert [e['kind'] for e in result['discovery_errors']] == ['preload_failed']
    # and the previous start does not get it
    first = L.parse_log(lines(a + CONFIG_12, a + LISTEN_12, a + IC_12))
    assert first['discovery_errors'] == []


def test_repeated_loader_errors_are_listed_once():
    result = L.parse_log(lines(PRELOAD, CONFIG_12, LISTEN_12, PRELOAD, PRELOAD, CPU_12))
    assert len(result['discovery_errors']) == 1


@pytest.mark.parametrize('line,kind', [
    ('/usr/local/bin/ollama: symbol lookup error: /usr/lib64/libvgpu-nvml.so: undefined symbol: cuInit',
     'undefined_symbol'),
    ('/usr/local/bin/ollama: error while loading shared libraries: libcuda.so.1: cannot open shared object file',
     'shared_library'),
    ('time=2025-01-01T00:00:00Z level=INFO source=gpu.go:1 msg="no compatible GPUs were discovered"', 'no_gpus'),
    ('time=2025-01-01T00:00:00Z level=WARN source=gpu.go:1 msg="unable to load cuda driver library" '
     'library=/usr/lib64/libcuda.so.1 error="cuda driver library init failure: 999"', 'gpu_warning'),
    ('time=2026-07-17T15:58:04.270Z level=INFO source=runner.go:522 msg="failure during llama-server GPU '
     'discovery" OLLAMA_LIBRARY_PATH="[/usr/lib/ollama /usr/lib/ollama/cuda_v13]" extra_envs=map[] '
     'error="context deadline exceeded" detail=""', 'discovery_timeout'),
])
def test_discovery_error_kinds(line, kind):
    result = L.parse_log(lines(LISTEN_12, line))
    assert [e['kind'] for e in result['discovery_errors']] == [kind]


# ------------------------------------------------------------------ messy input

def test_crlf_and_blank_lines():
    text = '\r\n'.join(['', CONFIG_12, '', LISTEN_12, '   ', IC_12, '']) + '\r\n'
    result = L.parse_log(text)
    assert result['mode'] == 'gpu' and result['devices'][0]['available'] == '79.1 GiB'


def test_wrapped_record_inside_a_quoted_value_is_joined():
    cfg = 'Feb 28 12:37:36 ai-server ollama[854430]: ' + CONFIG_GOLOG
    cut = cfg.index('SCHED_SPREA') + len('SCHED_SPREA')
    text = lines(cfg[:cut], cfg[cut:], LISTEN_12, IC_05)
    result = L.parse_log(text)
    assert result['starts'] == 1 and result['mode'] == 'gpu'
    assert result['evidence'][0].endswith('OLLAMA_SCHED_SPREAD:false]"')


def test_wrapped_record_outside_quotes_is_joined():
    cut1 = IC_037.index('driver=') + 3     # `…dri` / `ver=12.4 …`
    cut2 = IC_037.index(' available=') + 1  # `… ` / `available=…`
    text = lines(LISTEN_12, IC_037[:cut1], IC_037[cut1:cut2], IC_037[cut2:])
    dev = L.parse_log(text)['devices'][0]
    assert dev['driver'] == '12.4' and dev['available'] == '23.4 GiB' and dev['name'] == 'NVIDIA GeForce RTX 3090'


def test_wrapped_record_in_a_quoted_ticket_is_joined():
    cut = IC_12.index(' total=')
    text = lines('> ' + LISTEN_12, '> ' + IC_12[:cut], '> ' + IC_12[cut:])
    assert L.parse_log(text)['devices'][0]['total'] == '79.6 GiB'


def test_lines_that_start_records_are_not_joined():
    text = lines(LISTEN_12, IC_12,
                 'load_backend: loaded CUDA backend from /usr/local/lib/ollama/cuda_v12/libggml-cuda.so',
                 '[GIN] 2025/12/01 - 08:00:05 | 200 | 38.2us | 127.0.0.1 | GET "/api/version"',
                 'releasing cuda driver library')
    result = L.parse_log(text)
    assert result['devices'][0]['available'] == '79.1 GiB'
    assert len(result['evidence']) == 2


def test_loader_error_after_an_slog_line_is_its_own_record():
    result = L.parse_log(lines(LISTEN_12, PRELOAD, CPU_12))
    assert [e['kind'] for e in result['discovery_errors']] == ['preload_failed']


def test_records_without_time():
    text = lines('level=INFO source=routes.go:1564 msg="Listening on 127.0.0.1:11434 (version 0.12.6)"',
                 'level=INFO source=types.go:112 msg="inference compute" id=GPU-1 library=CUDA total="8.0 GiB"')
    result = L.parse_log(text)
    assert result['mode'] == 'gpu' and result['ollama_version'] == '0.12.6' and result['started_at'] is None


# ------------------------------------------------------------------ incremental parsing

def test_feed_in_small_pieces_equals_one_piece():
    with open(os.path.join(CORPUS, '0.5.12-gpu-wrapped-journal.log')) as f:
        text = f.read()
    parser = L.LogParser()
    for i in range(0, len(text), 7):
        parser.feed(text[i:i + 7])
    assert parser.finish() == L.parse_log(text)


def test_snapshot_does_not_change_the_parser():
    parser = L.LogParser().feed(lines(CONFIG_12, LISTEN_12))
    parser.feed(IC_12[:50])
    snap = parser.snapshot()
    assert snap['mode'] == 'unknown' or snap['mode'] == 'gpu'
    parser.feed(IC_12[50:] + '\n')
    assert parser.finish()['devices'][0]['available'] == '79.1 GiB'


def test_verdict_closed_only_after_a_following_complete_record():
    parser = L.LogParser().feed(lines(CONFIG_12, LISTEN_12, IC_12))
    snap = parser.snapshot()
    assert snap['mode'] == 'gpu' and not snap['verdict_closed']
    parser.feed('time=2025-11-25T10:00:01.377Z level=INFO source=types.go:112 msg="inference com')
    assert not parser.snapshot()['verdict_closed']      # a half-written line closes nothing
    parser.feed('pute" id=GPU-2 library=CUDA name=CUDA1 total="79.6 GiB" available="79.1 GiB"\n')
    assert len(parser.snapshot()['devices']) == 2
    parser.feed(ZERO_VRAM.replace('"0 B"', '"159.2 GiB"') + '\n')
    assert parser.snapshot()['verdict_closed']


def test_snapshot_reads_a_last_line_without_newline():
    parser = L.LogParser().feed(LISTEN_12 + '\n' + IC_12)
    assert parser.snapshot()['mode'] == 'gpu'


# ------------------------------------------------------------------ verdict helpers

def _gpu_result():
    return L.parse_log(lines(CONFIG_12, LISTEN_12, IC_12))


def test_check_expectations_ok_and_minimums():
    gpu = _gpu_result()
    assert V.check_expectations(gpu, 'gpu') == []
    assert V.check_expectations(gpu, 'gpu', library='cuda') == []
    assert V.check_expectations(gpu, 'gpu', min_total_vram='64 GiB') == []
    assert 'at least 2 required' in V.check_expectations(gpu, 'gpu', min_devices=2)[0]
    assert 'total VRAM 79.6 GiB, at least 100.0 GiB' in V.check_expectations(gpu, 'gpu', min_total_vram='100 GiB')[0]
    assert V.check_expectations(gpu, 'gpu', library='rocm') == [
        'no ROCm device: Ollama found only CUDA (1 device), so the ROCm shim is not in use']


def test_check_expectations_mode():
    gpu, cpu = _gpu_result(), L.parse_log(lines(LISTEN_12, CPU_12))
    unknown = L.parse_log(lines(LISTEN_12))
    assert V.check_expectations(cpu, 'gpu') == ['Ollama runs in CPU mode, expected GPU']
    assert V.check_expectations(gpu, 'cpu') == ['Ollama runs in GPU mode, expected CPU']
    assert V.check_expectations(cpu, 'cpu', min_devices=3) == []
    assert 'no verdict' in V.check_expectations(unknown, 'gpu')[0]
    for result in (gpu, cpu, unknown):
        assert V.check_expectations(result, 'any') == []
    # with any, minimums apply to GPU mode only
    assert V.check_expectations(gpu, 'any', min_devices=2)


def test_hints():
    cpu_preload = L.parse_log(lines(PRELOAD, CONFIG_12, LISTEN_12, CPU_12))
    assert 'PRELOAD_MISSING_FILE' in V.hint_for(cpu_preload)
    cpu_timeout = L.parse_log(lines(CONFIG_12, LISTEN_12, DISCOVERY_TIMEOUT, CPU_12))
    assert 'DISCOVERY_TIMEOUT' in V.hint_for(cpu_timeout)
    assert 'vgpu_doctor' in V.hint_for(L.parse_log(lines(LISTEN_12, CPU_12)))
    assert 'playbooks/remediate.yml' in V.hint_for(L.parse_log(lines(LISTEN_12, CPU_12)))
    assert 'playbooks/remediate.yml' in V.hint_for(cpu_preload)
    vulkan = L.parse_log(lines(LISTEN_12, IC_12.replace('library=CUDA', 'library=Vulkan')))
    assert 'Vulkan' in V.hint_for(vulkan, 'gpu', 'cuda')
    assert 'raise timeout' in V.hint_for(L.parse_log(lines(LISTEN_12)))
    assert 'no Ollama server start' in V.hint_for(L.parse_log('nothing\n'))


def test_summary_lines():
    vh100 = IC_12.replace('description="NVIDIA H100 80GB HBM3"', 'description=vH100').replace('0.12.6', '0.13.5')
    result = L.parse_log(lines(LISTEN_12.replace('0.12.6', '0.13.5'), vh100))
    assert V.summarize(result) == 'GPU (1 device: vH100 79.6 GiB, CUDA, ollama 0.13.5)'
    cpu = L.parse_log(lines(LISTEN_12, CPU_12))
    problems = V.check_expectations(cpu, 'gpu')
    assert V.summarize(cpu, problems, 'fix it') == \
        'CPU (ollama 0.12.6) \u2014 Ollama runs in CPU mode, expected GPU: fix it'
    multi = L.parse_log(lines(LISTEN_12, IC_12, IC_12.replace('GPU-3f6e', 'GPU-0000')))
    assert V.summarize(multi).startswith('GPU (2 devices: NVIDIA H100 80GB HBM3 79.6 GiB + NVIDIA H100')


def test_loader_error_of_the_previous_process_stays_there_with_journald_pids():
    a = 'Nov 25 10:00:00 h ollama[10]: '
    b = 'Nov 25 10:05:00 h ollama[11]: '
    parser = L.LogParser().feed(lines(a + CONFIG_12, a + LISTEN_12, a + PRELOAD))
    result = parser.feed(lines(b + CONFIG_12, b + LISTEN_12, b + IC_12)).finish()
    assert result['discovery_errors'] == [] and result['mode'] == 'gpu'


# ------------------------------------------------------------------ libraries: the verdict means the shim
#
# Ollama v0.30.11 log lines, format from upstream: server config routes.go:1961, Listening routes.go:2023,
# discovery runner.go:60 and :513, LogDetails discover/types.go:32 (GPU) / :50 (CPU), vram-based default context
# routes.go:2073 (all @v0.30.11). A llama-server device's id is its index, renumbered per library after
# filtering with the old index kept as filter_id (discover/runner.go:177-197, llama_server.go:325-327); Vulkan
# has no compute capability and no CUDA driver version (computeVersion, llama_server.go:455-465; DriverMajor is
# set from the CUDA probe only, :352-354), so compute=0.0 driver=0.0 (ml/device.go:344-354); the PCI id comes
# from the native probe (llama_server.go:339-341); libdirs are the lib/ollama dirs (types.go:22-27).
# OLLAMA_VULKAN defaults to on (envconfig/config.go:234, runner.go:99) and a CUDA/Vulkan duplicate of one PCI
# id keeps CUDA (runner.go:200-213, ml/device.go:451-459 and :678-686): Vulkan alone means CUDA found nothing.
CONFIG_30 = ('time=2026-03-02T09:15:00.101Z level=INFO source=routes.go:1961 msg="server config" '
             'env="map[CUDA_VISIBLE_DEVICES: GGML_VK_VISIBLE_DEVICES: OLLAMA_DEBUG:INFO '
             'OLLAMA_HOST:http://127.0.0.1:11434 OLLAMA_LLM_LIBRARY: OLLAMA_VULKAN:true]"')
LISTEN_30 = ('time=2026-03-02T09:15:00.106Z level=INFO source=routes.go:2023 '
             'msg="Listening on 127.0.0.1:11434 (version 0.30.11)"')
DISCOVERING_30 = ('time=2026-03-02T09:15:00.107Z level=INFO source=runner.go:60 '
                  'msg="discovering available GPUs..."')
CUDA_FAILED_30 = ('time=2026-03-02T09:15:01.010Z level=INFO source=runner.go:513 msg="failure during llama-server '
                  'GPU discovery" OLLAMA_LIBRARY_PATH="[/usr/local/lib/ollama /usr/local/lib/ollama/cuda_v12]" '
                  'extra_envs=map[] error="exit status 1" detail="ggml_cuda_init: failed to initialize CUDA: no '
                  'CUDA-capable device is detected"')
IC_30_CUDA = ('time=2026-03-02T09:15:01.512Z level=INFO source=types.go:32 msg="inference compute" id=0 '
              'filter_id=0 library=CUDA compute=9.0 name=CUDA0 description="NVIDIA H100 80GB HBM3" '
              'libdirs=ollama,cuda_v12 driver=12.8 pci_id=0000:00:05.0 type=discrete total="79.6 GiB" '
              'available="79.1 GiB"')
IC_30_VULKAN = ('time=2026-03-02T09:15:01.512Z level=INFO source=types.go:32 msg="inference compute" id=0 '
                'filter_id=0 library=Vulkan compute=0.0 name=Vulkan0 description="NVIDIA H100 80GB HBM3" '
                'libdirs=ollama,vulkan driver=0.0 pci_id=0000:00:05.0 type=discrete total="79.6 GiB" '
                'available="79.1 GiB"')
# a second, different discrete GPU only Vulkan drives (its duplicate Vulkan0 of the H100 was dropped for CUDA0)
IC_30_VULKAN_OTHER = ('time=2026-03-02T09:15:01.512Z level=INFO source=types.go:32 msg="inference compute" id=1 '
                      'filter_id=1 library=Vulkan compute=0.0 name=Vulkan1 description="AMD Radeon Pro W7600" '
                      'libdirs=ollama,vulkan driver=0.0 pci_id=0000:00:06.0 type=discrete total="8.0 GiB" '
                      'available="7.8 GiB"')
CPU_30 = ('time=2026-03-02T09:15:31.200Z level=INFO source=types.go:50 msg="inference compute" id=cpu '
          'library=cpu compute="" name=cpu description=cpu libdirs=ollama driver="" pci_id="" type="" '
          'total="31.3 GiB" available="29.8 GiB"')
CTX_30 = ('time=2026-03-02T09:15:01.513Z level=INFO source=routes.go:2073 msg="vram-based default context" '
          'total_vram="79.6 GiB" default_num_ctx=262144')


def _vulkan_only():
    return L.parse_log(lines(CONFIG_30, LISTEN_30, DISCOVERING_30, CUDA_FAILED_30, IC_30_VULKAN, CTX_30))


def test_v0_30_vulkan_device_fields():
    result = _vulkan_only()
    assert result['mode'] == 'gpu' and result['ollama_version'] == '0.30.11' and result['starts'] == 1
    dev = result['devices'][0]
    assert (dev['id'], dev['filter_id'], dev['library'], dev['compute'], dev['driver'], dev['name']) == \
        ('0', '0', 'Vulkan', '0.0', '0.0', 'Vulkan0')
    assert dev['libdirs'] == 'ollama,vulkan' and dev['pci_id'] == '0000:00:05.0'
    assert result['libraries'] == ['Vulkan'] and result['verdict_closed']
    assert [e['kind'] for e in result['discovery_errors']] == ['discovery_failed']


@pytest.mark.parametrize('library,expected', [
    (None, []), ('', []), ([], []), ([''], []), ('cuda', ['cuda']), ('CUDA', ['cuda']),
    ('cuda,rocm', ['cuda', 'rocm']), ('cuda, ROCm cuda', ['cuda', 'rocm']), (['CUDA', 'rocm,cuda'], ['cuda', 'rocm']),
])
def test_normalize_libraries(library, expected):
    assert V.normalize_libraries(library) == expected


def test_judge_vulkan_only_against_the_cuda_shim():
    judged = V.judge_libraries(_vulkan_only(), 'cuda')
    assert judged['verdict'] == 'other_library' and judged['library_devices'] == []
    assert judged['libraries'] == ['Vulkan'] and judged['required_libraries'] == ['cuda']
    assert [d['name'] for d in judged['other_devices']] == ['Vulkan0']
    # any library (an explicit '' / []): Vulkan is a GPU
    assert V.judge_libraries(_vulkan_only(), '')['verdict'] == 'gpu'
    assert V.judge_libraries(_vulkan_only(), ['cuda', 'vulkan'])['verdict'] == 'gpu'


def test_judge_cuda_beside_another_vulkan_gpu_counts_only_the_cuda_device():
    result = L.parse_log(lines(CONFIG_30, LISTEN_30, IC_30_CUDA, IC_30_VULKAN_OTHER, CTX_30))
    judged = V.judge_libraries(result, 'cuda')
    assert judged['verdict'] == 'gpu' and result['libraries'] == ['CUDA', 'Vulkan']
    assert [d['name'] for d in judged['library_devices']] == ['CUDA0']
    assert V.check_expectations(result, 'gpu', library='cuda') == []
    # the minimums count the shim's devices only
    assert V.check_expectations(result, 'gpu', min_devices=2, library='cuda') == [
        '1 GPU device(s) of library CUDA, at least 2 required']
    assert V.check_expectations(result, 'gpu', min_devices=2) == []
    assert V.check_expectations(result, 'gpu', min_total_vram='80 GiB', library='cuda') == [
        'total VRAM 79.6 GiB, at least 80.0 GiB required']


def test_judge_cpu_and_unknown_keep_their_mode():
    cpu = L.parse_log(lines(CONFIG_30, LISTEN_30, CUDA_FAILED_30, CPU_30))
    assert V.judge_libraries(cpu, 'cuda')['verdict'] == 'cpu'
    assert V.judge_libraries(L.parse_log(lines(CONFIG_30, LISTEN_30)), 'cuda')['verdict'] == 'unknown'


def test_vulkan_only_fails_a_cuda_expectation_plainly():
    result = _vulkan_only()
    problems = V.check_expectations(result, 'gpu', library='cuda')
    assert problems == ['no CUDA device: Ollama found only Vulkan (1 device), so the CUDA shim is not in use']
    # expect=any: the mode is never a problem, but a GPU start is still judged against the shim's library
    assert V.check_expectations(result, 'any', library='cuda') == problems
    assert V.check_expectations(result, 'gpu', library='') == []
    hint = V.hint_for(result, 'gpu', 'cuda')
    assert 'fell back to Vulkan' in hint and 'playbooks/remediate.yml' in hint and 'LD_PRELOAD' in hint
    assert V.summarize(result, problems, hint, 'cuda') == (
        'VULKAN ONLY (1 device: NVIDIA H100 80GB HBM3 79.6 GiB, Vulkan, ollama 0.30.11) \u2014 no CUDA device: '
        'Ollama found only Vulkan (1 device), so the CUDA shim is not in use: ' + hint)
    # without the library the line stays what Ollama logged
    assert V.summarize(result).startswith('GPU (1 device: NVIDIA H100 80GB HBM3 79.6 GiB, Vulkan, ollama 0.30.11)')


def test_cuda_start_summary_is_unchanged_with_the_library():
    result = L.parse_log(lines(CONFIG_30, LISTEN_30, IC_30_CUDA, CTX_30))
    assert V.summarize(result, library='cuda') == 'GPU (1 device: NVIDIA H100 80GB HBM3 79.6 GiB, CUDA, ollama 0.30.11)'


def test_libraries_key_in_log_order_and_cpu_has_none():
    result = L.parse_log(lines(LISTEN_30, IC_30_VULKAN_OTHER, IC_30_CUDA))
    assert result['libraries'] == ['Vulkan', 'CUDA']
    assert L.parse_log(lines(LISTEN_30, CPU_30))['libraries'] == []
