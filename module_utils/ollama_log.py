# -*- coding: utf-8 -*-
# Ollama server log parser and log follower (target side, Python 3.8+ stdlib only).
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

The second half of the file follows a growing log (a file, or a command such as ``journalctl -f``;
``JournalSource`` polls the journal instead when journalctl cannot follow) until the start has a
verdict: ``follow_log(source, timeout)``; all sources share that loop. A saved file is not followed once
nothing writes it (``FileSource(follow='while_written')``, ``file_writers``). ``judge_libraries`` judges a
start against the GPU libraries the shims serve (a Vulkan-only start beside a CUDA shim is ``other_library``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import calendar
import codecs
import copy
import errno
import os
import re
import select
import subprocess
import tempfile
import time

# --------------------------------------------------------------------------- sizes

_SIZE_RE = re.compile(r'^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$')
_BINARY = {'': 1, 'b': 1, 'k': 1024, 'm': 1024 ** 2, 'g': 1024 ** 3, 't': 1024 ** 4, 'p': 1024 ** 5}
_DECIMAL = {'k': 1000, 'm': 1000 ** 2, 'g': 1000 ** 3, 't': 1000 ** 4, 'p': 1000 ** 5}


def parse_size(text):
    """Return the number of bytes in ``text`` ("79.6 GiB", "512 MiB", "0 B", "16GB", 1024), or None.

    KiB/MiB/GiB/TiB and a bare K/M/G/T are powers of 1024; KB/MB/GB/TB are powers of 1000.
    """
    if text is None:
        return None
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return int(text)
    m = _SIZE_RE.match(str(text))
    if not m:
        return None
    number = float(m.group(1))
    unit = m.group(2).lower()
    if unit in ('', 'b', 'byte', 'bytes'):
        mult = 1
    elif len(unit) == 3 and unit.endswith('ib') and unit[0] in _BINARY:
        mult = _BINARY[unit[0]]
    elif len(unit) == 2 and unit.endswith('b') and unit[0] in _DECIMAL:
        mult = _DECIMAL[unit[0]]
    elif len(unit) == 1 and unit in _BINARY:
        mult = _BINARY[unit]
    else:
        return None
    return int(round(number * mult))


def format_size(num):
    """Render bytes the way Ollama's format.HumanBytes2 does ("79.6 GiB", "512.0 MiB", "0 B")."""
    if num is None:
        return None
    num = int(num)
    for mult, unit in ((1024 ** 4, 'TiB'), (1024 ** 3, 'GiB'), (1024 ** 2, 'MiB'), (1024, 'KiB')):
        if num >= mult:
            if unit == 'TiB':
                mult, unit = 1024 ** 3, 'GiB'   # Ollama never prints TiB
            return '%.1f %s' % (num / float(mult), unit)
    return '%d B' % num


# --------------------------------------------------------------------------- timestamps

_ISO_RE = re.compile(r'^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?')
_GOLOG_TIME_RE = re.compile(r'^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d+)?')


def log_time_to_epoch(text):
    """Seconds since the epoch for an slog ``time=`` value or a pre-slog ``2025/02/28 12:37:36`` stamp.

    Stamps without a zone are local time (Go's log package writes local time). None if unparsable.
    """
    if not text:
        return None
    m = _ISO_RE.match(text) or _GOLOG_TIME_RE.match(text)
    if not m:
        return None
    parts = [int(x) for x in m.groups()[:6]]
    frac = float(m.group(7)) if m.group(7) else 0.0
    zone = m.group(8) if m.re is _ISO_RE else None
    try:
        if zone:
            epoch = calendar.timegm(tuple(parts) + (0, 0, 0))
            if zone != 'Z':
                sign = -1 if zone[0] == '-' else 1
                digits = zone[1:].replace(':', '')
                epoch -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        else:
            epoch = time.mktime(tuple(parts) + (0, 0, -1))
    except (OverflowError, ValueError):
        return None
    return epoch + frac


def written_epoch(text):
    """The latest epoch at which a record stamped ``text`` can have been written, or None.

    A stamp without a fraction of a second (the pre-slog ``2025/02/28 12:37:36`` form) was cut to the
    second: the record may be up to a second younger than the stamp says.
    """
    epoch = log_time_to_epoch(text)
    if epoch is None:
        return None
    return epoch if '.' in text else epoch + 1.0


# --------------------------------------------------------------------------- prefixes

# `> ` markers of a quoted ticket paste (nested too) and the indentation around them.
_QUOTE_RE = re.compile(r'^[ \t]*(?:>[ \t]?)+')
# docker compose: `ollama-1  | `, `2a0f2f93ed9f_llms-ollama-1  | `
_COMPOSE_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.\-]*[ \t]*\|(?:[ \t]|$)')
# `docker logs -t`: RFC 3339 with nanoseconds, then the line
_DOCKER_TS_RE = re.compile(r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})[ \t]')
# journalctl output modes: short (any locale's month), short-precise, short-iso(-precise), short-full,
# short-unix; then `host ident[pid]: `. The host may not contain `=` so an slog line never matches.
_JOURNAL_RE = re.compile(
    r'^(?:'
    r'(?:[^\s\d=/"\[<>|][^\s=]{0,11}|\d{1,2}[\u6708\uc6d4])\s+\d{1,2}\s+\d{2}:\d{2}:\d{2}(?:[.,]\d+)?'
    r'|(?:[A-Za-z]{2,4}\.?\s+)?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?'
    r'(?:\s?(?:Z|[+-]\d{2}:?\d{2}|[A-Z]{2,5}))?'
    r'|\d{9,11}\.\d+'
    r')\s+(?P<host>[^\s\[=]*[^\s\[=:])\s+(?P<ident>[^\s\[:=]+)(?:\[(?P<pid>\d+)\])?:(?:[ \t]|$)')
# anything else in front of an slog record (kubectl, syslog files…): cut at ` time=YYYY-MM-DDT`
_EMBEDDED_SLOG_RE = re.compile(r'(?:^|\s)(time=\d{4}-\d{2}-\d{2}T)')

_SLOG_START = ('time=', 'level=', 'source=', 'msg=')


def strip_prefixes(line):
    """Split one physical line into (content, meta).

    ``meta``: ``prefixed`` (a journald/docker/unknown prefix was cut: the line starts a record),
    ``host``, ``ident``, ``pid`` (journald), ``indent`` (leading blanks cut from the content).
    """
    meta = {'prefixed': False, 'host': None, 'ident': None, 'pid': None, 'indent': 0}
    s = line.rstrip('\r\n')
    m = _QUOTE_RE.match(s)
    if m:
        s = s[m.end():]
    stripped = s.lstrip(' \t')
    meta['indent'] = len(s) - len(stripped)
    s = stripped
    for dummy in range(4):
        before = s
        m = _COMPOSE_RE.match(s)
        if m:
            s = s[m.end():]
            meta['prefixed'] = True
        m = _JOURNAL_RE.match(s)
        if m:
            s = s[m.end():]
            meta.update(prefixed=True, host=m.group('host'), ident=m.group('ident'), pid=m.group('pid'))
        m = _DOCKER_TS_RE.match(s)
        if m:
            s = s[m.end():]
            meta['prefixed'] = True
        if s == before:
            break
    content = s.lstrip(' \t')
    if not content.startswith(_SLOG_START):
        m = _EMBEDDED_SLOG_RE.search(content)
        if m and m.start(1) > 0:
            content = content[m.start(1):]
            meta['prefixed'] = True
    return content, meta


# --------------------------------------------------------------------------- slog tokenizer

_ESCAPES = {'a': '\a', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v',
            '\\': '\\', '"': '"', "'": "'"}


def _read_quoted(text, i):
    """Read a Go-quoted string starting at text[i] == '"'. Return (value, next index, closed)."""
    out = []
    n = len(text)
    j = i + 1
    while j < n:
        c = text[j]
        if c == '"':
            return ''.join(out), j + 1, True
        if c == '\\' and j + 1 < n:
            e = text[j + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                j += 2
                continue
            width = {'x': 2, 'u': 4, 'U': 8}.get(e)
            if width and j + 2 + width <= n:
                digits = text[j + 2:j + 2 + width]
                try:
                    out.append(chr(int(digits, 16)))
                    j += 2 + width
                    continue
                except ValueError:
                    pass
            if e in '01234567' and j + 4 <= n:
                try:
                    out.append(chr(int(text[j + 1:j + 4], 8)))
                    j += 4
                    continue
                except ValueError:
                    pass
            out.append(c)
            j += 1
            continue
        out.append(c)
        j += 1
    return ''.join(out), n, False


def _read_bare(text, i):
    """Read an unquoted value: up to the next blank, but through balanced [...] (``map[a:1 b:2]``)."""
    n = len(text)
    j = i
    depth = 0
    while j < n:
        c = text[j]
        if c == '[':
            depth += 1
        elif c == ']' and depth:
            depth -= 1
        elif c in ' \t' and depth == 0:
            break
        j += 1
    if depth:   # unbalanced: fall back to the first blank
        j = i
        while j < n and text[j] not in ' \t':
            j += 1
    return text[i:j], j


def tokenize(text):
    """Tokenize slog text (``key=value``, ``"quoted key"="quoted value"``, Go escapes).

    Returns (tokens, open_quote): tokens is a list of (key, value) in order, value None for a bare
    word; open_quote is True when the text ends inside a quoted string (a record wrapped mid-value).
    """
    tokens = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c in ' \t':
            i += 1
            continue
        if c == '"':
            key, i, closed = _read_quoted(text, i)
            if not closed:
                tokens.append((key, None))
                return tokens, True
        else:
            j = i
            while j < n and text[j] not in ' \t=':
                j += 1
            key = text[i:j]
            i = j
        if i < n and text[i] == '=':
            i += 1
            if i < n and text[i] == '"':
                value, i, closed = _read_quoted(text, i)
                tokens.append((key, value))
                if not closed:
                    return tokens, True
            else:
                value, i = _read_bare(text, i)
                tokens.append((key, value))
        else:
            tokens.append((key, None))
    return tokens, False


def parse_fields(text):
    """{key: value} of an slog text record (the first occurrence of a key wins)."""
    fields = {}
    for key, value in tokenize(text)[0]:
        if value is not None and key not in fields:
            fields[key] = value
    return fields


# --------------------------------------------------------------------------- records

_GOLOG_RE = re.compile(
    r'^(?P<time>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) '
    r'(?:\S+\.go:\d+: )?'
    r'(?:(?P<level>DEBUG|INFO|WARN|WARNING|ERROR|TRACE) )?(?P<rest>.*)$')
# a physical line that begins a record of its own (so it is not the tail of a wrapped one)
_RECORD_START_RE = re.compile(
    r'^(?:(?:time|level|source|msg)='
    r'|\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}'
    r'|\['                                     # [GIN] …, [GPU-…] CUDA totalMem …
    r'|/'                                      # /usr/local/bin/ollama: symbol lookup error: …
    r'|(?:[\w.\-]+ ){0,3}[\w.\-]+:(?:\s|$)'     # llama_model_loader: …, ERROR: ld.so: …, CUDA driver version: 12.8
    r')')
_VERSION_RE = re.compile(r'\(version ([^)\s]+)\)')


def parse_record(content):
    """Classify one logical record: slog text, pre-slog Go log, or free text."""
    rec = {'kind': 'text', 'text': content, 'fields': {}, 'msg': '', 'level': None, 'time': None,
           'open': False}
    if content.startswith(_SLOG_START):
        tokens, open_quote = tokenize(content)
        fields = {}
        for key, value in tokens:
            if value is not None and key not in fields:
                fields[key] = value
        rec.update(kind='slog', fields=fields, msg=fields.get('msg', ''), level=fields.get('level'),
                   time=fields.get('time'), open=open_quote)
        return rec
    m = _GOLOG_RE.match(content)
    if m:
        tokens, open_quote = tokenize(m.group('rest'))
        words = []
        fields = {}
        for key, value in tokens:
            if value is None and not fields:
                words.append(key)
            elif value is not None and key not in fields:
                fields[key] = value
        stamp = m.group('time')
        iso = '%s-%s-%sT%s' % (stamp[0:4], stamp[5:7], stamp[8:10], stamp[11:])
        rec.update(kind='golog', fields=fields, msg=fields.get('msg', ' '.join(words)),
                   level=m.group('level'), time=iso, open=open_quote)
    return rec


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
        if _RECORD_START_RE.match(content):
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
                m = _VERSION_RE.search(rec['msg'])
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


# --------------------------------------------------------------------------- verdict helpers

def total_vram_bytes(devices):
    return sum(d.get('total_bytes') or 0 for d in devices)


def _device_label(dev):
    name = dev.get('description') or dev.get('name') or dev.get('id') or 'GPU'
    return '%s %s' % (name, dev.get('total') or format_size(dev.get('total_bytes')) or '?')


# --------------------------------------------------------------------------- GPU libraries
#
# Since 0.30 Ollama probes Vulkan by default (envconfig/config.go:234@v0.30.11 EnableVulkan =
# BoolWithDefault("OLLAMA_VULKAN"), called as EnableVulkan(true) in discover/runner.go:99@v0.30.11) and merges
# a device that two libraries report under the same PCI id, keeping CUDA/ROCm (discover/runner.go:200-213 and
# ml/device.go:451-459 Compare, ml/device.go:678-686 PreferredLibrary@v0.30.11). So a host whose CUDA shim
# fails can still log `library=Vulkan` for the very same paravirtual GPU: GPU mode, but not through the shim.
# The helpers below judge a start against the libraries the caller's shims serve.

# the spelling Ollama logs since 0.12 (discover/llama_server.go:468 inferLibrary@v0.30.11); older eras log
# lower case (library=cuda, rocm)
LIBRARY_SPELLING = {'cuda': 'CUDA', 'rocm': 'ROCm', 'vulkan': 'Vulkan', 'metal': 'Metal', 'cpu': 'cpu'}


def library_label(name):
    """``cuda`` -> ``CUDA``, ``rocm`` -> ``ROCm``; other names as given."""
    return LIBRARY_SPELLING.get((name or '').strip().lower(), name or '?')


def normalize_libraries(library):
    """The required GPU libraries as lower-case names, in order, no duplicates; ``[]`` means any library.

    Takes None, a name (``cuda``), a comma or blank separated text (``cuda, rocm``; ``''`` is any), or a list
    of those.
    """
    if library is None:
        return []
    items = [library] if isinstance(library, (str, bytes)) else list(library)
    out = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, bytes):
            item = item.decode('utf-8', 'replace')
        for word in re.split(r'[\s,]+', str(item)):
            word = word.strip().lower()
            if word and word not in out:
                out.append(word)
    return out


def device_libraries(devices):
    """The distinct ``library`` values of ``devices``, as logged, in order of appearance."""
    libs = []
    for dev in devices:
        lib = dev.get('library') or '?'
        if lib not in libs:
            libs.append(lib)
    return libs


def judge_libraries(result, library=None):
    """The parser's result judged against the GPU libraries the caller's shims serve.

    Returns ``verdict`` - ``gpu`` (a device of one of those libraries; with ``library`` empty any GPU device),
    ``cpu``, ``unknown`` (as ``mode``), or ``other_library``: Ollama is in GPU mode, but every device it found is
    of another library (a Vulkan fallback beside a broken CUDA shim) -; ``required_libraries`` (normalized
    ``library``), ``libraries`` (of all GPU devices, as logged), ``library_devices`` (the devices of the required
    libraries, all GPU devices when none is required) and ``other_devices`` (the rest).
    """
    required = normalize_libraries(library)
    devices = list(result.get('devices') or [])
    mode = result.get('mode') or 'unknown'
    ours, others = [], []
    for dev in devices:
        if not required or (dev.get('library') or '').strip().lower() in required:
            ours.append(dev)
        else:
            others.append(dev)
    verdict = 'other_library' if mode == 'gpu' and not ours else mode
    return {'verdict': verdict, 'required_libraries': required, 'libraries': device_libraries(devices),
            'library_devices': ours, 'other_devices': others}


def _libraries_text(required, joiner=' or '):
    return joiner.join(library_label(lib) for lib in required)


def other_library_problem(result, library):
    """``no CUDA device: Ollama found only Vulkan (1 device), so the CUDA shim is not in use``."""
    required = normalize_libraries(library)
    devices = result.get('devices') or []
    return 'no %s device: Ollama found only %s (%d device%s), so the %s shim is not in use' % (
        _libraries_text(required), ' and '.join(device_libraries(devices)), len(devices),
        '' if len(devices) == 1 else 's', _libraries_text(required, '/'))


REMEDIATE_HINT = 'run playbooks/remediate.yml (the vgpu_doctor module finds the cause, remediate applies the ' \
                 'safe fixes and judges the new start)'


def hint_for(result, expect='gpu', library=None):
    """One sentence that says what to look at next, from the discovery errors and the devices."""
    kinds = [e['kind'] for e in result.get('discovery_errors', [])]
    mode = result.get('mode')
    required = normalize_libraries(library)
    if mode == 'gpu' and expect == 'cpu':
        return 'Ollama found %d GPU(s) although expect=cpu: check CUDA_VISIBLE_DEVICES/OLLAMA_LLM_LIBRARY ' \
               'in the unit environment, or set expect to gpu or any' % len(result.get('devices', []))
    if mode == 'gpu' and required and judge_libraries(result, required)['verdict'] == 'other_library':
        found = device_libraries(result.get('devices', []))
        how = 'fell back to Vulkan (probed by default since Ollama 0.30)' if 'vulkan' in [
            lib.lower() for lib in found] else 'found only %s devices' % ' and '.join(found)
        return 'the %s backend found no device and Ollama %s: the %s shim path (libcuda.so.1 links, the ' \
               'LD_PRELOAD drop-in) is broken; %s' % (_libraries_text(required, '/'), how,
                                                      _libraries_text(required, '/'), REMEDIATE_HINT)
    if 'preload_failed' in kinds:
        return 'LD_PRELOAD names a library the loader cannot open (see discovery_errors): fix the shim ' \
               'path in /etc/systemd/system/ollama.service.d/ and restart ollama (PRELOAD_MISSING_FILE); ' \
               + REMEDIATE_HINT
    if 'undefined_symbol' in kinds:
        return 'a shim needs a symbol no loaded library provides (see discovery_errors): rebuild the NVML ' \
               'shim without CUDA-shim symbols or fix the LD_PRELOAD order (SHIM_UNDEFINED_SYMBOL); ' \
               + REMEDIATE_HINT
    if 'shared_library' in kinds:
        return 'a library could not be loaded (see discovery_errors): check the loader path ' \
               '(ldconfig -p, /etc/ld.so.conf.d) of the shim; ' + REMEDIATE_HINT
    if 'discovery_timeout' in kinds:
        return 'GPU discovery timed out (DISCOVERY_TIMEOUT): the runner hung probing the CUDA backend; ' \
               'check that the shim answers cuInit quickly and the host side of the vGPU is up'
    if mode == 'cpu':
        return 'no GPU backend reported a device: check the libcuda.so.1 links under ' \
               '/usr/local/lib/ollama/cuda_v*/ and that the vgpu drop-in is applied (restart ollama after ' \
               'changing it); ' + REMEDIATE_HINT
    if mode == 'unknown':
        if result.get('starts', 0) == 0:
            return 'no Ollama server start (server config / Listening on line) in the log: is this the ' \
                   'right log, and is ollama running (journalctl -u ollama -n 50)?'
        return 'no "inference compute" line for this start yet: discovery may still be running (raise ' \
               'timeout) or ollama is restarting in a loop (journalctl -u ollama -n 50)'
    if mode == 'gpu':
        return 'the GPUs Ollama found do not meet the minimums: check CUDA_VISIBLE_DEVICES in the unit ' \
               'environment and the vGPU profile the host gives this guest'
    return ''


def check_expectations(result, expect='gpu', min_devices=1, min_total_vram=None, library=None):
    """List of problems (empty when the verdict is what was asked for).

    ``library`` (a name, a comma-separated text or a list; empty = any) is what the shims serve: in GPU mode
    only its devices count, and a start whose GPU devices are all of another library is a problem
    (``other_library_problem``). With expect=any the mode itself is never a problem, and the device minimums
    and ``library`` apply only to GPU mode.
    """
    problems = []
    mode = result.get('mode')
    if expect != 'any':
        if mode == 'unknown':
            problems.append('no verdict: the current Ollama start has not reported its compute devices')
            return problems
        if mode != expect:
            problems.append('Ollama runs in %s mode, expected %s' % (mode.upper(), expect.upper()))
            return problems
    if mode != 'gpu' or expect == 'cpu':
        return problems
    required = normalize_libraries(library)
    judged = judge_libraries(result, required)
    if judged['verdict'] == 'other_library':
        problems.append(other_library_problem(result, required))
        return problems
    devices = judged['library_devices']
    if len(devices) < (min_devices or 0):
        problems.append('%d GPU device(s)%s, at least %d required' % (
            len(devices), ' of library %s' % _libraries_text(required) if required else '', min_devices))
    need = parse_size(min_total_vram) if min_total_vram not in (None, '') else None
    if need:
        have = total_vram_bytes(devices)
        if have < need:
            problems.append('total VRAM %s, at least %s required' % (format_size(have), format_size(need)))
    return problems


def summarize(result, problems=None, hint=None, library=None):
    """One human line: ``GPU (1 device: vH100 79.6 GiB, CUDA, ollama 0.13.5)`` or ``CPU — hint``.

    With ``library`` (what the shims serve) a GPU start whose devices are all of another library reads
    ``VULKAN ONLY (1 device: …, Vulkan, ollama 0.30.1) — no CUDA device: …``.
    """
    mode = result.get('mode') or 'unknown'
    version = result.get('ollama_version')
    tail = ['ollama %s' % version] if version else []
    if mode == 'gpu':
        devices = result.get('devices', [])
        libs = device_libraries(devices)
        label = 'GPU'
        if judge_libraries(result, library)['verdict'] == 'other_library':
            label = '%s ONLY' % '+'.join(lib.upper() for lib in libs)
        text = '%s (%d device%s: %s, %s)' % (
            label, len(devices), '' if len(devices) == 1 else 's',
            ' + '.join(_device_label(d) for d in devices), ', '.join(libs + tail))
    elif mode == 'cpu':
        text = 'CPU' + (' (%s)' % ', '.join(tail) if tail else '')
    else:
        text = 'UNKNOWN' + (' (%s)' % ', '.join(tail) if tail else '')
    if problems:
        text += ' \u2014 ' + '; '.join(problems)
        if hint:
            text += ': ' + hint
    return text


# --------------------------------------------------------------------------- following a growing log

TAIL_SCAN_MIN = 4 * 1024 * 1024
_START_MARKERS = (b'msg="server config"', b'INFO server config', b'msg="Listening on ')


def last_start_offset(fh, size, block=1024 * 1024, lead=64 * 1024):
    """Byte offset a little before the last server start in a big file (0 if none is found).

    Saves parsing months of log: the parser keeps only the last start anyway. ``lead`` bytes before the
    marker are kept so loader errors printed just before the start are still seen.
    """
    pos = size
    tail = b''
    while pos > 0:
        begin = max(0, pos - block)
        fh.seek(begin)
        chunk = fh.read(pos - begin) + tail
        found = max(chunk.rfind(m) for m in _START_MARKERS)
        if found >= 0:
            offset = max(0, begin + found - lead)
            if offset == 0:
                return 0
            fh.seek(offset)
            head = fh.read(min(lead, size - offset))
            newline = head.find(b'\n')
            return offset + newline + 1 if newline >= 0 else offset
        tail = chunk[:64]
        pos = begin
    return 0


# A file still being written is followed; a complete one is judged at once. "Being written" is what a
# process holding the file open for writing means: systemd opens a StandardError=append:/file:/truncate: sink
# and the service inherits the descriptor for its whole life, and `journalctl -f >> f`, docker's and kubectl's
# log writers keep theirs open as well. A writer that opens, appends and closes is caught by the modification
# time (RECENT_WRITE). Only a caller that can see every process (root, with /proc) gets an exact answer;
# anyone else (no /proc, no root, no CAP_SYS_PTRACE in a container) treats a file as being written until it has
# not changed for STALE_AFTER seconds - longer than Ollama can stay silent while discovering GPUs (a 30 s
# first pass, 90 s on some platforms, then a 30 s second pass: discover/runner.go:80-87,123@v0.30.11).
RECENT_WRITE = 0.5
STALE_AFTER = 150.0
WRITERS_RECHECK = 1.0
_O_ACCMODE, _O_WRONLY, _O_RDWR = 3, 1, 2


def _fd_writes(proc, pid, fd):
    """True when descriptor ``fd`` of ``pid`` is open for writing (its ``fdinfo`` flags); True if unknown."""
    try:
        with open(os.path.join(proc, pid, 'fdinfo', fd)) as fh:
            for line in fh:
                if line.startswith('flags:'):
                    return (int(line.split()[1], 8) & _O_ACCMODE) in (_O_WRONLY, _O_RDWR)
    except (IOError, OSError, ValueError, IndexError):
        pass
    return True


def file_writers(ident, proc='/proc'):
    """(pids, complete): the processes holding the file ``ident`` ((st_dev, st_ino)) open for writing, and
    whether every process could be looked at (only root sees every ``/proc/<pid>/fd``; ``hidepid=`` hides
    processes from anyone else). Read-only descriptors (this reader's own) do not count."""
    pids = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return pids, False
    complete = hasattr(os, 'geteuid') and os.geteuid() == 0
    for entry in entries:
        if not entry.isdigit():
            continue
        fd_dir = os.path.join(proc, entry, 'fd')
        try:
            fds = os.listdir(fd_dir)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ESRCH):     # a process that just ended is no writer
                complete = False
            continue
        for fd in fds:
            try:
                st = os.stat(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == ident and _fd_writes(proc, entry, fd):
                pids.append(int(entry))
                break
    return pids, complete


class FileSource(object):
    """A log file read from the start (or near its last server start) and then as it grows.

    ``read(wait)`` returns (text, reset): reset is True when the file was truncated or replaced and the
    text starts a new file (the caller then starts a new parser). A missing file is waited for.

    ``follow``: ``always`` (default: a live unit's sink, followed until the caller's deadline) or
    ``while_written``: once every byte is read and no process is writing the file any more (see
    ``file_writers``, ``RECENT_WRITE``, ``STALE_AFTER``), the source ends (``ended``; ``complete`` says why),
    so a saved log is judged at once while a sink still being written is followed as before.
    """

    CHUNK = 1024 * 1024
    # has_more() is exact: once it is False, every byte written so far has been read
    exact_tail = True

    def __init__(self, path, poll=0.05, tail_scan=True, follow='always', proc='/proc'):
        if follow not in ('always', 'while_written'):
            raise ValueError('follow must be always or while_written, got %r' % (follow,))
        self.path = path
        self.poll = poll
        self.tail_scan = tail_scan
        self.follow = follow
        self.proc = proc
        self.ended = False
        self.error = None
        # while_written: why the file counts as complete (set when the source ends), and the last writers seen
        self.complete = None
        self.writers = []
        self._scanned_at = None
        self._scan_complete = False
        self._fd = None
        self._ident = None
        self._offset = 0
        self._opened_once = False
        self._decoder = None

    def _open(self):
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            self.error = '%s: %s' % (self.path, exc.strerror)
            return False
        st = os.fstat(fd)
        self.error = None
        self._fd = fd
        self._ident = (st.st_dev, st.st_ino)
        self._offset = 0
        self._scanned_at = None
        self._decoder = codecs.getincrementaldecoder('utf-8')('replace')
        if self.tail_scan and st.st_size > TAIL_SCAN_MIN:
            with os.fdopen(os.dup(fd), 'rb') as fh:
                self._offset = last_start_offset(fh, st.st_size)
        os.lseek(fd, self._offset, os.SEEK_SET)
        return True

    def has_more(self):
        """True while bytes already written are still unread (judge only once caught up)."""
        if self._fd is None:
            return False
        try:
            return os.fstat(self._fd).st_size > self._offset
        except OSError:
            return False

    def being_written(self):
        """While_written: is the (fully read) file still being written? Sets ``complete`` when it is not."""
        try:
            age = time.time() - os.fstat(self._fd).st_mtime
        except OSError:
            return False
        if -1.0 < age < RECENT_WRITE:
            return True
        now = time.monotonic()
        if self._scanned_at is None or now - self._scanned_at >= WRITERS_RECHECK:
            self._scanned_at = now
            self.writers, self._scan_complete = file_writers(self._ident, self.proc)
        if self.writers:
            return True
        if self._scan_complete:
            self.complete = 'no process has it open for writing'
            return False
        if age < STALE_AFTER:
            return True
        self.complete = 'unchanged for %d s (the writers could not be looked at: not root?)' % age
        return False

    def is_complete(self):
        """While_written: True when every byte is read and nothing writes the file any more (the verdict may
        have come before the source ended; this answers for the file as it is now)."""
        if self.ended:
            return True
        if self.follow != 'while_written' or self._fd is None or self.has_more():
            return False
        self._scanned_at = None
        return not self.being_written()

    def _close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self):
        self._close()

    def read(self, wait):
        deadline = time.monotonic() + max(0.0, wait)
        reset = False
        while True:
            if self.ended:
                return '', reset
            if self._fd is None and self._open():
                reset = self._opened_once
                self._opened_once = True
            if self._fd is not None:
                size = os.fstat(self._fd).st_size
                if size < self._offset:     # truncated (StandardError=truncate:, copytruncate)
                    self._offset = 0
                    os.lseek(self._fd, 0, os.SEEK_SET)
                    self._decoder = codecs.getincrementaldecoder('utf-8')('replace')
                    reset = True
                data = os.read(self._fd, self.CHUNK)
                if data:
                    self._offset += len(data)
                    return self._decoder.decode(data), reset
                try:
                    st = os.stat(self.path)
                    replaced = (st.st_dev, st.st_ino) != self._ident
                except OSError:
                    replaced = False
                if replaced:                # rotated: finish nothing more from the old one, reopen
                    self._close()
                    continue
                if self.follow == 'while_written' and not self.being_written():
                    self.ended = True
                    return self._decoder.decode(b'', True), reset
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return '', reset
            time.sleep(min(self.poll, remaining))


class CommandSource(object):
    """The standard output of a command that follows a log (``journalctl -f``), read with select().

    ``ended`` turns True when the command closes its output; ``close()`` stops it and returns its
    standard error text (kept in a temporary file, so a chatty command never blocks).
    """

    # has_more() only sees what the command has already flushed into the pipe, not what it is about to
    exact_tail = False

    def __init__(self, argv, env=None):
        self.argv = list(argv)
        self.ended = False
        self.error = None
        self._decoder = codecs.getincrementaldecoder('utf-8')('replace')
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, close_fds=True, env=env)

    def read(self, wait):
        if self.ended:
            time.sleep(max(0.0, min(wait, 0.05)))
            return '', False
        ready = select.select([self.proc.stdout], [], [], max(0.0, wait))[0]
        if not ready:
            return '', False
        data = os.read(self.proc.stdout.fileno(), 65536)
        if not data:
            self.ended = True
            return self._decoder.decode(b'', True), False
        return self._decoder.decode(data), False

    def has_more(self):
        if self.ended:
            return False
        return bool(select.select([self.proc.stdout], [], [], 0)[0])

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._stderr.seek(0)
        err = self._stderr.read().decode('utf-8', 'replace').strip()
        self._stderr.close()
        self.error = err or None
        return err


# journalctl's words when it cannot get an inotify instance to follow with (it then prints what there
# is and exits): fs.inotify.max_user_instances is per user, and every container on a kernel shares root's
INOTIFY_EXHAUSTED = ('Insufficient watch descriptors available', 'Reverting to -n')


class JournalSource(object):
    """``journalctl --follow``, or polling the same query when journalctl cannot follow.

    Starts ``argv`` (a following journalctl) as a ``CommandSource``. When that ends and its standard
    error says the inotify instances are used up (``INOTIFY_EXHAUSTED``), it switches to re-running
    ``poll_argv`` (the same query without ``--follow``; by default ``argv`` less ``--follow``/``-f``)
    every ``interval`` seconds; each run whose output differs from the last is returned whole, as a
    new text (reset). Any other end of the follower, or a failing poll, ends the source as
    ``CommandSource`` would (``ended``, ``error``).
    """

    def __init__(self, argv, poll_argv=None, interval=0.1, run_timeout=10.0):
        self.argv = list(argv)
        self.poll_argv = list(poll_argv) if poll_argv else [a for a in argv if a not in ('--follow', '-f')]
        self.interval = interval
        self.run_timeout = run_timeout
        self.polling = False
        self.ended = False
        self.error = None
        self._follower = CommandSource(self.argv)
        self._next_run = 0.0
        self._last_output = None

    @property
    def exact_tail(self):
        # a poll hands over a whole, finished output
        return self.polling

    def read(self, wait):
        if self.ended:
            time.sleep(max(0.0, min(wait, 0.05)))
            return '', False
        if self.polling:
            return self._poll(wait)
        text, reset = self._follower.read(wait)
        if self._follower.ended:
            err = self._follower.close() or ''
            if any(words in err for words in INOTIFY_EXHAUSTED):
                self.polling = True
                self._next_run = time.monotonic() + self.interval
            else:
                self.ended, self.error = True, err or None
        return text, reset

    def _poll(self, wait):
        pause = self._next_run - time.monotonic()
        if pause > 0:
            time.sleep(min(max(0.0, wait), pause))
            if time.monotonic() < self._next_run:
                return '', False
        self._next_run = time.monotonic() + self.interval
        try:
            proc = subprocess.run(self.poll_argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, close_fds=True, timeout=self.run_timeout)
        except subprocess.TimeoutExpired:
            self.error = '%s did not finish within %s s' % (self.poll_argv[0], self.run_timeout)
            return '', False
        except OSError as exc:
            self.ended, self.error = True, '%s: %s' % (self.poll_argv[0], exc.strerror)
            return '', False
        if proc.returncode != 0:
            self.ended = True
            self.error = proc.stderr.decode('utf-8', 'replace').strip() or (
                '%s exited with status %d' % (self.poll_argv[0], proc.returncode))
            return '', False
        self.error = None
        if proc.stdout == self._last_output:
            return '', False
        self._last_output = proc.stdout
        return proc.stdout.decode('utf-8', 'replace'), True

    def has_more(self):
        return not (self.polling or self.ended) and self._follower.has_more()

    def close(self):
        if not (self.polling or self.ended):
            self.error = self._follower.close() or None
        return self.error or ''


def follow_log(source, timeout, accept_start=None, settle=0.3, poll=0.05, drain=10.0, clock=time.monotonic,
               wall=time.time):
    """Feed ``source`` to a parser until the current start has a verdict or ``timeout`` passes.

    Returns (result, waited_seconds, reason) with reason one of ``verdict``, ``timeout``, ``ended``.
    A verdict is final when a record follows the last ``inference compute`` record (the device list
    is complete) or, when the log goes quiet after it, ``settle`` seconds later (old versions print
    nothing after discovery until the first request). The time since that record was written (its
    ``time=`` stamp against ``wall``, the clock of the host that wrote it) counts toward ``settle``,
    so a log read after the fact is judged at once; a source whose ``has_more()`` cannot see what is
    about to arrive (``exact_tail`` false: a command's pipe) still gets one quiet ``poll`` first. A
    record without a stamp, or stamped in the future, counts from when it was read.
    ``accept_start(result)`` says whether the start found is the current one (a file sink still
    holding the previous process's start is not).
    Data already written when the deadline passes is still read, for at most ``drain`` more seconds.
    A source that ends (a command that exits, a ``FileSource(follow='while_written')`` that has read a file
    nothing writes any more) gives its final result at once, reason ``ended``.
    """
    parser = LogParser()
    began = clock()
    deadline = began + max(0.0, timeout)
    signature = None
    since = began
    while True:
        now = clock()
        text, reset = source.read(max(0.0, min(poll, deadline - now)))
        if reset:
            parser = LogParser()
        if text:
            parser.feed(text)
        now = clock()
        if source.has_more() and now < deadline + drain:
            # judge only once caught up: an older start may still be followed by newer ones (past the
            # deadline too, a little, so that timeout=0 still reads a whole saved file)
            continue
        result = parser.snapshot()
        current = accept_start is None or accept_start(result)
        if current and result['mode'] != 'unknown':
            sig = (result['starts'], result['inference_compute_count'], result['total_vram_zero'])
            if sig != signature:
                signature, since = sig, now - _quiet_already(result, source, settle, poll, wall)
            if result['verdict_closed'] or now - since >= settle:
                return result, now - began, 'verdict'
        if getattr(source, 'ended', False) and not text:
            result = parser.finish()
            return result, clock() - began, 'ended'
        if now >= deadline:
            # one last look at whatever arrived, as a complete text
            result = copy.deepcopy(parser).finish()
            if accept_start is not None and not accept_start(result):
                result = dict(result, mode='unknown', devices=[], stale_start=True)
            return result, now - began, 'timeout'


def _quiet_already(result, source, settle, poll, wall):
    """Seconds of the settle time that passed before the verdict's last record was read."""
    written = result.get('verdict_written')
    if written is None:
        return 0.0
    credit = min(settle, max(0.0, wall() - written))
    if not getattr(source, 'exact_tail', False):
        credit = min(credit, max(0.0, settle - poll))
    return credit
