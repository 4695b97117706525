# -*- coding: utf-8 -*-
# The doctor itself: gather, diagnose, summarise, build the module's result (target side).
"""``doctor(params, paths, probe)`` is what library/vgpu_doctor.py runs: ``gather`` (facts), ``diagnose`` (every
registered check in the catalogue's PRIORITY order), the summary line and the remediation history.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import time

# imported for their side effect: the checks_* modules register one check per code of the catalogue (@check)
from ansible.module_utils.vgpu_doctor import checks_env, checks_host, checks_runtime  # noqa: F401 (side effect)
from ansible.module_utils.vgpu_doctor.catalogue import CHECKS, CODES, PRIORITY, order_findings
from ansible.module_utils.vgpu_doctor.common import read_small
from ansible.module_utils.vgpu_doctor.facts import gather
from ansible.module_utils.vgpu_doctor.log_evidence import verdict
from ansible.module_utils.vgpu_doctor.params import as_params
from ansible.module_utils.vgpu_doctor.paths import Probe, SystemPaths
from ansible.module_utils.vgpu_doctor.probes import probe_evidence
from ansible.module_utils.vgpu_unit_env import environment_differences, source_text


def checks_in_order():
    """[(code, check)] for every code of the catalogue, in its PRIORITY order."""
    return [(code, CHECKS[code]) for code in PRIORITY]


def diagnose(f):
    """Every check on the facts, the findings ordered by severity, then PRIORITY."""
    findings = []
    for _code, run_check in checks_in_order():
        findings.extend(run_check(f))
    return order_findings(findings)


def summary_line(findings, v, healthy):
    errors = [x for x in findings if x['severity'] == 'error']
    warnings = [x for x in findings if x['severity'] == 'warning']
    if v and v.get('verdict') == 'other_library':
        mode = 'GPU mode on %s only, not the CUDA shim' % ' and '.join(v.get('libraries') or ['another library'])
    else:
        mode = ('%s mode' % v['mode'].upper()) if v else 'no verdict in the log'
    if healthy:
        return 'healthy (%s)%s' % (mode, ', %d warning(s): %s' % (len(warnings), ', '.join(
            sorted(set(w['code'] for w in warnings)))) if warnings else '')
    if errors:
        others = []
        for e in errors[1:]:
            if e['code'] not in others:
                others.append(e['code'])
        return '%s: %s (%s%s%s)' % (errors[0]['code'], errors[0]['summary'], mode,
                                   '; %d more error(s): %s' % (len(errors) - 1, ', '.join(others)) if others else '',
                                   '; %d warning(s)' % len(warnings) if warnings else '')
    return 'not healthy: %s but no cause found among the %d codes%s' % (
        mode, len(CODES), ' (warnings: %s)' % ', '.join(sorted(set(w['code'] for w in warnings))) if warnings else '')


def doctor(params, paths=None, probe=None):
    """Gather, diagnose, and build the module's result (without changed/elapsed bookkeeping)."""
    began = time.time()
    params = as_params(params)
    paths = paths or SystemPaths(params.root or '/')
    probe = probe or Probe()
    f = gather(params, paths, probe)
    findings = diagnose(f)
    v = verdict(f)
    healthy = not any(x['severity'] == 'error' for x in findings) and (v is None or v['verdict'] == 'gpu')
    if v is not None and v['mode'] == 'unknown':
        healthy = not any(x['severity'] == 'error' for x in findings)
    return {
        'findings': findings,
        'healthy': healthy,
        'verdict': v,
        'resolution': [dict((k, r.get(k)) for k in ('runner', 'name', 'path', 'real', 'step', 'ok', 'is_shim',
                                                    'copy_of_shim', 'error', 'skipped', 'env', 'search_path',
                                                    'candidates'))
                       for r in f.resolution],
        'discovery': f.discovery,
        'summary': summary_line(findings, v, healthy),
        'links': f.links,
        'service': dict((k, f.unit.get(k)) for k in ('name', 'load_state', 'active_state', 'sub_state', 'main_pid',
                                                      'user', 'group', 'uid', 'gids', 'user_error', 'dynamic_user',
                                                      'unit_file', 'sandbox', 'need_daemon_reload',
                                                      'reload_pending')),
        'environment': {'unit': f.unit_env, 'running': f.running_env,
                        'sources': dict((v, source_text(r)) for v, r in f.env_records.items()),
                        'source_details': f.env_records,
                        'differences': environment_differences(f.predicted, f.running_env) if f.predicted else [],
                        'environment_files': (f.predicted or {}).get('environment_files', []),
                        'unset': f.unset, 'unset_by': f.unset_by, 'dropins': f.dropins,
                        'our_dropin': f.dropin_path},
        'processes': f.processes,
        'shims': dict((k, dict((kk, s[kk]) for kk in ('path', 'exists', 'sha256', 'expected_sha256', 'soname',
                                                        'elf', 'problems', 'interposed')))
                      for k, s in f.shims.items()),
        'log_source': (f.log or {}).get('source'),
        'history': read_history(f),
        'driver_probe': dict((f.driver_probe or {}), next_start=probe_evidence((f.driver_probe or {}).get('next_start')),
                             without_visible_devices=probe_evidence(
                                 (f.driver_probe or {}).get('without_visible_devices'))) if f.driver_probe else None,
        'notes': f.notes + ([f.log['error']] if f.log and f.log.get('error') else []),
        'elapsed': round(time.time() - began, 3),
    }


def read_history(f):
    """What the last remediate run recorded ({} when there is no record); read-only."""
    path = f.params.history_path
    if not path:
        return {}
    text = read_small(f.paths.join(path), 1024 * 1024)
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError as e:
        f.notes.append('%s is not JSON (%s): no remediation history' % (path, e))
        return {}
    return data if isinstance(data, dict) else {}
