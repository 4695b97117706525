# -*- coding: utf-8 -*-
# systemd unit-file syntax (target side, Python 3.8+ stdlib only): no file system walk, no systemctl.
"""Read and edit unit-file text the way systemd does - the one systemd-syntax parser of the toolkit.

Parsing follows systemd's own rules: systemd.syntax(7) for lines/continuations/quoting and
config_parse_environ() for Environment= (unquote + C unescape per word, then specifiers, invalid
assignments ignored, an empty assignment resets the list)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

ENV_NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


def valid_env_name(name):
    """env_name_is_valid() of systemd: letters, digits, underscore, not starting with a digit."""
    return bool(ENV_NAME_RE.match(name or ''))



def parse_unit_spans(text):
    """[(section, key, value, first, last)] from unit-file text (systemd.syntax(7)): comments (# ;), sections,
    Key=Value with whitespace trimmed, lines ending in an odd number of backslashes continued on the
    next line (backslash replaced by a space; comment lines inside a continuation skipped). ``first`` and
    ``last`` are the 1-based numbers of the setting's first and last physical line."""
    out = []
    section = None
    pending = None
    first = None
    number = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if pending is not None and line[:1] in ('#', ';'):
            continue
        if pending is None and (not line or line[:1] in ('#', ';')):
            continue
        if pending is None:
            first = number
        # continuation: an odd number of trailing backslashes
        n = len(line) - len(line.rstrip('\\'))
        if n % 2 == 1:
            pending = (pending + ' ' if pending is not None else '') + line[:-1]
            continue
        if pending is not None:
            line = pending + ' ' + line
            pending = None
        line = line.strip()
        if line.startswith('[') and line.endswith(']'):
            section = line[1:-1]
            continue
        key, sep, value = line.partition('=')
        if sep:
            out.append((section, key.strip(), value.strip(), first, number))
    if pending is not None:
        key, sep, value = pending.strip().partition('=')
        if sep:
            out.append((section, key.strip(), value.strip(), first, number))
    return out


def parse_unit_lines(text):
    """[(section, key, value, line)] from unit-file text: parse_unit_spans() with the setting's first line only."""
    return [(sec, key, value, first) for sec, key, value, first, _last in parse_unit_spans(text)]


def parse_unit_text(text):
    """[(section, key, value)] from unit-file text: parse_unit_lines() without the line numbers."""
    return [(sec, key, value) for sec, key, value, _line in parse_unit_lines(text)]


_SIMPLE_ESCAPES = {'a': '\a', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v',
                   '\\': '\\', '"': '"', "'": "'", 's': ' '}


def _cunescape_one(s, i):
    """Decode the escape whose first char (after the backslash) is s[i]. Returns (text, next_i) or None."""
    c = s[i] if i < len(s) else ''
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], i + 1
    if c == 'x' and re.match(r'[0-9a-fA-F]{2}', s[i + 1:i + 3]):
        v = int(s[i + 1:i + 3], 16)
        return (chr(v), i + 3) if v else None
    if c == 'u' and re.match(r'[0-9a-fA-F]{4}', s[i + 1:i + 5]):
        v = int(s[i + 1:i + 5], 16)
        return (chr(v), i + 5) if v else None
    if c == 'U' and re.match(r'[0-9a-fA-F]{8}', s[i + 1:i + 9]):
        v = int(s[i + 1:i + 9], 16)
        return (chr(v), i + 9) if 0 < v <= 0x10ffff else None
    if re.match(r'[0-3][0-7]{2}', s[i:i + 3]):
        v = int(s[i:i + 3], 8)
        return (chr(v), i + 3) if v else None
    return None


def split_words(value):
    """Words of a setting value as systemd's extract_first_word(EXTRACT_CUNESCAPE|EXTRACT_UNQUOTE) splits
    them. Returns (words, error): on bad syntax (unbalanced quote, unknown escape) the words before it and
    a reason — systemd ignores the rest of that line."""
    words = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in ' \t\n\r':
            i += 1
        if i >= n:
            return words, None
        word = []
        quote = None
        while i < n:
            c = value[i]
            if c == '\\':
                dec = _cunescape_one(value, i + 1)
                if dec is None:
                    return words, 'invalid escape sequence at %r' % value[i:i + 4]
                word.append(dec[0])
                i = dec[1]
            elif quote:
                if c == quote:
                    quote = None
                else:
                    word.append(c)
                i += 1
            elif c in ('"', "'"):
                quote = c
                i += 1
            elif c in ' \t\n\r':
                break
            else:
                word.append(c)
                i += 1
        if quote:
            return words, 'unbalanced %s quote' % quote
        words.append(''.join(word))


def resolve_specifiers(word, unit=None):
    """Resolve %% and the unit-name specifiers (%n %N %p %i %I); others are kept as written."""
    name = unit or ''
    stem = name.rpartition('.')[0] if '.' in name else name
    prefix, _at, instance = stem.partition('@')
    table = {'%': '%', 'n': name, 'N': stem, 'p': prefix, 'i': instance, 'I': instance}
    out = []
    i = 0
    while i < len(word):
        c = word[i]
        if c == '%' and i + 1 < len(word) and word[i + 1] in table and (unit or word[i + 1] == '%'):
            out.append(table[word[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def _value_words(value, unit=None):
    """Words of one list setting's value (Environment=, UnsetEnvironment=): unquoted, C-unescaped, specifiers
    resolved; on bad syntax the words before it. None for an empty value (which resets the list)."""
    if not value.strip():
        return None
    words, _err = split_words(value)
    return [resolve_specifiers(w, unit) for w in words]


def parse_environment_value(value, unit=None):
    """Assignments of one Environment= value: [(name, value)] in order (invalid words skipped), or None
    for an empty value (which resets the list)."""
    words = _value_words(value, unit)
    if words is None:
        return None
    out = []
    for w in words:
        name, sep, val = w.partition('=')
        if not sep or not name or '\0' in w:
            continue
        out.append((name, val))
    return out


def apply_environment(env, value, unit=None):
    """Apply one Environment= value to env (a dict, kept in insertion order), as systemd does."""
    parsed = parse_environment_value(value, unit)
    if parsed is None:
        env.clear()
        return env
    for name, val in parsed:
        env.pop(name, None)
        env[name] = val
    return env


def environment_assignments(text, unit=None):
    """Environment= values set in the [Service] section of a unit/drop-in text, in order (raw values)."""
    return [v for sec, k, v in parse_unit_text(text) if sec == 'Service' and k == 'Environment']


def environment_of_text(text, unit=None, env=None):
    """env updated by every [Service] Environment= line of text."""
    env = {} if env is None else env
    for v in environment_assignments(text, unit):
        apply_environment(env, v, unit)
    return env


def variables_set_by(text, unit=None):
    """Names assigned by the [Service] Environment= lines of text (a reset counts as setting nothing)."""
    names = []
    for v in environment_assignments(text, unit):
        parsed = parse_environment_value(v, unit)
        for name, _val in parsed or []:
            if name not in names:
                names.append(name)
    return names


def quote_environment_assignment(name, value):
    """One Environment= word for name=value that systemd reads back exactly: double-quoted, with
    backslash and double quote C-escaped and % doubled (specifiers are resolved after unquoting).
    '$' needs nothing: Environment= does no variable expansion. Raises ValueError for a bad name
    or control characters (a newline would end the setting)."""
    if not ENV_NAME_RE.match(name or ''):
        raise ValueError('%r is not a valid environment variable name' % (name,))
    for ch in value:
        if ord(ch) < 0x20 and ch != '\t' or ord(ch) == 0x7f:
            raise ValueError('the value of %s contains a control character (%r)' % (name, ch))
    escaped = value.replace('\\', '\\\\').replace('"', '\\"').replace('%', '%%')
    return '"%s=%s"' % (name, escaped)


def read_text(path):
    with open(path, 'rb') as f:
        return f.read().decode('utf-8', 'replace')



def safe_read_text(path):
    """read_text(), or None when the file cannot be read."""
    try:
        return read_text(path)
    except (IOError, OSError):
        return None


def parse_unset_environment_value(value, unit=None):
    """Entries of one UnsetEnvironment= value, as systemd's config_parse_unset_environ() reads them: each word
    unquoted and C-unescaped, specifiers resolved, kept when it is a variable name (``NAME``: unset it) or an
    assignment (``NAME=VALUE``: unset it only while it has exactly that value); other words are ignored, and
    on bad syntax the words before it count. None for an empty value (which resets the list)."""
    words = _value_words(value, unit)
    if words is None:
        return None
    return [w for w in words if '\0' not in w and ENV_NAME_RE.match(w.partition('=')[0])]


def unset_assignments(text, unit=None):
    """UnsetEnvironment= values set in the [Service] section of a unit/drop-in text, in order (raw values)."""
    return [v for sec, k, v in parse_unit_text(text) if sec == 'Service' and k == 'UnsetEnvironment']


def unset_matches(entry, name, value):
    """Whether UnsetEnvironment= entry (NAME or NAME=VALUE) removes the variable name=value (strv_env_delete)."""
    if '=' in entry:
        return entry == '%s=%s' % (name, value)
    return entry == name


def apply_unset(env, entries):
    """env (a dict) without the variables that UnsetEnvironment= entries remove; returns the removed names."""
    removed = []
    for name in list(env):
        if any(unset_matches(e, name, env[name]) for e in entries):
            del env[name]
            removed.append(name)
    return removed


def variables_unset_by(text, unit=None):
    """Names that the [Service] UnsetEnvironment= lines of text name (a reset counts as naming nothing)."""
    names = []
    for v in unset_assignments(text, unit):
        for entry in parse_unset_environment_value(v, unit) or []:
            name = entry.partition('=')[0]
            if name not in names:
                names.append(name)
    return names


def unit_files_setting(texts, key, section='Service'):
    """Last value of key in section over texts (unit file then drop-ins, in the order systemd applies
    them), or None when unset; an empty assignment resets to the default (None)."""
    found = None
    for text in texts:
        for sec, k, v in parse_unit_text(text or ''):
            if sec == section and k == key:
                found = v if v != '' else None
    return found



# ------------------------------------------------------------------------------------------ edits

def _raw_words(value):
    """The words of a setting value with their quotes and escapes kept, split as extract_first_word() does:
    [(start, end)] offsets into value."""
    spans = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in ' \t':
            i += 1
        if i >= n:
            break
        start, quote = i, None
        while i < n:
            c = value[i]
            if c == '\\':
                i += 2
                continue
            if quote:
                if c == quote:
                    quote = None
            elif c in ('"', "'"):
                quote = c
            elif c in ' \t':
                break
            i += 1
        spans.append((start, min(i, n)))
    return spans


def _word_value(raw):
    words, _err = split_words(raw)
    return words[0] if words else ''


def _rewrite_settings(text, wanted, rewrite):
    """``text`` with every setting for which wanted((section, key, value, first, last)) is true replaced by
    rewrite(setting, physical_lines) (a list of lines, [] to drop it); every other line kept byte for byte."""
    lines = text.splitlines(True)
    chosen = dict((s[3], s) for s in parse_unit_spans(text) if wanted(s))
    if not chosen:
        return text
    out = []
    i = 0
    while i < len(lines):
        setting = chosen.get(i + 1)
        if setting is None:
            out.append(lines[i])
            i += 1
            continue
        # the physical lines of this (possibly continued) setting, comment lines inside it included
        span = lines[i:setting[4]]
        out.extend(rewrite(setting, span))
        i = setting[4]
    return ''.join(out)


def remove_setting_words(text, section, key, names, kind='assignment'):
    """``text`` (a unit file, drop-in or system.conf) with the words naming ``names`` taken out of every
    ``key=`` line of ``section``: for kind 'assignment' (Environment=, DefaultEnvironment=) words
    ``NAME=value``; for kind 'name' (PassEnvironment=, UnsetEnvironment=) words ``NAME``. The other words of a
    changed line are kept as written; a line left without words is removed (an empty ``Environment=`` would
    reset the list). Lines continued with a backslash are rewritten as one line. Other lines are kept byte
    for byte. Returns (new_text, removed) with removed = [{'name', 'line', 'text'}] (text: the word as written)."""
    drop = set(names)
    removed = []

    def rewrite(setting, span):
        value, number = setting[2], setting[3]
        spans = _raw_words(value)
        kept = []
        for a, b in spans:
            raw = value[a:b]
            word = _word_value(raw)
            name = word.partition('=')[0] if kind == 'assignment' else word
            if name in drop and (kind != 'assignment' or '=' in word):
                removed.append({'name': name, 'line': number, 'text': raw})
            else:
                kept.append(raw)
        if len(kept) == len(spans):
            return span
        if not kept:
            return []
        eol = '\r\n' if span[-1].endswith('\r\n') else ('\n' if span[-1].endswith('\n') else '')
        indent = span[0][:len(span[0]) - len(span[0].lstrip())]
        return ['%s%s=%s%s' % (indent, key, ' '.join(kept), eol)]

    new = _rewrite_settings(text, lambda s: s[0] == section and s[1] == key, rewrite)
    return new, removed


def remove_settings(text, keys, section='Service'):
    """``text`` without the ``keys`` settings of ``section`` (each setting whole: its continuation lines, and
    comment lines inside the continuation, go with it); every other line kept byte for byte. Returns
    (new_text, removed) with removed = [{'key', 'line', 'value'}] in file order."""
    drop = set(keys or ())
    removed = []

    def rewrite(setting, _span):
        removed.append({'key': setting[1], 'line': setting[3], 'value': setting[2]})
        return []

    new = _rewrite_settings(text, lambda s: s[0] == section and s[1] in drop, rewrite)
    return new, removed


def unit_settings_left(text, section=None):
    """How many settings a unit text still has (in ``section``, or in any section)."""
    return len([s for s in parse_unit_lines(text) if section is None or s[0] == section])
