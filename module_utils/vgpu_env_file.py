# -*- coding: utf-8 -*-
# systemd's EnvironmentFile= grammar (target side, Python 3.8+ stdlib only).
"""Read and edit EnvironmentFile= files as systemd reads them
(parse_env_file_internal(), src/basic/env-file.c@v252.31)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.module_utils.vgpu_unit_syntax import valid_env_name

_WS = ' \t\n\r'
_NL = '\n\r'
_COMMENTS = '#;'
_SHELL_NEED_ESCAPE = '"\\`$'
_VALUE_OPENERS = {"'": 'SINGLE', '"': 'DOUBLE', '\\': 'VALUE_ESCAPE'}
_CLOSING = {'SINGLE': "'", 'DOUBLE': '"'}
# the states a newline ends (in the others it is part of the value, or escaped)
_ENDED_BY_NEWLINE = ('PRE_KEY', 'KEY', 'PRE_VALUE', 'VALUE', 'COMMENT')


def _append(chars, c, trailing_ws):
    """Append c to chars; returns where the trailing whitespace of chars starts (None: it ends in another
    character), which is cut off when the key or the unquoted value ends."""
    if c not in _WS:
        trailing_ws = None
    elif trailing_ws is None:
        trailing_ws = len(chars)
    chars.append(c)
    return trailing_ws


def parse_env_file(text):
    """EnvironmentFile= contents as systemd reads them (parse_env_file_internal(), src/basic/env-file.c@v252.31).

    Returns {'assignments': [{'name', 'value', 'line', 'end_line'}], 'ignored': [{'line', 'text', 'reason'}]}:
    assignments in file order (a later one of the same name wins, as strv_env_replace does); line/end_line are
    the physical lines the assignment spans (continuations and multi-line quotes included). ``ignored`` lists
    assignments systemd drops: names that are not valid variable names (``export FOO=1``)."""
    assignments, ignored = [], []
    state = 'PRE_KEY'
    key, value = [], None
    line = 1
    start = None
    last_key_ws = last_value_ws = None

    def push(end_line):
        name = ''.join(key[:last_key_ws] if last_key_ws is not None else key)
        val = '' if value is None else ''.join(value)
        if valid_env_name(name):
            assignments.append({'name': name, 'value': val, 'line': start, 'end_line': end_line})
        else:
            ignored.append({'line': start, 'text': name, 'reason': 'not a valid variable name (systemd ignores '
                                                                   'the assignment)'})

    for i, c in enumerate(text):
        # a line break as str.splitlines() counts them (\r\n is one), so that lines match the file's lines
        nl = 0 if c == '\n' and i and text[i - 1] == '\r' else 1
        if c in _NL and state in _ENDED_BY_NEWLINE:
            # the line ends an assignment in progress (a key without "=" is dropped) or a comment
            if state == 'VALUE' and last_value_ws is not None:
                value = value[:last_value_ws]
            if state in ('PRE_VALUE', 'VALUE'):
                push(line)
            state = 'PRE_KEY'
            line += nl
        elif c in _WS and state in ('PRE_KEY', 'PRE_VALUE'):
            pass        # blanks before a key or a value
        elif state == 'PRE_KEY':
            if c in _COMMENTS:
                state = 'COMMENT'
            else:
                state, key, value, start, last_key_ws = 'KEY', [c], None, line, None
        elif state == 'KEY' and c == '=':
            state, last_value_ws = 'PRE_VALUE', None
        elif state == 'KEY':
            last_key_ws = _append(key, c, last_key_ws)
        elif state == 'PRE_VALUE':
            # a quote or an escape opens the value, anything else starts it
            value = value if value is not None else []
            state = _VALUE_OPENERS.get(c, 'VALUE')
            if state == 'VALUE':
                value.append(c)
        elif state == 'VALUE' and c == '\\':
            state, last_value_ws = 'VALUE_ESCAPE', None
        elif state == 'VALUE':
            last_value_ws = _append(value, c, last_value_ws)
        elif state == 'VALUE_ESCAPE':
            state = 'VALUE'
            if c in _NL:
                line += nl       # an escaped newline is eaten: the assignment goes on on the next line
            else:
                value.append(c)
        elif state in ('SINGLE', 'DOUBLE'):
            # a quote is closed by its own character; only a double quote knows escapes
            if c == _CLOSING[state]:
                state = 'PRE_VALUE'
            elif c == '\\' and state == 'DOUBLE':
                state = 'DOUBLE_ESCAPE'
            else:
                if c in _NL:
                    line += nl
                value.append(c)
        elif state == 'DOUBLE_ESCAPE':
            state = 'DOUBLE'
            if c in _SHELL_NEED_ESCAPE:
                value.append(c)
            elif c in _NL:
                line += nl       # continuation inside double quotes
            else:
                value.extend(['\\', c])
        elif state == 'COMMENT':
            if c == '\\':
                state = 'COMMENT_ESCAPE'
        elif state == 'COMMENT_ESCAPE':
            # the escaped character - a newline too - stays in the comment: "# x \" swallows the next line
            if c in _NL:
                line += nl
            state = 'COMMENT'
    if state in ('PRE_VALUE', 'VALUE', 'VALUE_ESCAPE', 'SINGLE', 'DOUBLE', 'DOUBLE_ESCAPE'):
        if state == 'VALUE' and last_value_ws is not None:
            value = value[:last_value_ws]
        push(line)
    return {'assignments': assignments, 'ignored': ignored}


def env_file_environment(text):
    """{name: value} of an EnvironmentFile= text (later assignments of a name win)."""
    env = {}
    for a in parse_env_file(text)['assignments']:
        env[a['name']] = a['value']
    return env


def remove_env_file_assignments(text, names):
    """``text`` without the lines of every assignment of ``names`` (each assignment's whole span, continuation
    and quoted lines included); every other byte is kept as it was. Returns (new_text, removed) where removed
    is [{'name', 'line', 'end_line', 'text'}]."""
    drop = set(names)
    hits = [a for a in parse_env_file(text)['assignments'] if a['name'] in drop]
    if not hits:
        return text, []
    lines = text.splitlines(True)
    gone = set()
    removed = []
    for a in hits:
        span = range(a['line'], a['end_line'] + 1)
        gone.update(span)
        removed.append({'name': a['name'], 'line': a['line'], 'end_line': a['end_line'],
                        'text': ''.join(lines[i - 1] for i in span if 0 < i <= len(lines)).rstrip('\r\n')})
    return ''.join(l for i, l in enumerate(lines, 1) if i not in gone), removed
