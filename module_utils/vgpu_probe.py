# -*- coding: utf-8 -*-
# Live CUDA driver-API / NVML probe for vgpu_doctor: running the child (target side, Python 3.8+ stdlib,
# importable without Ansible).
"""Ask the driver what Ollama's discovery would get, in a fresh, bounded subprocess.

Static evidence (links, ELF, unit files) says what *should* load; this asks the loader and the driver
what *does*: a child Python, started with the service's predicted environment, as the unit's user, under
a hard time limit, ``dlopen``\\ s ``libcuda.so.1`` the way Ollama's native GPU probe does and calls the
driver API, then NVML. It is read-only (no writes, no network; the child runs ``python -I -S -B`` in
``/``) and can never take the service or the VM down: the child is its own session, killed with its
whole process group at the time limit, and the parent never waits more than ~0.2 s after that, even
for a child stuck in an uninterruptible ``cuInit``.

What upstream does (Ollama v0.30.11; ``git -C /work/.mirror/ollama+ollama/repo show v0.30.11:<path>``):

* ``discover/native_probe.go:82-88@v0.30.11``: discovery re-executes ``ollama gpu-discover --lib-dir ...``
  with ``llm.SetupLlamaServerCommandEnv``: the server's whole environment (LD_PRELOAD and
  CUDA_VISIBLE_DEVICES included) with LD_LIBRARY_PATH replaced (``llm/llama_server.go:437-467@v0.30.11``).
* ``llm/llama_server.go:480-514@v0.30.11`` (``llamaServerLibraryPaths``): LD_LIBRARY_PATH = llama-server's
  dir (``<lib/ollama>``), the GPU dirs (``<lib/ollama>/cuda_vNN``), then the server's own LD_LIBRARY_PATH
  entries; empty entries and repeats dropped. ``library_path()`` does exactly that.
* ``discover/native_probe_linux.go:249-351@v0.30.11`` (``probeCUDADriverLinux``): ``dlopen`` (RTLD_NOW |
  RTLD_LOCAL, line 14) ``"libcuda.so.1"`` then ``"libcuda.so"`` (line 250; bare names, so the loader
  resolves them: an object already loaded with that SONAME - e.g. from LD_PRELOAD -, LD_LIBRARY_PATH,
  ld.so.cache, the default dirs); ``dlsym`` of every entry point first (lines 255-283; a missing one
  fails the probe before any call; cuDeviceGetPCIBusId is optional, cuDeviceTotalMem_v2 falls back to
  cuDeviceTotalMem); cuInit(0) (285; failure ends the probe), cuDriverGetVersion (291), the NVIDIA driver
  major from NVML (298), cuDeviceGetCount (303), per device cuDeviceGet (311; failure skips the device),
  cuDeviceGetAttribute 75/76 (compute capability major/minor) and 18 (integrated) (315-317; a failure
  reads as 0), cuDeviceGetName (320, 128 bytes), cuDeviceTotalMem (323), cuDeviceGetPCIBusId (328, 32
  bytes, lower-cased).
* ``discover/native_probe_linux.go:391-418@v0.30.11`` (``probeNVIDIADriverMajorLinux``): ``dlopen``
  ``"libnvidia-ml.so.1"`` then ``"libnvidia-ml.so"``, ``dlsym`` nvmlInit_v2, nvmlShutdown,
  nvmlSystemGetDriverVersion, then nvmlInit_v2, nvmlSystemGetDriverVersion (80 bytes), nvmlShutdown; the
  major parsed by ``parseNVIDIADriverMajor`` (``discover/native_probe_platform.go:121@v0.30.11``).

The child does the same calls in the same order, plus nvmlDeviceGetCount_v2, and goes on where upstream
stops, so every answer is on record: each call is reported on its own (a missing symbol as
``'symbol not found'``), and NVML is asked even when libcuda does not load or cuInit fails.

API
---

``probe_command(lib_dirs, env, python)`` -> ``(argv, child_env)``; ``user_argv(argv, user, uid, gid,
groups, which)`` -> ``(argv, as_user)``; ``run_bounded(argv, env, timeout)`` -> dict;
``start_probe(lib_dirs, env, user_spec, timeout)`` -> handle, ``finish_probe(handle)`` -> result,
``finish_probes(handles)``, ``run_probe(...)`` = start + finish. Several probes (one per ``cuda_v*`` dir)
may be started before the first is finished: finishing one reads the pipes of all that are running, so
they take the longest one's time, not the sum.

Result fields: see module_utils/vgpu_probe_result.py.

What it does not reproduce of the running unit: the systemd sandbox (PrivateDevices=, DevicePolicy=/
DeviceAllow= cgroup device rules, ProtectKernel*, namespaces, SystemCallFilter=), resource limits,
SupplementaryGroups= unless passed as ``groups``, DynamicUser= (the caller decides whom to run as), the
unit's WorkingDirectory, and the GGML backend libraries upstream loads before its driver probe (the
child loads the driver itself; the loader resolves ``libcuda.so.1`` the same way, but a constructor in
libggml-cuda.so or a dependency it drags in is not run). The caller is Python, not the Go binary:
the loader's search path for a ``dlopen`` of a bare name also honours the caller's (and the main
program's) RPATH; neither ``python3`` nor ``ollama`` has one. A real libcuda may, as it does for
Ollama, run ``nvidia-modprobe`` when ``/dev/nvidia*`` are missing: that is the driver's doing.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import time

try:
    from ansible.module_utils.vgpu_probe_child import CHILD_CODE, CUDA_NAMES, NVML_NAMES
    from ansible.module_utils.vgpu_probe_result import KILL_GRACE, probe_result
except ImportError:     # imported on its own (module_utils on sys.path), without Ansible
    from vgpu_probe_child import CHILD_CODE, CUDA_NAMES, NVML_NAMES
    from vgpu_probe_result import KILL_GRACE, probe_result

PROBE_TIMEOUT = 3.0      # default seconds per probe (upstream gives its native probe 15 s)
PIPE_GRACE = 0.1         # seconds to wait for EOF after the child exited (grandchildren holding the pipes)
OUTPUT_LIMIT = 1 << 20   # bytes kept per stream
MAX_DEVICES = 16         # devices asked per probe (the result stays small)
DEFAULT_PYTHON = '/usr/bin/python3'


def library_path(lib_dirs, inherited):
    """LD_LIBRARY_PATH entries for the discovery child: Ollama's lib dirs, then the inherited value's
    entries, empty ones and repeats dropped (llamaServerLibraryPaths, llm/llama_server.go:480-514@v0.30.11;
    filepath.SplitList of "" is nothing)."""
    out = []
    for d in list(lib_dirs or []) + (inherited.split(':') if inherited else []):
        if d and d not in out:
            out.append(d)
    return out


def default_python():
    return DEFAULT_PYTHON if os.access(DEFAULT_PYTHON, os.X_OK) else (sys.executable or 'python3')


def probe_command(lib_dirs, env, python=DEFAULT_PYTHON, max_devices=MAX_DEVICES, cuda_names=None):
    """The child's argv and environment.

    argv = ``[python, '-I', '-S', '-B', '-c', CHILD_CODE, <json args>]``; the environment is ``env`` (the
    service's predicted environment, LD_PRELOAD and CUDA_VISIBLE_DEVICES included, as given) with
    LD_LIBRARY_PATH = ``lib_dirs`` + env's LD_LIBRARY_PATH entries (``library_path``). As upstream
    (llm/llama_server.go:449-461@v0.30.11), a variable whose name equals LD_LIBRARY_PATH ignoring case is
    replaced too; when there is no entry at all the variable is left out."""
    env = dict(env or {})
    entries = library_path(lib_dirs, env.get('LD_LIBRARY_PATH'))
    for k in list(env):
        if k.upper() == 'LD_LIBRARY_PATH':
            del env[k]
    if entries:
        env['LD_LIBRARY_PATH'] = ':'.join(entries)
    # cuda_names: what to dlopen instead of upstream's bare names - the full path Ollama before 0.12.4 opens
    # (its in-process discovery, discover/gpu_info_nvcuda.c:33@v0.5.7)
    args = json.dumps({'cuda': list(cuda_names or CUDA_NAMES), 'nvml': list(NVML_NAMES),
                       'max_devices': int(max_devices)})
    return [python or default_python(), '-I', '-S', '-B', '-c', CHILD_CODE, args], env


def user_argv(argv, user=None, uid=None, gid=None, groups=None, which=shutil.which, euid=None):
    """Wrap argv to run as the unit's user: ``(argv, as_user)``.

    Only when we are root (``euid``, default ``os.geteuid()``) and the user is not root: ``setpriv
    --reuid=U --regid=G --init-groups --`` (``--groups=g1,g2`` when ``groups`` is given, ``--clear-groups``
    for an empty list or a uid without a passwd entry); G is ``gid``, else the user's primary group, else
    U. No PAM session (runuser's would log "session opened" on every run), hence setpriv first;
    ``runuser -u NAME --`` when setpriv is missing; argv unchanged when neither exists or nothing is to be
    switched. ``as_user`` is the user name when switched, else ``'uid N'`` (N = euid). An unknown user name
    raises ValueError (a numeric string is taken as a uid)."""
    euid = os.geteuid() if euid is None else euid
    here = 'uid %d' % euid
    argv = list(argv)
    if euid != 0 or (user in (None, '') and uid is None):
        return argv, here
    pw = None
    if uid is None:
        try:
            pw = pwd.getpwnam(user)
            uid = pw.pw_uid
        except KeyError:
            if not str(user).isdigit():
                raise ValueError('unknown user %r' % (user,))
            uid = int(user)
    if pw is None:
        try:
            pw = pwd.getpwuid(uid)
        except KeyError:
            pw = None
    uid = int(uid)
    if uid == 0:
        return argv, here
    name = user if user not in (None, '') and not str(user).isdigit() else (pw.pw_name if pw else None)
    shown = name or 'uid %d' % uid
    setpriv = which('setpriv')
    if setpriv:
        if gid is None:
            gid = pw.pw_gid if pw else uid
        if groups is not None:
            gopt = '--groups=%s' % ','.join(str(int(g)) for g in groups) if groups else '--clear-groups'
        else:
            gopt = '--init-groups' if pw else '--clear-groups'
        return [setpriv, '--reuid=%d' % uid, '--regid=%d' % int(gid), gopt, '--'] + argv, shown
    runuser = which('runuser')
    if runuser and name:
        return [runuser, '-u', name, '--'] + argv, shown
    return argv, here


# ------------------------------------------------------------------------------------------ bounded runs

class _Job(object):
    """One child in its own session, read without blocking, killed with its group at the deadline."""

    def __init__(self, argv, env, timeout, cwd=None):
        self.t0 = time.monotonic()
        self.deadline = self.t0 + max(0.0, float(timeout))
        self.rc = None
        self.timed_out = self.killed = self.unkillable = self.leftover = False
        self.done = False
        self.exited_at = self.killed_at = None
        self.elapsed = None
        self.out = {1: bytearray(), 2: bytearray()}
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, close_fds=True, start_new_session=True)
        self.pgid = self.proc.pid   # start_new_session: the child leads its own session and group
        self.fds = {self.proc.stdout.fileno(): 1, self.proc.stderr.fileno(): 2}
        self.files = {self.proc.stdout.fileno(): self.proc.stdout, self.proc.stderr.fileno(): self.proc.stderr}
        _ACTIVE.append(self)

    def _killpg(self):
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except OSError:
            pass
        self.killed = True

    def _close(self):
        for fd in list(self.files):
            try:
                self.files.pop(fd).close()
            except OSError:
                pass
        self.fds.clear()

    def _finish(self):
        self._close()
        self.done = True
        self.elapsed = time.monotonic() - self.t0
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def read(self, fd):
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b''
        if not data:
            f = self.files.pop(fd, None)
            self.fds.pop(fd, None)
            if f is not None:
                f.close()
            return
        buf = self.out[self.fds[fd]]
        if len(buf) < OUTPUT_LIMIT:
            buf.extend(data[:OUTPUT_LIMIT - len(buf)])

    def step(self, now):
        """Advance the state machine; returns the next moment something is due."""
        if self.done:
            return None
        if self.rc is None:
            rc = self.proc.poll()
            if rc is not None:
                self.rc = rc
                self.exited_at = now
        if self.rc is not None:
            if not self.fds:
                self._finish()
                return None
            # the child is gone but its pipes are still open: something it started holds them
            limit = (self.killed_at + KILL_GRACE) if self.killed_at is not None else self.exited_at + PIPE_GRACE
            if now >= limit:
                if not self.killed:
                    self.leftover = True
                    self._killpg()
                self._finish()
                return None
            return limit
        if self.killed_at is None:
            if now >= self.deadline:
                self.timed_out = True
                self._killpg()
                self.killed_at = now
                return now + 0.01
            return self.deadline
        if now >= self.killed_at + KILL_GRACE:
            # SIGKILL did not end it (uninterruptible sleep): give up, never block on it
            self.unkillable = True
            self._finish()
            return None
        return min(now + 0.01, self.killed_at + KILL_GRACE)

    def report(self):
        return {'rc': self.rc, 'stdout': self.out[1].decode('utf-8', 'replace'),
                'stderr': self.out[2].decode('utf-8', 'replace'), 'timed_out': self.timed_out,
                'killed': self.killed, 'unkillable': self.unkillable, 'leftover': self.leftover,
                'elapsed': round(self.elapsed if self.elapsed is not None else time.monotonic() - self.t0, 4)}


_ACTIVE = []   # jobs started and not finished: finishing one keeps reading all of them


def _pump(until):
    """Read every active job's pipes until job `until` is done."""
    while not until.done:
        now = time.monotonic()
        due = []
        for job in list(_ACTIVE):
            t = job.step(now)
            if t is not None:
                due.append(t)
        if until.done:
            break
        wait = max(0.0, min(due) - time.monotonic()) if due else 0.0
        # a child that exits wakes nobody (its pipes may stay open): look again at least every 20 ms
        wait = min(wait, 0.02)
        poller = select.poll()
        owners = {}
        for job in _ACTIVE:
            for fd in job.fds:
                poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
                owners[fd] = job
        if not owners:
            time.sleep(wait)
            continue
        try:
            events = poller.poll(wait * 1000.0)
        except InterruptedError:
            continue
        for fd, _ev in events:
            job = owners.get(fd)
            if job is not None and fd in job.fds:
                job.read(fd)


def run_bounded(argv, env, timeout, cwd=None):
    """Run argv with a hard time limit: ``{'rc', 'stdout', 'stderr', 'timed_out', 'killed', 'unkillable',
    'leftover', 'elapsed'}``.

    The child gets its own session (``start_new_session``), stdin from /dev/null, no inherited fds. At the
    deadline the whole process group gets SIGKILL; the child is waited for at most KILL_GRACE more, then
    given up (``unkillable``; rc None). After the child exits, pipes held open by processes it left behind
    are waited for at most PIPE_GRACE, then the group is killed (``leftover``). Never blocks beyond
    timeout + KILL_GRACE (+ a few ms). OSError from exec (no such program) propagates."""
    job = _Job(argv, env, timeout, cwd=cwd)
    _pump(job)
    return job.report()


# ------------------------------------------------------------------------------------------ probes

class ProbeHandle(object):
    """What start_probe returns; pass it to finish_probe."""

    def __init__(self, meta, job=None, error=None):
        self.meta = meta
        self.job = job
        self.error = error
        self.result = None


def _user_fields(user_spec):
    if user_spec is None:
        return {}
    if isinstance(user_spec, dict):
        return dict((k, user_spec.get(k)) for k in ('user', 'uid', 'gid', 'groups'))
    if isinstance(user_spec, int):
        return {'uid': user_spec}
    return {'user': str(user_spec)}


def start_probe(lib_dirs, env, user_spec=None, timeout=PROBE_TIMEOUT, python=None, which=shutil.which,
                max_devices=MAX_DEVICES, cuda_names=None):
    """Start one probe; returns a handle at once (the child runs in the background).

    ``lib_dirs``: Ollama's dirs in upstream's order (``<lib/ollama>``, ``<lib/ollama>/cuda_vNN``);
    ``env``: the service's predicted environment; ``user_spec``: None (run as we are), a user name, a uid,
    or ``{'user', 'uid', 'gid', 'groups'}`` (see user_argv); ``python``: the interpreter for the child
    (default /usr/bin/python3, which the service user can normally run; a virtualenv's may sit in a
    private home)."""
    env = dict(env or {})
    argv, child_env = probe_command(lib_dirs, env, python or default_python(), max_devices, cuda_names)
    meta = {'lib_dirs': list(lib_dirs or []), 'ld_library_path': child_env.get('LD_LIBRARY_PATH'),
            'cuda_names': list(cuda_names or CUDA_NAMES),
            'ld_preload': env.get('LD_PRELOAD'), 'cuda_visible_devices': env.get('CUDA_VISIBLE_DEVICES'),
            'as_user': 'uid %d' % os.geteuid(), 'timeout': timeout}
    try:
        argv, meta['as_user'] = user_argv(argv, which=which, **_user_fields(user_spec))
    except ValueError as e:
        return ProbeHandle(meta, error='cannot run the probe as %r: %s' % (user_spec, e))
    try:
        job = _Job(argv, child_env, timeout, cwd='/')
    except OSError as e:
        return ProbeHandle(meta, error='cannot start the probe (%s): %s' % (argv[0], e))
    return ProbeHandle(meta, job=job)


def finish_probe(handle):
    """Wait for the probe (never past its time limit + ~0.2 s) and return its result (see the module doc)."""
    if handle.result is None:
        if handle.job is None:
            handle.result = probe_result(handle.meta, None, handle.error)
        else:
            _pump(handle.job)
            handle.result = probe_result(handle.meta, handle.job.report(), None)
    return handle.result


def finish_probes(handles):
    return [finish_probe(h) for h in handles]


def run_probe(lib_dirs, env, user_spec=None, timeout=PROBE_TIMEOUT, python=None, which=shutil.which,
              max_devices=MAX_DEVICES):
    return finish_probe(start_probe(lib_dirs, env, user_spec, timeout, python, which, max_devices))
