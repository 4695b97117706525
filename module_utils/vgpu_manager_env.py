# -*- coding: utf-8 -*-
# The service manager's own environment and where each variable of it comes from (target side, stdlib only).
"""systemctl show-environment, DefaultEnvironment= of system.conf and its drop-ins, systemd.setenv= on the kernel
command line, the locale and systemd's default PATH (the first source of vgpu_unit_env.predict_environment)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible.module_utils.vgpu_env_file import env_file_environment
from ansible.module_utils.vgpu_unit_syntax import parse_environment_value, parse_unit_lines, valid_env_name

# The manager configuration (systemd-system.conf(5)): the first main file found, then drop-ins sorted by name
# across the directories, an earlier directory masking a same-named file (src/basic/def.h CONF_PATHS@v252.31;
# v256 looks for the main file in the same four places, src/shared/conf-parser.c:637@v256-rc4).
SYSTEM_CONF_FILES = ('/etc/systemd/system.conf', '/run/systemd/system.conf', '/usr/local/lib/systemd/system.conf',
                     '/usr/lib/systemd/system.conf')
SYSTEM_CONF_DROPIN_DIRS = ('/etc/systemd/system.conf.d', '/run/systemd/system.conf.d',
                           '/usr/local/lib/systemd/system.conf.d', '/usr/lib/systemd/system.conf.d')
LOCALE_CONF = '/etc/locale.conf'
KERNEL_CMDLINE = '/proc/cmdline'

# systemd's default PATH for system services (DEFAULT_PATH, src/basic/path-util.h@v252.31)
SYSTEMD_DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

_LOCALE_NAMES = ('LANG', 'LANGUAGE', 'LC_CTYPE', 'LC_NUMERIC', 'LC_TIME', 'LC_COLLATE', 'LC_MONETARY',
                 'LC_MESSAGES', 'LC_PAPER', 'LC_NAME', 'LC_ADDRESS', 'LC_TELEPHONE', 'LC_MEASUREMENT',
                 'LC_IDENTIFICATION')

_ANSI_C_ESCAPES = {'a': '\a', 'b': '\b', 'e': '\x1b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v',
                   '\\': '\\', "'": "'", '"': '"', '?': '?'}


def _ansi_c_unquote(body):
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == '\\' and i + 1 < len(body):
            n = body[i + 1]
            if n in _ANSI_C_ESCAPES:
                out.append(_ANSI_C_ESCAPES[n])
                i += 2
                continue
            m = re.match(r'x([0-9a-fA-F]{1,2})', body[i + 1:])
            if m:
                out.append(chr(int(m.group(1), 16)))
                i += 1 + len(m.group(0))
                continue
            m = re.match(r'[0-7]{1,3}', body[i + 1:])
            if m:
                out.append(chr(int(m.group(0), 8)))
                i += 1 + len(m.group(0))
                continue
        out.append(c)
        i += 1
    return ''.join(out)


def parse_show_environment(text):
    """{name: value} from `systemctl show-environment` output: one NAME=value per line; systemd 246+ prints a
    value that needs it shell-quoted as $'...' (ANSI-C escapes, seen on systemd 252: ``D=$'x y'``)."""
    env = {}
    for line in (text or '').splitlines():
        name, sep, value = line.partition('=')
        if not sep or not valid_env_name(name):
            continue
        if value.startswith("$'") and value.endswith("'") and len(value) >= 3:
            value = _ansi_c_unquote(value[2:-1])
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        env[name] = value
    return env


def system_conf_files(root='/'):
    """The manager configuration files in the order systemd reads them: [(path, is_dropin)]."""
    def join(p):
        return p if root in ('', '/') else os.path.join(root, p.lstrip('/'))
    out = []
    for p in SYSTEM_CONF_FILES:
        if os.path.isfile(join(p)):
            out.append((join(p), False))
            break
    chosen = {}
    for d in SYSTEM_CONF_DROPIN_DIRS:
        try:
            names = sorted(n for n in os.listdir(join(d)) if n.endswith('.conf'))
        except OSError:
            continue
        for n in names:
            chosen.setdefault(n, os.path.join(join(d), n))
    for n in sorted(chosen):
        if os.path.realpath(chosen[n]) != '/dev/null':
            out.append((chosen[n], True))
    return out


def default_environment_assignments(root='/'):
    """[{'name', 'value', 'path', 'line'}]: the DefaultEnvironment= assignments of the manager configuration that
    are in force (in order; an empty DefaultEnvironment= resets what came before; no specifiers are expanded
    for the manager's own configuration)."""
    out = []
    for path, _dropin in system_conf_files(root):
        text = _read(path)
        if text is None:
            continue
        for sec, key, value, line in parse_unit_lines(text):
            if sec != 'Manager' or key != 'DefaultEnvironment':
                continue
            parsed = parse_environment_value(value, None)
            if parsed is None:
                out = []
                continue
            for name, val in parsed:
                out.append({'name': name, 'value': val, 'path': path, 'line': line})
    return out


def kernel_setenv(cmdline):
    """[(name, value)] of systemd.setenv= on the kernel command line."""
    out = []
    for word in (cmdline or '').split():
        if word.startswith('systemd.setenv='):
            name, sep, value = word[len('systemd.setenv='):].partition('=')
            if sep and valid_env_name(name):
                out.append((name, value))
    return out


def manager_environment(shown, root='/', proc='/proc'):
    """The manager's environment with a source for every variable.

    shown: {name: value} from `systemctl show-environment` (None when systemd cannot be asked: then the
    configuration files are all we know). Returns {'environment': {name: value}, 'sources': {name: source},
    'assignments': {name: [source, ...]} (every configuration line that assigns it, lowest precedence first),
    'known': bool (whether systemd itself was asked)}."""
    config = default_environment_assignments(root)
    cmdline_path = KERNEL_CMDLINE if root in ('', '/') else os.path.join(root, KERNEL_CMDLINE.lstrip('/'))
    cmdline = kernel_setenv(_read(cmdline_path) or '')
    locale_path = LOCALE_CONF if root in ('', '/') else os.path.join(root, LOCALE_CONF.lstrip('/'))
    locale = dict((k, v) for k, v in env_file_environment(_read(locale_path) or '').items() if k in _LOCALE_NAMES)
    candidates = {}

    def add(name, src):
        candidates.setdefault(name, []).append(src)

    add('PATH', {'kind': 'manager', 'via': 'default_path', 'path': None, 'line': None,
                 'value': SYSTEMD_DEFAULT_PATH})
    for k, v in locale.items():
        add(k, {'kind': 'manager', 'via': 'locale', 'path': locale_path, 'line': None, 'value': v})
    for a in config:
        add(a['name'], {'kind': 'manager', 'via': 'default_environment', 'path': a['path'], 'line': a['line'],
                        'value': a['value']})
    for name, value in cmdline:
        add(name, {'kind': 'manager', 'via': 'kernel_cmdline', 'path': cmdline_path, 'line': None, 'value': value})
    if shown is None:
        env = dict((n, c[-1]['value']) for n, c in candidates.items())
        return {'environment': env, 'sources': dict((n, c[-1]) for n, c in candidates.items()),
                'assignments': candidates, 'known': False}
    sources, assignments = {}, {}
    for name, value in shown.items():
        found = list(candidates.get(name, []))
        if found and found[-1]['value'] == value:
            # the configuration explains it; `systemctl set-environment` may have set the same value on top,
            # which only unset-environment removes - a fix does both
            src = dict(found[-1], also_possible='set_environment')
        else:
            # not what the configuration says: set at runtime (set-environment / import-environment), or, for a
            # PATH nothing configures, by an environment generator
            via = 'generator' if name == 'PATH' and len(found) == 1 else 'set_environment'
            src = {'kind': 'manager', 'via': via, 'path': None, 'line': None, 'value': value}
            found.append(src)
        sources[name] = src
        assignments[name] = found
    return {'environment': dict(shown), 'sources': sources, 'assignments': assignments, 'known': True}



def _read(path, limit=1024 * 1024):
    try:
        with open(path, 'rb') as f:
            return f.read(limit).decode('utf-8', 'replace')
    except (IOError, OSError):
        return None
