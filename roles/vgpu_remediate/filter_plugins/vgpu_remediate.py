# -*- coding: utf-8 -*-
# Turn vgpu_doctor findings into what the vgpu_remediate role does (controller side, pure functions).
"""Filters of the vgpu_remediate role.

vgpu_remediate_plan(findings, ...)       doctor findings -> the plan: refused (with the manual steps) or the
                                         safe fixes to apply, grouped by the role that applies them
vgpu_remediate_settings_labels(moved, stripped, stamp)
                                         the systemd_unit_settings results of the moves and edits, as the
                                         host's line says them
vgpu_remediate_moved_label(item, stamp)  one of them, as the host's line says it
vgpu_remediate_cause(cause)              one plan.causes entry -> 'CODE (severity)'

The files themselves are edited on the host (systemd_unit_settings, ld_so_preload, systemd_env_unset): this file
decides, it never parses a unit file.

Only the doctor decides what is wrong; this file decides what remediate may do about it. A host is refused
(left untouched) when a person must act first: a finding whose code is in refuse_codes (a real driver, no
PCI device, a snap Ollama), an error whose fix is manual, a strategy switch (an inventory decision), a drop-in
of our own that carries a bad variable from the inventory, a variable set outside the unit files, a file
remediate must not edit (outside /etc/systemd/system), or a shim to reinstall without the artifact to
reinstall it from.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

# directories whose mode must never be set to 0755 (sticky, shared, or not files at all)
NEVER_CHMOD = ('/', '/tmp', '/var/tmp', '/dev/shm', '/proc', '/sys', '/dev', '/run')


def _norm(path):
    return os.path.normpath(path) if path else path


def _editable(path, unit, systemd_dir):
    """A file remediate may move aside or edit: the unit's own drop-in directory or the unit file, under
    the admin directory (package-owned files in /usr/lib are not ours to change)."""
    if not path:
        return False
    path = _norm(path)
    return (os.path.dirname(path) == _norm(os.path.join(systemd_dir, unit + '.d'))
            or path == _norm(os.path.join(systemd_dir, unit)))


def _refusal(f, text=None):
    return {'code': f.get('code'), 'severity': f.get('severity'), 'summary': f.get('summary'),
            'manual': text or f.get('fix_text')}


def vgpu_remediate_plan(findings, unit='ollama.service', dropin_path='/etc/systemd/system/ollama.service.d/vgpu.conf',
                        systemd_dir='/etc/systemd/system', warning_actions=None, refuse_codes=None,
                        artifacts=None, history=None, mode=None, summary=None, retry=False):
    """The plan for one host.

    findings         the doctor's findings (ordered, most likely cause first)
    warning_actions  fix actions also applied for warnings (errors always get theirs)
    refuse_codes     codes that refuse the host at warning or error severity
    artifacts        {kind: bool} whether the inventory gives the shim artifact of that kind (cuda, nvml)
    history          what the last remediate run recorded on the host (vgpu_remediate_history), as the doctor
                     read it: a run whose fixes did not reach GPU mode makes this run refuse the host while it is
                     still not in GPU mode (mode, the doctor's verdict of the current start), with the doctor's
                     summary as evidence, unless retry
    """
    warning_actions = list(warning_actions or [])
    refuse_codes = list(refuse_codes or [])
    artifacts = artifacts or {}
    dropin_path = _norm(dropin_path)
    plan = {
        'refused': False, 'refusals': [], 'causes': [], 'acted_on': [], 'not_acted_on': [],
        'reinstall_shim': [], 'fix_modes': [], 'global_preload': None, 'move_dropins': [],
        'strip': [], 'sandbox_settings': {}, 'rewrite_dropin': False,
        'relink': False, 'relink_replace_files': False, 'relink_names': [], 'restart': False,
        'daemon_reload': False, 'unset_env': [], 'unset_env_keep': [], 'fix_modes_restart': False,
    }
    strip = {}      # path -> {'settings': [...]}

    def add_strip(path, settings=()):
        entry = strip.setdefault(_norm(path), {'settings': []})
        for k in settings:
            if k not in entry['settings']:
                entry['settings'].append(k)

    for f in findings or []:
        sev = f.get('severity')
        if sev not in ('error', 'warning'):
            continue
        fix = f.get('fix') or {}
        action = fix.get('action')
        plan['causes'].append({'code': f.get('code'), 'severity': sev, 'summary': f.get('summary'),
                               'action': action})
        if f.get('code') in refuse_codes:
            plan['refusals'].append(_refusal(f))
            continue
        if sev == 'warning' and action not in warning_actions:
            plan['not_acted_on'].append({'code': f.get('code'), 'severity': sev, 'action': action,
                                         'fix_text': f.get('fix_text')})
            continue
        refusal = None
        if action == 'manual':
            refusal = _refusal(f)
        elif action == 'switch_strategy':
            refusal = _refusal(f, 'set vgpu_strategy: %s in the inventory and run site.yml (a layout is an '
                                  'inventory decision: remediate does not switch it); %s'
                               % (fix.get('strategy'), f.get('fix_text')))
        elif action == 'rewrite_dropin' and fix.get('variable'):
            refusal = _refusal(f, 'remove %s from the inventory variables that render %s (vgpu_dropin_'
                                  'environment), then run site.yml; %s'
                               % (fix.get('variable'), fix.get('path'), f.get('fix_text')))
        elif action == 'reinstall_shim' and not artifacts.get(fix.get('kind') or 'cuda'):
            refusal = _refusal(f, 'set vgpu_shim_%s_src to your %s shim build (and its sha256), then run remediate '
                                  'again; %s' % (fix.get('kind') or 'cuda', fix.get('kind') or 'cuda',
                                                 f.get('fix_text')))
        elif action == 'move_conflicting_dropin' and (not _editable(fix.get('path'), unit, systemd_dir)
                                                      or _norm(fix.get('path')) == dropin_path):
            refusal = _refusal(f, 'move %s aside by hand (remediate only edits %s and its drop-in directory); %s'
                               % (fix.get('path'), os.path.join(systemd_dir, unit), f.get('fix_text')))
        elif action == 'unset_env' and not fix.get('editable'):
            # a source the toolkit does not edit (outside /etc, a symlink, the kernel command line ...): the
            # doctor's fix_text is the exact manual step for each
            refusal = _refusal(f)
        elif action == 'fix_shim_mode':
            bad = [p for p in fix.get('paths') or [] if _norm(p) in NEVER_CHMOD]
            if bad:
                refusal = _refusal(f, 'fix the permissions of %s by hand (remediate never sets 0755 on it); %s'
                                   % (', '.join(bad), f.get('fix_text')))
        if refusal:
            plan['refusals'].append(refusal)
            continue

        plan['acted_on'].append({'code': f.get('code'), 'severity': sev, 'action': action,
                                 'summary': f.get('summary')})
        if action == 'relink':
            plan['relink'] = True
            plan['relink_replace_files'] = plan['relink_replace_files'] or bool(fix.get('replace_files'))
            for n in fix.get('names') or []:
                if n not in plan['relink_names']:
                    plan['relink_names'].append(n)
        elif action == 'reinstall_shim':
            kind = fix.get('kind') or 'cuda'
            if kind not in plan['reinstall_shim']:
                plan['reinstall_shim'].append(kind)
        elif action == 'fix_shim_mode':
            for p in fix.get('paths') or []:
                if p not in plan['fix_modes']:
                    plan['fix_modes'].append(p)
            # modes that kept the service user out need a new start; tightened write bits (hijack risk) do not
            plan['fix_modes_restart'] = plan['fix_modes_restart'] or f.get('code') == 'SHIM_UNREADABLE'
        elif action == 'remove_global_preload':
            gp = plan['global_preload'] or {'path': fix.get('path') or '/etc/ld.so.preload', 'entries': []}
            for e in fix.get('entries') or []:
                if e not in gp['entries']:
                    gp['entries'].append(e)
            plan['global_preload'] = gp
        elif action == 'move_conflicting_dropin':
            p = _norm(fix['path'])
            if p not in plan['move_dropins']:
                plan['move_dropins'].append(p)
        elif action == 'unset_env':
            # every assignment goes where it is written (systemd_env_unset), our drop-in's value stays
            for v in fix.get('variables') or [fix.get('variable')]:
                if v and v not in plan['unset_env']:
                    plan['unset_env'].append(v)
            for k in fix.get('keep') or []:
                if k not in plan['unset_env_keep']:
                    plan['unset_env_keep'].append(k)
        elif action == 'override_sandbox':
            plan['sandbox_settings'].update(fix.get('settings') or {})
            # a drop-in applied after ours that sets them again would win: take the settings out of it
            ours_dir, ours_name = os.path.split(dropin_path)
            for key, paths in (fix.get('set_by') or {}).items():
                for p in paths:
                    if (_norm(os.path.dirname(p)) == ours_dir and os.path.basename(p) > ours_name
                            and _editable(p, unit, systemd_dir)):
                        add_strip(p, settings=[key])
        elif action == 'rewrite_dropin':
            plan['rewrite_dropin'] = True
        elif action == 'restart':
            plan['restart'] = True
            plan['daemon_reload'] = plan['daemon_reload'] or bool(fix.get('daemon_reload'))

    # a file that is moved aside needs no editing
    plan['strip'] = [{'path': p, 'settings': v['settings']}
                     for p, v in sorted(strip.items()) if p not in plan['move_dropins']]
    # convergence: never try again what did not help - the last run's fixes left the host out of GPU mode
    last = (history or {}).get('last_run') or {}
    if last.get('fixes') and last.get('verdict') != 'gpu' and mode != 'gpu' and not retry:
        tried = ', '.join('%s %s' % (x.get('action'), '(%s)' % x.get('code') if x.get('code') else '')
                          for x in last['fixes'])
        plan['refusals'].insert(0, {
            'code': last['fixes'][0].get('code'), 'severity': 'error', 'summary': 'not converged',
            'manual': 'fix %s was applied at %s and did not help: the start after it was in %s mode (%s). Now: %s. '
                      'Nothing is tried again until a person looks (vgpu_remediate_retry: true tries once more)'
                      % (tried.strip(), last.get('at'), (last.get('verdict') or 'unknown').upper(),
                         last.get('verdict_line') or 'no verdict line', summary or 'no diagnosis')})
    plan['refused'] = len(plan['refusals']) > 0
    if plan['refused']:
        # all or nothing: a refused host gets no fix at all, not even the safe ones
        plan['not_acted_on'] = [dict(a, fix_text='(host refused)') for a in plan['acted_on']] + plan['not_acted_on']
        plan.update({'acted_on': [], 'reinstall_shim': [], 'fix_modes': [], 'global_preload': None,
                     'move_dropins': [], 'strip': [], 'sandbox_settings': {},
                     'rewrite_dropin': False, 'relink': False, 'relink_replace_files': False, 'relink_names': [],
                     'restart': False, 'daemon_reload': False, 'unset_env': [], 'unset_env_keep': [],
                     'fix_modes_restart': False})
    plan['has_fixes'] = bool(plan['acted_on'])
    return plan


# ------------------------------------------------------------------------------------------ the host's line

def vgpu_remediate_moved_label(item, stamp):
    """What a move did, for the host's line."""
    if item.get('action') == 'override_sandbox':
        return 'override_sandbox (%s had no other setting: moved to %s.vgpu-disabled-%s)' % (
            item['path'], os.path.basename(item['path']), stamp)
    return 'move_conflicting_dropin (%s -> %s.vgpu-disabled-%s)' % (
        item['path'], os.path.basename(item['path']), stamp)


def vgpu_remediate_settings_labels(moved, stripped, stamp):
    """The host's line for the systemd_unit_settings results: the conflicting drop-ins moved aside (``moved``,
    a loop over plan.move_dropins), then of the drop-ins in plan.strip (``stripped``) those moved aside because
    no setting was left, then those edited."""
    def done(results, action):
        return [r for r in results or [] if r.get('changed') and r.get('action') == action]
    return ([vgpu_remediate_moved_label({'path': r['path'], 'action': 'move_conflicting_dropin'}, stamp)
             for r in done(moved, 'moved')]
            + [vgpu_remediate_moved_label({'path': r['path'], 'action': 'override_sandbox'}, stamp)
               for r in done(stripped, 'moved')]
            + ['override_sandbox (edited %s, original kept as .vgpu-disabled-%s)' % (r['path'], stamp)
               for r in done(stripped, 'edited')])


def vgpu_remediate_cause(cause):
    """'CODE (severity)' for one entry of plan.causes."""
    return '%s (%s)' % (cause.get('code'), cause.get('severity'))


def vgpu_remediate_unset_label(actions):
    """systemd_env_unset's actions, as the host's line says them."""
    parts = []
    for a in actions or []:
        where = {'unset_environment': 'the manager environment (unset-environment)'}.get(
            a.get('how'), '%s:%s' % (a.get('path'), a.get('line')) if a.get('line') else a.get('path'))
        kept = ''
        if a.get('backup'):
            kept = ', moved to %s' % os.path.basename(a['backup']) if a.get('how') == 'move_dropin' else \
                ', original kept as %s' % os.path.basename(a['backup'])
        parts.append('%s from %s%s' % (a.get('variable'), where, kept))
    return 'unset_env (%s)' % '; '.join(parts)


def vgpu_remediate_history(plan, mode, stamp, verdict_line=None, done=None):
    """What this run leaves on the host for the next one (written only when it applied fixes): which fixes,
    and the mode of the start after them."""
    return {'version': 1, 'last_run': {
        'at': stamp, 'verdict': mode or 'unknown', 'verdict_line': verdict_line,
        'fixes': [{'code': a.get('code'), 'action': a.get('action'), 'summary': a.get('summary')}
                  for a in (plan or {}).get('acted_on') or []],
        'done': list(done or [])}}


class FilterModule(object):
    def filters(self):
        return {
            'vgpu_remediate_plan': vgpu_remediate_plan,
            'vgpu_remediate_cause': vgpu_remediate_cause,
            'vgpu_remediate_settings_labels': vgpu_remediate_settings_labels,
            'vgpu_remediate_moved_label': vgpu_remediate_moved_label,
            'vgpu_remediate_history': vgpu_remediate_history,
            'vgpu_remediate_unset_label': vgpu_remediate_unset_label,
        }
