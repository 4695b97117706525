# -*- coding: utf-8 -*-
# A unit's files on disk: search path, drop-ins, their Environment= (target side, Python 3.8+ stdlib only).
"""Which files make up a systemd unit (search path, drop-in directories, masking) and the environment settings
they give it. The syntax is vgpu_unit_syntax's, systemctl/journal/proc are vgpu_systemctl's: import those names from
there."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible.module_utils.vgpu_unit_syntax import (
    parse_environment_value, parse_unit_lines, parse_unset_environment_value, resolve_specifiers, safe_read_text,
    split_words, unset_matches, valid_env_name, variables_set_by,
)

# ---------------------------------------------------------------------------------------------------------
# The unit's files (shared by systemd_dropin_env, systemd_env_unset and the doctor).

# Search path for system units, highest priority first (systemd.unit(5), simplified: no generator,
# transient or .control dirs). The module replaces the first entry with its systemd_dir.
UNIT_DIRS = ('/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system',
             '/usr/lib/systemd/system', '/lib/systemd/system')

# Variables whose presence in another drop-in changes what the service loads (PRELOAD_CONFLICT).
CONFLICT_VARIABLES = ('LD_PRELOAD', 'LD_LIBRARY_PATH', 'CUDA_VISIBLE_DEVICES', 'OLLAMA_LLM_LIBRARY')
_UNIT_NAME_RE = re.compile(r'^[A-Za-z0-9:_.\\@-]+\.(service|socket|target|mount|timer|path|slice|scope)$')


def valid_unit_name(unit):
    return bool(_UNIT_NAME_RE.match(unit or '')) and '/' not in unit and unit not in ('.', '..')


def unit_search_dirs(systemd_dir=None):
    """UNIT_DIRS with systemd_dir (the one we write to) first, without duplicates."""
    dirs = []
    for d in ((systemd_dir,) if systemd_dir else ()) + UNIT_DIRS:
        d = os.path.normpath(d)
        if d not in dirs:
            dirs.append(d)
    if systemd_dir and os.path.normpath(systemd_dir) != UNIT_DIRS[0]:
        # a custom systemd_dir stands in for /etc/systemd/system (tests, alternative roots)
        dirs.remove(UNIT_DIRS[0])
    return dirs


def find_unit_file(unit, dirs):
    """Path of the unit file systemd would load (first in dirs), or None. Follows symlinks (aliases)."""
    for d in dirs:
        p = os.path.join(d, unit)
        if os.path.isfile(p):
            return p
    return None


def dropin_dir_names(unit):
    """Drop-in dir names for unit, most specific first: unit.d, dash prefixes (a-b-.service.d, a-.service.d),
    then the type-wide dir (service.d)."""
    name, _dot, utype = unit.rpartition('.')
    names = ['%s.d' % unit]
    base = name.split('@')[0] if '@' in name else name
    if '@' in name:
        names.append('%s@.%s.d' % (base, utype))
    parts = base.split('-')
    for i in range(len(parts) - 1, 0, -1):
        prefix = '-'.join(parts[:i]) + '-'
        names.append('%s.%s.d' % (prefix, utype))
    names.append('%s.d' % utype)
    return names


def dropin_files(unit, dirs, extra=None):
    """Drop-in .conf files that apply to unit, in the order systemd applies them: sorted by file name;
    a name in a higher-priority dir masks the same name lower down.

    extra: {path: text_or_None} files to pretend exist (planned content) or not (None).
    Returns [path]."""
    extra = dict(extra or {})
    chosen = {}
    for d in dirs:
        for dname in dropin_dir_names(unit):
            dd = os.path.join(d, dname)
            names = set()
            if os.path.isdir(dd):
                try:
                    names.update(n for n in os.listdir(dd) if n.endswith('.conf') and not n.startswith('.'))
                except OSError:
                    pass
            for p in extra:
                if os.path.dirname(p) == dd:
                    names.add(os.path.basename(p))
            for n in sorted(names):
                p = os.path.join(dd, n)
                if p in extra and extra[p] is None:
                    continue
                if p not in extra and not (os.path.isfile(p) or os.path.realpath(p) == '/dev/null'):
                    continue
                if n not in chosen:
                    # a higher-priority file of the same name masks this one (/dev/null links mask only)
                    chosen[n] = p
    return [chosen[n] for n in sorted(chosen) if os.path.realpath(chosen[n]) != '/dev/null']



def unit_environment_settings(unit, dirs, extra=None):
    """The environment settings of the unit file and its drop-ins, in the order systemd applies them:
    {'files': [path], 'environment': [(name, value, path, line)] (after resets), 'environment_files':
    [{'pattern', 'optional', 'path', 'line'}], 'pass_environment': [{'name', 'path', 'line'}],
    'unset': [{'entry', 'path', 'line'}]}. extra: {path: text_or_None} planned contents, as dropin_files()."""
    extra = dict(extra or {})
    files = []
    unit_file = find_unit_file(unit, dirs)
    if unit_file:
        files.append(unit_file)
    files.extend(dropin_files(unit, dirs, extra))
    env, env_files, passed, unset = [], [], [], []
    for path in files:
        text = extra[path] if path in extra else safe_read_text(path)
        if text is None:
            continue
        for sec, key, value, line in parse_unit_lines(text):
            if sec != 'Service':
                continue
            if key == 'Environment':
                parsed = parse_environment_value(value, unit)
                if parsed is None:
                    env = []
                    continue
                env.extend((n, v, path, line) for n, v in parsed)
            elif key == 'EnvironmentFile':
                if not value.strip():
                    env_files = []
                    continue
                pattern = resolve_specifiers(value.strip(), unit)
                optional = pattern.startswith('-')
                env_files.append({'pattern': pattern[1:] if optional else pattern, 'optional': optional,
                                  'path': path, 'line': line})
            elif key == 'PassEnvironment':
                words, _err = split_words(value)
                if not value.strip():
                    passed = []
                    continue
                for w in words:
                    w = resolve_specifiers(w, unit)
                    if valid_env_name(w) and w not in [p['name'] for p in passed]:
                        passed.append({'name': w, 'path': path, 'line': line})
            elif key == 'UnsetEnvironment':
                entries = parse_unset_environment_value(value, unit)
                if entries is None:
                    unset = []
                    continue
                for e in entries:
                    if e not in [u['entry'] for u in unset]:
                        unset.append({'entry': e, 'path': path, 'line': line})
    return {'files': files, 'environment': env, 'environment_files': env_files, 'pass_environment': passed,
            'unset': unset}



def environment_details(unit, dirs, extra=None, honour_unset=True):
    """How systemd builds the unit's environment from the unit file (first in dirs) and its drop-ins in
    file-name order (systemd.exec(5)): Environment= assignments merged (an empty one resets), then the
    UnsetEnvironment= list (accumulated over the same files; an empty one resets it) removes variables -
    after every assignment, whichever file the assignment came from.

    Returns a dict: environment (what the service gets), sources ({variable: file that set it last}, for the
    variables in environment), assigned (the Environment= merge before UnsetEnvironment=, as
    `systemctl show -p Environment` reports it), unset ([{'entry', 'path'}] - the final UnsetEnvironment=
    list, as `systemctl show -p UnsetEnvironment`), unset_by ({variable: file whose entry removed it}).
    honour_unset=False: the environment of a systemd that does not know UnsetEnvironment= (before 235).

    extra: {path: text_or_None} overrides file contents (planned drop-in) or removes a file (None).
    EnvironmentFile= and the manager's own environment are not included."""
    settings = unit_environment_settings(unit, dirs, extra)
    env, sources = {}, {}
    values = []     # the assignments grouped by the Environment= line they come from, in order
    for name, value, path, line in settings['environment']:
        if not values or values[-1][0] != (path, line):
            values.append(((path, line), []))
        values[-1][1].append((name, value))
    for (path, _line), assignments in values:
        before = dict(env)
        for name, value in assignments:
            env.pop(name, None)
            env[name] = value
        for name in env:
            if name not in before or before[name] != env[name]:
                sources[name] = path
    unset = [{'entry': u['entry'], 'path': u['path']} for u in settings['unset']]
    assigned = dict(env)
    unset_by = {}
    if honour_unset:
        for name in list(env):
            hit = [u for u in unset if unset_matches(u['entry'], name, env[name])]
            if hit:
                del env[name]
                sources.pop(name, None)
                unset_by[name] = hit[0]['path']
    return {'environment': env, 'sources': sources, 'assigned': assigned, 'unset': unset, 'unset_by': unset_by}


def effective_environment(unit, dirs, extra=None):
    """(env, sources): the environment systemd gives unit - Environment= of the unit file, then its drop-ins
    in file-name order, less what UnsetEnvironment= removes (see environment_details). sources maps each
    variable to the file that set it last.

    extra: {path: text_or_None} overrides file contents (planned drop-in) or removes a file (None).
    EnvironmentFile= and the manager's own environment are not included."""
    d = environment_details(unit, dirs, extra)
    return d['environment'], d['sources']


def find_conflicts(unit, dirs, our_path, variables=CONFLICT_VARIABLES, extra=None):
    """Other drop-ins of unit that set any of variables: [{'path', 'variables', 'overrides_ours'}].

    overrides_ours: the file is applied after ours (its name sorts later), so its value wins."""
    out = []
    our_name = os.path.basename(our_path)
    for path in dropin_files(unit, dirs, extra):
        if path == our_path:
            continue
        text = (extra or {}).get(path) if path in (extra or {}) else safe_read_text(path)
        if text is None:
            continue
        names = [n for n in variables_set_by(text, unit) if n in variables]
        if names:
            out.append({'path': path, 'variables': names,
                        'overrides_ours': os.path.basename(path) > our_name})
    return out
