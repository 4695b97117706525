# -*- coding: utf-8 -*-
# Reading the current start's log for the doctor (target side, Python 3.8+ stdlib).
"""``gather_log(f, probe)``: the current invocation's log (a file or the journal), parsed by ollama_log."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.module_utils.ollama_follow import follow_log, open_current_log


LOG_DRAIN = 1.0          # seconds a non-following log read may take after its deadline
JOURNAL_READ_LIMIT = 1.5  # seconds for `journalctl` (no --follow) to print the current invocation


def gather_log(f, probe):
    """f.log = {source, error, result}: the current invocation's log through the one opener
    (ollama_follow.open_current_log, as ollama_gpu_mode reads it), parsed."""
    p = f.params
    timeout = max(0.0, float(p.log_timeout or 0))
    spec = open_current_log(f.unit.get('props'), p.unit, journalctl=lambda: probe.which('journalctl'),
                            log_path=p.log_path, started=f.unit.get('started'), follow=timeout > 0)
    if spec.error:
        f.log = {'source': spec.desc, 'error': spec.error, 'result': None}
        return
    if spec.kind == 'journal' and not timeout > 0:
        # journalctl without --follow ends when it has printed the invocation: wait for that, no longer
        timeout = JOURNAL_READ_LIMIT
    source = probe.log_source(spec)
    try:
        result, _waited, _reason = follow_log(source, timeout, accept_start=spec.accept_start, drain=LOG_DRAIN)
    finally:
        source.close()
    f.log = {'source': spec.desc, 'error': getattr(source, 'error', None), 'result': result}
