# -*- coding: utf-8 -*-
# systemctl, journalctl and /proc for the vGPU modules (target side, Python 3.8+ stdlib only).
"""Ask systemd and the kernel at run time: one ``systemctl show`` call per unit, where a unit's log goes, when its main
process started, and the journalctl command for its current start."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible.module_utils.vgpu_unit_syntax import (
    ENV_NAME_RE, apply_unset, safe_read_text, split_words, unit_files_setting,
)

# ActiveState values while the unit has a process (a main process may be running or being started/stopped)
UNIT_HAS_PROCESS_STATES = ('active', 'activating', 'reloading', 'deactivating', 'refreshing')


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


def log_sink(show, read=None):
    """Where the unit's stderr (Ollama's log) really goes: {'kind', 'path', 'setting'}.

    show: systemctl show output with LOG_SINK_PROPERTIES. StandardError=inherit means "as
    StandardOutput". systemctl shows file sinks as the bare type (`append`) on most versions, so the
    path comes from the unit's own files (FragmentPath, DropInPaths), last assignment wins."""
    read = read or safe_read_text
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
