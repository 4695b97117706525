# -*- coding: utf-8 -*-
# The environment the next start of a systemd unit really gets, every variable with its source (target side,
# Python 3.8+ stdlib only). Shared by vgpu_doctor and systemd_env_unset.
"""Which environment will the next start of a unit get, and where does each variable come from?

systemd assembles a service's environment from these sources; a later one wins for the same name
(systemd.exec(5), "Environment Variables in Spawned Processes"; the merge is
``strv_env_merge(params->environment, our_env, joined_exec_search_path, pass_env, context->environment,
files_env)``, src/core/execute.c:4614@v252.31):

1. the **manager's environment** (``systemctl show-environment``): systemd's default ``PATH``, the locale
   (``/etc/locale.conf``), ``DefaultEnvironment=`` of ``system.conf`` and its drop-ins, ``systemd.setenv=`` on
   the kernel command line, environment generators - all re-read on ``daemon-reload``
   (src/core/main.c:1930 and src/core/manager.c:617@v252.31) - and, winning over those, what
   ``systemctl set-environment`` added (the "client" environment, which ``unset-environment`` alone removes:
   src/core/manager.c:3839,3883@v252.31);
2. variables systemd defines itself (``USER``, ``HOME``, ``INVOCATION_ID``, ``JOURNAL_STREAM`` ...);
3. ``PassEnvironment=``: names taken from the service manager's *own* process environment (``/proc/1/environ``,
   ``getenv()`` in build_pass_environment(), src/core/execute.c:1999@v252.31);
4. ``Environment=`` of the unit file, then its drop-ins in file-name order (an empty assignment resets);
5. ``EnvironmentFile=`` files, in the order of the settings, each pattern globbed and sorted, a later file
   winning; ``-`` makes a missing or unreadable file harmless, without it the start fails
   (exec_context_load_environment(), src/core/execute.c:5659@v252.31; seen on systemd 252:
   ``Failed with result 'resources'``);

and finally ``UnsetEnvironment=`` removes names (or exact ``NAME=VALUE`` pairs) from the merged block
(src/core/execute.c:5140@v252.31).

``EnvironmentFile=`` contents follow systemd's own env-file grammar (parse_env_file_internal(),
src/basic/env-file.c@v252.31), implemented by parse_env_file(): ``#``/``;`` start a comment only at the start
of a line (and a comment line ending in a backslash swallows the next line), keys and unquoted values are
trimmed, ``'...'`` keeps everything literally (newlines included), ``"..."`` unescapes only ``"\\`$``,
backslash-newline continues a line, a line without ``=`` is ignored, and an assignment whose name is not a
valid variable name (``export FOO=1``: the name is ``export FOO``) is dropped. Values are read fresh at every
start; the *list* of files and the other settings are the ones systemd has loaded (``systemctl show``), which
are the files' as soon as ``daemon-reload`` has run.

predict_environment() returns the prediction; each source is a dict (see ``Source`` below) that
describe_source() turns into a sentence and source_fix() judges: may a remediation take the assignment out at
its source, and if not, what must a person do.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import pwd
import re
import stat

from ansible.module_utils.vgpu_env_file import parse_env_file
from ansible.module_utils.vgpu_systemd import unit_environment_settings
from ansible.module_utils.vgpu_unit_syntax import unset_matches

# Variables systemd sets for every service (their values change with every start): never "differences".
VOLATILE_VARIABLES = ('INVOCATION_ID', 'JOURNAL_STREAM', 'SYSTEMD_EXEC_PID', 'MAINPID', 'NOTIFY_SOCKET',
                      'WATCHDOG_PID', 'WATCHDOG_USEC', 'LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES',
                      'MEMORY_PRESSURE_WATCH', 'MEMORY_PRESSURE_WRITE', 'MONITOR_SERVICE_RESULT',
                      'MONITOR_EXIT_CODE', 'MONITOR_EXIT_STATUS', 'MONITOR_INVOCATION_ID', 'MONITOR_UNIT',
                      'TRIGGER_UNIT', 'TRIGGER_PATH', 'TRIGGER_TIMER_REALTIME_USEC', 'TRIGGER_TIMER_MONOTONIC_USEC',
                      'CREDENTIALS_DIRECTORY', 'RUNTIME_DIRECTORY', 'STATE_DIRECTORY', 'CACHE_DIRECTORY',
                      'LOGS_DIRECTORY', 'CONFIGURATION_DIRECTORY')
# systemd's user/login variables, set when the unit has User= (or DynamicUser=): they win over the manager's.
LOGIN_VARIABLES = ('USER', 'LOGNAME', 'HOME', 'SHELL')

# Where a remediation may edit an operator's files: the admin configuration tree.
EDITABLE_ROOT = '/etc'

# A source (one place that assigns a variable) is a dict:
#   kind   'manager' | 'systemd' | 'pass_environment' | 'environment' | 'environment_file'
#   via    for kind 'manager': 'default_environment' | 'set_environment' | 'kernel_cmdline' | 'locale' |
#          'default_path' | 'generator'
#   path, line      the file and 1-based line of the assignment (None where there is no file)
#   setting_path, setting_line   for environment_file / pass_environment: the unit file line that names it
#   value  the value assigned there (None when unknown, e.g. systemd's own volatile values)
SOURCE_KINDS = ('manager', 'systemd', 'pass_environment', 'environment', 'environment_file')


def _read_strict(path, limit=16 * 1024 * 1024):
    """(text, error): error when unreadable or not valid UTF-8 (systemd then fails the whole file,
    check_utf8ness_and_warn(), src/basic/env-file.c@v252.31)."""
    try:
        with open(path, 'rb') as f:
            raw = f.read(limit)
    except (IOError, OSError) as e:
        return None, e.strerror or str(e)
    try:
        return raw.decode('utf-8'), None
    except UnicodeDecodeError:
        return None, 'not valid UTF-8 (systemd ignores the whole file)'


def parse_show_environment_files(value):
    """[{'pattern', 'optional'}] from `systemctl show -p EnvironmentFiles` (one ``path (ignore_errors=yes|no)``
    per line, as parse_show_output() joins them)."""
    out = []
    for line in (value or '').splitlines():
        m = re.match(r'^(.*) \(ignore_errors=(yes|no)\)$', line.strip())
        if m:
            out.append({'pattern': m.group(1), 'optional': m.group(2) == 'yes'})
    return out


def _glob_sorted(pattern):
    if not glob.has_magic(pattern):
        return [pattern] if os.path.exists(pattern) else []
    return sorted(glob.glob(pattern))


def predict_environment(unit, dirs, manager=None, pid1_environ=None, user=None, props=None, extra=None,
                        root='/'):
    """The environment the next start of ``unit`` gets, with the source of every variable.

    dirs: the unit search path; manager: manager_environment()'s result (None: not known - the prediction then
    has only the unit's own sources); pid1_environ: {name: value} of the service manager process (for
    PassEnvironment=; None when unreadable); user: the unit's User= (its login variables come from passwd);
    props: `systemctl show` of the unit (EnvironmentFiles, PassEnvironment) - when given and the files agree
    with them they are used as systemd's own view, and a disagreement is noted; extra: planned file contents.

    Returns a dict:
      environment   {name: value} of the next start (systemd's volatile variables excluded)
      sources       {name: source} - the source whose value the start gets
      assignments   {name: [source, ...]} - every source that assigns the name, lowest precedence first, the
                    winner last (what a fix must take out so that the name no longer reaches the service)
      unset         [{'entry', 'path', 'line'}]; unset_by {name: source of the UnsetEnvironment= entry}
      environment_files  [{'pattern', 'optional', 'path', 'line', 'files': [{'path', 'error', 'variables'}],
                    'error'}]
      pass_environment   [{'name', 'path', 'line', 'passed': bool}]
      start_fails   [sentence] - what makes the next start fail before the process runs (a missing
                    EnvironmentFile= without '-')
      notes         [sentence]"""
    settings = unit_environment_settings(unit, dirs, extra)
    notes, start_fails = [], []
    env, sources, assignments = {}, {}, {}

    def assign(name, value, src):
        src = dict(src, value=value)
        env[name] = value
        sources[name] = src
        assignments.setdefault(name, []).append(src)

    # 1. the manager's environment
    if manager is not None:
        for name, value in manager['environment'].items():
            for src in manager['assignments'].get(name, [])[:-1]:
                assignments.setdefault(name, []).append(src)
            assign(name, value, manager['sources'][name])
    # 2. systemd's login variables for User=
    if user and user not in ('root', '0'):
        try:
            pw = pwd.getpwnam(user)
            login = {'USER': pw.pw_name, 'LOGNAME': pw.pw_name, 'HOME': pw.pw_dir, 'SHELL': pw.pw_shell}
        except KeyError:
            login = {}
        for name in LOGIN_VARIABLES:
            if name in login:
                assign(name, login[name], {'kind': 'systemd', 'path': None, 'line': None})
    # 3. PassEnvironment=
    passed = []
    shown_pass = (props or {}).get('PassEnvironment')
    if shown_pass is not None and shown_pass.split() != [p['name'] for p in settings['pass_environment']]:
        notes.append('PassEnvironment= of the unit files (%s) differs from what systemd has loaded (%s): a '
                     'daemon-reload is pending' % (' '.join(p['name'] for p in settings['pass_environment']),
                                                   shown_pass))
    for p in settings['pass_environment']:
        ok = pid1_environ is not None and p['name'] in pid1_environ
        passed.append(dict(p, passed=ok))
        if ok:
            assign(p['name'], pid1_environ[p['name']],
                   {'kind': 'pass_environment', 'path': '/proc/1/environ', 'line': None, 'setting_path': p['path'],
                    'setting_line': p['line']})
    if settings['pass_environment'] and pid1_environ is None:
        notes.append('PassEnvironment= is set but the service manager\'s environment (/proc/1/environ) cannot '
                     'be read: the passed variables are not predicted')
    # 4. Environment=
    for name, value, path, line in settings['environment']:
        assign(name, value, {'kind': 'environment', 'path': path, 'line': line})
    # 5. EnvironmentFile=
    env_files = []
    shown_files = parse_show_environment_files((props or {}).get('EnvironmentFiles')) if props else None
    ours = [{'pattern': e['pattern'], 'optional': e['optional']} for e in settings['environment_files']]
    if shown_files is not None and 'EnvironmentFiles' in (props or {}) and shown_files != ours:
        notes.append('EnvironmentFile= of the unit files (%s) differs from what systemd has loaded (%s): a '
                     'daemon-reload is pending' % (', '.join(e['pattern'] for e in ours) or 'none',
                                                   ', '.join(e['pattern'] for e in shown_files) or 'none'))
    for e in settings['environment_files']:
        item = dict(e, files=[], error=None)
        env_files.append(item)
        pattern = e['pattern']
        where = '%s:%d' % (e['path'], e['line'])
        if not os.path.isabs(pattern):
            item['error'] = 'not an absolute path'
            if not e['optional']:
                start_fails.append('EnvironmentFile=%s (%s) is not an absolute path: the next start fails'
                                   % (pattern, where))
            continue
        found = _glob_sorted(pattern)
        if not found:
            item['error'] = 'no such file'
            if not e['optional']:
                start_fails.append('EnvironmentFile=%s (%s) does not exist: the next start fails (prefix it with "-" '
                                   'if it is optional)' % (pattern, where))
            continue
        for path in found:
            text, err = _read_strict(path)
            rec = {'path': path, 'error': err, 'variables': []}
            item['files'].append(rec)
            if err is not None:
                if not e['optional']:
                    start_fails.append('EnvironmentFile=%s (%s): %s is %s: the next start fails'
                                       % (pattern, where, path, err))
                continue
            parsed = parse_env_file(text)
            for bad in parsed['ignored']:
                notes.append('%s:%d: "%s" %s' % (path, bad['line'], bad['text'], bad['reason']))
            for a in parsed['assignments']:
                rec['variables'].append(a['name'])
                assign(a['name'], a['value'], {'kind': 'environment_file', 'path': path, 'line': a['line'],
                                               'end_line': a['end_line'], 'setting_path': e['path'],
                                               'setting_line': e['line'], 'pattern': pattern,
                                               'optional': e['optional']})
    # 6. UnsetEnvironment=
    unset_by = {}
    for name in list(env):
        hit = [u for u in settings['unset'] if unset_matches(u['entry'], name, env[name])]
        if hit:
            del env[name]
            del sources[name]
            unset_by[name] = {'kind': 'unset', 'path': hit[0]['path'], 'line': hit[0]['line'],
                              'entry': hit[0]['entry']}
    return {'environment': env, 'sources': sources, 'assignments': assignments, 'unset': settings['unset'],
            'unset_by': unset_by, 'environment_files': env_files, 'pass_environment': passed,
            'start_fails': start_fails, 'notes': notes, 'files': settings['files'],
            'manager_known': bool(manager and manager.get('known'))}


def environment_differences(predicted, running, names=None):
    """[{'variable', 'running', 'next_start', 'source'}] where the running process's initial environment and the
    next start's differ (over ``names``, or every non-volatile name)."""
    if running is None:
        return []
    env = predicted['environment']
    if names is None:
        names = sorted((set(env) | set(running)) - set(VOLATILE_VARIABLES))
    out = []
    for n in names:
        if running.get(n) != env.get(n):
            out.append({'variable': n, 'running': running.get(n), 'next_start': env.get(n),
                        'source': describe_source(predicted['sources'][n]) if n in predicted['sources'] else
                        (describe_unset(predicted['unset_by'][n]) if n in predicted['unset_by'] else None)})
    return out


# ------------------------------------------------------------------------------------------ sources in words

_MANAGER_VIA = {
    'default_environment': 'DefaultEnvironment= in %(path)s line %(line)s',
    'set_environment': 'systemctl set-environment (the service manager\'s runtime environment)',
    'kernel_cmdline': 'systemd.setenv= on the kernel command line',
    'locale': 'the locale (%(path)s)',
    'default_path': 'systemd\'s default PATH',
    'generator': 'a system environment generator (or systemctl set-environment)',
}


def describe_source(src):
    """One phrase saying where a variable comes from, with file and line."""
    if not src:
        return 'nowhere'
    kind = src.get('kind')
    if kind == 'manager':
        text = 'the manager environment: ' + _MANAGER_VIA.get(src.get('via'), '%(via)s') % src
        if src.get('also_possible') == 'set_environment':
            text += ' (or systemctl set-environment with the same value)'
        return text
    if kind == 'systemd':
        return 'systemd (User= login variables)'
    if kind == 'pass_environment':
        return 'PassEnvironment= in %s line %s (from the service manager\'s own environment, /proc/1/environ)' % (
            src.get('setting_path'), src.get('setting_line'))
    if kind == 'environment':
        return 'Environment= in %s line %s' % (src.get('path'), src.get('line'))
    if kind == 'environment_file':
        return 'EnvironmentFile %s line %s (named by %s line %s)' % (
            src.get('path'), src.get('line'), src.get('setting_path'), src.get('setting_line'))
    if kind == 'unset':
        return describe_unset(src)
    return str(src)


def describe_unset(src):
    return 'UnsetEnvironment=%s in %s line %s' % (src.get('entry'), src.get('path'), src.get('line'))


def source_text(src):
    """The short location of a source: 'path:line', 'manager environment', ..."""
    if src.get('kind') == 'manager' and src.get('via') != 'default_environment':
        return 'manager environment (%s)' % src.get('via')
    if src.get('kind') == 'pass_environment':
        return '%s:%s (PassEnvironment=)' % (src.get('setting_path'), src.get('setting_line'))
    if src.get('path') and src.get('line'):
        return '%s:%s' % (src['path'], src['line'])
    return describe_source(src)


def _under(path, top):
    path = os.path.normpath(path)
    return path == top or path.startswith(top.rstrip('/') + '/')


def editable_file(path, root='/'):
    """(ok, reason): whether a remediation may rewrite ``path``: a regular file (not a symlink: never write
    through one) under /etc, owned by root and not writable by others (a file someone else can write is not
    the admin's configuration)."""
    top = EDITABLE_ROOT if root in ('', '/') else os.path.join(root, EDITABLE_ROOT.lstrip('/'))
    if not path or not _under(path, top):
        return False, '%s is not under %s (files outside the admin configuration belong to a package or are ' \
                      'generated)' % (path, EDITABLE_ROOT)
    try:
        st = os.lstat(path)
    except OSError as e:
        return False, '%s cannot be examined: %s' % (path, e.strerror)
    if stat.S_ISLNK(st.st_mode):
        return False, '%s is a symlink (-> %s): the toolkit never writes through one' % (path, os.readlink(path))
    if not stat.S_ISREG(st.st_mode):
        return False, '%s is not a regular file' % path
    if st.st_uid != 0:
        return False, '%s is not owned by root' % path
    if st.st_mode & 0o002:
        return False, '%s is writable by every user' % path
    real = os.path.realpath(os.path.dirname(path))
    if not _under(real, os.path.realpath(top)):
        return False, '%s is in a directory that resolves outside %s (%s)' % (path, EDITABLE_ROOT, real)
    return True, None


def unit_file_editable(path, unit, systemd_dir='/etc/systemd/system', root='/'):
    """A unit file or drop-in a remediation may edit: the unit's own drop-in directory or the unit file, in the
    admin directory (package-owned files in /usr/lib are not ours to change), and editable_file()."""
    path = os.path.normpath(path or '')
    if not (os.path.dirname(path) == os.path.normpath(os.path.join(systemd_dir, unit + '.d'))
            or path == os.path.normpath(os.path.join(systemd_dir, unit))):
        return False, '%s is not the unit file or a drop-in in %s' % (path, os.path.join(systemd_dir, unit + '.d'))
    return editable_file(path, root)


def source_fix(src, name, unit, systemd_dir='/etc/systemd/system', root='/'):
    """How a remediation takes one assignment of ``name`` out at its source: {'source', 'location', 'editable',
    'how', 'manual', 'reason'}. how: 'edit_unit_file' | 'edit_environment_file' | 'edit_pass_environment' |
    'edit_system_conf' (+ daemon-reload) | 'unset_environment' (systemctl unset-environment) | None (refused:
    ``manual`` says what a person must do)."""
    kind, via = src.get('kind'), src.get('via')
    out = {'source': describe_source(src), 'location': source_text(src), 'kind': kind, 'via': via,
           'path': src.get('path'), 'line': src.get('line'), 'editable': False, 'how': None, 'manual': None,
           'reason': None}
    alt = ('or add UnsetEnvironment=%s to a drop-in of %s (it removes the variable whatever sets it)'
           % (name, unit))
    if kind == 'environment':
        ok, why = unit_file_editable(src['path'], unit, systemd_dir, root)
        out.update(editable=ok, how='edit_unit_file' if ok else None, reason=why)
        if not ok:
            out['manual'] = 'remove %s from the Environment= line %s of %s, then daemon-reload and restart %s; %s' % (
                name, src.get('line'), src['path'], unit, alt)
    elif kind == 'environment_file':
        ok, why = editable_file(src['path'], root)
        out.update(editable=ok, how='edit_environment_file' if ok else None, reason=why)
        if not ok:
            out['manual'] = 'delete line %s (%s=...) of %s (%s), then restart %s; %s' % (
                src.get('line'), name, src['path'], why, unit, alt)
    elif kind == 'pass_environment':
        ok, why = unit_file_editable(src['setting_path'], unit, systemd_dir, root)
        out.update(editable=ok, how='edit_pass_environment' if ok else None, reason=why, path=src['setting_path'],
                   line=src['setting_line'])
        if not ok:
            out['manual'] = 'remove %s from PassEnvironment= in %s line %s, daemon-reload and restart %s; %s' % (
                name, src['setting_path'], src['setting_line'], unit, alt)
    elif kind == 'manager' and via == 'default_environment':
        ok, why = editable_file(src['path'], root)
        out.update(editable=ok, how='edit_system_conf' if ok else None, reason=why)
        if not ok:
            out['manual'] = 'remove %s from DefaultEnvironment= in %s line %s (%s), run systemctl daemon-reload ' \
                            'and restart %s; %s' % (name, src['path'], src['line'], why, unit, alt)
    elif kind == 'manager' and via == 'set_environment':
        out.update(editable=True, how='unset_environment')
    elif kind == 'manager' and via == 'kernel_cmdline':
        out['reason'] = 'set on the kernel command line'
        out['manual'] = 'remove systemd.setenv=%s=... from the kernel command line (e.g. GRUB_CMDLINE_LINUX in ' \
                        '/etc/default/grub, update-grub) and reboot; %s' % (name, alt)
    else:
        out['reason'] = 'set by %s' % describe_source(src)
        out['manual'] = 'find what sets %s (%s) and remove it there; %s' % (name, describe_source(src), alt)
    return out


def removal_plan(predicted, name, unit, systemd_dir='/etc/systemd/system', root='/'):
    """Every source a fix must take ``name`` out of so that the next start no longer gets it - not only the
    winner, or the one below it would take its place - as source_fix() entries. [] when the next start does not
    get the variable (unset, or never set)."""
    if name not in predicted['environment']:
        return []
    out = []
    seen = set()
    for src in predicted['assignments'].get(name, []):
        key = (src.get('kind'), src.get('via'), src.get('path'), src.get('line'), src.get('setting_path'))
        if key in seen:
            continue
        seen.add(key)
        fix = source_fix(src, name, unit, systemd_dir, root)
        if src.get('also_possible') == 'set_environment':
            out.append(source_fix({'kind': 'manager', 'via': 'set_environment'}, name, unit, systemd_dir, root))
        out.append(fix)
    return out
