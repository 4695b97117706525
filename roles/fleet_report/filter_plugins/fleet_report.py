# -*- coding: utf-8 -*-
# Turn what the fleet_report role collected on each host into the report record (controller side).
"""Filters of the fleet_report role.

fleet_report_host(raw)   one host's collected facts -> its report record (verdict, problem, devices, ...)
fleet_report_records(raws, hosts)  the same for a list, with a record for hosts that have no facts
fleet_report(records, generated_at, generator)  records -> the whole report (totals + hosts, sorted by name)
fleet_report_lines(report)  one 'host: VERDICT - problem or summary' line per host
fleet_report_bytes(n)    85469849190 -> "79.6 GiB"
fleet_report_time(epoch) 1737367200.5 -> "2025-01-20T10:00:00Z"

The report's shape is fixed by files/fleet-report.schema.json; tests/unit/test_report*.py render the
templates from sample records and validate the result against it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import re

SCHEMA_VERSION = 1
VERDICTS = ('ok', 'warn', 'fail', 'unreachable')
SEVERITY_ORDER = {'error': 0, 'warning': 1, 'info': 2}
# characters XML 1.0 cannot carry, even escaped (log lines sometimes hold them)
_XML_BAD = re.compile(u'[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]')


def _clean(value):
    """Strings safe for JSON, XML and HTML; containers cleaned recursively."""
    if isinstance(value, dict):
        return dict((str(k), _clean(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
    if isinstance(value, str):
        return _XML_BAD.sub(u'\ufffd', value)
    return value


def _text(value, default=None):
    if value is None:
        return default
    value = str(value).strip()
    return value if value else default


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def fleet_report_time(epoch):
    """Seconds since the epoch -> ISO 8601 UTC (second precision), None for nothing."""
    try:
        value = float(epoch)
    except (TypeError, ValueError):
        return None
    return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def fleet_report_bytes(n):
    """Bytes -> Ollama's own style (powers of 1024, one decimal): 85469849190 -> 79.6 GiB."""
    n = _int(n, 0) or 0
    for unit, size in (('TiB', 1 << 40), ('GiB', 1 << 30), ('MiB', 1 << 20), ('KiB', 1 << 10)):
        if n >= size:
            return '%.1f %s' % (n / float(size), unit)
    return '%d B' % n


def _file(stat, expected_sha256=None):
    """A stat result (ansible.builtin.stat's .stat) -> {path, present, sha256, expected_sha256, matches, mtime}."""
    stat = stat or {}
    present = bool(stat.get('exists')) and bool(stat.get('isreg', True))
    expected = _text(expected_sha256)
    if expected:
        expected = expected.lower()
        if expected.startswith('sha256:'):
            expected = expected[len('sha256:'):]
    sha = _text(stat.get('checksum')) if present else None
    return {
        'path': _text(stat.get('path')),
        'present': present,
        'sha256': sha,
        'expected_sha256': expected,
        'matches': (sha == expected) if (expected and present) else None,
        'mtime': fleet_report_time(stat.get('mtime')) if present else None,
        '_mtime': stat.get('mtime') if present else None,
    }


def _device(dev):
    dev = dev or {}
    name = _text(dev.get('description')) or _text(dev.get('name')) or _text(dev.get('id')) or 'unknown'
    total_bytes = _int(dev.get('total_bytes'))
    return {
        'name': name,
        'id': _text(dev.get('id')),
        'library': _text(dev.get('library')),
        'compute': _text(dev.get('compute')),
        'driver': _text(dev.get('driver')),
        'vram': _text(dev.get('total')) or (fleet_report_bytes(total_bytes) if total_bytes else None),
        'vram_bytes': total_bytes,
    }


def _finding(f):
    f = f or {}
    fix = f.get('fix') or {}
    return {
        'code': _text(f.get('code'), 'UNKNOWN'),
        'severity': _text(f.get('severity'), 'info') if f.get('severity') in SEVERITY_ORDER else 'info',
        'summary': _text(f.get('summary'), ''),
        'fix': _text(f.get('fix_text')) or _text(fix.get('action') if isinstance(fix, dict) else fix),
    }


def fleet_report_host(raw):
    """One host's collected facts -> its report record.

    raw keys (all optional but host): host, reachable (false when the host could not be reached),
    unreachable_msg, api_ok, gpu_mode (ollama_gpu_mode's result), gpu_mode_ok, gpu_mode_problems,
    gpu_mode_summary, api_version, strategy, shim / nvml_shim / dropin (stat results),
    shim_expected_sha256, nvml_expected_sha256, doctor_available, doctor (vgpu_doctor's result).
    """
    raw = raw or {}
    host = _text(raw.get('host'), 'unknown')
    if raw.get('reachable') is False:
        msg = _text(raw.get('unreachable_msg'), 'the host could not be reached')
        return _clean({
            'host': host, 'verdict': 'unreachable', 'problem': msg, 'summary': 'UNREACHABLE - ' + msg,
            'mode': 'unknown', 'ollama_version': None, 'started_at': None, 'strategy': _text(raw.get('strategy')),
            'devices': [], 'vram_total_bytes': 0, 'vram_total': fleet_report_bytes(0),
            'shim': None, 'nvml_shim': None, 'dropin': None, 'last_change': None, 'last_change_path': None,
            'doctor': 'not run', 'healthy': None, 'findings': [], 'problems': [msg],
        })

    gm = raw.get('gpu_mode') or {}
    mode = _text(gm.get('mode'), 'unknown')
    if mode not in ('gpu', 'cpu', 'unknown'):
        mode = 'unknown'
    devices = [_device(d) for d in (gm.get('devices') or [])]
    vram = sum(d['vram_bytes'] or 0 for d in devices)
    problems = [_text(p) for p in (raw.get('gpu_mode_problems') or gm.get('problems') or []) if _text(p)]
    if mode != 'gpu' and not problems:
        problems = ['mode is %s, not gpu' % mode]

    shim = _file(raw.get('shim'), raw.get('shim_expected_sha256')) if raw.get('shim') else None
    nvml = _file(raw.get('nvml_shim'), raw.get('nvml_expected_sha256')) if raw.get('nvml_shim') else None
    dropin = _file(raw.get('dropin')) if raw.get('dropin') else None
    if shim is not None and not shim['present']:
        problems.append('the CUDA shim %s is missing' % shim['path'])
    for label, f in (('CUDA shim', shim), ('NVML shim', nvml)):
        if f is not None and f['matches'] is False:
            problems.append('the %s %s has sha256 %s..., expected %s...' % (label, f['path'], f['sha256'][:16],
                                                                           f['expected_sha256'][:16]))

    doctor = raw.get('doctor') or {}
    if not raw.get('doctor_available'):
        doctor_state, healthy, findings = 'not available', None, []
    elif doctor.get('failed') or 'findings' not in doctor:
        doctor_state = 'error: ' + (_text(doctor.get('msg'), 'no result'))[:300]
        healthy, findings = None, []
    else:
        doctor_state = 'ran'
        healthy = bool(doctor.get('healthy'))
        # the doctor orders findings most likely cause first; keep that order within each severity
        findings = sorted((_finding(f) for f in doctor.get('findings') or []),
                          key=lambda f: SEVERITY_ORDER.get(f['severity'], 3))
    errors = [f for f in findings if f['severity'] == 'error']
    warnings = [f for f in findings if f['severity'] == 'warning']

    if errors or problems:
        verdict = 'fail'
        top = errors[0] if errors else None
        problem = ('%s: %s' % (top['code'], top['summary'])) if top else problems[0]
    elif warnings or doctor_state.startswith('error'):
        verdict = 'warn'
        problem = ('%s: %s' % (warnings[0]['code'], warnings[0]['summary'])) if warnings else \
            'vgpu_doctor did not run: ' + doctor_state
    else:
        verdict, problem = 'ok', None

    changed = [f for f in (dropin, shim, nvml) if f is not None and f['_mtime'] is not None]
    last = max(changed, key=lambda f: float(f['_mtime'])) if changed else None
    for f in (shim, nvml, dropin):
        if f is not None:
            f.pop('_mtime', None)

    summary = _text(raw.get('gpu_mode_summary')) or _text(gm.get('summary')) or ('%s mode' % mode.upper())
    return _clean({
        'host': host,
        'verdict': verdict,
        'problem': problem,
        'summary': summary,
        'mode': mode,
        'ollama_version': _text(gm.get('ollama_version')) or _text(raw.get('api_version')),
        'started_at': _text(gm.get('started_at')),
        'strategy': _text(raw.get('strategy')),
        'devices': devices,
        'vram_total_bytes': vram,
        'vram_total': fleet_report_bytes(vram),
        'shim': shim,
        'nvml_shim': nvml,
        'dropin': dropin,
        'last_change': last['mtime'] if last else None,
        'last_change_path': last['path'] if last else None,
        'doctor': doctor_state,
        'healthy': healthy,
        'findings': findings,
        'problems': problems,
    })


def fleet_report_records(raws, hosts=None):
    """Records for hosts (names, in order) from their raw facts (same order); a host without raw facts
    (it failed before recording them) gets an unreachable record that says so."""
    raws = list(raws or [])
    hosts = list(hosts) if hosts is not None else [(r or {}).get('host') for r in raws]
    out = []
    for i, host in enumerate(hosts):
        raw = raws[i] if i < len(raws) else None
        if not raw:
            raw = {'host': host, 'reachable': False,
                   'unreachable_msg': 'no record: the host failed before its state was collected (see the play output)'}
        elif not raw.get('host'):
            raw = dict(raw, host=host)
        out.append(fleet_report_host(raw))
    return out


def fleet_report(records, generated_at=None, generator='playbooks/report.yml'):
    """Host records -> the report: schema version, time, totals over verdicts and modes, hosts by name."""
    hosts = sorted((r for r in records or [] if r), key=lambda r: r.get('host') or '')
    totals = dict((v, 0) for v in VERDICTS)
    for r in hosts:
        totals[r['verdict']] = totals.get(r['verdict'], 0) + 1
    totals['hosts'] = len(hosts)
    totals['gpu'] = sum(1 for r in hosts if r.get('mode') == 'gpu')
    totals['cpu'] = sum(1 for r in hosts if r.get('mode') == 'cpu')
    totals['vram_total_bytes'] = sum(r.get('vram_total_bytes') or 0 for r in hosts)
    totals['vram_total'] = fleet_report_bytes(totals['vram_total_bytes'])
    versions = {}
    for r in hosts:
        v = r.get('ollama_version') or 'unknown'
        versions[v] = versions.get(v, 0) + 1
    return _clean({
        'schema_version': SCHEMA_VERSION,
        'generated_at': generated_at or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        'generator': generator,
        'doctor_available': any(r.get('doctor') not in ('not available', 'not run') for r in hosts),
        'totals': totals,
        'ollama_versions': versions,
        'hosts': hosts,
    })


def fleet_report_lines(report):
    """One human line per host: 'name: VERDICT - problem' (or the verdict summary when ok)."""
    return ['%s: %s - %s' % (h['host'], h['verdict'].upper(),
                             h['problem'] if h['verdict'] != 'ok' and h.get('problem') else h['summary'])
            for h in (report or {}).get('hosts', [])]


class FilterModule(object):
    def filters(self):
        return {
            'fleet_report_host': fleet_report_host,
            'fleet_report_records': fleet_report_records,
            'fleet_report': fleet_report,
            'fleet_report_bytes': fleet_report_bytes,
            'fleet_report_lines': fleet_report_lines,
            'fleet_report_time': fleet_report_time,
        }
