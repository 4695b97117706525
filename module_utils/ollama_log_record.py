# -*- coding: utf-8 -*-
# The fields of one Ollama log record (target side, Python 3.8+ stdlib only).
"""Sizes, timestamps, the prefixes journald / docker / quoting put before a record, slog's tokenizer, and
``parse_record`` (one logical record -> kind, level, time, msg, fields). Pure functions; the parser that
finds server starts and their devices in a whole log is ``ollama_log``."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import calendar
import re
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
RECORD_START_RE = re.compile(
    r'^(?:(?:time|level|source|msg)='
    r'|\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}'
    r'|\['                                     # [GIN] …, [GPU-…] CUDA totalMem …
    r'|/'                                      # /usr/local/bin/ollama: symbol lookup error: …
    r'|(?:[\w.\-]+ ){0,3}[\w.\-]+:(?:\s|$)'     # llama_model_loader: …, ERROR: ld.so: …, CUDA driver version: 12.8
    r')')
VERSION_RE = re.compile(r'\(version ([^)\s]+)\)')


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
