# -*- coding: utf-8 -*-
# Benchmark timing callback (bench/run enables it): one JSON line per event into $BENCH_TIMER_OUT.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: bench_timer
type: aggregate
short_description: Write per-task, per-host timings as JSON lines (for bench/run)
description:
  - Appends one JSON object per event to the file named by C(BENCH_TIMER_OUT) - playbook start, task
    start, each host's result (ok/changed/failed/skipped/unreachable) with the controller's wall clock
    at the moment the result arrived, and the recap.
  - The result of C(ollama_gpu_mode) tasks adds mode, waited and log_source; tasks whose name starts
    with C(Record ) add their stdout (how bench playbooks hand data to bench/run).
  - Times are the controller's C(time.time()); the simulated hosts share this machine's clock, so they
    can be compared with journald's C(__REALTIME_TIMESTAMP) on a host.
requirements:
  - enabled with C(ANSIBLE_CALLBACKS_ENABLED=bench_timer) and C(ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins)
'''

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'bench_timer'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        path = os.environ.get('BENCH_TIMER_OUT')
        self._out = open(path, 'a') if path else None
        self._task = None

    def _emit(self, **event):
        if self._out is None:
            return
        event['t'] = time.time()
        self._out.write(json.dumps(event, sort_keys=True) + '\n')
        self._out.flush()

    @staticmethod
    def _task_info(task):
        role = getattr(task, '_role', None)
        return {'task': task.get_name(), 'action': task.action, 'uuid': task._uuid,
                'role': role.get_name() if role else None}

    def v2_playbook_on_start(self, playbook):
        self._emit(event='playbook_start', playbook=os.path.basename(playbook._file_name))

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit(event='task_start', **self._task_info(task))

    def v2_playbook_on_handler_task_start(self, task):
        self._emit(event='task_start', handler=True, **self._task_info(task))

    def v2_runner_on_start(self, host, task):
        self._emit(event='host_start', host=host.get_name(), **self._task_info(task))

    def _result(self, result, status):
        r = result._result
        if status == 'ok' and r.get('changed'):
            status = 'changed'
        extra = {}
        if result._task.action in ('ollama_gpu_mode',) and isinstance(r, dict):
            extra = {k: r.get(k) for k in ('mode', 'waited', 'log_source', 'started_at')}
            extra['msg'] = (r.get('msg') or '')[:600] or None
        if result._task.get_name().startswith('Record ') and isinstance(r, dict):
            # bench playbooks hand data to bench/run through tasks named "Record ..."
            extra = {'stdout': r.get('stdout')}
        self._emit(event='host_result', host=result._host.get_name(), status=status,
                   **dict(self._task_info(result._task), **extra))

    def v2_runner_on_ok(self, result):
        self._result(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, 'failed')

    def v2_runner_on_skipped(self, result):
        self._result(result, 'skipped')

    def v2_runner_on_unreachable(self, result):
        self._result(result, 'unreachable')

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        self._emit(event='stats', summary={h: stats.summarize(h) for h in hosts})
        if self._out is not None:
            self._out.close()
            self._out = None
