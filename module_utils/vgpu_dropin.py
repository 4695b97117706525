# -*- coding: utf-8 -*-
# The toolkit's own drop-in for a service: its text and what it may contain (target side, Python 3.8+ stdlib only).
"""What systemd_dropin_env writes: the drop-in text (render), and the checks of its inputs - the preload libraries,
the environment, and the extra settings (resource and sandbox settings only)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import stat

from ansible.module_utils.vgpu_fs import unsafe_path_components
from ansible.module_utils.vgpu_unit_syntax import ENV_NAME_RE, parse_unit_text, quote_environment_assignment

HEADER = u'# Managed by Ansible (vgpu toolkit) \u2014 do not edit'
EXTRA_KEY_RE = re.compile(r'^[A-Z][A-Za-z0-9]*$')
# extra: resource and sandbox settings only (see DOCUMENTATION); the groups, in the order the error names them
RLIMITS = ('CPU', 'FSIZE', 'DATA', 'STACK', 'CORE', 'RSS', 'NOFILE', 'AS', 'NPROC', 'MEMLOCK', 'LOCKS',
           'SIGPENDING', 'MSGQUEUE', 'NICE', 'RTPRIO', 'RTTIME')     # systemd.exec(5) LimitCPU= ... LimitRTTIME=
EXTRA_GROUPS = (
    ('resource limits', tuple('Limit' + r for r in RLIMITS)),
    ('scheduling', ('Nice', 'OOMScoreAdjust', 'CPUSchedulingPolicy', 'CPUSchedulingPriority', 'CPUAffinity',
                    'NUMAPolicy', 'NUMAMask', 'IOSchedulingClass', 'IOSchedulingPriority')),
    ('resource control', ('CPUAccounting', 'CPUWeight', 'CPUQuota', 'CPUQuotaPeriodSec', 'AllowedCPUs',
                          'AllowedMemoryNodes', 'MemoryAccounting', 'MemoryMin', 'MemoryLow', 'MemoryHigh',
                          'MemoryMax', 'MemorySwapMax', 'TasksAccounting', 'TasksMax', 'IOAccounting', 'IOWeight',
                          'DeviceAllow', 'DevicePolicy')),
    ('sandbox', ('PrivateDevices', 'ProtectKernelTunables', 'PrivateTmp', 'ProtectSystem', 'ProtectHome',
                 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups', 'ProtectClock',
                 'ProtectHostname', 'ProtectProc', 'ProcSubset', 'NoNewPrivileges', 'RestrictRealtime',
                 'RestrictSUIDSGID', 'RestrictNamespaces', 'LockPersonality', 'MemoryDenyWriteExecute',
                 'SystemCallArchitectures', 'SystemCallFilter', 'CapabilityBoundingSet', 'ReadWritePaths',
                 'ReadOnlyPaths', 'InaccessiblePaths')),
    ('timing', ('TimeoutStartSec', 'TimeoutStopSec', 'TimeoutSec', 'RestartSec')),
)
EXTRA_ALLOWED = frozenset(k for _group, keys in EXTRA_GROUPS for k in keys)
# why a well-known key is refused (every key not in EXTRA_ALLOWED is refused)
_IDENTITY = 'changes who the service runs as or what it is allowed to do'
_ENVIRONMENT = 'sets the service environment: use the environment option (LD_PRELOAD: the preload option)'
_LOGGING = 'changes where or what Ollama logs, which is what ollama_gpu_mode reads its verdict from'
_FILES = 'changes which files the service sees, so another library could take the place of the shim or its links'
EXTRA_REFUSED = dict(
    [(k, _IDENTITY) for k in ('User', 'Group', 'DynamicUser', 'SupplementaryGroups', 'PAMName',
                              'AmbientCapabilities', 'SecureBits')]
    + [(k, _ENVIRONMENT) for k in ('Environment', 'EnvironmentFile', 'PassEnvironment', 'UnsetEnvironment')]
    + [(k, _LOGGING) for k in ('SyslogIdentifier', 'SyslogFacility', 'SyslogLevel', 'LogLevelMax',
                               'LogExtraFields', 'LogNamespace')]
    + [(k, _FILES) for k in ('WorkingDirectory', 'RootDirectory', 'RootImage', 'RootImageOptions', 'BindPaths',
                             'BindReadOnlyPaths', 'TemporaryFileSystem', 'MountImages', 'ExtensionImages',
                             'ExtensionDirectories', 'RootDirectoryStartOnly', 'MountAPIVFS', 'PrivateMounts')]
    + [('Restart', 'decides whether Ollama comes back after it exits: not a resource or sandbox setting'),
       ('PrivateNetwork', 'gives the service a network of its own, so the host can no longer reach its API'),
       ('Type', 'changes how systemd decides that Ollama has started')])


def extra_key_refusal(key):
    """Why ``key`` may not be written by the extra option, or None when it is allowed."""
    if key in EXTRA_ALLOWED:
        return None
    if key.startswith('Exec'):
        return 'it runs a command (ExecStartPre= runs it as root before Ollama starts)'
    if key.startswith('Standard'):
        return 'it ' + _LOGGING
    if key in EXTRA_REFUSED:
        return 'it ' + EXTRA_REFUSED[key]
    if key.startswith('Limit'):
        return 'it is not one of systemd\'s resource limits (LimitCPU= ... LimitRTTIME=)'
    return 'it is not a resource or sandbox setting this module writes (unknown, or not one of the allowed keys)'


def allowed_extra_text():
    """The allowed keys, grouped, for error messages."""
    parts = []
    for group, keys in EXTRA_GROUPS:
        if group == 'resource limits':
            parts.append('%s Limit{%s}' % (group, ','.join(RLIMITS)))
        else:
            parts.append('%s %s' % (group, ', '.join(keys)))
    return '; '.join(parts)
PATH_LIST_VARIABLES = ('LD_LIBRARY_PATH', 'OLLAMA_LIBRARY_PATH')


def render(preload, environment, extra):
    """The drop-in text: header, [Service], LD_PRELOAD, environment sorted, extra sorted; LF, final newline."""
    lines = [HEADER, u'[Service]']
    if preload:
        lines.append(u'Environment=%s' % quote_environment_assignment('LD_PRELOAD', u':'.join(preload)))
    for name in sorted(environment):
        lines.append(u'Environment=%s' % quote_environment_assignment(name, environment[name]))
    for key in sorted(extra):
        lines.append(u'%s=%s' % (key, extra[key]))
    return u'\n'.join(lines) + u'\n'


def check_preload(path):
    """Reasons the library at path must not be preloaded into a root-started service; [] when fine."""
    if not os.path.isabs(path):
        return ['%s is not an absolute path' % path]
    if ':' in path or re.search(r'\s', path):
        return ['%s contains ":" or whitespace, which LD_PRELOAD treats as a separator' % path]
    try:
        st = os.stat(path)
    except OSError as e:
        return ['%s does not exist or cannot be reached (%s); install it first or drop it from preload '
                '(a missing preload library breaks the service: PRELOAD_MISSING_FILE)' % (path, e.strerror)]
    if not stat.S_ISREG(st.st_mode):
        return ['%s is not a regular file (or a link to one)' % path]
    problems = []
    for comp in unsafe_path_components(path):
        problems.append('%s (mode %s, owner %s:%s) is %s: a non-root user could replace code loaded into the '
                        'service (PRELOAD_HIJACK_RISK); fix with chown root:root and chmod go-w'
                        % (comp['path'], comp['mode'], comp['uid'], comp['gid'], comp['problem']))
    return problems


def to_text_value(key, value, what):
    if isinstance(value, bool):
        if what == 'extra':
            return u'yes' if value else u'no'
        raise ValueError('%s value of %s is a boolean; quote it to say which text you mean ("true", "1", ...)'
                         % (what, key))
    if isinstance(value, (int, float)):
        return u'%s' % value
    if isinstance(value, bytes):
        value = value.decode('utf-8')
    if not isinstance(value, str):
        raise ValueError('%s value of %s must be a string, got %s' % (what, key, type(value).__name__))
    return value


def service_settings(text):
    """{key: value} of the [Service] settings of a drop-in other than its environment (the extra option's)."""
    out = {}
    for section, key, value in parse_unit_text(text or u''):
        if section == 'Service' and key not in ('Environment', 'UnsetEnvironment'):
            out[key] = value
    return out




def check_environment(values):
    """({name: text}, [error]) of the environment option: names valid, values text systemd reads back exactly."""
    environment, errors = {}, []
    for key, value in sorted((values or {}).items()):
        if key == 'LD_PRELOAD':
            errors.append('set LD_PRELOAD with the preload option (a list of libraries), not in environment')
            continue
        if not ENV_NAME_RE.match(key):
            errors.append('environment name %r is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)' % key)
            continue
        try:
            environment[key] = to_text_value(key, value, 'environment')
            quote_environment_assignment(key, environment[key])
        except ValueError as e:
            errors.append(str(e))
    return environment, errors


def check_extra(values):
    """({key: text}, [error]) of the extra option: resource and sandbox settings only, one line each."""
    extra, errors, refused_keys = {}, [], []
    for key, value in sorted((values or {}).items()):
        key = str(key)
        if not EXTRA_KEY_RE.match(key):
            errors.append('extra key %r is not a systemd setting name (e.g. LimitMEMLOCK)' % key)
            refused_keys.append(key)
            continue
        reason = extra_key_refusal(key)
        if reason:
            errors.append('extra key %s is refused: %s' % (key, reason))
            refused_keys.append(key)
            continue
        try:
            v = to_text_value(key, value, 'extra')
        except ValueError as e:
            errors.append(str(e))
            continue
        if re.search(u'[\x00-\x08\x0a-\x1f\x7f]', v):
            errors.append('extra value of %s contains a control character (newline?)' % key)
            continue
        if v.endswith(u'\\'):
            errors.append('extra value of %s ends in a backslash, which systemd reads as "continued on the '
                          'next line"' % key)
            continue
        extra[key] = v
    if refused_keys:
        errors.append('extra takes only resource and sandbox settings - %s; put anything else in a drop-in '
                      'of your own' % allowed_extra_text())
    return extra, errors
