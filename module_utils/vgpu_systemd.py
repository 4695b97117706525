# -*- coding: utf-8 -*-
# Shared systemd helpers for the vGPU modules (target side, Python 3.8+ stdlib only).
"""Query systemd the way every vGPU module needs to: one ``systemctl show`` call per unit."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re


def _show(module, systemctl, unit, properties):
    """(rc, out, err, {property: value}) of one ``systemctl show`` call."""
    cmd = [systemctl, 'show', unit, '--no-pager']
    for prop in properties:
        cmd.extend(['-p', prop])
    rc, out, err = module.run_command(cmd)
    return rc, out, err, parse_show_output(out)


# properties `systemctl show` prints once per entry (one line each); parse_show_output joins them with newlines
MULTI_LINE_PROPERTIES = ('EnvironmentFiles', 'ExecStart', 'ExecStartPre', 'ExecStartPost', 'ExecReload', 'ExecStop',
                         'ExecStopPost', 'ExecCondition')


def parse_show_output(out):
    """{property: value} of `systemctl show` output. A property printed on several lines (EnvironmentFiles=,
    ExecStart=, one line per entry) keeps every line, joined by newlines; any other repeated key keeps the last."""
    result = {}
    for line in out.splitlines():
        key, sep, value = line.partition('=')
        if not sep:
            continue
        if key in MULTI_LINE_PROPERTIES and key in result:
            result[key] = result[key] + '\n' + value
        else:
            result[key] = value
    return result


def systemctl_show(module, unit, properties):
    """Return {property: value} for ``unit`` from one ``systemctl show`` call.

    ``module`` is an AnsibleModule (its run_command and get_bin_path are used).
    Unknown units come back with LoadState=not-found; callers decide what that means.
    """
    rc, _out, err, result = _show(module, module.get_bin_path('systemctl', required=True), unit, properties)
    if rc != 0:
        module.fail_json(msg='systemctl show %s failed (rc=%d): %s' % (unit, rc, err.strip()))
    return result


# ---------------------------------------------------------------------------------------------------------
# Unit files, drop-ins and Environment= (shared by systemd_dropin_env and the doctor).
# Parsing follows systemd's own rules: systemd.syntax(7) for lines/continuations/quoting and
# config_parse_environ() for Environment= (unquote + C unescape per word, then specifiers, invalid
# assignments ignored, an empty assignment resets the list).

# Search path for system units, highest priority first (systemd.unit(5), simplified: no generator,
# transient or .control dirs). The module replaces the first entry with its systemd_dir.
UNIT_DIRS = ('/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system',
             '/usr/lib/systemd/system', '/lib/systemd/system')

# Variables whose presence in another drop-in changes what the service loads (PRELOAD_CONFLICT).
CONFLICT_VARIABLES = ('LD_PRELOAD', 'LD_LIBRARY_PATH', 'CUDA_VISIBLE_DEVICES', 'OLLAMA_LLM_LIBRARY')

ENV_NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
_UNIT_NAME_RE = re.compile(r'^[A-Za-z0-9:_.\\@-]+\.(service|socket|target|mount|timer|path|slice|scope)$')


def try_systemctl_show(module, unit, properties):
    """Like systemctl_show() but never fails the module: returns (props, None) or (None, reason).

    For hosts where systemctl is missing or systemd is not PID 1 (containers, chroots)."""
    systemctl = module.get_bin_path('systemctl', required=False)
    if not systemctl:
        return None, 'systemctl not found'
    rc, out, err, result = _show(module, systemctl, unit, properties)
    if rc != 0:
        return None, 'systemctl show %s failed (rc=%d): %s' % (unit, rc, ' / '.join((err or out).strip().splitlines()))
    return result, None


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


def parse_unit_lines(text):
    """[(section, key, value, line)] from unit-file text (systemd.syntax(7)): comments (# ;), sections,
    Key=Value with whitespace trimmed, lines ending in an odd number of backslashes continued on the
    next line (backslash replaced by a space; comment lines inside a continuation skipped). ``line`` is the
    1-based number of the setting's first physical line."""
    out = []
    section = None
    pending = None
    first = None
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
            out.append((section, key.strip(), value.strip(), first))
    if pending is not None:
        key, sep, value = pending.strip().partition('=')
        if sep:
            out.append((section, key.strip(), value.strip(), first))
    return out


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
    extra = dict(extra or {})
    env, sources = {}, {}
    unset = []
    files = []
    unit_file = find_unit_file(unit, dirs)
    if unit_file:
        files.append(unit_file)
    files.extend(dropin_files(unit, dirs, extra))
    for path in files:
        text = extra[path] if path in extra else _safe_read(path)
        if text is None:
            continue
        for sec, key, v in parse_unit_text(text):
            if sec != 'Service':
                continue
            if key == 'Environment':
                before = dict(env)
                apply_environment(env, v, unit)
                if not env:
                    sources = {}
                for name in env:
                    if name not in before or before[name] != env[name]:
                        sources[name] = path
                for name in list(sources):
                    if name not in env:
                        del sources[name]
            elif key == 'UnsetEnvironment':
                entries = parse_unset_environment_value(v, unit)
                if entries is None:
                    unset = []
                    continue
                for e in entries:
                    if e not in [u['entry'] for u in unset]:
                        unset.append({'entry': e, 'path': path})
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


def _safe_read(path):
    try:
        return read_text(path)
    except (IOError, OSError):
        return None


def find_conflicts(unit, dirs, our_path, variables=CONFLICT_VARIABLES, extra=None):
    """Other drop-ins of unit that set any of variables: [{'path', 'variables', 'overrides_ours'}].

    overrides_ours: the file is applied after ours (its name sorts later), so its value wins."""
    out = []
    our_name = os.path.basename(our_path)
    for path in dropin_files(unit, dirs, extra):
        if path == our_path:
            continue
        text = (extra or {}).get(path) if path in (extra or {}) else _safe_read(path)
        if text is None:
            continue
        names = [n for n in variables_set_by(text, unit) if n in variables]
        if names:
            out.append({'path': path, 'variables': names,
                        'overrides_ours': os.path.basename(path) > our_name})
    return out


def parse_show_environment(value):
    """{name: value} from `systemctl show -p Environment` output: space-separated NAME=value words. Older
    systemctl prints a value containing a space as '[unprintable]' (skipped); quoted words are unquoted."""
    env = {}
    for word in _show_words(value):
        name, sep, val = word.partition('=')
        if sep and name and word != '[unprintable]':
            env[name] = val
    return env


def parse_show_unset_environment(value):
    """[entry] from `systemctl show -p UnsetEnvironment` output: space-separated NAME or NAME=VALUE words
    (quoted words are unquoted)."""
    return [w for w in _show_words(value) if w != '[unprintable]' and ENV_NAME_RE.match(w.partition('=')[0])]


def shown_environment(props, assigned):
    """The environment systemd gives the unit, from ``systemctl show -p Environment -p UnsetEnvironment``:
    Environment= as shown (older systemctl prints a value with a space as '[unprintable]': those come from
    ``assigned``, the unit files' Environment= merge), less what UnsetEnvironment= removes - systemd lists
    it apart from Environment, and a systemd before 235 that ignores it does not print the property."""
    shown = props.get('Environment') or ''
    env = parse_show_environment(shown)
    if '[unprintable]' in shown:
        merged = dict(assigned)
        merged.update(env)
        env = merged
    if 'UnsetEnvironment' in props:
        apply_unset(env, parse_show_unset_environment(props.get('UnsetEnvironment')))
    return env


def _show_words(value):
    """The words of a string-list property as `systemctl show` prints it: separated by spaces; newer
    versions quote a word that needs it."""
    value = value or ''
    words = value.split(' ')
    if '"' in value or "'" in value:
        quoted, err = split_words(value)
        if err is None:
            words = quoted
    return words


def proc_stat_fields(pid, proc_root='/proc'):
    """The fields of /proc/PID/stat after the command name (proc(5): field 3, the state, is [0]; ppid [1];
    starttime [19]), or None if it cannot be read. The name is in parentheses and may contain spaces and ')':
    counting starts after the last ')'."""
    try:
        with open(os.path.join(proc_root, str(pid), 'stat'), 'rb') as f:
            stat = f.read(4096).decode('ascii', 'replace')
        return stat[stat.rindex(')') + 2:].split()
    except (IOError, OSError, ValueError):
        return None


def systemctl_show_environment(module):
    """`systemctl show-environment` output (the manager's environment), or None when it cannot be asked."""
    systemctl = module.get_bin_path('systemctl', required=False)
    if not systemctl:
        return None
    rc, out, _err = module.run_command([systemctl, 'show-environment'])
    return out if rc == 0 else None


def process_start_time(pid, proc_root='/proc'):
    """When a process started, in seconds since the epoch (proc(5): starttime of /proc/PID/stat, in clock ticks
    since boot, plus btime of /proc/stat), or None if it cannot be read. Resolution: one tick."""
    fields = proc_stat_fields(pid, proc_root)
    try:
        with open(os.path.join(proc_root, 'stat'), 'rb') as f:
            btime = [line for line in f.read().decode('ascii', 'replace').splitlines() if line.startswith('btime ')]
        return int(btime[0].split()[1]) + int(fields[19]) / float(os.sysconf('SC_CLK_TCK'))
    except (IOError, OSError, ValueError, IndexError, TypeError):
        return None


def read_proc_environ(pid, proc_root='/proc'):
    """{name: value} of a running process's initial environment, or None if it cannot be read."""
    try:
        with open(os.path.join(proc_root, str(int(pid)), 'environ'), 'rb') as f:
            raw = f.read()
    except (IOError, OSError, ValueError):
        return None
    env = {}
    for item in raw.split(b'\0'):
        if not item:
            continue
        name, sep, val = item.partition(b'=')
        if sep:
            env[name.decode('utf-8', 'surrogateescape')] = val.decode('utf-8', 'surrogateescape')
    return env


# ---------------------------------------------------------------------------------------------------------
# Where a unit's output goes, and when its main process started (ollama_gpu_mode, the doctor).

# `systemctl show` properties log_sink() and unit_start_epoch() need, for callers that fetch them at once.
LOG_SINK_PROPERTIES = ('Id', 'StandardOutput', 'StandardError', 'FragmentPath', 'DropInPaths')

_FILE_OUTPUTS = ('file', 'append', 'truncate')


def classify_output(value):
    """(kind, path) for one StandardOutput=/StandardError= value: kind is journal (journal, kmsg, syslog
    and their +console forms all reach journald), file (file:/append:/truncate:, path or None when only
    the type is known), inherit, none (null), or other (tty, socket, fd:…) with the value as path."""
    value = (value or '').strip()
    kind, sep, path = value.partition(':')
    if kind in _FILE_OUTPUTS:
        return 'file', (path if sep and path else None)
    base = value.split('+')[0]
    if base in ('journal', 'kmsg', 'syslog'):
        return 'journal', None
    if value in ('inherit', ''):
        return 'inherit', None
    if value == 'null':
        return 'none', None
    return 'other', value


def unit_files_setting(texts, key, section='Service'):
    """Last value of key in section over texts (unit file then drop-ins, in the order systemd applies
    them), or None when unset; an empty assignment resets to the default (None)."""
    found = None
    for text in texts:
        for sec, k, v in parse_unit_text(text or ''):
            if sec == section and k == key:
                found = v if v != '' else None
    return found


def log_sink(show, read=None):
    """Where the unit's stderr (Ollama's log) really goes: {'kind', 'path', 'setting'}.

    show: systemctl show output with LOG_SINK_PROPERTIES. StandardError=inherit means "as
    StandardOutput". systemctl shows file sinks as the bare type (`append`) on most versions, so the
    path comes from the unit's own files (FragmentPath, DropInPaths), last assignment wins."""
    read = read or _safe_read
    setting = 'StandardError'
    kind, path = classify_output(show.get('StandardError'))
    if kind == 'inherit':
        setting = 'StandardOutput'
        kind, path = classify_output(show.get('StandardOutput') or 'journal')
        if kind == 'inherit':
            kind, path = 'journal', None
    if kind == 'file' and not path:
        files = [show.get('FragmentPath')] + (show.get('DropInPaths') or '').split()
        texts = [read(p) for p in files if p]
        value = unit_files_setting(texts, setting)
        if value is None and setting == 'StandardError':
            value = unit_files_setting(texts, 'StandardOutput')
        kind2, path2 = classify_output(value)
        if kind2 == 'file' and path2:
            path = path2
    return {'kind': kind, 'path': path, 'setting': '%s=%s' % (setting, show.get(setting, ''))}


_SYSTEMD_TS_RE = re.compile(r'(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d+)?(?: (\S+))?\s*$')


def parse_systemd_timestamp(value):
    """Epoch seconds of a `systemctl show` timestamp: `@1732528800.123456` (--timestamp=unix) or
    `Tue 2025-11-25 10:00:00 UTC` (zone UTC/GMT, else taken as this host's local time). None if unset."""
    import calendar
    import time
    value = (value or '').strip()
    if not value or value in ('n/a', '0'):
        return None
    if value.startswith('@'):
        try:
            return float(value[1:])
        except ValueError:
            return None
    m = _SYSTEMD_TS_RE.search(value)
    if not m:
        return None
    parts = tuple(int(x) for x in m.groups()[:6])
    frac = float(m.group(7)) if m.group(7) else 0.0
    if m.group(8) in ('UTC', 'GMT', 'Z'):
        return calendar.timegm(parts + (0, 0, 0)) + frac
    return time.mktime(parts + (0, 0, -1)) + frac


def unit_start_epoch(module, unit):
    """Epoch seconds at which the unit's main process started (ExecMainStartTimestamp), or None."""
    systemctl = module.get_bin_path('systemctl', required=False)
    if not systemctl:
        return None
    for extra in (['--timestamp=unix'], []):
        rc, out, _err = module.run_command([systemctl, 'show', unit, '--no-pager', '-p', 'ExecMainStartTimestamp']
                                           + extra)
        if rc == 0:
            _key, _sep, value = out.strip().partition('=')
            epoch = parse_systemd_timestamp(value)
            if epoch is not None:
                return epoch
    return None


# ---- reading the current start's log (shared by ollama_gpu_mode and vgpu_doctor)

# a start written by the current process may carry a time a little before systemd's own stamp
START_CLOCK_SLACK = 2.0


def boot_id(path='/proc/sys/kernel/random/boot_id'):
    """This boot's id as journald writes it in _BOOT_ID (no dashes), or None."""
    try:
        with open(path) as f:
            return f.read().strip().replace('-', '')
    except (IOError, OSError):
        return None


def journal_command(journalctl, unit_id, invocation, main_pid, boot, follow=True):
    """journalctl argv for the current invocation's entries, from its first one.

    The invocation match is the exact scope; the second term (this unit, this main PID, this boot)
    catches journals that record no _SYSTEMD_INVOCATION_ID for stream entries (some containers).
    With neither (a stopped unit), this boot's log of the unit. ``follow`` keeps reading as the log
    grows (--no-tail: -f alone would start at the last 10 lines)."""
    # no --quiet: journalctl's warning about unreadable journals must reach the caller's message
    argv = [journalctl, '--no-pager'] + (['--follow', '--no-tail'] if follow else []) + ['--output=cat']
    terms = []
    if invocation:
        terms.append(['_SYSTEMD_INVOCATION_ID=%s' % invocation])
    if main_pid and main_pid != '0':
        term = ['_SYSTEMD_UNIT=%s' % unit_id, '_PID=%s' % main_pid]
        if boot:
            term.append('_BOOT_ID=%s' % boot)
        terms.append(term)
    if not terms:
        return argv + ['-b', '-u', unit_id]
    for i, term in enumerate(terms):
        if i:
            argv.append('+')
        argv.extend(term)
    return argv


def start_not_older_than(started):
    """accept_start predicate for a file sink: the file's last start belongs to the current process
    when it is not older than the unit's ExecMainStartTimestamp (epoch ``started``, may be None)."""
    def accept(result):
        if started is None or result.get('start_epoch') is None:
            return result.get('starts', 0) > 0
        return result['start_epoch'] >= started - START_CLOCK_SLACK
    return accept
