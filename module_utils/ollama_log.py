# -*- coding: utf-8 -*-
# Ollama server log parser (target side, Python 3.8+ stdlib only).
"""Read an Ollama server log and say which mode the last server start runs in.

The parser is pure: ``parse_log(text)`` or ``LogParser().feed(...)`` take text and give a dict.
It judges only the **last** server start in its input and never looks at ``source=file.go:N``
line numbers (they change every release). Rules, by era (the log rows of every simulated release, with
their upstream lines, are in simulator/fidelity.json):

* a start is a ``server config`` record and/or the ``Listening on … (version X)`` record that
  follows it (one start, not two); the pre-slog ``2025/02/28 12:37:36 routes.go:1215: INFO server
  config env=…`` form counts as a ``server config`` record;
* GPU mode: at least one ``inference compute`` record of that start whose ``library`` is not cpu
  (cuda, CUDA, rocm, ROCm, Vulkan, Metal… in any case);
* CPU mode: ``inference compute`` records of that start, all with ``library=cpu``/``id=cpu``;
* no ``inference compute`` record but ``"total vram"="0 B"`` (or ``total_vram="0 B"``) in that start:
  CPU as well — Ollama prints that line only after discovery found no GPU memory at all;
* anything else: ``unknown`` (discovery has not reported yet);
* ``entering low vram mode`` with a non-zero total is a GPU under 20 GiB, never a CPU sign.

Accepted line shapes: bare slog text, journald prefixes (``Nov 25 10:00:00 host ollama[123]: `` in any
month spelling, ``short-iso``, ``short-precise``, ``short-full``, ``short-unix``), docker compose
(``ollama-1  | ``) and docker timestamps, ``> `` quote markers, indentation, CRLF, blank lines, records
without ``time=``, and records hard-wrapped over several lines (a line that does not start a new record
is joined to the previous one: see ``_is_continuation``).

The fields of one record (sizes, timestamps, prefixes, the tokenizer) are ``ollama_log_record``.
Judging a parsed start (against the GPU libraries the shims serve, the caller's minimums) is
``ollama_verdict``; following a growing log and opening the current invocation's log is ``ollama_follow``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import re

from ansible.module_utils.ollama_log_record import (RECORD_START_RE, VERSION_RE, log_time_to_epoch, parse_record,
                                                    parse_size, strip_prefixes, written_epoch)


def _is_start(rec):
    return rec['kind'] != 'text' and (rec['msg'] == 'server config' or rec['msg'].startswith('Listening on'))


def _is_inference_compute(rec):
    return rec['kind'] != 'text' and rec['msg'] == 'inference compute'


def is_cpu_record(fields):
    """True for an ``inference compute`` record that describes the CPU, not a GPU."""
    library = (fields.get('library') or '').strip().lower()
    ident = (fields.get('id') or '').strip().lower()
    if library:
        return library == 'cpu'
    return ident in ('cpu', '', '0')


_DEVICE_KEYS = ('id', 'filter_id', 'library', 'variant', 'name', 'description', 'compute', 'driver',
                'pci_id', 'type', 'libdirs', 'total', 'available')


def device_from_fields(fields):
    """One ``devices`` entry from the fields of an ``inference compute`` record."""
    dev = dict((key, fields.get(key)) for key in _DEVICE_KEYS)
    dev['total_bytes'] = parse_size(fields.get('total'))
    dev['available_bytes'] = parse_size(fields.get('available'))
    return dev


def device_libraries(devices):
    """The distinct ``library`` values of ``devices``, as logged, in order of appearance."""
    libs = []
    for dev in devices:
        lib = dev.get('library') or '?'
        if lib not in libs:
            libs.append(lib)
    return libs


# discovery problems the doctor maps to failure codes: (kind, test on the record)
def _discovery_error_kind(rec):
    text = rec['text']
    msg = rec['msg'] or ''
    low = msg.lower()
    if 'cannot be preloaded' in text:
        return 'preload_failed'
    if 'undefined symbol' in text:
        return 'undefined_symbol'
    if 'error while loading shared libraries' in text:
        return 'shared_library'
    if rec['kind'] == 'text':
        return None
    if 'failure during' in low and 'discovery' in low:
        error = rec['fields'].get('error', '')
        if 'timeout' in error or 'deadline' in error:
            return 'discovery_timeout'
        return 'discovery_failed'
    if low == 'no compatible gpus were discovered':
        return 'no_gpus'
    level = (rec['level'] or '').upper()
    if level in ('WARN', 'WARNING', 'ERROR') and re.search(
            r'gpu|cuda|nvml|rocm|amdgpu|vulkan|discover|driver|librar|runner', low):
        return 'gpu_warning'
    return None


def _zero_vram(fields):
    for key in ('total vram', 'total_vram'):
        if key in fields:
            size = parse_size(fields[key])
            return size == 0, fields[key]
    return None, None


def _short(text, limit=400):
    return text if len(text) <= limit else text[:limit - 1] + '\u2026'


# --------------------------------------------------------------------------- parser

class LogParser(object):
    """Incremental parser: ``feed()`` text as it arrives, ``snapshot()`` any time, ``finish()`` at the end.

    Only the state of the last start is kept, so following a long log costs little memory.
    """

    MAX_ERRORS = 20

    def __init__(self):
        self._partial = ''
        self._pending = None
        self._preamble = []
        self.starts = 0
        self._start = self._new_start(None)

    # ---- input
    def feed(self, text):
        if not text:
            return self
        data = self._partial + text
        lines = data.split('\n')
        self._partial = lines.pop()
        for line in lines:
            self._line(line)
        return self

    def finish(self):
        """Flush the last line and pending record; return the result."""
        if self._partial:
            line, self._partial = self._partial, ''
            self._line(line)
        self._commit_pending()
        self._flush_preamble()
        return self.result()

    def snapshot(self, include_partial=True):
        """The result as if the input ended now (the parser itself is left as it was).

        A trailing line without newline is parsed too (a saved file may lack the last newline) but
        never counts as the record that closes the list of ``inference compute`` records.
        """
        twin = copy.deepcopy(self)
        partial, twin._partial = twin._partial, ''
        twin._commit_pending()
        if include_partial and partial.strip():
            closed = twin._start['closed']
            twin._line(partial)
            twin._commit_pending()
            if not _is_inference_compute(twin._last_committed or {'kind': 'text', 'msg': ''}):
                twin._start['closed'] = closed
        twin._flush_preamble()
        return twin.result()

    # ---- lines and records
    def _line(self, raw):
        content, meta = strip_prefixes(raw)
        if not content.strip():
            return
        pending = self._pending
        if pending is not None and not meta['prefixed'] and self._is_continuation(content):
            extra = max(0, meta['indent'] - pending['indent'])
            joined = pending['rec']['text'] + ' ' * extra + content
            pending['rec'] = parse_record(joined)
            return
        self._commit_pending()
        self._pending = {'rec': parse_record(content), 'meta': meta, 'indent': meta['indent']}

    def _is_continuation(self, content):
        """A wrapped record's tail: the previous record is slog/Go-log text and this line either
        continues an open quoted value, or does not start a record and carries a ``key=value``."""
        rec = self._pending['rec']
        if rec['kind'] == 'text':
            return False
        if rec['open']:
            return True
        if RECORD_START_RE.match(content):
            return False
        return '=' in content

    _last_committed = None

    def _commit_pending(self):
        pending, self._pending = self._pending, None
        if pending is None:
            return
        rec = pending['rec']
        rec['pid'] = pending['meta']['pid']
        rec['ident'] = pending['meta']['ident']
        self._last_committed = rec
        self._record(rec)

    def _new_start(self, rec):
        return {
            'rec': rec, 'has_config': False, 'has_listen': False, 'pid': rec and rec.get('pid'),
            'version': None, 'time': rec and rec['time'], 'lines': [], 'compute': [],
            'zero_vram': False, 'vram_lines': [], 'low_vram': None, 'no_gpus': [], 'errors': [],
            'closed': False, 'verdict_time': None,
        }

    def _add_error(self, start, kind, rec):
        line = _short(rec['text'])
        for err in start['errors']:
            if err['line'] == line:
                return
        if len(start['errors']) < self.MAX_ERRORS:
            start['errors'].append({'kind': kind, 'line': line})

    def _flush_preamble(self, to_start=None):
        target = to_start or self._start
        for kind, rec in self._preamble:
            self._add_error(target, kind, rec)
        self._preamble = []

    def _record(self, rec):
        start = self._start
        if _is_start(rec):
            listening = rec['msg'].startswith('Listening on')
            same_process = not (start['pid'] and rec.get('pid') and start['pid'] != rec.get('pid'))
            if listening and start['has_config'] and not start['has_listen'] and same_process:
                start['has_listen'] = True
            else:
                self.starts += 1
                previous, start = start, self._new_start(rec)
                self._start = start
                if start['pid']:     # journald tells which process printed a loader error
                    late = [e for e in self._preamble if e[1].get('pid') and e[1]['pid'] != start['pid']]
                    self._preamble = [e for e in self._preamble if e not in late]
                    for kind, err in late:
                        self._add_error(previous, kind, err)
                self._flush_preamble(start)
                if listening:
                    start['has_listen'] = True
                else:
                    start['has_config'] = True
            if listening:
                m = VERSION_RE.search(rec['msg'])
                start['version'] = m.group(1) if m else start['version']
            start['lines'].append(_short(rec['text']))
            if start['time'] is None:
                start['time'] = rec['time']
            if start['pid'] is None:
                start['pid'] = rec.get('pid')
            if start['compute']:
                start['closed'] = True
            return

        kind = _discovery_error_kind(rec)
        if rec['kind'] == 'text':
            # a loader error printed before the next `server config` belongs to that next process
            if kind:
                self._preamble.append((kind, rec))
            if start['compute']:
                start['closed'] = True
            return
        self._flush_preamble()
        if kind:
            self._add_error(start, kind, rec)
            if kind == 'no_gpus' and len(start['no_gpus']) < 4:
                start['no_gpus'].append(_short(rec['text']))

        if _is_inference_compute(rec):
            key = ((rec['fields'].get('library') or '').lower(), rec['fields'].get('id'),
                   rec['fields'].get('filter_id'))
            start['compute'] = [c for c in start['compute'] if c[0] != key]
            start['compute'].append((key, rec['fields'], _short(rec['text'])))
            start['closed'] = False
            start['verdict_time'] = rec['time']
            return
        if start['compute']:
            start['closed'] = True
        zero, value = _zero_vram(rec['fields'])
        if zero is not None:
            if len(start['vram_lines']) < 4:
                start['vram_lines'].append(_short(rec['text']))
            if zero:
                start['zero_vram'] = True
                if not start['compute']:
                    start['verdict_time'] = rec['time']
            elif rec['msg'] == 'entering low vram mode':
                start['low_vram'] = {'total_vram': value, 'threshold': rec['fields'].get('threshold')}

    # ---- verdict
    def result(self):
        """The verdict of the last start as a plain dict (see module RETURN for the keys)."""
        start = self._start
        compute = [c[1] for c in start['compute']]
        gpus = [device_from_fields(f) for f in compute if not is_cpu_record(f)]
        if gpus:
            mode = 'gpu'
        elif compute:
            mode = 'cpu'
        elif start['zero_vram']:
            mode = 'cpu'
        else:
            mode = 'unknown'
        evidence = []
        evidence.extend(start['lines'])
        evidence.extend(start['no_gpus'])
        evidence.extend(c[2] for c in start['compute'])
        evidence.extend(start['vram_lines'])
        started_at = start['time']
        return {
            'mode': mode,
            'devices': gpus,
            # the GPU libraries of those devices, as logged and in log order (CUDA, Vulkan, rocm...)
            'libraries': device_libraries(gpus),
            'cpu_records': len(compute) - len(gpus),
            'inference_compute_count': len(compute),
            'total_vram_zero': start['zero_vram'],
            'low_vram': start['low_vram'],
            'ollama_version': start['version'],
            'started_at': started_at,
            'start_epoch': log_time_to_epoch(started_at),
            'start_pid': start['pid'],
            'starts': self.starts,
            'evidence': evidence,
            'discovery_errors': list(start['errors']),
            # a record followed the last `inference compute` one: the device list is complete
            'verdict_closed': bool(start['compute']) and start['closed'],
            # when the record the verdict rests on was written, by its own stamp (None without one)
            'verdict_written': written_epoch(start['verdict_time']),
        }


def parse_log(text):
    """Parse a whole log text and return the verdict of its last server start."""
    return LogParser().feed(text).finish()
