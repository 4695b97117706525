#!/usr/bin/python
# -*- coding: utf-8 -*-
# Own one systemd drop-in that sets a unit's LD_PRELOAD and environment (target side, Python 3.8+ stdlib).

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: systemd_dropin_env
short_description: Manage one systemd drop-in that sets LD_PRELOAD and environment for a unit
description:
  - Writes C(<systemd_dir>/<unit>.d/<name>) with a fixed layout - a header comment, C([Service]),
    C(Environment="LD_PRELOAD=a:b") from I(preload) (order kept), then I(environment) sorted by name, then
    I(extra) keys sorted by name. LF line endings, written atomically, mode 0644 root:root. A symlink at the
    drop-in path is replaced by the file, never written through.
  - Refuses (changing nothing) when the unit is not installed, the drop-in name is unsafe, a preload library is
    missing, not a regular file, not owned by root, writable by group/other, or lies under a directory a
    non-root user can write (that would let them inject code into the service), or a value cannot be written
    safely.
  - Values are quoted for systemd - C(\) and C(") are escaped, C(%) is doubled (specifiers); C($) is literal
    because C(Environment=) does no variable expansion; control characters (newlines) are refused.
  - Runs C(systemctl daemon-reload) after a change (not in check mode). It never restarts the unit; it reports
    I(restart_required) when the running main process's environment (C(/proc/<MainPID>/environ)) differs from
    the environment the next start gets for the variables this drop-in manages - so a correct drop-in on a
    service that was never restarted is still reported (failure code PRELOAD_NOT_APPLIED). A change of an
    I(extra) setting (a limit, a sandbox setting) also needs a restart to take effect, as does a drop-in with
    such settings written after the running process started.
  - The next start's environment is built from every source systemd uses, in its order - the manager's
    environment (C(systemctl show-environment)), C(PassEnvironment=), C(Environment=) of the unit and its
    drop-ins, C(EnvironmentFile=), then C(UnsetEnvironment=). A variable of ours that a later source overrides
    (an C(EnvironmentFile=), a later drop-in, C(UnsetEnvironment=)) is reported in I(overridden) with a warning
    naming the file and line - a restart would bring that source's value back, so it is no reason to restart.
  - Reports other drop-ins of the unit that set LD_PRELOAD, LD_LIBRARY_PATH, CUDA_VISIBLE_DEVICES or
    OLLAMA_LLM_LIBRARY as I(conflicts) (PRELOAD_CONFLICT), with a warning.
version_added: "1.0.0"
author: vgpu toolkit contributors
options:
  unit:
    description: The unit the drop-in belongs to.
    type: str
    default: ollama.service
  name:
    description: File name of the drop-in; must end in C(.conf) and contain no C(/) or C(..). Drop-ins apply in
      file-name order, so a later name (C(zz-...)) wins over ours.
    type: str
    default: vgpu.conf
  preload:
    description:
      - Libraries for C(LD_PRELOAD), in load order (the driver shim before anything that resolves its symbols
        at load time). Absolute paths of root-owned regular files (or links to them) without C(:) or blanks.
      - Empty - no C(LD_PRELOAD) line (the library_path strategy).
    type: list
    elements: path
    default: []
  environment:
    description:
      - Other variables, for example C(LD_LIBRARY_PATH), C(OLLAMA_LIBRARY_PATH), C(OLLAMA_LLM_LIBRARY) for the
        library_path strategy. Names must match C([A-Za-z_][A-Za-z0-9_]*); C(LD_PRELOAD) belongs in I(preload).
      - Values are strings (numbers are converted; quote booleans).
    type: dict
    default: {}
  extra:
    description:
      - Resource and sandbox settings for C([Service]), written verbatim as C(Key=value) after the environment,
        sorted by key, for example C(LimitMEMLOCK=infinity). Booleans are written as C(yes)/C(no); values are
        strings or numbers, without control characters and not ending in C(\) (systemd would join the next
        line to it).
      - "Only these keys are accepted (systemd.exec(5), systemd.resource-control(5), systemd.service(5)) - they
        limit, weigh or fence the service and can neither run code nor change what it loads, who it runs as, its
        environment or where it logs: resource limits C(LimitCPU), C(LimitFSIZE), C(LimitDATA), C(LimitSTACK),
        C(LimitCORE), C(LimitRSS), C(LimitNOFILE), C(LimitAS), C(LimitNPROC), C(LimitMEMLOCK), C(LimitLOCKS),
        C(LimitSIGPENDING), C(LimitMSGQUEUE), C(LimitNICE), C(LimitRTPRIO), C(LimitRTTIME); scheduling C(Nice),
        C(OOMScoreAdjust), C(CPUSchedulingPolicy), C(CPUSchedulingPriority), C(CPUAffinity), C(NUMAPolicy),
        C(NUMAMask), C(IOSchedulingClass), C(IOSchedulingPriority); resource control C(CPUAccounting),
        C(CPUWeight), C(CPUQuota), C(CPUQuotaPeriodSec), C(AllowedCPUs), C(AllowedMemoryNodes),
        C(MemoryAccounting), C(MemoryMin), C(MemoryLow), C(MemoryHigh), C(MemoryMax), C(MemorySwapMax),
        C(TasksAccounting), C(TasksMax), C(IOAccounting), C(IOWeight), C(DeviceAllow), C(DevicePolicy); sandbox
        C(PrivateDevices), C(ProtectKernelTunables) (the two C(vgpu_remediate) sets to C(no)), C(PrivateTmp),
        C(ProtectSystem), C(ProtectHome), C(ProtectKernelModules), C(ProtectKernelLogs), C(ProtectControlGroups),
        C(ProtectClock), C(ProtectHostname), C(ProtectProc), C(ProcSubset), C(NoNewPrivileges),
        C(RestrictRealtime), C(RestrictSUIDSGID), C(RestrictNamespaces), C(LockPersonality),
        C(MemoryDenyWriteExecute), C(SystemCallArchitectures), C(SystemCallFilter), C(CapabilityBoundingSet),
        C(ReadWritePaths), C(ReadOnlyPaths), C(InaccessiblePaths); timing C(TimeoutStartSec), C(TimeoutStopSec),
        C(TimeoutSec), C(RestartSec)."
      - "Refused, with the reason, before anything is touched (check mode too): C(Exec*) (runs commands, as
        root for C(ExecStartPre)), C(User), C(Group), C(DynamicUser), C(SupplementaryGroups), C(PAMName),
        C(AmbientCapabilities) (identity and privileges), C(Environment), C(EnvironmentFile),
        C(PassEnvironment), C(UnsetEnvironment) (use I(environment) and I(preload)), C(Standard*),
        C(SyslogIdentifier), C(LogLevelMax) (where Ollama logs - what M(ollama_gpu_mode) reads),
        C(WorkingDirectory), C(RootDirectory), C(RootImage), C(BindPaths), C(BindReadOnlyPaths),
        C(TemporaryFileSystem), C(MountImages), C(ExtensionImages), C(ExtensionDirectories) (what files the
        service sees - another library could take the shim's place), C(Restart) (whether Ollama comes back),
        C(PrivateNetwork) (hides the API from the host) and every other key. Put such settings in a drop-in of
        your own."
    type: dict
    default: {}
  state:
    description: C(present) writes the drop-in, C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  daemon_reload:
    description: Run C(systemctl daemon-reload) after changing the drop-in.
    type: bool
    default: true
  systemd_dir:
    description: Directory of admin unit files, where the C(<unit>.d) directory lives.
    type: path
    default: /etc/systemd/system
attributes:
  check_mode:
    support: full
    description: Validates, reports the planned file, conflicts and I(restart_required) as they would be after
      the change; writes nothing and does not reload.
  diff_mode:
    support: full
    description: The drop-in's content before and after.
notes:
  - Where systemd is not running (containers, chroots) the unit is looked up as a unit file, daemon-reload is
    skipped with a warning and I(restart_required) is false with I(active_state=unknown).
  - I(effective_environment) merges C(Environment=) of the unit file and its drop-ins (unit.d, prefix and
    C(service.d) directories under /etc, /run, /usr/local/lib, /usr/lib) in systemd's order, then takes out
    what C(UnsetEnvironment=) removes (a variable of ours removed that way is a warning); C(EnvironmentFile=)
    and the manager's own environment are not included.
seealso:
  - module: vgpu_shim
  - module: cuda_links
'''

EXAMPLES = r'''
- name: Preload the shims into Ollama
  systemd_dropin_env:
    preload:
      - /usr/lib64/libvgpu-cuda.so
      - /usr/lib64/libvgpu-nvml.so
  register: vgpu_dropin
  notify: Restart ollama

- name: Restart only when the running process lacks the environment
  ansible.builtin.systemd_service:
    name: ollama.service
    state: restarted
  when: vgpu_dropin.restart_required

- name: library_path strategy
  systemd_dropin_env:
    environment:
      LD_LIBRARY_PATH: /opt/vgpu/lib:/usr/local/lib/ollama/cuda_v12:/usr/local/lib/ollama
      OLLAMA_LIBRARY_PATH: /opt/vgpu/lib:/usr/local/lib/ollama/cuda_v12:/usr/local/lib/ollama
      OLLAMA_LLM_LIBRARY: cuda_v12
    extra:
      LimitMEMLOCK: infinity
      # refused, with nothing changed: ExecStartPre, User, Environment, StandardError, BindPaths, unknown keys

- name: Remove the drop-in
  systemd_dropin_env:
    state: absent
'''

RETURN = r'''
path:
  description: The drop-in file.
  returned: always
  type: str
  sample: /etc/systemd/system/ollama.service.d/vgpu.conf
content:
  description: The drop-in's content after the run (null with I(state=absent)).
  returned: always
  type: str
plan:
  description: Changes in order - C(create_dir), C(write), C(replace_symlink), C(set_attributes), C(remove),
    C(daemon_reload).
  returned: always
  type: list
  elements: dict
daemon_reloaded:
  description: Whether C(systemctl daemon-reload) ran.
  returned: always
  type: bool
restart_required:
  description: The unit is running and its main process's environment differs from the next start's for a
    variable this drop-in sets (or set before), or an I(extra) setting changed since it started (see
    I(restart_reasons)). False when not running.
  returned: always
  type: bool
restart_reasons:
  description: The differing variables - C({variable, running, effective}); C(effective) is what the next start
    gets; null means unset. And the I(extra) settings the running process does not have yet -
    C({setting, before, after}) for those this run changes, or all of them (with C(reason)) when the drop-in was
    written after the process started; such settings take effect only at a start.
  returned: always
  type: list
  elements: dict
overridden:
  description: Variables this drop-in sets whose value the next start does not get -
    C({variable, ours, next_start, source, kind}); C(source) names the winning file and line, C(kind) is
    C(environment) (a later drop-in), C(environment_file), C(unset) (UnsetEnvironment=). Empty without systemd.
  returned: always
  type: list
  elements: dict
active_state:
  description: ActiveState of the unit (C(unknown) when systemd is not available).
  returned: always
  type: str
main_pid:
  description: MainPID of the unit (0 when not running).
  returned: always
  type: int
managed_variables:
  description: Variables this drop-in sets (now or before the run).
  returned: always
  type: list
  elements: str
conflicts:
  description: Other drop-ins that set LD_PRELOAD, LD_LIBRARY_PATH, CUDA_VISIBLE_DEVICES or OLLAMA_LLM_LIBRARY -
    C({path, variables, overrides_ours}); C(overrides_ours) is true when the file is applied after ours.
  returned: always
  type: list
  elements: dict
effective_environment:
  description: Environment= of the unit and its drop-ins merged in systemd's order, less UnsetEnvironment= (after
    the planned change).
  returned: always
  type: dict
environment_sources:
  description: For each variable of I(effective_environment), the file that set it last.
  returned: always
  type: dict
dropins:
  description: All drop-in files of the unit in the order systemd applies them (after the planned change).
  returned: always
  type: list
  elements: str
unit_file:
  description: The unit file found on disk (null when systemd knows the unit but no file was found in the search path).
  returned: always
  type: str
preload_interposed:
  description: For each preloaded ELF library that exports libc/loader functions, those functions
    (PRELOAD_INTERPOSES_LOADER, also given as a warning).
  returned: always
  type: dict
  sample: {/usr/lib64/libvgpu-cuda.so: [dlopen, dlsym]}
'''

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vgpu_dropin import (
    EXTRA_ALLOWED, PATH_LIST_VARIABLES, check_environment, check_extra, check_preload, render, service_settings,
)
from ansible.module_utils.vgpu_elf import ElfError, read_elf
from ansible.module_utils.vgpu_fs import atomic_write, describe, mode_string, set_attrs_nofollow, unsafe_path_components
from ansible.module_utils.vgpu_manager_env import manager_environment, parse_show_environment
from ansible.module_utils.vgpu_systemctl import (
    UNIT_HAS_PROCESS_STATES, process_start_time, read_proc_environ, shown_environment, systemctl_show_environment,
    try_systemctl_show,
)
from ansible.module_utils.vgpu_systemd import (
    CONFLICT_VARIABLES, dropin_files, environment_details, find_conflicts, find_unit_file, unit_search_dirs,
    valid_unit_name,
)
from ansible.module_utils.vgpu_unit_env import describe_source, describe_unset, predict_environment
from ansible.module_utils.vgpu_unit_syntax import variables_set_by

PROC_ROOT = '/proc'
FILE_MODE = 0o644
DIR_MODE = 0o755


def settings_restart_reasons(before_text, new_text, content_changed, path, main_pid):
    """[{setting, before, after}] of the extra settings the running process does not have yet: those this run
    changes, or - when nothing changes - all of them if the drop-in was written after the process started
    (a tick of /proc/PID/stat's resolution and the restart's own delay allowed for)."""
    old, new = service_settings(before_text), service_settings(new_text)
    if content_changed:
        return [{'setting': k, 'before': old.get(k), 'after': new.get(k)}
                for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if not new:
        return []
    started = process_start_time(main_pid, PROC_ROOT)
    try:
        written = os.lstat(path).st_mtime
    except OSError:
        return []
    if started is None or written <= started + 0.05:
        return []
    return [{'setting': k, 'before': None, 'after': v, 'reason': 'drop-in written after the process started'}
            for k, v in sorted(new.items())]


def next_start_environment(module, unit, dirs, planned, props, details, systemd_current):
    """(environment, sources, unset_by) the next start of ``unit`` gets, from every source systemd uses (the
    manager's environment, PassEnvironment=, Environment=, EnvironmentFile=, UnsetEnvironment=;
    vgpu_unit_env.predict_environment). With systemd_current, the Environment= layer is systemd's loaded
    view (`systemctl show -p Environment`) where it differs from the files (someone else's reload pending)."""
    out = systemctl_show_environment(module)
    shown = parse_show_environment(out) if out is not None else None
    predicted = predict_environment(unit, dirs, manager=manager_environment(shown, proc=PROC_ROOT),
                                    pid1_environ=read_proc_environ(1, PROC_ROOT), user=props.get('User') or None,
                                    props=props if systemd_current else None, extra=planned)
    env, sources, unset_by = dict(predicted['environment']), dict(predicted['sources']), predicted['unset_by']
    if systemd_current:
        loaded = shown_environment(props, details['assigned'])
        for v in set(loaded) | set(details['environment']):
            src = sources.get(v)
            if v in unset_by or (src and src.get('kind') not in ('environment', 'manager', 'systemd',
                                                                  'pass_environment')):
                continue        # removed by UnsetEnvironment=, or an EnvironmentFile= wins over Environment=
            if v in loaded and loaded[v] != env.get(v):
                env[v] = loaded[v]
                sources[v] = {'kind': 'environment', 'path': '(loaded by systemd)', 'line': None}
    return env, sources, unset_by


def main():
    module = AnsibleModule(
        argument_spec=dict(
            unit=dict(type='str', default='ollama.service'),
            name=dict(type='str', default='vgpu.conf'),
            preload=dict(type='list', elements='path', default=[]),
            environment=dict(type='dict', default={}),
            extra=dict(type='dict', default={}),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            daemon_reload=dict(type='bool', default=True),
            systemd_dir=dict(type='path', default='/etc/systemd/system'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    unit, name, systemd_dir = p['unit'], p['name'], os.path.normpath(p['systemd_dir'])
    present = p['state'] == 'present'

    # ---- validate everything before touching anything
    errors = []
    if not valid_unit_name(unit):
        errors.append('unit %r is not a valid unit name (for example ollama.service)' % unit)
    if (not name.endswith('.conf') or '/' in name or '..' in name or name.startswith('.')
            or re.search(r'[\s\x00-\x1f]', name)):
        errors.append('name %r must be a plain file name ending in .conf, without "/", ".." or a leading "."'
                      % name)
    environment, extra = {}, {}
    if present:
        for lib in p['preload']:
            if module.check_mode and os.path.isabs(lib) and not os.path.lexists(lib):
                # --check on a fresh host: the shim is only planned by an earlier task, not installed
                module.warn('preload library %s does not exist yet; it cannot be checked in check mode. '
                            'A real run refuses it unless an earlier task installs it.' % lib)
                continue
            errors.extend(check_preload(lib))
        environment, env_errors = check_environment(p['environment'])
        extra, extra_errors = check_extra(p['extra'])
        errors.extend(env_errors + extra_errors)
    if errors:
        module.fail_json(msg='Refusing to write the drop-in: %s. Nothing was changed.' % '; '.join(errors),
                         errors=errors, allowed_extra=sorted(EXTRA_ALLOWED))

    search_dirs = unit_search_dirs(systemd_dir)
    props, systemd_error = try_systemctl_show(
        module, unit, ['LoadState', 'ActiveState', 'MainPID', 'Environment', 'UnsetEnvironment', 'User',
                       'EnvironmentFiles', 'PassEnvironment'])
    unit_file = find_unit_file(unit, search_dirs)
    if props is not None and props.get('LoadState') == 'masked':
        module.fail_json(msg='unit %s is masked; unmask it before adding a drop-in. Nothing was changed.' % unit)
    if props is not None:
        # systemd knows the unit, or its file is in systemd_dir (written but not yet daemon-reloaded)
        installed = props.get('LoadState') not in (None, '', 'not-found') or bool(find_unit_file(unit, [systemd_dir]))
    else:
        installed = unit_file is not None
    if present and not installed:
        # (removing a drop-in of a unit that is gone is fine: that is what a rollback after uninstall does)
        module.fail_json(msg='unit %s is not installed (%s, and there is no unit file in %s); install the service '
                             'first (for Ollama, its install script). Nothing was changed.'
                             % (unit, 'systemctl show reports LoadState=%s' % props.get('LoadState')
                                if props is not None else systemd_error, systemd_dir))

    dropin_dir = os.path.join(systemd_dir, unit + '.d')
    path = os.path.join(dropin_dir, name)
    if not os.path.isdir(systemd_dir):
        module.fail_json(msg='systemd_dir %s does not exist. Nothing was changed.' % systemd_dir)
    dinfo = describe(dropin_dir)
    if dinfo['kind'] not in ('missing', 'directory') and not (dinfo['kind'] == 'symlink' and os.path.isdir(dropin_dir)):
        module.fail_json(msg='%s exists but is not a directory; remove it. Nothing was changed.' % dropin_dir)
    before = describe(path)
    if before['kind'] in ('directory', 'other'):
        module.fail_json(msg='%s is a %s, not a drop-in file; remove it. Nothing was changed.'
                         % (path, before['kind']))
    before_text = None
    if before['kind'] in ('file', 'symlink'):
        try:
            with open(path, 'rb') as f:
                before_text = f.read().decode('utf-8', 'replace')
        except (IOError, OSError):
            before_text = None

    # ---- plan
    plan = []
    new_text = render(p['preload'], environment, extra) if present else None
    if present:
        if dinfo['kind'] == 'missing':
            plan.append({'action': 'create_dir', 'path': dropin_dir})
        if before['kind'] == 'symlink':
            plan.append({'action': 'replace_symlink', 'path': path, 'old_target': before['link']})
        elif before['kind'] == 'missing' or before_text != new_text:
            plan.append({'action': 'write', 'path': path})
        elif (before['mode'], before['uid'], before['gid']) != (FILE_MODE, 0, 0):
            plan.append({'action': 'set_attributes', 'path': path,
                         'old': {'mode': mode_string(before['mode']), 'uid': before['uid'], 'gid': before['gid']},
                         'new': {'mode': mode_string(FILE_MODE), 'uid': 0, 'gid': 0}})
    elif before['kind'] != 'missing':
        plan.append({'action': 'remove', 'path': path})
    content_changed = any(a['action'] in ('write', 'replace_symlink', 'remove') for a in plan)
    systemd_up = props is not None
    if content_changed and p['daemon_reload']:
        if systemd_up:
            plan.append({'action': 'daemon_reload'})
        else:
            module.warn('systemd is not available (%s): daemon-reload skipped; systemd reads the drop-in at its '
                        'next start' % systemd_error)
    changed = bool(plan)

    # ---- apply
    daemon_reloaded = False
    if changed and not module.check_mode:
        try:
            for a in plan:
                if a['action'] == 'create_dir':
                    os.mkdir(dropin_dir, DIR_MODE)
                    os.chmod(dropin_dir, DIR_MODE)
                elif a['action'] in ('write', 'replace_symlink'):
                    atomic_write(path, new_text.encode('utf-8'), FILE_MODE, 0, 0, module=module)
                elif a['action'] == 'set_attributes':
                    set_attrs_nofollow(path, FILE_MODE, 0, 0)
                elif a['action'] == 'remove':
                    os.unlink(path)
        except (IOError, OSError) as e:
            module.fail_json(msg='Writing %s failed: %s' % (path, e), plan=plan)
        if any(a['action'] == 'daemon_reload' for a in plan):
            systemctl = module.get_bin_path('systemctl', required=True)
            rc, out, err = module.run_command([systemctl, 'daemon-reload'])
            if rc != 0:
                module.fail_json(msg='%s is in place but systemctl daemon-reload failed (rc=%d): %s; run it by hand '
                                     'before restarting %s' % (path, rc, (err or out).strip(), unit), plan=plan)
            daemon_reloaded = True

    # ---- report: effective environment, conflicts, whether the running process has it
    planned = {path: new_text}
    details = environment_details(unit, search_dirs, planned)
    env, sources = details['environment'], details['sources']
    dropins = dropin_files(unit, search_dirs, planned)
    conflicts = find_conflicts(unit, search_dirs, path, CONFLICT_VARIABLES, planned)
    managed = []
    for text in (before_text, new_text):
        for v in variables_set_by(text or u'', unit):
            if v not in managed:
                managed.append(v)

    active_state, main_pid, restart_required, reasons, overridden = 'unknown', 0, False, [], []
    if systemd_up:
        current = props
        if daemon_reloaded:
            again, _err = try_systemctl_show(module, unit, ['ActiveState', 'MainPID', 'Environment',
                                                            'UnsetEnvironment', 'User', 'EnvironmentFiles',
                                                            'PassEnvironment'])
            current = again or props
        active_state = current.get('ActiveState') or 'unknown'
        try:
            main_pid = int(current.get('MainPID') or 0)
        except ValueError:
            main_pid = 0
        next_env, next_sources, unset_by = next_start_environment(
            module, unit, search_dirs, planned, current, details,
            # systemd's own Environment= view is authoritative once it has read the new drop-in; before that
            # (check mode, no reload) the files are, with the planned content
            systemd_current=not changed or daemon_reloaded or not content_changed)
        ours = dict(environment)
        if present and p['preload']:
            ours['LD_PRELOAD'] = ':'.join(p['preload'])
        for v in sorted(ours) if present else []:
            if next_env.get(v) != ours[v]:
                src = next_sources.get(v)
                overridden.append({'variable': v, 'ours': ours[v], 'next_start': next_env.get(v),
                                   'source': describe_source(src) if src else
                                   describe_unset(unset_by[v]) if v in unset_by else None,
                                   'kind': (src or {}).get('kind') or ('unset' if v in unset_by else None)})
        if active_state in UNIT_HAS_PROCESS_STATES and main_pid > 0:
            running = read_proc_environ(main_pid, PROC_ROOT)
            if running is None:
                module.warn('cannot read %s/%d/environ; restart_required is a guess (true)' % (PROC_ROOT, main_pid))
                restart_required = True
                reasons.append({'variable': None, 'running': None, 'effective': None,
                                'reason': 'environ unreadable'})
            else:
                # a restart is required only where it changes what the process has: a variable another source
                # overrides (overridden) gets that source's value again, so a restart for it alone does not help
                for v in managed:
                    if running.get(v) != next_env.get(v):
                        reasons.append({'variable': v, 'running': running.get(v), 'effective': next_env.get(v)})
            # the extra settings (limits, sandbox) take effect only at a start: changed now, or written after the
            # running process started
            reasons.extend(settings_restart_reasons(before_text, new_text, content_changed, path, main_pid))
            restart_required = bool(reasons)
    for o in overridden:
        # a later drop-in and UnsetEnvironment= have their own warnings below
        if o['kind'] in ('environment_file', 'pass_environment', 'manager'):
            module.warn('%s: the next start gets %s from %s, not this drop-in\'s %r - restarting does not apply it '
                        '(PRELOAD_CONFLICT); remove it there' % (
                            o['variable'], 'nothing' if o['next_start'] is None else repr(o['next_start']),
                            o['source'], o['ours']))

    preload_interposed = {}
    if present:
        for lib in p['preload']:
            try:
                found = read_elf(lib).interposed_symbols()
            except (ElfError, IOError, OSError):
                continue
            if found:
                preload_interposed[lib] = found
                module.warn('%s exports libc/loader functions (%s); preloaded it replaces them in the whole service '
                            'and can hijack its backend loading (PRELOAD_INTERPOSES_LOADER): prefer the library_path '
                            'strategy for it' % (lib, ', '.join(found)))
    for v in managed:
        if v in details['unset_by'] and present:
            module.warn('%s is removed again by UnsetEnvironment= in %s: the service never gets it '
                        '(PRELOAD_CONFLICT); remove that entry' % (v, details['unset_by'][v]))
    for c in conflicts:
        module.warn('%s also sets %s%s (PRELOAD_CONFLICT); remove those lines or that file'
                    % (c['path'], ', '.join(c['variables']),
                       ' and is applied after %s, so its values win' % name if c['overrides_ours'] else ''))
    if present:
        for var in PATH_LIST_VARIABLES:
            for d in (environment.get(var) or '').split(':'):
                if d and os.path.isabs(d) and os.path.exists(d):
                    bad = unsafe_path_components(d)
                    if bad:
                        module.warn('%s entry %s can be changed by a non-root user (%s): PRELOAD_HIJACK_RISK'
                                    % (var, d, '; '.join('%s %s' % (b['path'], b['problem']) for b in bad)))

    result = dict(
        changed=changed, path=path, content=new_text, plan=plan, daemon_reloaded=daemon_reloaded,
        restart_required=restart_required, restart_reasons=reasons, overridden=overridden,
        active_state=active_state, main_pid=main_pid,
        managed_variables=managed, conflicts=conflicts, effective_environment=env,
        environment_sources=sources, dropins=dropins, unit_file=unit_file, preload_interposed=preload_interposed,
    )
    if module._diff:
        result['diff'] = {'before': before_text if before_text is not None else '',
                          'after': new_text if new_text is not None else '',
                          'before_header': path, 'after_header': path}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
