# -*- coding: utf-8 -*-
# The signals besides the log that ollama_gpu_mode weighs: the API's answer to /api/version and an optional
# smoke load (/api/generate with an empty prompt, then /api/ps size_vram). Pure stdlib, no Ansible imports,
# so the unit tests drive it with a local HTTP server.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import json
import time
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import ProxyHandler, Request, build_opener

GIB = 1073741824


def _is_loopback(host):
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _opener(url):
    """(opener, error): proxies are ignored for a loopback address; error names a URL that is not http(s)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        return None, 'api_url %r is not a URL: %s' % (url, exc)
    if parts.scheme not in ('http', 'https') or not host:
        return None, 'api_url must be an http:// or https:// URL, got %r' % url
    return (build_opener(ProxyHandler({})) if _is_loopback(host) else build_opener()), None


def _request(opener, target, timeout, body=None):
    """(status, parsed JSON or None, error message or 'OK'); never raises."""
    data = None if body is None else json.dumps(body).encode('utf-8')
    req = Request(target, data=data, headers={'Content-Type': 'application/json'} if data else {})
    try:
        resp = opener.open(req, timeout=timeout)
        try:
            status, raw = resp.getcode(), resp.read(1 << 20)
        finally:
            resp.close()
    except HTTPError as exc:
        try:
            parsed = json.loads(exc.read(65536).decode('utf-8', 'replace'))
        except Exception:
            parsed = None
        return exc.code, parsed, 'HTTP %s %s' % (exc.code, exc.reason)
    except URLError as exc:
        return 0, None, str(exc.reason)
    except Exception as exc:    # timeouts, resets, malformed answers
        return 0, None, str(exc) or exc.__class__.__name__
    try:
        parsed = json.loads(raw.decode('utf-8', 'replace'))
    except ValueError:
        parsed = None
    return status, parsed, 'OK' if status == 200 else 'HTTP %s' % status


def probe_api(url, deadline, interval=0.2):
    """GET <url>/api/version until it answers 200 or ``deadline`` (epoch) passes; never raises.

    Returns {'status': HTTP status of the last try, 0 when nothing answered, 'version': the body's
    version or None, 'msg': 'OK' or what went wrong}.
    """
    opener, error = _opener(url)
    if error:
        return {'status': 0, 'version': None, 'msg': error}
    target = url.rstrip('/') + '/api/version'
    while True:
        status, data, msg = _request(opener, target, max(0.2, min(5.0, deadline - time.time())))
        if status == 200:
            return {'status': 200, 'version': data.get('version') if isinstance(data, dict) else None, 'msg': 'OK'}
        remaining = deadline - time.time()
        if remaining <= 0:
            return {'status': status, 'version': None, 'msg': msg}
        time.sleep(min(interval, remaining))


def smoke_load(url, model, timeout):
    """Load ``model`` (an empty prompt only loads it; memory only, nothing on disk changes) and ask
    /api/ps where it lives. Returns {model, loaded, status, error, size_vram}."""
    out = {'model': model, 'loaded': False, 'status': -1, 'error': '', 'size_vram': 0}
    opener, error = _opener(url)
    if error:
        out['error'] = error
        return out
    base = url.rstrip('/')
    status, data, msg = _request(opener, base + '/api/generate', timeout,
                                 body={'model': model, 'prompt': '', 'stream': False, 'keep_alive': '5m'})
    out['status'] = status
    out['loaded'] = status == 200
    if not out['loaded']:
        out['error'] = data.get('error') if isinstance(data, dict) and data.get('error') else msg
        return out
    _status, ps, _msg = _request(opener, base + '/api/ps', 10)
    names = (model, model + ':latest')
    for entry in (ps or {}).get('models') or []:
        if isinstance(entry, dict) and entry.get('name') in names:
            try:
                out['size_vram'] = int(entry.get('size_vram') or 0)
            except (TypeError, ValueError):
                out['size_vram'] = 0
            break
    return out


def api_problems(api, url, timeout):
    """The API not answering /api/version, as a problem (empty when it answered or was not asked)."""
    if api is None or api.get('status') == 200:
        return []
    return ['the API at %s did not answer /api/version within %s s (%s)' % (url, max(int(timeout), 1), api.get('msg'))]


def smoke_problems(smoke, expect):
    """What the smoke load says against ``expect`` (empty when it agrees or did not run)."""
    if smoke is None:
        return []
    if not smoke['loaded']:
        return ['smoke load of %s failed (HTTP %s): %s - is it pulled? (ollama pull %s)'
                % (smoke['model'], smoke['status'], smoke['error'], smoke['model'])]
    if expect == 'gpu' and smoke['size_vram'] == 0:
        return ['smoke model %s is loaded with size_vram 0: it runs on the CPU' % smoke['model']]
    if expect == 'cpu' and smoke['size_vram'] > 0:
        return ['smoke model %s sits in VRAM although CPU mode was expected' % smoke['model']]
    return []


def weigh(summary, log_problems, other_problems, smoke):
    """The summary line over every signal: the log's line, the smoke load's VRAM when it agrees, then the
    problems of the other signals."""
    text = summary
    if smoke is not None and smoke['loaded'] and not log_problems:
        text += '; smoke load of %s: %.1f GiB in VRAM' % (smoke['model'], smoke['size_vram'] / float(GIB))
    if other_problems:
        text += ' \u2014 ' + '; '.join(other_problems)
    return text
