#!/usr/bin/python
# -*- coding: utf-8 -*-
# Say whether the current Ollama start runs on the GPU, from Ollama's own log (restarting it first on request).

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: ollama_gpu_mode
short_description: Tell whether the current Ollama server start runs in GPU or CPU mode
description:
  - Reads the log of the current Ollama server start and returns its mode (C(gpu), C(cpu) or C(unknown)),
    one entry per C(inference compute) GPU line, the Ollama version and the log lines the verdict rests on.
  - "Only the B(last) server start counts. A start is a C(server config) line and/or the
    C(Listening on ...) line (with the version) that follows it, in every log format Ollama has used
    (slog text, and the pre-slog C(2025/02/28 12:37:36 routes.go:1215: INFO server config env=...) form)."
  - GPU mode means at least one C(inference compute) line of that start whose C(library) is not C(cpu)
    (CUDA, ROCm, Vulkan, Metal, any case). CPU mode means only C(library=cpu) lines, or no such line but
    C("total vram"="0 B"). C(entering low vram mode) on a GPU under 20 GiB is not a CPU sign. C(mode) always
    says what Ollama logged.
  - "I(library) says which GPU libraries your shims serve (C(cuda) for a CUDA shim). Since Ollama 0.30 Vulkan
    is probed by default and a device that CUDA and Vulkan both report is kept as CUDA, so a host whose CUDA
    shim fails can still log C(library=Vulkan) for the same GPU: that start is C(verdict=other_library),
    summarized as C(VULKAN ONLY (1 device: ..., Vulkan, ollama 0.30.1) - no CUDA device: Ollama found only
    Vulkan (1 device), so the CUDA shim is not in use: <hint>), and fails I(expect=gpu)."
  - Live mode (no I(log_path)) follows the log of the unit's current invocation as it grows and returns as
    soon as the start's verdict is written - within about half a second of the C(inference compute) line -
    or fails after I(timeout) seconds. journald is read with
    C(journalctl -f _SYSTEMD_INVOCATION_ID=<InvocationID>) (or the main PID of this boot, for journals
    without invocation IDs), or by re-running that query every 0.1 s when journalctl cannot follow
    (C(Insufficient watch descriptors available) - the inotify instances are used up); a file sink
    (C(StandardError=append:/path)) is read from the last server start in the file that is not older
    than the unit's C(ExecMainStartTimestamp).
  - With I(log_path) the module reads only that file (a saved C(journalctl -u ollama) output with or
    without journald prefixes, docker logs, bare slog lines, a C(StandardError=) file, a pasted ticket
    with C(> ) quotes or wrapped lines) and touches nothing else on the host; it still follows the file
    while it is being written - while a process holds it open for writing (a C(StandardError=append:) sink,
    C(journalctl -f >> file)) or it changed in the last half second - up to I(timeout). A saved file that
    nothing writes any more is judged at once, whatever I(timeout) says (C(log_complete=true)); a start that
    had not reported its devices when the file was saved is then C(unknown) at once, not after I(timeout).
    Only root sees every process's descriptors; for anyone else a file counts as being written until it has
    not changed for 150 s (use C(timeout=0) there for a file you know is complete).
  - Fails with what it found and a hint when the mode differs from I(expect), when the start has no
    verdict within I(timeout) (or in a complete saved file), or when the GPUs are fewer, smaller or of another
    library than asked for. The failed result carries every return value as well (C(mode), C(verdict),
    C(devices), C(problems), C(summary)).
  - With I(api_url) it also waits, within the same I(timeout) (but one second at least), for
    C(GET <api_url>/api/version) to answer 200 and returns what it got as C(api). An API that does not
    answer is reported there, never as a module failure.
  - "The verdict weighs every signal it was asked for - the log, the API (I(api_required)) and a smoke load
    (I(smoke_model)) - into C(ok), C(problems) and one C(summary) line; with I(fail=false) a wrong verdict is
    only recorded there (the C(gpu_mode) role's C(gpu_mode_fail=false))."
  - Read-only unless I(restart=true) - then it restarts the unit first and follows the new start in the same
    run, so no task boundary (and, under the linear strategy, no wait for the other hosts) lies between
    the restart and the verdict. C(changed) is true only when it restarted (or, in check mode, would have).
version_added: "1.0.0"
author: vgpu toolkit contributors
options:
  expect:
    description:
      - The mode the current start must be in. With C(any) the mode never fails the task (neither does
        C(unknown)), and I(library) and the device minimums apply only when the mode is C(gpu).
    type: str
    choices: [gpu, cpu, any]
    default: gpu
  log_path:
    description:
      - Judge this saved log file instead of the live unit (support tickets, CI). I(unit) and I(source)
        are then ignored and nothing on the host is queried.
    type: path
  unit:
    description: The Ollama systemd unit.
    type: str
    default: ollama.service
  source:
    description:
      - Where the live log is read.
      - C(auto) uses the sink the unit really writes its standard error to (C(systemctl show -p
        StandardError,StandardOutput), file paths from the unit file and its drop-ins) - journald, or a
        C(file:)/C(append:)/C(truncate:) path.
      - C(journal) and C(file) force one; C(file) still takes the path from the unit.
    type: str
    choices: [auto, journal, file]
    default: auto
  timeout:
    description:
      - Seconds to wait for the verdict of the current start (the log is followed as it grows; the module
        returns as soon as the verdict is there).
    type: float
    default: 60
  min_devices:
    description: Minimum number of GPU devices (counted among those of I(library) when it is set).
    type: int
    default: 1
  min_total_vram:
    description:
      - Minimum total VRAM over the GPU devices (of I(library) when set), for example C(16 GiB), C(80GB),
        or a number of bytes. GiB/MiB/G/M are powers of 1024, GB/MB powers of 1000.
    type: raw
  library:
    description:
      - The GPU libraries your shims serve - the devices that count - compared case-insensitively with the
        C(library=) of each device (C(cuda) matches C(CUDA)). A name, a list, or a comma-separated text
        (C(cuda,rocm)).
      - A GPU start none of whose devices is of these libraries (a C(Vulkan) fallback beside a failing CUDA
        shim) is C(verdict=other_library) and fails I(expect=gpu) (and I(expect=any)); I(min_devices) and
        I(min_total_vram) count only these devices.
      - Unset or empty - any GPU library counts (the C(gpu_mode) role passes C(cuda) when the inventory
        installs a CUDA shim, C(vgpu_shim_cuda_src)).
    type: list
    elements: str
  api_url:
    description:
      - Base URL of the Ollama API on the host, for example C(http://127.0.0.1:11434). When set, the module
        also waits for C(GET <api_url>/api/version) to answer 200 and returns the answer as C(api). It
        asks after the log is read, every 0.2 s until the I(timeout) deadline (measured from the start
        of the module, and at least one second from it); it always asks at least once.
      - Proxy environment variables are ignored for a loopback address.
    type: str
  api_required:
    description:
      - Count an API that does not answer C(/api/version) within I(timeout) as a problem (the task fails,
        C(ok=false)). Otherwise the answer is only reported in C(api).
    type: bool
    default: false
  smoke_model:
    description:
      - A model already pulled on the host to load as a second, independent signal - C(POST /api/generate)
        with an empty prompt (it only loads the model), then C(GET /api/ps). Its C(size_vram) must be above 0
        for I(expect=gpu) and 0 for I(expect=cpu). Needs I(api_url). The load uses memory only, so it also
        runs in check mode. Empty - no smoke load.
    type: str
    default: ''
  smoke_timeout:
    description: Seconds the smoke load may take (a cold model load).
    type: float
    default: 300
  restart:
    description:
      - Restart I(unit) first (C(systemctl restart)) so that a fresh start is judged; the new start is
        followed in the same run. In check mode nothing is restarted and the running start is judged.
      - Not with I(log_path).
    type: bool
    default: false
  fail:
    description:
      - Fail the task when the verdict is not the expected one (or a signal asked for disagrees). With
        C(false) the result only records it - C(ok=false), C(problems), C(summary) - also when the unit is
        not running or the arguments are wrong.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: The module only reads (the log, the API's version with I(api_url), a smoke load into
      memory); with I(restart=true) check mode reports C(changed) and judges the running start instead.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
notes:
  - Live mode needs to read the journal (root or the C(systemd-journal) group) or the log file.
  - Parser rules and the accepted log shapes are documented in C(module_utils/ollama_log.py).
seealso:
  - name: Ollama troubleshooting (server logs)
    description: Where Ollama writes its logs on each platform.
    link: https://github.com/ollama/ollama/blob/main/docs/troubleshooting.md
'''

EXAMPLES = r'''
- name: Fail unless the current Ollama start found at least one CUDA GPU with 16 GiB or more
  ollama_gpu_mode:
    expect: gpu
    library: cuda
    min_total_vram: 16 GiB
    timeout: 90
  register: gpu_mode

- name: Judge a log attached to a support ticket (on the controller, nothing on any host is touched)
  ollama_gpu_mode:
    log_path: /tmp/ticket-4711/ollama.log
    expect: any
    library: cuda
    timeout: 0          # a complete file is judged at once anyway; 0 also covers a non-root controller
  delegate_to: localhost
  register: ticket_verdict
  # ticket_verdict.verdict is other_library when that host only had a Vulkan device (CUDA shim not in use)

- name: Accept any GPU library (a host without a CUDA shim, judged on what Ollama found)
  ollama_gpu_mode:
    library: []

- name: Judge the current start and wait for its API in the same run
  ollama_gpu_mode:
    api_url: http://127.0.0.1:11434
  register: gpu_mode
  # gpu_mode.api.status is 200 and gpu_mode.api.version the server's version once the API answered

- name: Restart, judge the fresh start, wait for the API and load a model - recorded, never failed
  ollama_gpu_mode:
    restart: true
    api_url: http://127.0.0.1:11434
    api_required: true
    smoke_model: llama3.2:1b
    fail: false
  register: gpu_mode_result
  # gpu_mode_result.ok, .problems and .summary weigh all three signals

- name: Read a unit that logs to a file
  ollama_gpu_mode:
    unit: ollama.service
    source: file
'''

RETURN = r'''
ok:
  description: True when no signal that was asked for disagrees with I(expect) - C(problems) is empty.
  returned: always
  type: bool
  sample: true
restarted:
  description: Whether the unit was restarted before it was judged (I(restart=true), not in check mode).
  returned: always
  type: bool
  sample: false
smoke:
  description: The smoke load - C(model), C(loaded) (the load answered 200), C(status), C(error), C(size_vram)
    (bytes of the model in VRAM, from C(/api/ps)).
  returned: when I(smoke_model) is set and the log was read
  type: dict
  sample:
    model: llama3.2:1b
    loaded: true
    status: 200
    error: ""
    size_vram: 1300000000
mode:
  description: What Ollama logged - C(gpu), C(cpu), or C(unknown) when the start has not reported its compute
    devices (yet). A Vulkan-only start is C(gpu) here; see C(verdict).
  returned: always
  type: str
  sample: gpu
verdict:
  description:
    - The mode judged against I(library) - C(gpu) (a device of I(library); any GPU device when I(library) is
      empty), C(cpu), C(unknown), or C(other_library) (Ollama is in GPU mode, but on other libraries only, for
      example Vulkan beside a CUDA shim that is not in use).
  returned: always
  type: str
  sample: other_library
libraries:
  description: The libraries of the GPU devices of the current start, as logged, in log order.
  returned: always
  type: list
  elements: str
  sample: [Vulkan]
required_libraries:
  description: I(library), normalized (lower case, no duplicates); empty means any GPU library counts.
  returned: always
  type: list
  elements: str
  sample: [cuda]
library_devices:
  description: The entries of C(devices) whose library is one of I(library) (all of C(devices) when I(library) is
    empty) - with the role's default, the devices the CUDA shim serves. The minimums count these.
  returned: always
  type: list
  elements: dict
log_complete:
  description: True when I(log_path) was read to its end and nothing writes it any more (a saved file), so the
    verdict - C(unknown) included - came without waiting; false for a file still being written (the verdict
    came while following it, or I(timeout) passed) and in live mode.
  returned: always
  type: bool
devices:
  description:
    - One entry per C(inference compute) GPU line of the current start (CPU lines are not devices).
      Fields absent in a given Ollama era are null (C(variant) before 0.3.8, C(description) and C(pci_id)
      before 0.12.4).
  returned: always
  type: list
  elements: dict
  sample:
    - id: GPU-452cac9f-6960-839c-4fb3-0cec83699196
      filter_id: null
      library: CUDA
      variant: null
      name: CUDA0
      description: NVIDIA H100 80GB HBM3
      compute: "9.0"
      driver: "12.8"
      pci_id: "0000:00:05.0"
      type: discrete
      libdirs: ollama,cuda_v12
      total: 79.6 GiB
      available: 79.1 GiB
      total_bytes: 85469849190
      available_bytes: 84932978278
ollama_version:
  description: Version from the C(Listening on ...) line of the start (its C(version X) part), null if there is none.
  returned: always
  type: str
  sample: 0.12.6
started_at:
  description: Timestamp of the start line as written in the log.
  returned: always
  type: str
  sample: "2025-11-25T10:00:00.000Z"
log_source:
  description: What was read - C(file:<path>) or C(journal:<journalctl match>).
  returned: always
  type: str
  sample: journal:_SYSTEMD_INVOCATION_ID=5e3b2a8c1f0d4e7a9b6c3d2e1f0a9b8c
evidence:
  description: The log lines the verdict rests on (start line, C(inference compute) lines, total-VRAM
    line), prefixes removed, each cut to 400 characters.
  returned: always
  type: list
  elements: str
discovery_errors:
  description:
    - Lines of the current start that explain a failed GPU discovery, each with a C(kind) -
      C(preload_failed) (C(cannot be preloaded)), C(undefined_symbol), C(shared_library),
      C(discovery_timeout), C(discovery_failed), C(no_gpus) (C(no compatible GPUs were discovered)),
      C(gpu_warning) (WARN/ERROR lines about GPUs, drivers or libraries).
  returned: always
  type: list
  elements: dict
  sample:
    - kind: discovery_timeout
      line: time=... msg="failure during GPU discovery" ... error="failed to finish discovery before timeout"
waited:
  description: Seconds spent reading/following the log.
  returned: always
  type: float
  sample: 0.31
starts:
  description: Number of server starts seen in what was read (only the last one is judged).
  returned: always
  type: int
total_vram:
  description: Sum of C(total_bytes) over C(devices).
  returned: always
  type: int
low_vram:
  description: The C(entering low vram mode) values of a GPU start (C(total_vram), C(threshold)), or null.
  returned: always
  type: dict
problems:
  description: Why the verdict is not what was asked for - the log's problems first, then the API's
    (I(api_required)) and the smoke load's; empty on success.
  returned: always
  type: list
  elements: str
hint:
  description: What to look at next (empty when there is nothing to fix).
  returned: always
  type: str
summary:
  description: "One human line, for example: GPU (1 device: NVIDIA H100 80GB HBM3 79.6 GiB, CUDA, ollama 0.12.6)."
  returned: always
  type: str
  sample: "GPU (1 device: vH100 79.6 GiB, CUDA, ollama 0.13.5)"
  # with a smoke load: GPU (...); smoke load of llama3.2:1b: 1.2 GiB in VRAM
  # VULKAN ONLY (1 device: NVIDIA H100 80GB HBM3 79.6 GiB, Vulkan, ollama 0.30.1) - no CUDA device: ...
api:
  description:
    - The answer of C(GET <api_url>/api/version) - C(status) is the HTTP status of the last try (200 once
      it answered; 0 when nothing answered in time), C(version) the C(version) of its JSON body (null if
      none), C(msg) what went wrong (C(OK) on success).
  returned: when I(api_url) is set and the log was read
  type: dict
  sample:
    status: 200
    version: 0.13.5
    msg: OK
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ollama_follow import LOG_UNIT_PROPERTIES, follow_log, open_current_log
from ansible.module_utils.ollama_log_record import parse_size
from ansible.module_utils.ollama_signals import api_problems, probe_api, smoke_load, smoke_problems, weigh
from ansible.module_utils.ollama_verdict import (check_expectations, hint_for, judge_libraries,
                                                 normalize_libraries, summarize, total_vram_bytes)
from ansible.module_utils.vgpu_systemctl import systemctl_show, try_systemctl_show, unit_start_epoch

# the states in which the unit's main process serves (wait_for_unit waits through `activating`)
SERVING_STATES = ('active', 'reloading')
# what wait_for_unit asks `systemctl show` for: whether the unit serves, and where its current invocation logs
SERVING_PROPERTIES = ('LoadState', 'ActiveState', 'SubState') + LOG_UNIT_PROPERTIES


def wait_for_unit(module, unit, deadline):
    """systemctl show of a loaded, running unit; waits through `activating` (auto-restart) until deadline."""
    while True:
        props = systemctl_show(module, unit, SERVING_PROPERTIES)
        if props.get('LoadState') != 'loaded':
            fail_early(module, 'unit %s is not installed (LoadState=%s): install Ollama first, or set unit '
                               'to the unit that runs it' % (unit, props.get('LoadState', '?')), 'unit:%s' % unit)
        state = props.get('ActiveState')
        if state in SERVING_STATES and props.get('MainPID', '0') != '0':
            return props
        if state != 'activating' or time.time() >= deadline:
            fail_early(module, 'unit %s is not running (ActiveState=%s, SubState=%s): start it '
                               '(systemctl start %s) and look at journalctl -u %s -n 50 if it keeps failing'
                               % (unit, state, props.get('SubState'), unit, unit), 'unit:%s' % unit)
        time.sleep(0.2)


def fail_early(module, msg, log_source):
    """Stop before any log was read: every return key present, the reason in problems and summary; a
    failure unless fail=false (then ok=false says it)."""
    params = getattr(module, 'params', None) or {}
    restarted = getattr(module, 'vgpu_restarted', False)
    out = dict(changed=getattr(module, 'vgpu_restart_asked', False), restarted=restarted, ok=False,
               mode='unknown', verdict='unknown', devices=[],
               libraries=[], required_libraries=normalize_libraries(params.get('library')), library_devices=[],
               ollama_version=None, started_at=None, log_source=log_source, evidence=[],
               discovery_errors=[], waited=0.0, starts=0, total_vram=0, low_vram=None, log_complete=False,
               problems=[msg], hint='', summary='UNKNOWN \u2014 ' + msg)
    if params.get('fail', True):
        module.fail_json(msg=msg, **out)
    module.exit_json(msg=msg, **out)


def restart_unit(module, unit):
    """systemctl restart: a fresh start to judge, followed by this same run (no task boundary between the
    restart and the verdict). Check mode only says it would restart."""
    module.vgpu_restart_asked = True
    if module.check_mode:
        return
    systemctl = module.get_bin_path('systemctl', required=True)
    rc, out, err = module.run_command([systemctl, 'restart', unit])
    if rc != 0:
        last = ((err or out).strip().splitlines() or ['no output'])[-1]
        fail_early(module, 'systemctl restart %s failed (rc=%d): %s - see journalctl -u %s -n 50'
                           % (unit, rc, last, unit), 'unit:%s' % unit)
    module.vgpu_restarted = True


def live_source(module, unit, source, deadline):
    """(log source, description, accept_start, systemctl show props) for the unit's current invocation."""
    props = wait_for_unit(module, unit, deadline)
    spec = open_current_log(props, unit, source=source,
                            journalctl=lambda: module.get_bin_path('journalctl', required=True),
                            started=lambda: unit_start_epoch(module, unit))
    if spec.reason == 'no_file_sink':
        fail_early(module, 'source=file but unit %s has no file sink (%s): use source=journal or '
                           'log_path' % (unit, spec.setting), 'unit:%s' % unit)
    if spec.kind is None:
        fail_early(module, 'unit %s sends its log where this module cannot read it (%s): set log_path to a '
                           'saved log, or send StandardError to journal or a file' % (unit, spec.setting),
                   'unit:%s' % unit)
    # a file sink that does not exist (yet) is waited for, one that cannot be read says so at the end
    return spec.open(), spec.desc, spec.accept_start, props

def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            expect=dict(type='str', default='gpu', choices=['gpu', 'cpu', 'any']),
            log_path=dict(type='path'),
            unit=dict(type='str', default='ollama.service'),
            source=dict(type='str', default='auto', choices=['auto', 'journal', 'file']),
            timeout=dict(type='float', default=60),
            min_devices=dict(type='int', default=1),
            min_total_vram=dict(type='raw'),
            library=dict(type='list', elements='str'),
            api_url=dict(type='str'),
            api_required=dict(type='bool', default=False),
            smoke_model=dict(type='str', default=''),
            smoke_timeout=dict(type='float', default=300),
            restart=dict(type='bool', default=False),
            fail=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p['timeout'] < 0:
        fail_early(module, 'timeout must be 0 or more seconds, got %s' % p['timeout'], '')
    if p['min_total_vram'] not in (None, '') and parse_size(p['min_total_vram']) is None:
        fail_early(module, 'min_total_vram %r is not a size: write it like "16 GiB", "80GB" or a number of '
                           'bytes' % (p['min_total_vram'],), '')
    if p['restart'] and p['log_path']:
        fail_early(module, 'restart applies to the live unit, log_path to a saved log: set one of them', '')
    if p['smoke_model'] and not p['api_url']:
        fail_early(module, 'smoke_model %s needs api_url (the API that loads it)' % p['smoke_model'], '')
    module.vgpu_restarted = module.vgpu_restart_asked = False
    if p['restart']:
        restart_unit(module, p['unit'])
    began = time.time()
    deadline = began + p['timeout']

    if p['log_path']:
        spec = open_current_log(None, p['unit'], log_path=p['log_path'])
        if spec.error:
            fail_early(module, 'log_path %s is not a readable file' % p['log_path'], spec.desc)
        # a saved file is judged as soon as it is read; one still being written is followed
        source, description, accept, props = spec.open(), spec.desc, None, None
    else:
        source, description, accept, props = live_source(module, p['unit'], p['source'], deadline)

    try:
        remaining = max(0.0, deadline - time.time())
        result, _waited, reason = follow_log(source, remaining, accept_start=accept)
        # a saved file: read to its end and nothing writes it (also when the verdict came before the end)
        complete = p['log_path'] is not None and source.is_complete()
    finally:
        source.close()
    source_error = getattr(source, 'error', None)

    devices = result['devices']
    library = normalize_libraries(p['library'])
    judged = judge_libraries(result, library)
    problems = check_expectations(result, p['expect'], p['min_devices'], p['min_total_vram'], library)
    hint = hint_for(result, p['expect'], library) if problems else ''
    if problems and result['mode'] == 'unknown' and complete:
        # the whole file was read and nothing writes it: waiting longer cannot bring a verdict
        problems[0] = 'no verdict: the log ends before its last Ollama start reported its compute devices ' \
                      '(%s %s)' % (p['log_path'], source.complete)
        if result['starts']:
            hint = 'the log was saved before discovery finished: save it again once the "inference compute" ' \
                   'lines are there (journalctl -u ollama -b), or judge the live unit (leave log_path unset)'
    elif problems and result['mode'] == 'unknown':
        if result.get('stale_start'):
            hint = ('the log file still ends with the previous process\'s start: the current one has '
                    'written nothing there within %s s (is the unit logging elsewhere now?)' % p['timeout'])
        if source_error:
            hint += ' (%s said: %s)' % ('journalctl' if description.startswith('journal:') else 'reading',
                                        source_error.splitlines()[-1])
        if props is not None:
            now, _err = try_systemctl_show(module, p['unit'], ['InvocationID', 'ActiveState', 'SubState'])
            if now and now.get('InvocationID') != props.get('InvocationID'):
                hint += ' (the unit restarted while waiting - now %s/%s: a crash loop? journalctl -u %s -n 50)' % (
                    now.get('ActiveState'), now.get('SubState'), p['unit'])
        problems[0] += ' within %s s' % p['timeout']
    out = dict(
        changed=False,
        mode=result['mode'],
        verdict=judged['verdict'],
        devices=devices,
        libraries=judged['libraries'],
        required_libraries=judged['required_libraries'],
        library_devices=judged['library_devices'],
        ollama_version=result['ollama_version'],
        started_at=result['started_at'],
        log_source=description,
        evidence=result['evidence'],
        discovery_errors=result['discovery_errors'],
        waited=round(time.time() - began, 3),
        starts=result['starts'],
        total_vram=total_vram_bytes(devices),
        low_vram=result['low_vram'],
        log_complete=complete,
        problems=problems,
        hint=hint,
        summary=summarize(result, problems, hint, library),
    )
    extra = []
    if p['api_url']:
        # after the log: once discovery has reported, the API normally answers the first GET. Same
        # deadline (a log that used it all leaves one try), but a second at least, for timeout=0
        out['api'] = probe_api(p['api_url'], max(deadline, began + 1.0))
        if p['api_required']:
            extra += api_problems(out['api'], p['api_url'], p['timeout'])
    smoke = None
    if p['smoke_model']:
        # the load uses memory only: it runs in check mode too
        smoke = out['smoke'] = smoke_load(p['api_url'], p['smoke_model'], p['smoke_timeout'])
        extra += smoke_problems(smoke, p['expect'])
    out.update(problems=problems + extra, summary=weigh(out['summary'], problems, extra, smoke),
               ok=not (problems or extra), changed=p['restart'], restarted=module.vgpu_restarted)
    if not out['ok'] and p['fail']:
        msg = out['summary']
        if problems:
            found = 'found mode %s' % result['mode']
            if judged['verdict'] == 'other_library':
                found = 'found mode gpu on %s only' % ' and '.join(judged['libraries'])
            if devices:
                found += ' with %d GPU(s): %s' % (len(devices), ', '.join(
                    '%s %s %s' % (d.get('library'), d.get('description') or d.get('name'), d.get('total'))
                    for d in devices))
            if result['ollama_version']:
                found += ', ollama %s' % result['ollama_version']
            if result['started_at']:
                found += ', started %s' % result['started_at']
            msg = '%s (%s; log: %s).' % ('; '.join(problems + extra), found, description)
            msg += ' Hint: %s' % hint if hint else ''
        module.fail_json(msg=msg, **out)
    module.exit_json(**out)


def main():
    run_module()


if __name__ == '__main__':
    main()
