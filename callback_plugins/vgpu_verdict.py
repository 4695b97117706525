# -*- coding: utf-8 -*-
# One line per host with the GPU verdict, printed as each ollama_gpu_mode result arrives: the gpu_mode role
# is a single module task, and this replaces the per-host debug task it had (no controller work per host,
# and with strategy free every host's line comes when that host is judged, not at a barrier).
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: vgpu_verdict
type: notification
short_description: Print each host's GPU verdict line (ollama_gpu_mode's summary)
description:
  - "For every successful C(ollama_gpu_mode) result, prints the host's name and the result's C(summary), for
    example C(ollama-1: GPU (1 device: NVIDIA vH100 80GB HBM3 79.6 GiB, CUDA, ollama 0.13.5)). A failed verdict
    is already printed by the stdout callback (its message is the summary, with the problems and a hint)."

  - Enabled in the project's ansible.cfg (C(callbacks_enabled = vgpu_verdict)).
requirements:
  - enable in ansible.cfg (callbacks_enabled)
'''

from ansible.plugins.callback import CallbackBase

ACTIONS = ('ollama_gpu_mode', 'vgpu.toolkit.ollama_gpu_mode')


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'notification'
    CALLBACK_NAME = 'vgpu_verdict'
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_on_ok(self, result):
        if result._task.action not in ACTIONS:
            return
        summary = result._result.get('summary')
        if summary:
            check = ' (check mode: the running start)' if result._result.get('changed') and not \
                result._result.get('restarted') else ''
            self._display.display('%s: %s%s' % (result._host.get_name(), summary, check))
