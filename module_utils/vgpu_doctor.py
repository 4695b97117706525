# -*- coding: utf-8 -*-
# Evidence gathering and one check per failure code for the vgpu_doctor module (target side, Python 3.8+ stdlib).
"""Why does Ollama run on the CPU? Collect read-only evidence on a guest, then judge it code by code.

Two halves:

* ``gather(params, paths, probe)`` reads the host: link states, the shims' ELF, the unit's files and
  ``systemctl show`` properties, the running processes (``/proc``), ``/etc/ld.so.preload``, the loader
  cache, PCI devices, snap, the current start's log verdict. It never writes; the only commands it runs
  go through ``probe`` (``systemctl show``, ``journalctl``, ``ldconfig -p``, ``rpm -qf``, ``ld.so --help``
  and a load test of a shim as the service user).
* ``check_<code>(facts)`` - one pure function per code of ``CODES`` (ordered by ``PRIORITY``) - turns facts into findings;
  ``diagnose(facts)`` runs them all and orders the result (``PRIORITY``).

``SystemPaths(root)`` puts the fixed system locations (``/etc``, ``/proc``, ``/sys``, ``/snap``, unit and
loader dirs) under a prefix so tests can build a fake host in a temporary directory; paths given as
parameters or written in files (LD_PRELOAD, link targets) are used as written.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fnmatch
import glob
import json
import os
import re
import stat
import struct
import subprocess
import sys
import time

from ansible.module_utils.vgpu_elf import (
    EM_AARCH64, EM_X86_64, REQUIRED_SYMBOLS, STB_WEAK, ElfError, host_machine, read_elf, shim_problems,
)
from ansible.module_utils.vgpu_fs import (
    DPKG_INFO_DIR, describe, looks_like_nvidia_driver, normalize_sha256, readable_by, resolve_gid, sha256_file,
    unsafe_path_components, user_ids,
)
from ansible.module_utils.vgpu_systemd import (
    CONFLICT_VARIABLES, UNIT_DIRS, boot_id, dropin_files, environment_details, environment_of_text,
    find_conflicts, find_unit_file, journal_command, log_sink, parse_systemd_timestamp, parse_unit_text,
    proc_stat_fields, read_proc_environ, shown_environment, start_not_older_than, systemctl_show_environment,
    try_systemctl_show, unit_files_setting, variables_unset_by,
)
from ansible.module_utils.vgpu_unit_env import (
    describe_source, environment_differences, manager_environment, parse_show_environment,
    predict_environment, removal_plan, source_text,
)
from ansible.module_utils.vgpu_probe import finish_probes, start_probe, user_argv
from ansible.module_utils.ollama_log import CommandSource, FileSource, follow_log, judge_libraries

# ------------------------------------------------------------------------------------------ codes and actions

# Explicit priority, most likely root cause first. A finding's place is (severity, priority): every error
# comes before every warning, and among errors the earlier code here is the more basic cause - one that
# would make the later ones moot or that remediation must fix first. The evidence moves findings between
# severities (a missing link is only a warning when the runner still resolves libcuda.so.1 to the shim;
# a log-only finding is a warning when the same start found a GPU), so the order follows the evidence.
PRIORITY = (
    'NO_DEVICE',                  # nothing any guest-side fix can do
    'SNAP_OLLAMA',                # a different install; none of the paths below apply
    'GLOBAL_PRELOAD',             # affects every process on the host: remove before anything else
    'UNIT_START_FAILS',           # the next start fails before Ollama runs: no restart may be planned
    'DRIVER_SHADOW',              # a real driver is loaded instead of the shim
    'SHIM_BAD',                   # the shim itself is unusable
    'SHIM_UNREADABLE',            # the shim cannot be opened by the service user
    'SHIM_UNDEFINED_SYMBOL',      # the shim cannot be loaded (unresolved symbols)
    'PRELOAD_MISSING_FILE',       # LD_PRELOAD names nothing
    'PRELOAD_INTERPOSES_LOADER',  # the preloaded shim hijacks the runner's loading
    'PRELOAD_CONFLICT',           # another drop-in overrides ours
    'LLM_LIBRARY_MISMATCH',       # Ollama skips every GPU backend
    'VISIBLE_DEVICES',            # the device is hidden
    'SANDBOX',                    # device nodes or /sys hidden from the service
    'LINK_MISSING',               # the runner cannot find libcuda.so.1
    'LINK_WRONG',                 # the runner finds another libcuda.so.1
    'DRIVER_HANG',                # the live probe: the driver API does not return (host side)
    'DRIVER_API_ERROR',           # the live probe: libcuda.so.1 does not load or a driver call fails
    'DRIVER_ZERO_DEVICES',        # the live probe: the driver answers but has no device
    'DRIVER_TOO_OLD',             # the live probe: NVML's driver version is below Ollama's driver gate
    'NVML_MISSING',               # the live probe: no NVML (Ollama cannot check the driver / free memory)
    'PRELOAD_NOT_APPLIED',        # everything is right on disk, the process predates it
    'PRELOAD_HIJACK_RISK',        # security, not the cause of CPU mode
    'DISCOVERY_TIMEOUT',          # symptom; explained by any of the above when present
)

CODES = {
    'LINK_MISSING': 'a managed libcuda.so.1 / libnvidia-ml.so.1 link is absent (typically after an Ollama upgrade)',
    'LINK_WRONG': 'a managed link points elsewhere, dangles, or is a regular-file copy; or an unmanaged '
                  'libcuda.so.1 that is not the shim is found first by a runner',
    'SHIM_BAD': 'the shim is missing, not an ELF64 shared object for this machine, truncated, has the wrong '
                'checksum, or lacks required exports',
    'SHIM_UNREADABLE': 'the service user cannot read the shim or search one of its parent directories',
    'SHIM_UNDEFINED_SYMBOL': 'the shim needs a symbol nothing provides (an NVML shim built against the CUDA shim)',
    'PRELOAD_NOT_APPLIED': 'the unit lacks the strategy\'s (or the intended preload\'s) LD_PRELOAD / '
                           'LD_LIBRARY_PATH, or the running process does not have the unit\'s environment '
                           '(drop-in changed without a restart)',
    'PRELOAD_MISSING_FILE': 'LD_PRELOAD names a file that does not exist ("cannot be preloaded")',
    'PRELOAD_CONFLICT': 'another drop-in or the unit file sets LD_PRELOAD / LD_LIBRARY_PATH / '
                        'CUDA_VISIBLE_DEVICES / OLLAMA_LLM_LIBRARY, or removes one (UnsetEnvironment=)',
    'PRELOAD_HIJACK_RISK': 'a shim, a preloaded library or a library directory the service searches is '
                           'writable by a non-root user',
    'GLOBAL_PRELOAD': '/etc/ld.so.preload loads a vGPU shim into every process',
    'UNIT_START_FAILS': 'the next start of the unit fails before the process runs (an EnvironmentFile= without "-" '
                        'that is missing, unreadable or not UTF-8)',
    'PRELOAD_INTERPOSES_LOADER': 'a preloaded shim exports libc/loader functions (dlopen, dlsym, open, stat...)',
    'DRIVER_SHADOW': 'a real NVIDIA driver library is on the loader path (resolves first: error; present: warning)',
    'LLM_LIBRARY_MISMATCH': 'OLLAMA_LLM_LIBRARY names no existing backend directory, or forces the CPU',
    'VISIBLE_DEVICES': 'CUDA_VISIBLE_DEVICES is set for the service (hides the device when empty/invalid)',
    'SANDBOX': 'the unit has PrivateDevices=yes (error) or ProtectKernelTunables=yes (warning)',
    'SNAP_OLLAMA': 'a snap-packaged Ollama is installed',
    'DISCOVERY_TIMEOUT': 'the current start logged "failure during GPU discovery ... failed to finish discovery '
                         'before timeout"',
    'NO_DEVICE': 'no PCI device with vendor 0x10de is visible in the guest',
    'DRIVER_HANG': 'the live driver probe (as the unit\'s user, with the next start\'s environment) did not finish '
                   'within probe_timeout: the driver API hangs (typically in cuInit, waiting for the host side)',
    'DRIVER_API_ERROR': 'the live driver probe could not load libcuda.so.1, or a driver call returned an error '
                        '(cuInit 100 no device, 999 unknown, 34 the CUDA toolkit\'s stub library ...)',
    'DRIVER_ZERO_DEVICES': 'the live driver probe: cuInit succeeds but cuDeviceGetCount reports no device',
    'DRIVER_TOO_OLD': 'the NVIDIA driver version NVML reports is below the gate of the installed Ollama (0.30.11+: '
                      '550, 570 for compute capability < 7.0 - it drops the CUDA devices: "NVIDIA driver too old")',
    'NVML_MISSING': 'libnvidia-ml.so.1 does not load or does not initialise for the service (Ollama 0.30.11+ then '
                    'logs "could not verify NVIDIA driver compatibility for CUDA" and keeps the devices)',
}

# fix.action keys: what remediate.yml may do for a finding (machine-readable), and what each means.
ACTIONS = {
    'relink': 'run cuda_links for fix.target with fix.names (fix.paths are the bad ones); '
              'fix.replace_files says a regular-file copy must be replaced',
    'reinstall_shim': 'install the shim artifact again at fix.path (vgpu_shim, kind fix.kind), checking '
                      'fix.expected_sha256 when set',
    'fix_shim_mode': 'chown root:root and chmod 0755 each of fix.paths (files and directories): readable and '
                     'searchable by everyone, writable by root only',
    'rewrite_dropin': 'render our drop-in fix.path again from the inventory (systemd_dropin_env), '
                      'daemon-reload, restart the unit',
    'move_conflicting_dropin': 'move the drop-in fix.path out of the unit\'s .d directory (keep it as a backup), '
                               'daemon-reload, restart',
    'unset_env': 'stop the service from getting fix.variables: take every assignment out where it is written '
                 '(fix.sources: unit files, EnvironmentFile= files, PassEnvironment=, DefaultEnvironment=, '
                 'systemctl unset-environment; systemd_env_unset), keeping fix.keep (our drop-in); refused when a '
                 'source is not editable (fix.editable false: fix_text says what to do), then restart',
    'override_sandbox': 'write fix.settings (e.g. PrivateDevices=no) into our drop-in, daemon-reload, restart',
    'remove_global_preload': 'remove fix.entries from fix.path (/etc/ld.so.preload); delete the file when '
                             'nothing is left',
    'switch_strategy': 'redeploy with vgpu_strategy=fix.strategy (library_path: no LD_PRELOAD)',
    'restart': 'restart the unit (daemon-reload first when fix.daemon_reload)',
    'manual': 'nothing automatic: fix_text says what a person must do',
}

SEVERITIES = ('error', 'warning', 'info')
_SEVERITY_RANK = dict((s, i) for i, s in enumerate(SEVERITIES))

# Variables whose running value must equal the unit's (PRELOAD_NOT_APPLIED).
PROCESS_VARIABLES = ('LD_PRELOAD', 'LD_LIBRARY_PATH', 'OLLAMA_LIBRARY_PATH', 'OLLAMA_LLM_LIBRARY',
                     'CUDA_VISIBLE_DEVICES')
# Variables that change which files the runner loads (PRELOAD_CONFLICT is an error for these).
LOADER_VARIABLES = ('LD_PRELOAD', 'LD_LIBRARY_PATH')
SANDBOX_SETTINGS = ('PrivateDevices', 'ProtectKernelTunables')

UNIT_PROPERTIES = ('Id', 'LoadState', 'ActiveState', 'SubState', 'MainPID', 'InvocationID', 'User', 'Group',
                   'SupplementaryGroups', 'DynamicUser', 'Environment', 'UnsetEnvironment', 'PrivateDevices',
                   'ProtectKernelTunables', 'FragmentPath', 'DropInPaths', 'StandardOutput', 'StandardError',
                   'ExecMainStartTimestamp', 'NeedDaemonReload', 'ExecStart', 'EnvironmentFiles', 'PassEnvironment')

DEFAULT_SHIM = {'preload': '/usr/lib64/libvgpu-cuda.so', 'library_path': '/opt/vgpu/lib/libvgpu-cuda.so'}
NVIDIA_PCI_VENDOR = '0x10de'
LOAD_TEST_TIMEOUT = 1.0  # seconds per load test (at most one per shim), less when the budget is spent
TIME_BUDGET = 2.7        # the doctor's own seconds (log_timeout > 0 adds its wait)
LOG_DRAIN = 1.0          # seconds a non-following log read may take after its deadline
JOURNAL_READ_LIMIT = 1.5  # seconds for `journalctl` (no --follow) to print the current invocation
MAX_PROCESSES = 64       # runner processes looked at
PROBE_TIMEOUT = 3.0      # seconds one live driver probe may take (a shim may hang in cuInit)

_TRUE = ('yes', 'true', 'on', '1')


def is_true(value):
    return (value or '').strip().lower() in _TRUE


# ------------------------------------------------------------------------------------------ paths and probe

class SystemPaths(object):
    """Fixed system locations, all under ``root`` (``/`` on a real host; a temporary tree in tests)."""

    def __init__(self, root='/'):
        self.root = os.path.normpath(root or '/')

    def join(self, path):
        if self.root == '/':
            return path
        return os.path.join(self.root, path.lstrip('/'))

    @property
    def ld_so_preload(self):
        return self.join('/etc/ld.so.preload')

    @property
    def ld_so_cache(self):
        return self.join('/etc/ld.so.cache')

    @property
    def proc(self):
        return self.join('/proc')

    @property
    def pci_devices(self):
        return self.join('/sys/bus/pci/devices')

    @property
    def snap_dirs(self):
        return [self.join('/snap/ollama'), self.join('/var/lib/snapd/snap/ollama')]

    @property
    def unit_dirs(self):
        return [self.join(d) for d in UNIT_DIRS]

    @property
    def systemd_dir(self):
        return self.join('/etc/systemd/system')

    @property
    def dpkg_info_dir(self):
        return self.join(DPKG_INFO_DIR)


class Probe(object):
    """The doctor's only ways to ask the host something beyond reading files. Tests replace it.

    ``show(unit, props)`` -> (dict, None) or (None, reason); ``run(argv, env, timeout)`` -> (rc, out, err);
    ``which(name)`` -> path or None; ``log_source(kind, argv_or_path)`` -> a log source for follow_log."""

    def __init__(self, module=None):
        self.module = module

    def which(self, name):
        if self.module is not None:
            return self.module.get_bin_path(name, required=False)
        for d in ('/usr/bin', '/usr/sbin', '/bin', '/sbin'):
            p = os.path.join(d, name)
            if os.access(p, os.X_OK):
                return p
        return None

    def show(self, unit, properties):
        if self.module is None:
            return None, 'no module'
        return try_systemctl_show(self.module, unit, properties)

    def show_environment(self):
        """`systemctl show-environment` output (the manager's environment), or None."""
        if self.module is None:
            return None
        return systemctl_show_environment(self.module)

    def run(self, argv, env=None, timeout=2.0):
        """Run a read-only command with a clean environment (env replaces it) and a time limit."""
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env if env is not None else {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'LC_ALL': 'C'},
                               timeout=timeout, close_fds=True)
        except subprocess.TimeoutExpired:
            return 124, '', 'timed out after %ss' % timeout
        except OSError as e:
            return 127, '', str(e)
        return p.returncode, p.stdout.decode('utf-8', 'replace'), p.stderr.decode('utf-8', 'replace')

    def driver_probes(self, specs, timeout):
        """Run live driver probes concurrently: specs [(lib_dirs, env, user_spec, cuda_names)] -> [result]
        (vgpu_probe; cuda_names None = upstream's bare names)."""
        return finish_probes([start_probe(d, e, u, timeout, cuda_names=n) for d, e, u, n in specs])

    def log_source(self, kind, what):
        if kind == 'file':
            return FileSource(what)
        return CommandSource(what, env={'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'LC_ALL': 'C'})


# ------------------------------------------------------------------------------------------ small helpers

_ELF_CACHE = {}


def read_elf_cached(path):
    """read_elf() once per file version: libc.so.6 is met several times per run (keyed by inode, size and
    mtime, so a replaced file is read again)."""
    try:
        st = os.stat(path)
        key = (realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        return read_elf(path)   # raises the ElfError with the reason
    if key not in _ELF_CACHE:
        if len(_ELF_CACHE) > 64:
            _ELF_CACHE.clear()
        try:
            _ELF_CACHE[key] = read_elf(path)
        except ElfError as e:
            _ELF_CACHE[key] = e
    found = _ELF_CACHE[key]
    if isinstance(found, ElfError):
        raise found
    return found


def realpath(path):
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return path


def split_preload(value):
    """LD_PRELOAD / ld.so.preload entries: glibc separates them by ':' and blanks."""
    return [w for w in re.split(r'[:\s]+', value or '') if w]


def split_path_list(value):
    """LD_LIBRARY_PATH entries ('' entries mean the current directory to glibc; not a place we judge)."""
    return [w for w in re.split(r'[:;]', value or '') if w]


def _read_small(path, limit=65536):
    try:
        with open(path, 'rb') as f:
            return f.read(limit).decode('utf-8', 'replace')
    except (IOError, OSError):
        return None


def _same_file(a, b):
    if not a or not b:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return realpath(a) == realpath(b)


def _sha(path):
    try:
        return sha256_file(path)
    except (IOError, OSError):
        return None


def cuda_dirs(ollama_lib_dir):
    """Existing <ollama_lib_dir>/cuda_v* directories, sorted (each is one runner's backend dir)."""
    if not os.path.isdir(ollama_lib_dir):
        return []
    found = [d for d in glob.glob(os.path.join(glob.escape(ollama_lib_dir), 'cuda_v*')) if os.path.isdir(d)]
    return sorted(os.path.normpath(d) for d in found)


def default_link_dirs(strategy, shim, ollama_lib_dir):
    """The directories the vgpu_links role manages for this strategy (roles/vgpu_links/defaults/main.yml)."""
    shim_dir = os.path.dirname(shim)
    if strategy == 'library_path':
        return [shim_dir]
    return [shim_dir, '/usr/local/lib', ollama_lib_dir, os.path.join(ollama_lib_dir, 'cuda_v12'),
            os.path.join(ollama_lib_dir, 'cuda_v13')]


def managed_link_dirs(p):
    """link_dirs (or the strategy's default) plus, for preload, every existing cuda_v* dir; de-duplicated."""
    dirs = list(p['link_dirs']) if p.get('link_dirs') else default_link_dirs(p['strategy'], p['shim'],
                                                                              p['ollama_lib_dir'])
    if p['strategy'] == 'preload':
        dirs += cuda_dirs(p['ollama_lib_dir'])
    out = []
    for d in dirs:
        d = os.path.normpath(d)
        if d not in out:
            out.append(d)
    return out


def link_targets(p):
    """[(link name, shim path, kind)] the links must point at."""
    names = list(p.get('link_names') or [])
    if not names:
        names = ['libcuda.so.1'] + (['libnvidia-ml.so.1'] if p.get('nvml_shim') else [])
    out = []
    for n in names:
        if 'nvidia-ml' in n:
            if p.get('nvml_shim'):
                out.append((n, p['nvml_shim'], 'nvml'))
        else:
            out.append((n, p['shim'], 'cuda'))
    return out


# ------------------------------------------------------------------------------------------ loader emulation

_CACHE_OLD = b'ld.so-1.7.0'
_CACHE_NEW = b'glibc-ld.so.cache1.1'
_FLAG_TYPE_MASK, _FLAG_ELF_LIBC6, _FLAG_REQUIRED_MASK = 0x00ff, 0x0003, 0xff00
_CACHE_ARCH_FLAGS = {EM_X86_64: 0x0300, EM_AARCH64: 0x0a00}


def parse_ld_so_cache(data, machine=None):
    """{name: [path, ...]} from the bytes of /etc/ld.so.cache, entries for this machine in cache order.

    Understands the new format (glibc >= 2.32 writes only that) and the old one, alone or followed by the
    new one. Raises ValueError on anything else."""
    def entries_new(base):
        if len(data) < base + 48:
            raise ValueError('ld.so.cache is truncated')
        endian = '>' if bytearray(data[base + 28:base + 29])[0] == 3 else '<'
        nlibs, _len_strings = struct.unpack_from(endian + 'II', data, base + 20)
        if base + 48 + nlibs * 24 > len(data):
            raise ValueError('ld.so.cache is truncated (%d entries)' % nlibs)
        for i in range(nlibs):
            flags, key, value, _osv, hwcap = struct.unpack_from(endian + 'iIIIQ', data, base + 48 + i * 24)
            yield flags, _cstr(base + key), _cstr(base + value), hwcap

    def _cstr(off):
        end = data.find(b'\0', off)
        if off >= len(data) or end < 0:
            raise ValueError('ld.so.cache string offset %d out of range' % off)
        return data[off:end].decode('utf-8', 'surrogateescape')

    if data.startswith(_CACHE_NEW):
        rows = list(entries_new(0))
    elif data.startswith(_CACHE_OLD):
        (nlibs,) = struct.unpack_from('<I', data, 12)
        strings = 16 + nlibs * 12
        new_at = (strings + 7) & ~7
        if data[new_at:new_at + len(_CACHE_NEW)] == _CACHE_NEW:
            rows = list(entries_new(new_at))
        else:
            rows = []
            for i in range(nlibs):
                flags, key, value = struct.unpack_from('<iII', data, 16 + i * 12)
                rows.append((flags, _cstr(strings + key), _cstr(strings + value), 0))
    else:
        raise ValueError('not an ld.so.cache file (unknown magic)')
    want = _CACHE_ARCH_FLAGS.get(machine)
    out = {}
    for flags, name, path, _hwcap in rows:
        if flags & _FLAG_TYPE_MASK != _FLAG_ELF_LIBC6:
            continue
        if want is not None and flags & _FLAG_REQUIRED_MASK != want:
            continue
        out.setdefault(name, []).append(path)
    return out


_LDCONFIG_P_RE = re.compile(r'^\s*(\S+)\s+\(([^)]*)\)(?:\s+OS ABI:[^=]*)?\s+=>\s+(\S.*)$')


def parse_ldconfig_p(text, machine=None):
    """{name: [path]} from `ldconfig -p` output (the fallback when the cache file cannot be parsed)."""
    arch = {EM_X86_64: 'x86-64', EM_AARCH64: 'AArch64'}.get(machine)
    out = {}
    for line in (text or '').splitlines():
        m = _LDCONFIG_P_RE.match(line)
        if not m:
            continue
        tags = [t.strip() for t in m.group(2).split(',')]
        if 'libc6' not in tags or (arch and arch not in tags):
            continue
        out.setdefault(m.group(1), []).append(m.group(3).strip())
    return out


def system_search_dirs(paths, probe, machine):
    """The loader's built-in directories: from `ld.so --help` on a real host (glibc >= 2.33), else the
    distribution layout (Debian multiarch dirs, or /lib64 + /usr/lib64)."""
    if paths.root == '/' and machine == EM_X86_64:
        for interp in ('/lib64/ld-linux-x86-64.so.2', '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'):
            if os.path.exists(interp):
                rc, out, _err = probe.run([interp, '--help'], timeout=1.0)
                dirs = [line.strip().rsplit(' (', 1)[0] for line in out.splitlines()
                        if line.strip().endswith('(system search path)')]
                if rc == 0 and dirs:
                    return dirs, 'ld.so --help'
                break
    triplet = {EM_X86_64: 'x86_64-linux-gnu', EM_AARCH64: 'aarch64-linux-gnu'}.get(machine, 'x86_64-linux-gnu')
    if os.path.isdir(paths.join('/lib/' + triplet)) or os.path.isdir(paths.join('/usr/lib/' + triplet)):
        dirs = ['/lib/' + triplet, '/usr/lib/' + triplet, '/lib', '/usr/lib']
    else:
        dirs = ['/lib64', '/usr/lib64']
    return [paths.join(d) for d in dirs], 'distribution layout'


def loader_candidate(path, machine, uid=None, gids=None):
    """How the loader treats path when it meets it in a search: ('skip', reason) to go on searching,
    ('load', None) when this file is the one, ('fail', reason) when it is the one but cannot load."""
    try:
        st = os.stat(path)
    except OSError as e:
        if os.path.islink(path):
            return 'skip', 'dangling symlink (-> %s)' % os.readlink(path)
        return 'skip', 'missing' if e.errno in (errno.ENOENT, errno.ENOTDIR) else e.strerror
    if not stat.S_ISREG(st.st_mode):
        return 'skip', 'not a regular file'
    if uid is not None:
        ok, problems = readable_by(path, uid, gids or [])
        if not ok:
            return 'skip', 'not readable by the service user (%s)' % '; '.join(problems)
    try:
        info = read_elf_cached(path)
    except ElfError as e:
        if e.partial is not None and shim_problems(e.partial, (), machine, header_only=True):
            # glibc skips a file of the wrong class or machine and goes on searching
            return 'skip', 'wrong ELF class or machine: %s' % '; '.join(shim_problems(e.partial, (), machine, True))
        return 'fail', str(e)
    except (IOError, OSError) as e:
        return 'fail', str(e)
    bad = shim_problems(info, (), machine, header_only=True)
    if bad:
        return 'skip', 'wrong ELF class or machine: %s' % '; '.join(bad)
    return 'load', None


def emulate_loader(name, preloaded, search_path, cache, default_dirs, machine, uid=None, gids=None):
    """Where the dynamic loader finds DT_NEEDED ``name`` for a runner, in glibc's order:
    an already loaded object with that SONAME (LD_PRELOAD, /etc/ld.so.preload), LD_LIBRARY_PATH,
    /etc/ld.so.cache, the built-in directories. (DT_RPATH/DT_RUNPATH of the loading library are not
    read: Ollama's backends carry none that precede LD_LIBRARY_PATH.)

    preloaded: [{'path', 'soname', 'step'}] objects loaded before; search_path: [dir] (LD_LIBRARY_PATH).
    Returns {'name', 'path', 'step', 'error', 'skipped': [{'path', 'reason'}]}."""
    res = {'name': name, 'path': None, 'step': None, 'error': None, 'skipped': []}
    for obj in preloaded:
        if obj.get('soname') == name:
            res.update(path=obj['path'], step='%s (SONAME %s)' % (obj['step'], name))
            return res
    steps = [('LD_LIBRARY_PATH', [os.path.join(d, name) for d in search_path]),
             ('ld.so.cache', list(cache.get(name, []))),
             ('default dirs', [os.path.join(d, name) for d in default_dirs])]
    seen = set()
    for step, candidates in steps:
        for cand in candidates:
            if cand in seen:
                continue
            seen.add(cand)
            verdict, reason = loader_candidate(cand, machine, uid, gids)
            if verdict == 'skip':
                if reason != 'missing':
                    res['skipped'].append({'path': cand, 'reason': reason})
                continue
            res.update(path=cand, step=step, error=reason if verdict == 'fail' else None)
            return res
    return res


# ------------------------------------------------------------------------------------------ facts

class Facts(object):
    """Everything gather() found; checks read it, never the host."""

    def __init__(self, params, paths):
        self.p = params
        self.paths = paths
        self.machine = None
        self.notes = []
        self.unit = {}
        self.unit_env = {}          # the unit's environment at its next start (see _gather_unit)
        self.unit_env_shown = {}    # as `systemctl show -p Environment` reports it now
        self.unit_env_files = {}    # merged from the unit file and drop-ins
        self.env_sources = {}       # {variable: the file that sets it for the next start (None: the manager)}
        self.env_records = {}       # {variable: its source record (vgpu_unit_env), with file and line}
        self.predicted = None       # vgpu_unit_env.predict_environment() of the next start
        self.driver_probe = None    # the live driver-API probe: {'next_start': result, ...} (see probe_driver)
        self.unset = []             # the unit's UnsetEnvironment= list: [{'entry', 'path'}]
        self.unset_by = {}          # {variable: file whose UnsetEnvironment= removes it}
        self.our_env = {}           # what our drop-in alone assigns
        self.dropin_path = None
        self.dropins = []
        self.conflicts = []
        self.running_env = None
        self.processes = []
        self.shims = {}
        self.links = []
        self.cuda_dirs = []
        self.cache = {}
        self.cache_source = None
        self.default_dirs = []
        self.preload_objects = []
        self.preload_entries = []
        self.resolution = []
        self.resolution_after_restart = None
        self.discovery = None       # discovery_model(): which upstream discovery the resolution models
        self.drivers = []
        self.global_preload = {'path': None, 'exists': False, 'entries': []}
        self.pci = {'path': None, 'devices': [], 'nvidia': [], 'error': None}
        self.snap = {'dirs': [], 'units': []}
        self.log = None
        self.load_tests = {}
        self.load_tests_unmatched_log = []
        self.unsafe = []
        self.deadline = time.time() + TIME_BUDGET


def gather(params, paths, probe, log=True):
    """Collect the facts for ``params`` (module params, already defaulted). Read-only."""
    f = Facts(params, paths)
    f.deadline = time.time() + TIME_BUDGET
    f.machine = host_machine()
    _gather_unit(f, probe)
    if log:
        _gather_log(f, probe)   # first: the Ollama version decides the runners' search order
    _gather_processes(f)
    _gather_shims(f)
    _gather_links(f)
    _gather_loader(f, probe)
    _gather_preload(f)
    _gather_resolution(f)
    _gather_drivers(f, probe)
    _gather_pci(f)
    _gather_snap(f)
    _gather_unsafe(f)
    _gather_load_tests(f, probe)
    _gather_driver_probe(f, probe)
    return f


def _unit_texts(f):
    files = ([f.unit['unit_file']] if f.unit.get('unit_file') else []) + list(f.dropins)
    return [(p, _read_small(p, 1024 * 1024) or '') for p in files]


def _setting_sources(f, key, section='Service'):
    """Files that assign key (in the order systemd applies them), with the value each sets."""
    out = []
    for path, text in _unit_texts(f):
        for sec, k, v in parse_unit_text(text):
            if sec == section and k == key:
                out.append({'path': path, 'value': v})
    return out


def _gather_unit(f, probe):
    p = f.p
    unit = p['unit']
    unit_dirs = f.paths.unit_dirs
    props, err = probe.show(unit, UNIT_PROPERTIES)
    systemd_up = props is not None and props.get('LoadState') not in (None, '')
    f.unit = {'name': unit, 'props': props if systemd_up else None, 'systemd_error': None if systemd_up else err,
              'unit_file': find_unit_file(unit, unit_dirs)}
    f.dropin_path = os.path.join(f.paths.systemd_dir, unit + '.d', p['dropin'])
    f.dropins = dropin_files(unit, unit_dirs)
    props = f.unit['props']
    # UnsetEnvironment= (systemd 235+) removes variables after every Environment=; `systemctl show` lists it
    # apart from Environment (an unknown property is not printed at all: a systemd that ignores the setting)
    honour_unset = props is None or 'UnsetEnvironment' in props
    details = environment_details(unit, unit_dirs, honour_unset=honour_unset)
    f.unit_env_files, f.env_sources = details['environment'], details['sources']
    f.unset, f.unset_by = details['unset'], details['unset_by']
    if not honour_unset and details['unset']:
        f.notes.append('systemd reports no UnsetEnvironment property (older than 235): UnsetEnvironment= in %s '
                       'is ignored by it' % ', '.join(sorted(set(u['path'] for u in details['unset']))))
    our_text = _read_small(f.dropin_path)
    f.our_env = environment_of_text(our_text, unit) if our_text is not None else {}
    texts = [t for _p, t in _unit_texts(f)]
    if props is not None:
        f.unit_env_shown = shown_environment(props, details['assigned'])
        f.unit['load_state'] = props.get('LoadState')
        f.unit['active_state'] = props.get('ActiveState')
        f.unit['sub_state'] = props.get('SubState')
        try:
            f.unit['main_pid'] = int(props.get('MainPID') or 0)
        except ValueError:
            f.unit['main_pid'] = 0
        f.unit['need_daemon_reload'] = is_true(props.get('NeedDaemonReload'))
        user = props.get('User') or None
        group = props.get('Group') or None
        supplementary = (props.get('SupplementaryGroups') or '').split()
        dynamic = is_true(props.get('DynamicUser'))
        sandbox = dict((k, props.get(k) or '') for k in SANDBOX_SETTINGS)
        f.unit['fragment_path'] = props.get('FragmentPath') or f.unit['unit_file']
        f.unit['exec_start'] = props.get('ExecStart') or ''
        f.unit['started'] = parse_systemd_timestamp(props.get('ExecMainStartTimestamp'))
    else:
        # systemd not running (container, chroot) or no systemctl: the unit's own files
        f.unit_env_shown = dict(f.unit_env_files)
        f.unit.update(load_state='loaded' if f.unit['unit_file'] else 'not-found', active_state='unknown',
                      sub_state='unknown', main_pid=0, need_daemon_reload=False,
                      fragment_path=f.unit['unit_file'], exec_start=unit_files_setting(texts, 'ExecStart') or '',
                      started=None)
        user = unit_files_setting(texts, 'User')
        group = unit_files_setting(texts, 'Group')
        supplementary = (unit_files_setting(texts, 'SupplementaryGroups') or '').split()
        dynamic = is_true(unit_files_setting(texts, 'DynamicUser'))
        sandbox = dict((k, unit_files_setting(texts, k) or '') for k in SANDBOX_SETTINGS)
        f.notes.append('systemd not queried (%s): unit facts come from its files' % (err or 'not running'))
    # what the next start gets: the files, when systemd has not read them yet (edited without daemon-reload)
    f.unit['reload_pending'] = bool(f.unit['need_daemon_reload'] or any(
        f.unit_env_files.get(v) != f.unit_env_shown.get(v) for v in PROCESS_VARIABLES))
    f.unit['sandbox'] = sandbox
    f.unit['user'] = user or 'root'
    _predict_next_start(f, probe, props)
    f.unit['group'] = group
    f.unit['dynamic_user'] = dynamic
    f.unit['uid'], f.unit['gids'], f.unit['user_error'] = None, [], None
    if dynamic:
        # a DynamicUser= uid exists only while the unit runs and owns nothing: judge by "other" bits
        f.unit['uid'], f.unit['gids'] = 61183, []
    else:
        try:
            uid, gids = user_ids(f.unit['user'])
            gids = set(gids)
            for g in ([group] if group else []) + supplementary:
                try:
                    gids.add(resolve_gid(g))
                except ValueError:
                    pass
            f.unit['uid'], f.unit['gids'] = uid, sorted(gids)
        except ValueError as e:
            f.unit['user_error'] = str(e)
    if f.unit['load_state'] != 'loaded':
        f.notes.append('unit %s is not installed (LoadState=%s)' % (unit, f.unit['load_state']))
    elif not f.unit['main_pid']:
        f.notes.append('unit %s has no running main process (ActiveState=%s): process checks skipped'
                       % (unit, f.unit['active_state']))
    f.conflicts = _unit_conflicts(f, unit, unit_dirs)


def _predict_next_start(f, probe, props):
    """f.unit_env: the whole environment of the next start (after the daemon-reload a fix runs), from every
    source systemd uses - the manager's environment, PassEnvironment=, Environment=, EnvironmentFile= - with the
    source of each variable (f.env_records, file and line)."""
    shown = probe.show_environment() if props is not None else None
    manager = manager_environment(parse_show_environment(shown) if shown is not None else None, f.paths.root)
    if shown is None and props is not None:
        f.notes.append('systemctl show-environment gave nothing: the manager environment is predicted from '
                       'system.conf and the kernel command line only')
    predicted = predict_environment(f.p['unit'], f.paths.unit_dirs, manager=manager,
                                    pid1_environ=read_proc_environ(1, f.paths.proc), user=f.unit['user'],
                                    props=None if f.unit['reload_pending'] else props, root=f.paths.root)
    if f.unit['reload_pending']:
        # the files say something systemd has not loaded yet: the Environment= values systemd shows now are the
        # ones a restart without daemon-reload would use
        for v in PROCESS_VARIABLES:
            if f.unit_env_files.get(v) != f.unit_env_shown.get(v):
                f.notes.append('%s: the unit files say %r, systemd has %r loaded (daemon-reload pending); the '
                               'next start is judged after a daemon-reload' % (
                                   v, f.unit_env_files.get(v), f.unit_env_shown.get(v)))
    f.predicted = predicted
    f.notes.extend(predicted['notes'])
    f.unit_env = dict(predicted['environment'])
    f.env_records = predicted['sources']
    f.env_sources = dict((v, None if r.get('kind') == 'manager' else r.get('setting_path')
                          if r.get('kind') == 'pass_environment' else r.get('path'))
                         for v, r in predicted['sources'].items())
    f.unset_by = dict((v, r['path']) for v, r in predicted['unset_by'].items())


def _unit_conflicts(f, unit, unit_dirs):
    """Other drop-ins and the unit file that set a CONFLICT_VARIABLES variable the service gets, or that
    remove one our drop-in sets or the layout needs with UnsetEnvironment= (which wins whatever the file's
    name). A variable a file sets but an UnsetEnvironment= elsewhere (ours: the unset_env fix) removes does not
    reach the service: not a conflict."""
    needed = set(f.our_env)
    if intended_preload(f.p):
        needed.add('LD_PRELOAD')
    if f.p['strategy'] == 'library_path':
        needed.add('LD_LIBRARY_PATH')
    conflicts = []
    for c in find_conflicts(unit, unit_dirs, f.dropin_path, CONFLICT_VARIABLES):
        moot = [v for v in c['variables'] if v in f.unset_by and f.unset_by[v] != c['path']]
        if moot:
            f.notes.append('%s sets %s, which UnsetEnvironment= in %s removes: not a conflict' % (
                c['path'], ', '.join(moot), ', '.join(sorted(set(f.unset_by[v] for v in moot)))))
        c['variables'] = [v for v in c['variables'] if v not in moot]
        conflicts.append(c)
    # the unit file itself can set them too (find_conflicts looks at drop-ins only)
    if f.unit['unit_file']:
        names = [n for n in CONFLICT_VARIABLES if f.env_sources.get(n) == f.unit['unit_file']]
        conflicts.append({'path': f.unit['unit_file'], 'variables': names, 'overrides_ours': False,
                          'unit_file': True})
    # EnvironmentFile= files, PassEnvironment= and the manager's environment can set them too
    for name in CONFLICT_VARIABLES:
        rec = f.env_records.get(name)
        if not rec or rec.get('kind') not in ('environment_file', 'pass_environment', 'manager'):
            continue
        where = source_text(rec)
        c = next((x for x in conflicts if x.get('source_location') == where), None)
        if c is None:
            c = {'path': rec.get('path') if rec.get('kind') == 'environment_file' else rec.get('setting_path'),
                 'variables': [], 'overrides_ours': name in f.our_env, 'external': rec.get('kind'),
                 'source_location': where, 'source': describe_source(rec)}
            conflicts.append(c)
        c['variables'].append(name)
    # UnsetEnvironment= of another file that takes one of them away from the service
    for path, text in _unit_texts(f):
        if path == f.dropin_path:
            continue
        unsets = [v for v in variables_unset_by(text, unit)
                  if v in CONFLICT_VARIABLES and v in needed and f.unset_by.get(v) == path]
        if not unsets:
            continue
        c = next((x for x in conflicts if x['path'] == path), None)
        if c is None:
            if path == f.unit['unit_file']:
                c = {'path': path, 'variables': [], 'overrides_ours': False, 'unit_file': True}
            else:
                c = {'path': path, 'variables': [],
                     'overrides_ours': os.path.basename(path) > os.path.basename(f.dropin_path)}
            conflicts.append(c)
        c['variables'] += [v for v in unsets if v not in c['variables']]
        c['unsets'] = unsets
    return [c for c in conflicts if c['variables']]


def _proc_stat_ppid(proc, pid):
    fields = proc_stat_fields(pid, proc)
    try:
        return int(fields[1])
    except (IndexError, TypeError, ValueError):
        return None


def _proc_maps(proc, pid):
    """Absolute file paths mapped by the process (None if unreadable)."""
    try:
        with open(os.path.join(proc, str(pid), 'maps'), 'rb') as fh:
            raw = fh.read()
    except (IOError, OSError):
        return None
    out = []
    for line in raw.decode('utf-8', 'replace').splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith('/'):
            path = parts[5].replace(' (deleted)', '')
            if path not in out:
                out.append(path)
    return out


def _gather_processes(f):
    proc = f.paths.proc
    main = f.unit.get('main_pid') or 0
    if not main:
        return
    children = {}
    try:
        pids = [n for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        ppid = _proc_stat_ppid(proc, pid)
        if ppid:
            children.setdefault(ppid, []).append(int(pid))
    order, queue = [], [(main, 'main')]
    while queue and len(order) < MAX_PROCESSES:
        pid, role = queue.pop(0)
        order.append((pid, role))
        queue.extend((c, 'runner') for c in sorted(children.get(pid, [])))
    shim_real = [realpath(s) for s in (f.p['shim'], f.p.get('nvml_shim')) if s]
    for pid, role in order:
        env = read_proc_environ(pid, proc)
        maps = _proc_maps(proc, pid)
        if role == 'main':
            f.running_env = env
            if env is None:
                f.notes.append('cannot read %s/%d/environ' % (proc, pid))
        gpu_libs = [m for m in (maps or []) if re.search(r'/lib(cuda|nvidia-ml|vgpu)[^/]*$', m)]
        f.processes.append({
            'pid': pid, 'role': role,
            'environ_readable': env is not None,
            'env': dict((k, (env or {}).get(k)) for k in PROCESS_VARIABLES if env and k in env),
            'maps_readable': maps is not None,
            'gpu_libraries_mapped': gpu_libs,
            'shim_mapped': None if maps is None else any(s in maps for s in shim_real),
        })


def _shim_facts(path, kind, expected, machine):
    facts = {'path': path, 'kind': kind, 'exists': False, 'kind_on_disk': None, 'sha256': None,
             'expected_sha256': expected, 'problems': [], 'elf': None, 'interposed': [], 'soname': None,
             'undefined': [], 'exports': [], 'needed': []}
    d = describe(path)
    facts['kind_on_disk'] = d['kind']
    if d['kind'] == 'missing' or (d['kind'] == 'symlink' and d.get('dangling')):
        facts['problems'].append('%s does not exist%s' % (
            path, ' (dangling symlink -> %s)' % d['link'] if d['kind'] == 'symlink' else ''))
        return facts
    facts['exists'] = True
    if not os.path.isfile(path):
        facts['problems'].append('%s is a %s, not a regular file' % (path, d['kind']))
        return facts
    facts['sha256'] = _sha(path)
    try:
        info = read_elf(path)
    except ElfError as e:
        facts['problems'].append(str(e))
        if e.partial is not None:
            facts['problems'].extend('%s %s' % (path, x) for x in shim_problems(e.partial, (), machine, True))
        return facts
    except (IOError, OSError) as e:
        facts['problems'].append('%s cannot be read: %s' % (path, e))
        return facts
    facts['elf'] = info.summary()
    facts['soname'] = info.soname
    facts['needed'] = list(info.needed)
    facts['exports'] = info.exported_symbols()
    facts['interposed'] = info.interposed_symbols()
    facts['undefined'] = sorted(set(s.name for s in info.symbols
                                    if not s.defined and s.name and s.bind != STB_WEAK))
    facts['problems'].extend('%s %s' % (path, x) for x in shim_problems(info, REQUIRED_SYMBOLS[kind], machine))
    if expected and facts['sha256'] and facts['sha256'] != expected:
        facts['problems'].append('%s has sha256 %s, expected %s (a stale or different build)'
                                 % (path, facts['sha256'], expected))
    return facts


def _gather_shims(f):
    p = f.p
    f.shims['cuda'] = _shim_facts(p['shim'], 'cuda', p.get('shim_sha256'), f.machine)
    if p.get('nvml_shim'):
        f.shims['nvml'] = _shim_facts(p['nvml_shim'], 'nvml', p.get('nvml_sha256'), f.machine)


def _gather_links(f):
    f.cuda_dirs = cuda_dirs(f.p['ollama_lib_dir'])
    for d in managed_link_dirs(f.p):
        dir_ok = os.path.isdir(d)
        for name, target, kind in link_targets(f.p):
            path = os.path.join(d, name)
            item = {'path': path, 'dir': d, 'name': name, 'target': target, 'kind': kind}
            if not dir_ok:
                item['state'] = 'dir_missing'
                f.links.append(item)
                continue
            info = describe(path)
            item['on_disk'] = info['kind']
            if info['kind'] == 'missing':
                item['state'] = 'missing'
            elif info['kind'] == 'symlink':
                item['link'] = info['link']
                if info['dangling']:
                    item['state'] = 'dangling'
                elif _same_file(path, target):
                    item['state'] = 'ok'
                else:
                    item['state'] = 'elsewhere'
                    item['resolves_to'] = realpath(path)
            elif info['kind'] == 'file':
                item['sha256'] = _sha(path)
                if _same_file(path, target):
                    item['state'] = 'is_target'   # the shim itself sits under the link name
                elif item['sha256'] and item['sha256'] == _sha(target):
                    item['state'] = 'copy'
                else:
                    item['state'] = 'foreign_file'
            else:
                item['state'] = 'not_a_file'
            f.links.append(item)


def _gather_loader(f, probe):
    f.default_dirs, source = system_search_dirs(f.paths, probe, f.machine)
    f.notes.append('loader default dirs from %s: %s' % (source, ':'.join(f.default_dirs)))
    try:
        with open(f.paths.ld_so_cache, 'rb') as fh:
            f.cache = parse_ld_so_cache(fh.read(), f.machine)
        f.cache_source = f.paths.ld_so_cache
        return
    except (IOError, OSError) as e:
        reason = str(e)
    except (ValueError, struct.error) as e:
        reason = 'unreadable format (%s)' % e
    f.cache = {}
    ldconfig = probe.which('ldconfig') if f.paths.root == '/' else None
    if ldconfig:
        rc, out, _err = probe.run([ldconfig, '-p'], timeout=1.5)
        if rc == 0:
            f.cache = parse_ldconfig_p(out, f.machine)
            f.cache_source = 'ldconfig -p'
            return
    f.cache_source = None
    f.notes.append('loader cache not used: %s' % reason)


def _preload_object(path, step, f):
    """A preloaded object as the loader sees it: None when it cannot be loaded at all."""
    uid, gids = f.unit.get('uid'), f.unit.get('gids')
    verdict, reason = loader_candidate(path, f.machine, uid, gids)
    obj = {'path': path, 'step': step, 'loads': verdict == 'load', 'reason': reason, 'soname': None,
           'interposed': []}
    if verdict == 'load':
        try:
            info = read_elf_cached(path)
            obj['soname'] = info.soname
            obj['interposed'] = info.interposed_symbols()
            obj['exports_cuda'] = 'cuInit' in info.exported_symbols()
            obj['exports_nvml'] = 'nvmlInit_v2' in info.exported_symbols()
        except (ElfError, IOError, OSError) as e:
            obj.update(loads=False, reason=str(e))
    return obj


def _preload_path(f, entry, env):
    """The file an LD_PRELOAD entry names: a bare name (no '/') is searched like a library."""
    if '/' in entry:
        return entry
    r = emulate_loader(entry, [], split_path_list(env.get('LD_LIBRARY_PATH')), f.cache, f.default_dirs, f.machine)
    return r['path'] or entry


def _gather_preload(f):
    gp = f.paths.ld_so_preload
    text = _read_small(gp)
    f.global_preload = {'path': gp, 'exists': text is not None, 'entries': []}
    for entry in split_preload(text or ''):
        if entry.startswith('#'):
            continue
        obj = _preload_object(entry, '/etc/ld.so.preload', f)
        f.global_preload['entries'].append(obj)
    f.preload_entries = []
    for entry in split_preload(f.unit_env.get('LD_PRELOAD')):
        path = _preload_path(f, entry, f.unit_env)
        obj = _preload_object(path, 'LD_PRELOAD', f)
        obj['entry'] = entry
        obj['exists'] = os.path.exists(path)
        obj['source'] = f.env_sources.get('LD_PRELOAD')
        f.preload_entries.append(obj)


def _runner_resolution(f, env):
    """[{runner, name, path, real, step, is_shim, ...}] for each cuda_v* runner and link name."""
    preloaded = [o for o in _preload_objects_for(f, env) if o['loads']]
    uid, gids = f.unit.get('uid'), f.unit.get('gids')
    out = []
    service_path = split_path_list(env.get('LD_LIBRARY_PATH'))
    backend_first = runner_backend_first(f)
    for d in f.cuda_dirs:
        # Ollama puts its own dirs before the service's LD_LIBRARY_PATH. Discovery since 0.12 runs
        # lib/ollama then the backend dir (the OLLAMA_LIBRARY_PATH of its "failure during GPU discovery"
        # lines); the model runners of 0.5-0.11 prepended the backend dir to lib/ollama.
        own = [d, f.p['ollama_lib_dir']] if backend_first else [f.p['ollama_lib_dir'], d]
        search = own + service_path
        for name, target, kind in [('libcuda.so.1', f.p['shim'], 'cuda')] + (
                [('libnvidia-ml.so.1', f.p['nvml_shim'], 'nvml')] if f.p.get('nvml_shim') else []):
            r = emulate_loader(name, preloaded, search, f.cache, f.default_dirs, f.machine, uid, gids)
            r['runner'] = os.path.basename(d)
            r['search_path'] = search
            r['real'] = realpath(r['path']) if r['path'] else None
            r['is_shim'] = bool(r['path']) and _same_file(r['path'], target)
            r['copy_of_shim'] = False
            if r['path'] and not r['is_shim']:
                sha = _sha(r['path'])
                r['copy_of_shim'] = bool(sha) and sha == f.shims.get(kind, {}).get('sha256')
            r['ok'] = bool(r['path']) and not r['error'] and (r['is_shim'] or r['copy_of_shim'])
            r['target'] = target
            out.append(r)
    return out


def _version_tuple(text):
    parts = re.findall(r'\d+', (text or '').split('-')[0])[:3]
    return tuple(int(x) for x in parts) if parts else None


def _log_version(f):
    res = log_result(f)
    return _version_tuple(res.get('ollama_version')) if res else None


def runner_backend_first(f):
    """True when the Ollama in the log is older than 0.12 (backend dir before lib/ollama in the runner's
    LD_LIBRARY_PATH); the 0.12+ order when the version is unknown."""
    version = _log_version(f)
    return version is not None and version < (0, 12, 0)


# How Ollama finds libcuda for GPU discovery, by release (the simulator's fidelity table has the rows):
# before 0.12.4 the server itself globs for libcuda.so* and dlopen()s each match by its resolved full path
# (FindGPULibs, gpu/gpu.go:467-527@v0.3.6, discover/gpu.go:513-577@v0.5.7, :498-559@v0.11.4) - the dynamic
# loader's search (LD_PRELOAD, LD_LIBRARY_PATH as a search path, ld.so.cache) plays no part; from 0.12.4 a
# runner subprocess loads libggml-cuda.so, whose DT_NEEDED libcuda.so.1 the loader resolves.
IN_PROCESS_BEFORE = (0, 12, 4)
BUNDLED_FIRST_FROM = (0, 3, 14)    # Ollama's lib dir searched first (not @v0.3.6; LibraryDirs() @v0.5.7)
NVCUDA_GLOBS = (                   # gpu/gpu_linux.go:29-39@v0.3.6 = discover/gpu_linux.go:33-43@v0.5.7,@v0.11.4
    '/usr/local/cuda*/targets/*/lib/libcuda.so*', '/usr/lib/*-linux-gnu/nvidia/current/libcuda.so*',
    '/usr/lib/*-linux-gnu/libcuda.so*', '/usr/lib/wsl/lib/libcuda.so*', '/usr/lib/wsl/drivers/*/libcuda.so*',
    '/opt/cuda/lib*/libcuda.so*', '/usr/local/cuda/lib*/libcuda.so*', '/usr/lib*/libcuda.so*',
    '/usr/local/lib*/libcuda.so*')


def discovery_model(f):
    """{'mechanism': 'in_process' | 'runner', 'ollama_version', 'reasoned_for'}: which upstream discovery the
    resolution checks model, from the Ollama version of the current start's log."""
    version = _log_version(f)
    shown = '.'.join(str(x) for x in version) if version else None
    if version is not None and version < IN_PROCESS_BEFORE:
        return {'mechanism': 'in_process', 'ollama_version': shown,
                'reasoned_for': 'Ollama %s (before 0.12.4): the server globs for libcuda.so* in %sLD_LIBRARY_PATH '
                                'and fixed system dirs and dlopen()s each file by its path; LD_PRELOAD and '
                                'ld.so.cache do not count' % (shown, 'its lib dir, ' if version >= BUNDLED_FIRST_FROM
                                                              else '')}
    return {'mechanism': 'runner', 'ollama_version': shown,
            'reasoned_for': ('Ollama %s (0.12.4+)' % shown if shown else 'Ollama of unknown version, taken as '
                             '0.12.4+') + ': a runner process loads libggml-cuda.so and the dynamic loader resolves '
                                          'its libcuda.so.1'}


def _go_glob(pattern, dirs_only=False):
    """Go's filepath.Glob: the directory part expanded first, names sorted per directory, '*' matches dot
    files, errors ignored."""
    if not glob.has_magic(pattern):
        return [pattern] if (os.path.isdir(pattern) if dirs_only else os.path.lexists(pattern)) else []
    parent, base = os.path.split(pattern)
    out = []
    for d in _go_glob(parent, dirs_only=True):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        out.extend(os.path.join(d, n) for n in names if fnmatch.fnmatchcase(n, base)
                   and (not dirs_only or os.path.isdir(os.path.join(d, n))))
    return out


def _follow_links(path):
    """FindGPULibs' readlink loop: one link at a time, relative targets joined to the link's dir."""
    lib = path
    for _ in range(40):
        try:
            target = os.readlink(lib)
        except OSError:
            break
        lib = target if os.path.isabs(target) else os.path.normpath(os.path.join(os.path.dirname(lib), target))
    return lib


def in_process_candidates(f, env):
    """[(pattern, match, resolved path)] in the order FindGPULibs tries them, de-duplicated like upstream."""
    version = _log_version(f) or (0, 0, 0)
    patterns = []
    if version >= BUNDLED_FIRST_FROM:
        patterns.append(os.path.join(f.p['ollama_lib_dir'], 'libcuda.so*'))
    for d in (env.get('LD_LIBRARY_PATH') or '').split(':'):
        patterns.append(os.path.join(os.path.abspath(d) if d else '/', 'libcuda.so*'))  # "" is the unit's cwd
    patterns += [f.paths.join(g) for g in NVCUDA_GLOBS]
    out, seen = [], set()
    for pat in patterns:
        for m in _go_glob(pat):
            lib = _follow_links(m)
            if lib not in seen:
                seen.add(lib)
                out.append((pat, m, lib))
    return patterns, out


def _in_process_resolution(f, env):
    """One record shaped like a runner's: the libcuda.so* file in-process discovery settles on. Each candidate
    is tried in turn and the first that initialises wins, so a failing driver library before the shim does not
    shadow it; the record's path is the first candidate that is the shim (or a copy), else the first one."""
    patterns, cands = in_process_candidates(f, env)
    target = f.p['shim']
    sha = f.shims.get('cuda', {}).get('sha256')
    tried = []
    chosen = None
    for pat, match, lib in cands:
        is_shim = os.path.exists(lib) and _same_file(lib, target)
        copy = not is_shim and bool(sha) and _sha(lib) == sha
        tried.append({'pattern': pat, 'match': match, 'path': lib, 'is_shim': is_shim, 'copy_of_shim': copy})
        if chosen is None and (is_shim or copy):
            chosen = tried[-1]
    pick = chosen or (tried[0] if tried else None)
    r = {'runner': 'in-process discovery', 'name': 'libcuda.so*', 'path': pick['match'] if pick else None,
         'real': pick['path'] if pick else None, 'step': ('glob %s' % pick['pattern']) if pick else None,
         'is_shim': bool(pick and pick['is_shim']), 'copy_of_shim': bool(pick and pick['copy_of_shim']),
         'error': None if tried else 'no file matches libcuda.so* in %s' % ', '.join(patterns),
         'search_path': patterns, 'candidates': tried, 'target': target}
    r['ok'] = bool(chosen)
    if tried and not chosen:
        r['error'] = 'none of %s is the shim %s' % (', '.join(t['path'] for t in tried), target)
    return [r]


def _preload_objects_for(f, env):
    objs = list(f.global_preload['entries'])
    if env is f.unit_env:
        return [o for o in f.preload_entries] + objs
    return [_preload_object(_preload_path(f, e, env), 'LD_PRELOAD', f) for e in split_preload(env.get('LD_PRELOAD'))] \
        + objs


def _gather_resolution(f):
    f.discovery = discovery_model(f)
    resolve = _in_process_resolution if f.discovery['mechanism'] == 'in_process' else _runner_resolution
    after = resolve(f, f.unit_env)
    running = f.running_env
    if running is not None and any(running.get(v) != f.unit_env.get(v) for v in ('LD_PRELOAD', 'LD_LIBRARY_PATH')):
        f.resolution = resolve(f, running)
        for r in f.resolution:
            r['env'] = 'running'
        for r in after:
            r['env'] = 'unit'
        f.resolution_after_restart = after
    else:
        for r in after:
            r['env'] = 'running' if running is not None else 'unit'
        f.resolution = after
        f.resolution_after_restart = after


def _gather_drivers(f, probe):
    """Files named like driver libraries on the loader path that are not the shim, judged by vgpu_fs."""
    shim = f.shims['cuda']
    candidates = []
    for name in ('libcuda.so.1', 'libnvidia-ml.so.1'):
        candidates.extend(f.cache.get(name, []))
    dirs = list(f.default_dirs) + [l['dir'] for l in f.links] + [f.p['ollama_lib_dir']] + f.cuda_dirs
    for d in dirs:
        for pattern in ('libcuda.so*', 'libnvidia-ml.so*'):
            candidates.extend(glob.glob(os.path.join(glob.escape(d), pattern)))
    candidates.extend(r['path'] for r in f.resolution + (f.resolution_after_restart or []) if r['path'])
    seen, out = set(), []
    shims = [s['path'] for s in f.shims.values() if s['exists']]
    shim_shas = set(s['sha256'] for s in f.shims.values() if s['sha256'])
    for c in candidates:
        real = realpath(c)
        if real in seen or not os.path.isfile(real):
            continue
        seen.add(real)
        if any(_same_file(real, s) for s in shims) or _sha(real) in shim_shas:
            continue
        if _toolkit_shim_file(real, shim['path']):
            # another of the toolkit's own shims (vgpu_shim installs libvgpu-<kind>.so beside the CUDA shim),
            # e.g. the NVML shim when the caller did not name it: never a driver
            if 'nvml' in os.path.basename(real) and not f.p.get('nvml_shim'):
                f.notes.append('%s is the toolkit\'s NVML shim but nvml_shim was not given: its links '
                               '(libnvidia-ml.so.1) were not checked' % real)
            continue
        reasons = looks_like_nvidia_driver(real, reference=shim['path'] if shim['exists'] else None,
                                           reference_soname=shim['soname'], dpkg_info_dir=f.paths.dpkg_info_dir)
        if not reasons:
            continue
        if not any('(dpkg)' in r for r in reasons) and f.paths.root == '/':
            rpm = probe.which('rpm')
            if rpm:
                rc, out_, _e = probe.run([rpm, '-qf', '--qf', '%{NAME}', real], timeout=1.0)
                if rc == 0 and out_.strip():
                    reasons.append('it belongs to the package %s (rpm)' % out_.strip())
        first = sorted(set(r['runner'] for r in f.resolution + (f.resolution_after_restart or [])
                           if r['path'] and realpath(r['path']) == real))
        out.append({'path': c, 'real': real, 'reasons': reasons, 'resolves_first_for': first})
    f.drivers = out


def _gather_pci(f):
    base = f.paths.pci_devices
    f.pci = {'path': base, 'devices': 0, 'nvidia': [], 'error': None}
    try:
        names = sorted(os.listdir(base))
    except OSError as e:
        f.pci['error'] = '%s: %s' % (base, e.strerror)
        return
    f.pci['devices'] = len(names)
    for n in names:
        vendor = (_read_small(os.path.join(base, n, 'vendor'), 64) or '').strip().lower()
        if vendor == NVIDIA_PCI_VENDOR:
            f.pci['nvidia'].append({
                'slot': n, 'vendor': vendor,
                'device': (_read_small(os.path.join(base, n, 'device'), 64) or '').strip(),
                'class': (_read_small(os.path.join(base, n, 'class'), 64) or '').strip()})


def _gather_snap(f):
    f.snap = {'dirs': [d for d in f.paths.snap_dirs if os.path.exists(d)],
              'units': sorted(glob.glob(os.path.join(glob.escape(f.paths.systemd_dir), 'snap.ollama.*')))}
    frag = f.unit.get('fragment_path') or ''
    f.snap['unit_is_snap'] = '/snap/' in (f.unit.get('exec_start') or '') or os.path.basename(frag).startswith('snap.')


def _gather_unsafe(f):
    """Paths whose content decides what the service loads, with a non-root writer (PRELOAD_HIJACK_RISK)."""
    paths = [s['path'] for s in f.shims.values() if s['exists']]
    paths += [o['path'] for o in f.preload_entries if o.get('exists')]
    paths += [d for d in split_path_list(f.unit_env.get('LD_LIBRARY_PATH')) if os.path.isabs(d) and os.path.isdir(d)]
    if os.path.isdir(f.p['ollama_lib_dir']):
        paths += [f.p['ollama_lib_dir']] + f.cuda_dirs
    seen, out = set(), []
    for p in paths:
        for comp in unsafe_path_components(p):
            if comp['path'] in seen:
                continue
            seen.add(comp['path'])
            comp['reached_from'] = p
            out.append(comp)
    f.unsafe = out


# ---- log

_PRELOAD_FAIL_RE = re.compile(
    r"object '([^']+)' from (LD_PRELOAD|/etc/ld\.so\.preload) cannot be preloaded \(([^)]*)\)")
_UNDEFINED_RE = re.compile(r'(/\S+?):? undefined symbol: ([A-Za-z0-9_@.]+)')


def _gather_log(f, probe):
    p = f.p
    timeout = max(0.0, float(p.get('log_timeout') or 0))
    started = f.unit.get('started')
    accept = None
    if p.get('log_path'):
        kind, what, desc = 'file', p['log_path'], 'file:%s' % p['log_path']
    else:
        props = f.unit.get('props')
        if props is None:
            f.log = {'source': None, 'error': 'no log: systemd is not running and log_path is not set',
                     'result': None}
            return
        sink = log_sink(props)
        if sink['kind'] == 'file' and sink['path']:
            kind, what, desc = 'file', sink['path'], 'file:%s' % sink['path']
            if started is not None:
                accept = start_not_older_than(started)
        elif sink['kind'] == 'journal':
            journalctl = probe.which('journalctl')
            if not journalctl:
                f.log = {'source': None, 'error': 'journalctl not found', 'result': None}
                return
            argv = journal_command(journalctl, props.get('Id') or f.p['unit'], props.get('InvocationID'),
                                   props.get('MainPID'), boot_id(), follow=timeout > 0)
            if not timeout > 0:
                # journalctl without --follow ends when it has printed the invocation: wait for that, no longer
                timeout = JOURNAL_READ_LIMIT
            kind, what, desc = 'journal', argv, 'journal:%s' % ' '.join(a for a in argv[1:] if not a.startswith('--'))
        else:
            f.log = {'source': None, 'error': 'the unit logs to %s, which the doctor cannot read' % sink['setting'],
                     'result': None}
            return
    if kind == 'file' and not os.path.isfile(what):
        f.log = {'source': desc, 'error': '%s does not exist' % what, 'result': None}
        return
    source = probe.log_source(kind, what)
    try:
        result, _waited, _reason = follow_log(source, timeout, accept_start=accept, drain=LOG_DRAIN)
    finally:
        source.close()
    f.log = {'source': desc, 'error': getattr(source, 'error', None), 'result': result}


def log_result(f):
    """The parser's result for the current start, or None when no start was found."""
    if not f.log or not f.log.get('result') or not f.log['result'].get('starts'):
        return None
    return f.log['result']


def log_errors(f, kind):
    res = log_result(f)
    if not res:
        return []
    return [e['line'] for e in res.get('discovery_errors', []) if e['kind'] == kind]


# the GPU libraries the shims serve: a start whose only GPU devices are Vulkan is not the CUDA shim at work
SHIM_LIBRARIES = ('cuda',)


def log_mode(f):
    """The current start judged against the shims' libraries: gpu, cpu, unknown, or other_library (GPU mode, but
    on another library only - a Vulkan fallback beside a failing CUDA shim); None without a start."""
    res = log_result(f)
    return judge_libraries(res, SHIM_LIBRARIES)['verdict'] if res else None


def verdict(f):
    res = log_result(f)
    if not res:
        return None
    judged = judge_libraries(res, SHIM_LIBRARIES)
    return {'mode': res['mode'], 'verdict': judged['verdict'], 'libraries': judged['libraries'],
            'devices': res['devices'], 'ollama_version': res['ollama_version'],
            'started_at': res['started_at'], 'discovery_errors': res['discovery_errors'],
            'evidence': res['evidence'], 'source': f.log.get('source')}


def preload_failures(f):
    """[{'path', 'reason', 'line'}] from "cannot be preloaded" lines of the current start."""
    out = []
    for line in log_errors(f, 'preload_failed'):
        m = _PRELOAD_FAIL_RE.search(line)
        if m:
            out.append({'path': m.group(1), 'reason': m.group(3), 'line': line})
    return out


def undefined_symbol_lines(f):
    out = []
    for line in log_errors(f, 'undefined_symbol'):
        m = _UNDEFINED_RE.search(line)
        out.append({'library': m.group(1) if m else None, 'symbol': m.group(2) if m else None, 'line': line})
    return out


# ---- undefined symbols and the load test

def _needed_exports(needed, f, depth=0, seen=None):
    """(exports, missing): symbols exported by the DT_NEEDED closure of a library, and names not found."""
    seen = set() if seen is None else seen
    exports, missing = set(), []
    for name in needed:
        if name in seen:
            continue
        seen.add(name)
        r = emulate_loader(name, [], [], f.cache, f.default_dirs, f.machine)
        if not r['path'] or r['error']:
            missing.append(name)
            continue
        try:
            info = read_elf_cached(r['path'])
        except (ElfError, IOError, OSError):
            missing.append(name)
            continue
        exports.update(info.exported_symbols())
        if depth < 3:
            sub, sub_missing = _needed_exports(info.needed, f, depth + 1, seen)
            exports |= sub
            missing += sub_missing
    return exports, missing


def _static_unresolved(f, kind):
    shim = f.shims.get(kind)
    if not shim or not shim['elf']:
        return None, []
    exports, missing = _needed_exports(shim['needed'], f)
    if missing:
        return None, missing
    return sorted(s for s in shim['undefined'] if s not in exports), []


def _gather_load_tests(f, probe):
    """Static check of every shim's undefined symbols; a load test as the service user only where the ELF
    (or the log) says some symbol may be unresolved."""
    logged = undefined_symbol_lines(f)
    for kind, shim in f.shims.items():
        unresolved, missing = _static_unresolved(f, kind)
        in_log = [x for x in logged if x['library'] and _same_file(x['library'], shim['path'])]
        test = {'unresolved': unresolved, 'needed_missing': missing, 'log': in_log, 'load_test': None}
        f.load_tests[kind] = test
        if shim['elf'] and (unresolved or missing or in_log) and f.p.get('load_test', True):
            test['load_test'] = load_test(f, probe, shim['path'])
    matched = [x for t in f.load_tests.values() for x in t['log']]
    f.load_tests_unmatched_log = [x for x in logged if x not in matched]


def load_test(f, probe, path):
    """dlopen path with LD_BIND_NOW=1 as the unit's user, with the unit's LD_PRELOAD, in a fresh Python.

    Returns {'ok': True | False | None, 'rc', 'output', 'as', 'ld_preload'}: False only when the loader
    itself failed (a symbol lookup or dlopen error), None when the test could not run (no runuser,
    interpreter not executable for the user, time limit)."""
    code = ('import ctypes,sys\ntry:\n ctypes.CDLL(sys.argv[1], mode=ctypes.RTLD_GLOBAL)\n'
            'except OSError as e:\n print("dlopen: %s" % e); sys.exit(3)\n')
    env = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'LC_ALL': 'C', 'LD_BIND_NOW': '1'}
    if f.unit_env.get('LD_PRELOAD'):
        env['LD_PRELOAD'] = f.unit_env['LD_PRELOAD']
    # the system interpreter: the service user can run it (a virtualenv's may sit in a private home)
    python = '/usr/bin/python3' if os.access('/usr/bin/python3', os.X_OK) else (sys.executable or 'python3')
    argv = [python, '-S', '-c', code, path]
    # the same user (and groups) as the driver probe: vgpu_probe.user_argv, setpriv without a PAM session
    try:
        argv, as_user = user_argv(argv, which=probe.which, **(_probe_user(f) or {}))
    except ValueError:
        as_user = 'uid %d' % os.geteuid()
    timeout = max(0.3, min(LOAD_TEST_TIMEOUT, f.deadline - time.time()))
    rc, out, err = probe.run(argv, env=env, timeout=timeout)
    text = ' '.join((out + ' ' + err).split())
    if rc == 0:
        ok = True
    elif (rc == 3 and 'dlopen:' in text) or 'symbol lookup error' in text or 'undefined symbol' in text:
        ok = False
    else:
        ok = None
    return {'ok': ok, 'rc': rc, 'output': text[:400], 'as': as_user, 'ld_preload': env.get('LD_PRELOAD')}


# ---- the live driver probe

def _probe_user(f):
    u = f.unit
    if u.get('dynamic_user'):
        return {'uid': u['uid'], 'groups': []}
    if (u.get('user') or 'root') in ('root', '0') or u.get('uid') in (None, 0):
        return None
    gid = None
    if u.get('group'):
        try:
            gid = resolve_gid(u['group'])
        except ValueError:
            gid = None
    return {'user': u['user'], 'uid': u['uid'], 'gid': gid, 'groups': list(u.get('gids') or [])}


def _best(results):
    """One result for a set of per-directory probes: a hang first (it blocks discovery), then any that worked
    (Ollama uses the directory whose runtime the driver serves), else the first."""
    for r in results:
        if r.get('timed_out'):
            return r
    for r in results:
        if r.get('ok'):
            return r
    return results[0] if results else None


def _gather_driver_probe(f, probe):
    """The live driver-API probe (vgpu_probe), as the unit's user with the environment of its next start and
    Ollama's library dirs first, one per cuda_v* dir, all at once. When CUDA_VISIBLE_DEVICES hides the device in
    that environment, the same probes run without it as well: whether removing it would help is then known,
    not guessed."""
    want = f.p.get('driver_probe') or 'auto'
    needed = log_mode(f) != 'gpu'
    if want == 'never' or (want == 'auto' and not needed):
        f.driver_probe = {'ran': False, 'reason': 'driver_probe=never' if want == 'never' else
                          'the current start is in GPU mode on the shim\'s library (driver_probe=auto)'}
        return
    if f.unit.get('user_error'):
        f.driver_probe = {'ran': False, 'reason': 'cannot run as the unit\'s user: %s' % f.unit['user_error']}
        return
    lib = f.p['ollama_lib_dir']
    names = None
    if (f.discovery or {}).get('mechanism') == 'in_process':
        # the file in-process discovery settles on, opened by its path as that Ollama does
        pick = (f.resolution_after_restart or [{}])[0]
        if not pick.get('real'):
            f.driver_probe = {'ran': False, 'reason': 'in-process discovery (%s) finds no libcuda.so* file to '
                                                      'probe' % f.discovery['reasoned_for']}
            return
        names = [pick['real']]
        sets = [[lib] if os.path.isdir(lib) else []]
    else:
        sets = [[lib, d] for d in f.cuda_dirs] or [[lib] if os.path.isdir(lib) else []]
    user = _probe_user(f)
    env = dict(f.unit_env)
    specs = [(d, env, user, names) for d in sets]
    cvd = env.get('CUDA_VISIBLE_DEVICES')
    hides = cvd is not None and visible_device_count(cvd, max(1, len(f.pci['nvidia']))) == 0
    if hides:
        without = dict((k, v) for k, v in env.items() if k != 'CUDA_VISIBLE_DEVICES')
        specs += [(d, without, user, names) for d in sets]
    began = time.time()
    timeout = float(f.p.get('probe_timeout') or PROBE_TIMEOUT)
    results = probe.driver_probes(specs, timeout)
    # a probe that ran out of time is tried once more with twice the time: a driver that waits for its host
    # side hangs again, a child that only starved on a busy machine (many VMs on few cores) answers now - a
    # hang is claimed only when both tries hit the limit
    retry = [i for i, r in enumerate(results) if r.get('timed_out') and not r.get('unkillable')]
    retried = []
    if retry:
        again = probe.driver_probes([specs[i] for i in retry], timeout * 2)
        for i, r in zip(retry, again):
            retried.append({'lib_dirs': specs[i][0], 'first_elapsed': results[i].get('elapsed'),
                            'first_last_call': results[i].get('last_call'), 'timeout': timeout * 2,
                            'timed_out_again': bool(r.get('timed_out'))})
            if not r.get('timed_out'):
                f.notes.append('the live driver probe (%s) ran out of its %.1f s in %s, then answered when tried '
                               'again with %.1f s: the machine was busy, the driver does not hang'
                               % (':'.join(specs[i][0]), timeout, results[i].get('last_call') or 'its start',
                                  timeout * 2))
            results[i] = r
    first, second = results[:len(sets)], results[len(sets):]
    f.driver_probe = {
        'ran': True, 'elapsed': round(time.time() - began, 3), 'retried': retried,
        'per_dir': [{'lib_dirs': d, 'ok': r.get('ok'), 'loaded': (r.get('cuda') or {}).get('loaded'),
                     'failed_call': (r.get('cuda') or {}).get('failed_call'), 'timed_out': r.get('timed_out')}
                    for d, r in zip(sets, first)],
        'next_start': _best(first),
        'without_visible_devices': _best(second) if second else None,
    }


def judged_probe(f):
    """The probe the DRIVER_* findings rest on: the environment after the CUDA_VISIBLE_DEVICES fix when that
    was probed too (a device hidden by it is VISIBLE_DEVICES, not a driver error), else the next start's."""
    dp = f.driver_probe or {}
    if not dp.get('ran'):
        return None
    return dp.get('without_visible_devices') or dp.get('next_start')


def probe_evidence(r):
    """A probe result trimmed for a finding's evidence."""
    if not r:
        return None
    c, n = r.get('cuda') or {}, r.get('nvml') or {}
    return {'ok': r.get('ok'), 'as_user': r.get('as_user'), 'elapsed': r.get('elapsed'), 'timed_out': r.get('timed_out'),
            'last_call': r.get('last_call'), 'error': r.get('error'), 'signal': r.get('signal'),
            'lib_dirs': r.get('lib_dirs'), 'ld_library_path': r.get('ld_library_path'), 'ld_preload': r.get('ld_preload'),
            'cuda_visible_devices': r.get('cuda_visible_devices'),
            'cuda': {'loaded': c.get('loaded'), 'loaded_as': c.get('loaded_as'), 'dlopen_error': c.get('dlopen_error'),
                     'calls': [dict((k, x.get(k)) for k in ('call', 'rc', 'error', 'ms', 'value', 'device', 'attr')
                                    if k in x)
                               for x in c.get('calls') or []],
                     'driver_version': c.get('driver_version'), 'devices': c.get('devices')},
            'nvml': {'loaded': n.get('loaded'), 'dlopen_error': n.get('dlopen_error'),
                     'calls': [dict((k, x.get(k)) for k in ('call', 'rc', 'error', 'ms', 'value') if k in x)
                               for x in n.get('calls') or []],
                     'driver_version': n.get('driver_version'), 'driver_major': n.get('driver_major')},
            'output': r.get('output')}


def _toolkit_shim_file(path, cuda_shim):
    """Whether path is one of the toolkit's shims: libvgpu-<kind>.so in the CUDA shim's directory (the names
    vgpu_shim installs)."""
    return (os.path.dirname(path) == os.path.dirname(realpath(cuda_shim))
            and re.match(r'^libvgpu-[a-z]+\.so$', os.path.basename(path)) is not None)


def _loaded_is_shim(f, path):
    shim = f.shims.get('cuda') or {}
    return bool(path) and (_same_file(path, shim.get('path')) or (bool(shim.get('sha256')) and _sha(path) == shim['sha256']))


def _static_cause(f):
    """A static finding explains why the runners do not get the shim (its fix comes first)."""
    return _resolution_ok(f) is False or any(s['problems'] for s in f.shims.values()) or \
        any(d['resolves_first_for'] for d in f.drivers)


# ------------------------------------------------------------------------------------------ findings

def finding(code, severity, summary, evidence, action, fix_text, **fix):
    assert code in CODES and severity in SEVERITIES and action in ACTIONS, (code, severity, action)
    fx = {'action': action}
    fx.update(fix)
    return {'code': code, 'severity': severity, 'summary': summary, 'evidence': evidence, 'fix': fx,
            'fix_text': fix_text}


def _resolution_ok(f, after_restart=True):
    """True when every runner resolves every managed name to its shim (None when there is no runner)."""
    res = f.resolution_after_restart if after_restart else f.resolution
    if not res:
        return None
    return all(r['ok'] for r in res)


def _env_fix(f, variable, what):
    """The fix for a variable the service must not have, by where it comes from: our drop-in (rendered from the
    inventory: refused by remediate with the inventory step) or anywhere else (unset_env at every source)."""
    src = f.env_records.get(variable) or {}
    if src.get('kind') == 'environment' and src.get('path') == f.dropin_path:
        return 'rewrite_dropin', {'path': src['path'], 'variable': variable}, \
            'render %s again without %s (check the inventory: it came from our own variables), daemon-reload ' \
            'and restart %s' % (src['path'], what, f.p['unit'])
    return unset_fix(f, [variable])


def unset_fix(f, variables):
    """('unset_env', fix, fix_text) taking ``variables`` out of every source that gives them to the next start
    except our own drop-in (whose value then applies): fix.sources are vgpu_unit_env.source_fix() entries,
    fix.editable says whether remediate may do it all; fix_text has the exact manual step otherwise."""
    keep = [f.dropin_path]
    sources = []
    for v in variables:
        for s in removal_plan(f.predicted, v, f.p['unit'], f.paths.systemd_dir, f.paths.root):
            if s.get('kind') == 'environment' and s.get('path') in keep:
                continue
            sources.append(dict(s, variable=v))
    editable = bool(sources) and all(s['editable'] for s in sources)
    winner = f.env_records.get(variables[0]) or {}
    fix = {'variable': variables[0], 'variables': list(variables), 'sources': sources, 'editable': editable,
           'keep': keep, 'path': f.env_sources.get(variables[0]),
           'source': describe_source(winner) if winner else None}
    where = '; '.join('%s from %s' % (s['variable'], s['location']) for s in sources) or 'nowhere'
    if editable:
        text = 'take %s out where it is set (%s; systemd_env_unset keeps each original as a hidden backup), ' \
               'daemon-reload and restart %s' % (', '.join(variables), where, f.p['unit'])
    else:
        text = ' / '.join(s['manual'] for s in sources if not s['editable']) or \
            'find what sets %s for %s' % (', '.join(variables), f.p['unit'])
    return 'unset_env', fix, text


def _gpu_start(f):
    return log_mode(f) == 'gpu'


def check_no_device(f):
    pci = f.pci
    if pci['nvidia']:
        return []
    ev = {'pci_devices_dir': pci['path'], 'devices_seen': pci['devices'], 'error': pci['error'],
          'require_pci_device': f.p['require_pci_device']}
    if not f.p['require_pci_device']:
        return [finding('NO_DEVICE', 'info', 'no PCI device with vendor 0x10de (expected here: '
                        'require_pci_device is false, the shim stands in for the device)', ev, 'manual',
                        'nothing to do on a simulated host')]
    return [finding('NO_DEVICE', 'error', 'no PCI device with vendor 0x10de in the guest: the hypervisor does not '
                    'give this VM its paravirtual GPU', ev, 'manual',
                    'on the hypervisor, attach the vGPU profile to this VM and reboot it; nothing in the guest '
                    'can make up for a missing device (remediate does not act)')]


def check_snap_ollama(f):
    s = f.snap
    if not s['dirs'] and not s['units'] and not s['unit_is_snap']:
        return []
    upstream = f.unit.get('load_state') == 'loaded' and not s['unit_is_snap']
    sev = 'warning' if upstream else 'error'
    summary = ('a snap Ollama is installed besides %s (it may hold port 11434)' % f.p['unit'] if upstream else
               'Ollama is the snap package: read-only tree, unit %s, confined - the shim cannot be wired in'
               % (', '.join(os.path.basename(u) for u in s['units']) or 'snap.ollama.*'))
    return [finding('SNAP_OLLAMA', sev, summary, {'snap_dirs': s['dirs'], 'snap_units': s['units'],
                                                  'unit_load_state': f.unit.get('load_state'),
                                                  'exec_start': f.unit.get('exec_start')}, 'manual',
                    'remove the snap (snap remove ollama) and install Ollama with its upstream install script, '
                    'then run site.yml (remediate does not touch snaps)')]


def check_unit_start_fails(f):
    fails = f.predicted['start_fails'] if f.predicted else []
    if not fails:
        return []
    return [finding('UNIT_START_FAILS', 'error', 'the next start of %s fails before Ollama runs: %s' % (
        f.p['unit'], fails[0]), {'reasons': fails, 'environment_files': f.predicted['environment_files']}, 'manual',
        'create the missing file, or mark it optional with "-" (EnvironmentFile=-/path) in the unit or its '
        'drop-in, then daemon-reload; remediate restarts nothing while the next start would fail (%s)'
        % '; '.join(fails))]


def check_global_preload(f):
    gp = f.global_preload
    shim_paths = [s['path'] for s in f.shims.values()]
    bad = []
    for o in gp['entries']:
        p = o['path']
        if ('vgpu' in os.path.basename(p).lower() or any(_same_file(p, s) for s in shim_paths)
                or o.get('soname') in ('libcuda.so.1', 'libnvidia-ml.so.1') or o.get('exports_cuda')
                or o.get('exports_nvml')):
            bad.append(p)
    if not bad:
        return []
    return [finding('GLOBAL_PRELOAD', 'error',
                    '%s loads %s into every process on the host' % (gp['path'], ', '.join(bad)),
                    {'path': gp['path'], 'entries': bad, 'all_entries': [o['path'] for o in gp['entries']]},
                    'remove_global_preload',
                    'remove %s from %s (delete the file if nothing else is in it); the shim belongs in the '
                    'Ollama unit only' % (', '.join(bad), gp['path']), path=gp['path'], entries=bad)]


def check_driver_shadow(f):
    out = []
    for d in f.drivers:
        first = d['resolves_first_for']
        ev = {'path': d['path'], 'real_path': d['real'], 'reasons': d['reasons'], 'resolves_first_for': first}
        pkg = [m.group(1) for m in (re.search(r'package (\S+) \((?:dpkg|rpm)\)', r) for r in d['reasons']) if m]
        ev['package'] = pkg[0] if pkg else None
        owner = 'the package %s' % pkg[0] if pkg else 'the NVIDIA driver package that owns %s' % d['real']
        if first:
            out.append(finding('DRIVER_SHADOW', 'error', 'a real NVIDIA driver library %s is what runner(s) %s load '
                               'as %s, not the shim' % (d['real'], ', '.join(first), os.path.basename(d['path'])),
                               ev, 'manual', 'uninstall %s (a guest with the vGPU shim must not have a driver; '
                               'Ollama\'s installer adds one when it sees vendor 0x10de), run ldconfig, then remediate '
                               'again (remediate never removes driver files)' % owner,
                               path=d['real'], package=ev['package']))
        else:
            out.append(finding('DRIVER_SHADOW', 'warning', 'a real NVIDIA driver library %s is on the loader path '
                               '(the shim still wins today; an ldconfig or upgrade may change that)' % d['real'],
                               ev, 'manual', 'uninstall %s' % owner, path=d['real'], package=ev['package']))
    return out


def check_shim_bad(f):
    out = []
    for kind, s in sorted(f.shims.items()):
        if not s['problems']:
            continue
        ev = {'path': s['path'], 'problems': s['problems'], 'sha256': s['sha256'],
              'expected_sha256': s['expected_sha256'], 'elf': s['elf']}
        fails = [x for x in preload_failures(f) if _same_file(x['path'], s['path']) or x['path'] == s['path']]
        if fails:
            ev['log_lines'] = [x['line'] for x in fails]
        out.append(finding('SHIM_BAD', 'error', 'the %s shim %s is unusable: %s' % (kind.upper(), s['path'],
                                                                                   s['problems'][0]),
                           ev, 'reinstall_shim', 'install the %s shim artifact again at %s (vgpu_shim checks its '
                           'ELF, exports and checksum before it lands)' % (kind.upper(), s['path']),
                           path=s['path'], kind=kind, expected_sha256=s['expected_sha256']))
    return out


def check_shim_unreadable(f):
    uid, gids = f.unit.get('uid'), f.unit.get('gids')
    if uid is None:
        return []
    out = []
    user = f.unit.get('user')
    paths = [s['path'] for s in f.shims.values() if s['exists']]
    paths += [o['path'] for o in f.preload_entries if o.get('exists') and o['path'] not in paths]
    for p in paths:
        ok, problems = readable_by(p, uid, gids)
        if ok:
            continue
        fails = [x['line'] for x in preload_failures(f) if x['path'] == p]
        fix_paths = []
        for pr in problems:
            m = re.match(r'^(?:directory )?(/.*?) \(mode', pr)
            if m:
                fix_paths.append(m.group(1))
        ev = {'path': p, 'user': user, 'uid': uid, 'gids': gids, 'problems': problems,
              'dynamic_user': f.unit.get('dynamic_user')}
        if fails:
            ev['log_lines'] = fails
        out.append(finding('SHIM_UNREADABLE', 'error', '%s cannot be read by the service user %s: %s'
                           % (p, user, problems[0]), ev, 'fix_shim_mode',
                           'chown root:root and chmod 0755 %s, so every user can read and search them and only '
                           'root can write' % ', '.join(fix_paths or [p]), paths=fix_paths or [p]))
    return out


def check_shim_undefined_symbol(f):
    """Severity from the strongest evidence: a failed load test (error), the log of the current start
    (error; warning when that start found a GPU anyway), the ELF alone (warning: it loads in the service's
    context, e.g. because the CUDA shim is preloaded, but not on its own)."""
    out = []
    cuda_exports = set(f.shims['cuda']['exports']) if f.shims.get('cuda') else set()
    preload = [o['path'] for o in f.preload_entries]
    cuda_path = f.shims['cuda']['path'] if f.shims.get('cuda') else None

    def is_cuda(path):
        return cuda_path is not None and (path == cuda_path or _same_file(path, cuda_path))

    gpu = _gpu_start(f)
    for kind, test in sorted(f.load_tests.items()):
        shim = f.shims[kind]
        unresolved = test['unresolved'] or []
        lt = test['load_test']
        if lt is not None and lt['ok'] is False:
            sev = 'error'
        elif test['log'] and (lt is None or lt['ok'] is None):
            sev = 'warning' if gpu else 'error'
        elif unresolved or test['log']:
            sev = 'warning'
        else:
            continue    # only our emulation missed a DT_NEEDED library; the real loader found it
        symbols = sorted(set(unresolved + [x['symbol'] for x in test['log'] if x['symbol']]))
        from_cuda = [s for s in symbols if s in cuda_exports]
        ev = {'path': shim['path'], 'unresolved_symbols': symbols, 'needed_not_found': test['needed_missing'],
              'provided_by_cuda_shim': from_cuda, 'load_test': lt,
              'log_lines': [x['line'] for x in test['log']], 'unit_ld_preload': f.unit_env.get('LD_PRELOAD')}
        cuda_preloaded = kind != 'cuda' and any(is_cuda(p) for p in preload)
        preload_src = _applied_by(f, 'LD_PRELOAD')
        if from_cuda and not cuda_preloaded and preload_src in _conflict_paths(f) \
                and preload_src != f.unit.get('unit_file') \
                and any(is_cuda(p) for p in split_preload(f.our_env.get('LD_PRELOAD'))):
            # our drop-in preloads the CUDA shim; another drop-in's LD_PRELOAD (PRELOAD_CONFLICT) replaces it
            action, fix, text = 'move_conflicting_dropin', {'path': preload_src, 'variables': ['LD_PRELOAD']}, \
                'move %s out of %s (its LD_PRELOAD, without the CUDA shim, wins over %s), daemon-reload and ' \
                'restart' % (preload_src, os.path.dirname(preload_src), os.path.basename(f.dropin_path))
        elif from_cuda and not cuda_preloaded and f.p.get('preload') is not None \
                and not any(is_cuda(p) for p in f.p['preload']):
            # the intended preload leaves the CUDA shim out: rendering the drop-in again changes nothing
            action, fix, text = 'manual', {}, \
                'add %s before %s to the preload list (ollama_vgpu_unit_preload) and run site.yml, or rebuild ' \
                'the NVML shim so it does not use CUDA-shim symbols' % (cuda_path, shim['path'])
        elif from_cuda and not cuda_preloaded:
            action, fix, text = 'rewrite_dropin', {'path': f.dropin_path}, \
                'render %s again with the CUDA shim in LD_PRELOAD before %s, daemon-reload and restart; better, ' \
                'rebuild the NVML shim so it does not use CUDA-shim symbols' % (f.dropin_path, shim['path'])
        else:
            action, fix, text = 'manual', {}, 'rebuild %s so that it defines or links (DT_NEEDED) every symbol it ' \
                'uses (%s), then reinstall it' % (shim['path'], ', '.join(symbols) or ', '.join(test['needed_missing']))
        if lt is not None and lt['ok'] is False:
            how = ' (load test as %s with LD_BIND_NOW=1 failed: %s)' % (lt['as'], lt['output'])
        elif sev == 'warning' and lt is not None and lt['ok']:
            how = ' (it loads in the service today only because another preloaded library provides them)'
        else:
            how = ''
        out.append(finding('SHIM_UNDEFINED_SYMBOL', sev, '%s needs %s that nothing it links provides%s' % (
            shim['path'], ', '.join(symbols), how), ev, action, text, **fix))
    for x in f.load_tests_unmatched_log:
        out.append(finding('SHIM_UNDEFINED_SYMBOL', 'warning' if gpu else 'error',
                           '%s: undefined symbol %s in the current start' % (x['library'], x['symbol']),
                           {'path': x['library'], 'unresolved_symbols': [x['symbol']], 'log_lines': [x['line']],
                            'unit_ld_preload': f.unit_env.get('LD_PRELOAD')}, 'manual',
                           'rebuild %s so that it defines or links every symbol it uses, or remove it from '
                           'LD_PRELOAD' % x['library']))
    return out


def _index_of(seq, path):
    for i, p in enumerate(seq):
        if _same_file(p, path) or p == path:
            return i
    return len(seq)


def check_preload_missing_file(f):
    out = []
    shim_paths = dict((s['path'], k) for k, s in f.shims.items())
    logged = preload_failures(f)
    entries = [(o['path'], o.get('source'), 'unit') for o in f.preload_entries]
    # (a bare name that no search finds stays as written and does not exist either)
    running = split_preload((f.running_env or {}).get('LD_PRELOAD'))
    entries += [(p, None, 'running') for p in running if p not in [e[0] for e in entries]]
    for path, src, where in entries:
        if os.path.exists(path):
            continue
        lines = [x['line'] for x in logged if x['path'] == path]
        ev = {'entry': path, 'ld_preload': (f.unit_env if where == 'unit' else f.running_env or {}).get('LD_PRELOAD'),
              'set_by': src, 'environment': where, 'log_lines': lines}
        if path in shim_paths:
            action, fix, text = 'reinstall_shim', {'path': path, 'kind': shim_paths[path]}, \
                'install the shim again at %s (it is missing), then restart %s' % (path, f.p['unit'])
        elif where == 'running':
            action, fix, text = 'restart', {'daemon_reload': False}, \
                'restart %s: the running process still has an old LD_PRELOAD' % f.p['unit']
        elif src == f.dropin_path:
            action, fix, text = 'rewrite_dropin', {'path': src}, \
                'render %s again with the installed shim paths, daemon-reload, restart' % src
        elif (f.env_records.get('LD_PRELOAD') or {}).get('kind') == 'environment' and src \
                and src != f.unit.get('unit_file'):
            action, fix, text = 'move_conflicting_dropin', {'path': src, 'variables': ['LD_PRELOAD']}, \
                'move %s out of the way (it sets LD_PRELOAD to a missing file), daemon-reload, restart' % src
        else:
            # the unit file, an EnvironmentFile=, PassEnvironment= or the manager's environment
            action, fix, text = unset_fix(f, ['LD_PRELOAD'])
        if where == 'unit':
            ev['source'] = describe_source(f.env_records.get('LD_PRELOAD'))
        out.append(finding('PRELOAD_MISSING_FILE', 'error', 'LD_PRELOAD names %s, which does not exist%s'
                           % (path, ' ("cannot be preloaded" in the log)' if lines else ''), ev, action, text, **fix))
    # a logged failure whose file exists now: SHIM_UNREADABLE or PRELOAD_NOT_APPLIED report it
    return out


def check_preload_interposes_loader(f):
    out = []
    for o in f.preload_entries + f.global_preload['entries']:
        if not o.get('interposed'):
            continue
        out.append(finding('PRELOAD_INTERPOSES_LOADER', 'error',
                           '%s (preloaded via %s) exports libc/loader functions %s: they replace libc\'s in the '
                           'service and its runners and can hijack backend loading' % (
                               o['path'], o['step'], ', '.join(o['interposed'][:8])),
                           {'path': o['path'], 'interposed': o['interposed'], 'via': o['step']},
                           'switch_strategy', 'redeploy with vgpu_strategy=library_path (no LD_PRELOAD: the shim '
                           'is found as libcuda.so.1 through LD_LIBRARY_PATH), or rebuild the shim without those '
                           'exports', strategy='library_path'))
    return out


def _applied_by(f, variable):
    """The file whose setting decides variable for the service: the one that set it last, or the one whose
    UnsetEnvironment= removes it."""
    return f.env_sources.get(variable) or f.unset_by.get(variable)


def check_preload_conflict(f):
    out = []
    ours_env = f.our_env
    for c in f.conflicts:
        unsets = c.get('unsets') or []
        loader_vars = [v for v in c['variables'] if v in LOADER_VARIABLES]
        wins = [v for v in loader_vars if _applied_by(f, v) == c['path']]
        harmful = [v for v in wins if v in ours_env or v == 'LD_PRELOAD' and intended_preload(f.p)
                   or v == 'LD_LIBRARY_PATH' and f.p['strategy'] == 'library_path']
        harmful = [v for v in harmful if f.unit_env.get(v) != ours_env.get(v)]
        sev = 'error' if harmful and _resolution_ok(f) is not True else 'warning'
        values = dict((v, '(unset)' if v in unsets else
                       f.unit_env.get(v) if f.env_sources.get(v) == c['path'] else '(overridden)')
                      for v in c['variables'])
        ev = {'path': c['path'], 'variables': c['variables'], 'values': values,
              'applied_after_ours': c['overrides_ours'], 'effective_from_this_file': wins,
              'our_dropin': f.dropin_path, 'our_values': dict((v, ours_env.get(v)) for v in c['variables'])}
        if unsets:
            ev['unsets'] = unsets
        sets = [v for v in c['variables'] if v not in unsets]
        what = ' and '.join(x for x in ('sets %s' % ', '.join(sets) if sets else '',
                                        'unsets %s (UnsetEnvironment=)' % ', '.join(unsets) if unsets else '') if x)
        if c.get('unit_file') and unsets:
            action, fix, text = 'manual', {'path': c['path'], 'variables': c['variables']}, \
                'remove %s from the unit file %s (an Ollama upgrade rewrites it anyway), daemon-reload, restart' % (
                    ', '.join(['UnsetEnvironment=%s' % v for v in unsets] + sets), c['path'])
        elif c.get('unit_file') or c.get('external'):
            # the unit file (an Ollama upgrade rewrites it anyway), an EnvironmentFile=, PassEnvironment= or the
            # manager's environment: the assignment goes where it is written
            action, fix, text = unset_fix(f, sets)
        else:
            action, fix, text = 'move_conflicting_dropin', {'path': c['path'], 'variables': c['variables']}, \
                'move %s out of %s (it %s%s), daemon-reload and restart %s' % (
                    c['path'], os.path.dirname(c['path']), what,
                    ', and wins over %s' % os.path.basename(f.dropin_path) if wins else '', f.p['unit'])
        if c.get('external'):
            ev['source'] = c['source']
        out.append(finding('PRELOAD_CONFLICT', sev, '%s also %s%s' % (
            c['source'] if c.get('external') else c['path'], what,
            (' so the service gets no %s' % ', '.join(wins) if set(wins) <= set(unsets) else
             ' and its value is the one the service gets') if wins else ''), ev, action, text, **fix))
    return out


_CPU_LIBRARIES = re.compile(r'^cpu(_|$)')


def check_llm_library_mismatch(f):
    value = f.unit_env.get('OLLAMA_LLM_LIBRARY')
    if value is None or not os.path.isdir(f.p['ollama_lib_dir']):
        return []
    try:
        existing = sorted(n for n in os.listdir(f.p['ollama_lib_dir'])
                          if os.path.isdir(os.path.join(f.p['ollama_lib_dir'], n)))
    except OSError:
        existing = []
    if value in existing and not _CPU_LIBRARIES.match(value):
        return []
    if value == '':
        return []
    cudas = [os.path.basename(d) for d in f.cuda_dirs]
    suggest = 'cuda_v12' if 'cuda_v12' in cudas else (cudas[-1] if cudas else None)
    forced_cpu = bool(_CPU_LIBRARIES.match(value))
    action, fix, text = _env_fix(f, 'OLLAMA_LLM_LIBRARY', 'OLLAMA_LLM_LIBRARY=%s' % value)
    fix['suggest'] = suggest
    if action == 'rewrite_dropin':
        text = 'set OLLAMA_LLM_LIBRARY to %s in the inventory (existing dirs: %s), render %s again, daemon-reload, ' \
               'restart' % (suggest or 'an existing cuda_v* dir', ', '.join(existing), f.dropin_path)
    summary = ('OLLAMA_LLM_LIBRARY=%s forces the CPU backend' % value if forced_cpu else
               'OLLAMA_LLM_LIBRARY=%s names no directory in %s (has: %s): Ollama skips every GPU backend'
               % (value, f.p['ollama_lib_dir'], ', '.join(existing) or 'none'))
    return [finding('LLM_LIBRARY_MISMATCH', 'error', summary,
                    {'value': value, 'set_by': f.env_sources.get('OLLAMA_LLM_LIBRARY'), 'existing_dirs': existing,
                     'running_value': (f.running_env or {}).get('OLLAMA_LLM_LIBRARY')}, action, text, **fix)]


def visible_device_count(value, physical):
    """How many devices CUDA shows for CUDA_VISIBLE_DEVICES=value with `physical` devices (None: unknown,
    e.g. UUIDs). CUDA reads the list up to the first invalid entry."""
    count = 0
    seen = set()
    for tok in value.split(','):
        tok = tok.strip()
        if not tok:
            break
        if tok.isdigit():
            idx = int(tok)
            if idx >= physical or idx in seen:
                break
            seen.add(idx)
            count += 1
        elif tok.upper().startswith('GPU-') or tok.upper().startswith('MIG-'):
            return None if count == 0 else count
        else:
            break
    return count


def check_visible_devices(f):
    value = f.unit_env.get('CUDA_VISIBLE_DEVICES')
    running = (f.running_env or {}).get('CUDA_VISIBLE_DEVICES')
    if value is None and running is None:
        return []
    shown = value if value is not None else running
    physical = max(1, len(f.pci['nvidia']))
    visible = visible_device_count(shown, physical)
    action, fix, text = _env_fix(f, 'CUDA_VISIBLE_DEVICES', 'CUDA_VISIBLE_DEVICES')
    if value is None:
        action, fix, text = 'restart', {'daemon_reload': False}, \
            'restart %s: only the running process still has CUDA_VISIBLE_DEVICES' % f.p['unit']
    sev = 'error' if visible == 0 else 'warning'
    summary = 'CUDA_VISIBLE_DEVICES=%r %s' % (shown, 'hides every device' if visible == 0 else
                                             'is set (shows %s of %d device(s))' % (
                                                 visible if visible is not None else 'an unknown number', physical))
    return [finding('VISIBLE_DEVICES', sev, summary, {'value': value, 'running_value': running,
                                                      'set_by': f.env_sources.get('CUDA_VISIBLE_DEVICES'),
                                                      'devices': physical, 'visible': visible},
                    action, text, **fix)]


def check_sandbox(f):
    """PrivateDevices=yes gives the service a /dev without the paravirtual device's node: an error.
    ProtectKernelTunables=yes makes /sys and /proc/sys read-only (still readable): a warning."""
    on = dict((k, v) for k, v in f.unit['sandbox'].items() if is_true(v))
    if not on:
        return []
    set_by = dict((k, [s['path'] for s in _setting_sources(f, k)]) for k in on)
    ours_dir, ours_name = os.path.split(f.dropin_path)
    later = [p for ps in set_by.values() for p in ps
             if os.path.dirname(p) == ours_dir and os.path.basename(p) > ours_name]
    sev = 'error' if 'PrivateDevices' in on else 'warning'
    what = 'device nodes are hidden from the service' if 'PrivateDevices' in on else \
        '/sys and /proc/sys are read-only for the service'
    settings = ', '.join('%s=%s' % kv for kv in sorted(on.items()))
    return [finding('SANDBOX', sev, 'the unit has %s: %s' % (settings, what),
                    {'settings': on, 'set_by': set_by}, 'override_sandbox',
                    'write %s into %s%s, daemon-reload, restart' % (
                        ', '.join('%s=no' % k for k in sorted(on)), f.dropin_path,
                        ' and move %s (applied after it)' % ', '.join(later) if later else ''),
                    settings=dict((k, 'no') for k in sorted(on)), path=f.dropin_path, set_by=set_by)]


def _link_severity(f):
    return 'warning' if _resolution_ok(f) else 'error'


def check_link_missing(f):
    missing = [l for l in f.links if l['state'] == 'missing']
    if not missing:
        return []
    sev = _link_severity(f)
    ev = {'paths': [l['path'] for l in missing], 'targets': sorted(set(l['target'] for l in missing)),
          'runner_resolves_shim': _resolution_ok(f), 'discovery': f.discovery,
          'resolution': [_short_resolution(r) for r in f.resolution_after_restart or []],
          'log_lines': log_errors(f, 'shared_library')}
    out = []
    for target in sorted(set(l['target'] for l in missing)):
        group = [l for l in missing if l['target'] == target]
        out.append(finding('LINK_MISSING', sev, '%d link(s) to %s missing: %s%s' % (
            len(group), target, ', '.join(l['path'] for l in group),
            '' if sev == 'error' else ' (the runners still load the shim: %s)' % _how_resolved(f)),
            dict(ev, paths=[l['path'] for l in group]), 'relink',
            'run cuda_links for %s (names %s) to recreate them' % (
                target, ', '.join(sorted(set(l['name'] for l in group)))),
            target=target, names=sorted(set(l['name'] for l in group)), paths=[l['path'] for l in group],
            replace_files=False))
    return out


def _how_resolved(f):
    steps = sorted(set(r['step'] for r in f.resolution_after_restart or [] if r['step']))
    return ', '.join(steps) or 'n/a'


def _short_resolution(r):
    return {'runner': r['runner'], 'name': r['name'], 'path': r['path'], 'step': r['step'], 'ok': r['ok']}


def check_link_wrong(f):
    out = []
    drivers = set(d['real'] for d in f.drivers)
    wrong = []
    for l in f.links:
        st = l['state']
        if st in ('ok', 'missing', 'dir_missing', 'is_target'):
            continue
        if st in ('elsewhere', 'foreign_file') and realpath(l['path']) in drivers:
            continue   # DRIVER_SHADOW reports it; remediate must not replace a driver
        wrong.append(l)
    if wrong:
        resolved_paths = set(r['path'] for r in f.resolution_after_restart or [] if not r['ok'] and r['path'])
        loaded_wrong = [l['path'] for l in wrong if l['path'] in resolved_paths]
        only_copies = all(l['state'] == 'copy' for l in wrong)
        sev = 'error' if loaded_wrong or (not only_copies and _resolution_ok(f) is not True) else 'warning'
        for target in sorted(set(l['target'] for l in wrong)):
            group = [l for l in wrong if l['target'] == target]
            desc = []
            for l in group:
                if l['state'] == 'dangling':
                    desc.append('%s dangles (-> %s)' % (l['path'], l['link']))
                elif l['state'] == 'elsewhere':
                    desc.append('%s -> %s' % (l['path'], l['link']))
                elif l['state'] == 'copy':
                    desc.append('%s is a regular-file copy of the shim' % l['path'])
                elif l['state'] == 'foreign_file':
                    desc.append('%s is a regular file that is not the shim (sha256 %s)' % (l['path'], l.get('sha256')))
                else:
                    desc.append('%s is a %s' % (l['path'], l.get('on_disk')))
            files = any(l['state'] in ('copy', 'foreign_file') for l in group)
            out.append(finding('LINK_WRONG', sev, '; '.join(desc), {
                'links': [dict((k, l.get(k)) for k in ('path', 'state', 'link', 'sha256', 'resolves_to'))
                          for l in group],
                'loaded_by_runner': loaded_wrong, 'target': target}, 'relink',
                'run cuda_links for %s%s to point them at the shim' % (
                    target, ' with replace_files: true (the files are kept as hidden backups)' if files else ''),
                target=target, names=sorted(set(l['name'] for l in group)), paths=[l['path'] for l in group],
                replace_files=files))
    # a wrong libcuda.so.1 found by a runner outside the managed links
    managed = set(l['path'] for l in f.links)
    stray = {}
    for r in f.resolution_after_restart or []:
        if (r['path'] and not r['ok'] and r['path'] not in managed and realpath(r['path']) not in drivers
                and not (r['step'] or '').startswith(('LD_PRELOAD', '/etc/ld.so.preload'))):
            stray.setdefault(r['path'], []).append(r['runner'])
    for path, runners in sorted(stray.items()):
        out.append(finding('LINK_WRONG', 'error', 'runner(s) %s load %s, which is not the shim' % (
            ', '.join(sorted(set(runners))), path), {'path': path, 'real_path': realpath(path),
                                                   'runners': sorted(set(runners))}, 'manual',
            'remove or rename %s (not managed by this toolkit), or put the shim before it on the runner\'s path'
            % path, path=path))
    return out


def intended_preload(p):
    """The LD_PRELOAD entries our drop-in is meant to have, in order: the preload parameter (the operator's
    ollama_vgpu_unit_preload), else the strategy's - both shims for preload, none for library_path."""
    if p.get('preload') is not None:
        return list(p['preload'])
    if p['strategy'] == 'preload':
        return [p['shim']] + ([p['nvml_shim']] if p.get('nvml_shim') else [])
    return []


def _desired_env_problems(f, env):
    """[(variable, problem)]: what env lacks for the strategy and the intended preload (missing drop-in,
    wrong paths)."""
    p = f.p
    problems = []
    want = intended_preload(p)
    if want:
        entries = split_preload(env.get('LD_PRELOAD'))
        pos = []
        for w in want:
            idx = [i for i, e in enumerate(entries) if e == w or _same_file(e, w)]
            if not idx:
                problems.append(('LD_PRELOAD', 'LD_PRELOAD of the unit does not contain %s' % w))
            else:
                pos.append(idx[0])
        if len(pos) == len(want) and pos != sorted(pos):
            shims = [p['shim'], p.get('nvml_shim')]
            problems.append(('LD_PRELOAD', 'LD_PRELOAD has the NVML shim before the CUDA shim' if want == shims else
                             'LD_PRELOAD does not have %s in this order' % ', '.join(want)))
    if p['strategy'] == 'library_path':
        shim_dir = os.path.dirname(p['shim'])
        dirs = split_path_list(env.get('LD_LIBRARY_PATH'))
        if not dirs or os.path.normpath(dirs[0]) != os.path.normpath(shim_dir):
            problems.append(('LD_LIBRARY_PATH', 'LD_LIBRARY_PATH of the unit does not start with %s' % shim_dir))
    return problems


def _conflict_paths(f):
    return set(c['path'] for c in f.conflicts)


def check_preload_not_applied(f):
    out = []
    problems = _desired_env_problems(f, f.unit_env)
    # a variable that our drop-in has right but another file overrides (or unsets): that file's PRELOAD_CONFLICT
    # (or PRELOAD_MISSING_FILE) carries the fix - moving it; rendering our drop-in again would change nothing
    ours_wrong = set(v for v, _t in _desired_env_problems(f, f.our_env))
    conflicts = _conflict_paths(f)
    explained = [(v, t) for v, t in problems if v not in ours_wrong and _applied_by(f, v) in conflicts]
    problems = [t for v, t in problems if (v, t) not in explained]
    if problems:
        ok = _resolution_ok(f)
        ev = {'problems': problems, 'unit_environment': dict((k, f.unit_env.get(k)) for k in PROCESS_VARIABLES
                                                             if k in f.unit_env),
              'dropin': f.dropin_path, 'dropin_exists': os.path.exists(f.dropin_path),
              'intended_preload': intended_preload(f.p), 'runner_resolves_shim': ok}
        if explained:
            ev['explained_by_conflicts'] = [t for _v, t in explained]
        out.append(finding('PRELOAD_NOT_APPLIED', 'warning' if ok else 'error',
                           'the unit\'s environment is not the %s layout: %s' % (f.p['strategy'], problems[0]),
                           ev, 'rewrite_dropin', 'render %s for the %s strategy (systemd_dropin_env), '
                           'daemon-reload, restart %s' % (f.dropin_path, f.p['strategy'], f.p['unit']),
                           path=f.dropin_path, strategy=f.p['strategy']))
    # the current start could not preload a file that is there and readable now: fixed since, not applied
    uid, gids = f.unit.get('uid'), f.unit.get('gids')
    healed = [x for x in preload_failures(f) if os.path.exists(x['path'])
              and (uid is None or readable_by(x['path'], uid, gids)[0])]
    if healed and next_start_outlook(f)[0]:
        out.append(finding('PRELOAD_NOT_APPLIED', 'error', 'the current start could not preload %s, which is in '
                           'place and readable now: the service has not been restarted since it was fixed'
                           % ', '.join(sorted(set(x['path'] for x in healed))),
                           {'log_lines': [x['line'] for x in healed], 'paths': sorted(set(x['path'] for x in healed))},
                           'restart', 'restart %s' % f.p['unit'], daemon_reload=bool(f.unit.get('reload_pending'))))
    running = f.running_env
    if running is None:
        return out
    diffs = []
    for v in PROCESS_VARIABLES:
        if running.get(v) != f.unit_env.get(v):
            diffs.append({'variable': v, 'running': running.get(v), 'unit': f.unit_env.get(v)})
    reload_needed = f.unit.get('reload_pending')
    if not diffs and not reload_needed:
        return out
    file_diffs = [{'variable': v, 'files': f.unit_env_files.get(v), 'systemd': f.unit_env_shown.get(v)}
                  for v in PROCESS_VARIABLES if f.unit_env_files.get(v) != f.unit_env_shown.get(v)]
    main = [pr for pr in f.processes if pr['role'] == 'main']
    ev = {'main_pid': f.unit.get('main_pid'), 'differences': diffs, 'need_daemon_reload': bool(reload_needed),
          'files_vs_systemd': file_diffs,
          'shim_mapped_in_main': main[0]['shim_mapped'] if main else None,
          'resolution_now': [_short_resolution(r) for r in f.resolution],
          'resolution_after_restart': [_short_resolution(r) for r in f.resolution_after_restart or []]}
    for d in diffs:
        d['source'] = describe_source(f.env_records.get(d['variable'])) if d['variable'] in f.env_records else \
            ('UnsetEnvironment= in %s' % f.unset_by[d['variable']] if d['variable'] in f.unset_by else 'not set')
    what = ', '.join(d['variable'] for d in diffs)
    helps, why_not = next_start_outlook(f)
    ev['restart_predicted_to_help'] = helps
    if why_not:
        ev['next_start_problems'] = why_not
    summary = 'the running service (PID %s) %s' % (
        f.unit.get('main_pid'),
        'does not have the environment its next start gets (%s differ%s)' % (
            what, '; systemd has not reloaded the changed unit files' if reload_needed else '')
        if diffs else 'runs on unit files systemd has not reloaded (daemon-reload needed)')
    if not helps:
        # a restart would apply the difference but the next start has problems of its own (their findings carry
        # the fixes): restarting for this finding alone is not predicted to change the outcome
        out.append(finding('PRELOAD_NOT_APPLIED', 'warning', summary + '; a restart alone would not help: '
                           + why_not[0], ev, 'manual', 'fix what the other findings name first (%s); the restart '
                           'that follows their fixes applies this difference too' % '; '.join(why_not)))
        return out
    sev = ('error' if log_mode(f) != 'gpu' else 'warning') if diffs else 'warning'
    out.append(finding('PRELOAD_NOT_APPLIED', sev, summary, ev, 'restart',
                       '%srestart %s' % ('daemon-reload, then ' if reload_needed else '', f.p['unit']),
                       daemon_reload=bool(reload_needed)))
    return out


def probe_failure_text(r):
    """What went wrong in one driver probe, in a phrase."""
    if r.get('timed_out'):
        return 'hung in %s for more than %.1f s' % (r.get('last_call') or 'the driver', r.get('elapsed') or 0)
    if r.get('error'):
        return r['error']
    c = r.get('cuda') or {}
    if c.get('dlopen_error'):
        return 'libcuda.so.1 cannot be loaded: %s' % c['dlopen_error']
    fc = c.get('failed_call')
    if fc:
        return '%s returned %s %s' % (fc.get('call'), fc.get('rc'), fc.get('error'))
    if not c.get('devices'):
        return 'cuDeviceGetCount reports no device'
    return 'unknown'


def next_start_outlook(f):
    """(helps, reasons): whether a plain restart is predicted to bring the unit up in GPU mode - the next
    start's environment has the layout's variables, every runner resolves the shim, nothing hides the device,
    the start does not fail, and the driver probe (when it ran with that environment) answered. reasons says
    what stands in the way."""
    why = []
    if f.predicted and f.predicted['start_fails']:
        why.append(f.predicted['start_fails'][0])
    why.extend(t for _v, t in _desired_env_problems(f, f.unit_env))
    if _resolution_ok(f) is False:
        bad = [r for r in f.resolution_after_restart or [] if not r['ok']]
        why.append('runner %s would load %s as %s, not the shim' % (bad[0]['runner'], bad[0]['path'] or 'nothing',
                                                                   bad[0]['name']))
    cvd = f.unit_env.get('CUDA_VISIBLE_DEVICES')
    if cvd is not None and visible_device_count(cvd, max(1, len(f.pci['nvidia']))) == 0:
        why.append('the next start still gets CUDA_VISIBLE_DEVICES=%s (from %s)' % (
            cvd, describe_source(f.env_records.get('CUDA_VISIBLE_DEVICES'))))
    if check_llm_library_mismatch(f):
        why.append('the next start still gets OLLAMA_LLM_LIBRARY=%s' % f.unit_env.get('OLLAMA_LLM_LIBRARY'))
    probe = (f.driver_probe or {}).get('next_start')
    if probe and not probe.get('ok'):
        why.append('the driver API fails under the next start\'s environment (%s)' % probe_failure_text(probe))
    return not why, why


def check_preload_hijack_risk(f):
    if not f.unsafe:
        return []
    paths = [u['path'] for u in f.unsafe if u['mode'] is not None]
    return [finding('PRELOAD_HIJACK_RISK', 'error', '%d path(s) that decide what the service loads are writable by '
                    'non-root users: %s' % (len(f.unsafe), '; '.join('%s (%s)' % (u['path'], u['problem'])
                                                                     for u in f.unsafe[:4])),
                    {'components': f.unsafe}, 'fix_shim_mode',
                    'chown root:root and chmod go-w %s' % ', '.join(paths), paths=paths)]


def _probe_where(r):
    return 'as %s, with the next start\'s environment and LD_LIBRARY_PATH=%s' % (
        r.get('as_user'), r.get('ld_library_path') or '')


def check_driver_hang(f):
    r = judged_probe(f)
    if not r or not r.get('timed_out'):
        return []
    c = r.get('cuda') or {}
    sev = 'error' if log_mode(f) != 'gpu' else 'warning'
    return [finding('DRIVER_HANG', sev, 'the driver API did not return within %.1f s: the probe hung in %s of %s (%s)'
                    % (r.get('elapsed') or 0, r.get('last_call') or 'the driver', c.get('loaded') or 'libcuda.so.1',
                       _probe_where(r)),
                    {'probe': probe_evidence(r), 'unkillable': r.get('unkillable'),
                     'log_lines': log_errors(f, 'discovery_timeout')}, 'manual',
                    'the shim waits for its host side: check the hypervisor\'s vGPU service for this VM (and the '
                    'shim\'s own log); restarting Ollama would hang in GPU discovery the same way, so remediate does '
                    'not restart it')]


# what a CUresult means for a vGPU guest, and what to do (cuda.h error values)
_DRIVER_ERROR_ADVICE = {
    100: 'the shim finds no device: the host side gives this VM no vGPU (check the VM\'s vGPU assignment on the '
         'hypervisor)',
    999: 'the shim cannot complete cuInit (CUDA_ERROR_UNKNOWN): it typically cannot reach its host side - check '
         'the hypervisor\'s vGPU service and the shim\'s own log',
    34: 'this is the CUDA toolkit\'s stub library (cuda/lib64/stubs: it exists only to link against): remove it '
        'from the loader path, or point the link at the shim',
    3: 'the driver was not initialised (CUDA_ERROR_NOT_INITIALIZED)',
    101: 'the device ordinal is invalid (check CUDA_VISIBLE_DEVICES and the shim\'s device list)',
    304: 'the shim\'s host-side call failed (CUDA_ERROR_OPERATING_SYSTEM)',
}


def check_driver_api_error(f):
    r = judged_probe(f)
    if not r or r.get('timed_out') or r.get('ok'):
        return []
    c = r.get('cuda') or {}
    if r.get('error') and not c.get('attempted'):
        f.notes.append('driver probe did not run: %s%s' % (r['error'], ' (%s)' % r['output'] if r.get('output') else ''))
        return []
    fc = c.get('failed_call')
    if not c.get('dlopen_error') and not fc:
        return []       # loaded and answered: zero devices (DRIVER_ZERO_DEVICES) or a crash without a call record
    loaded = c.get('loaded')
    is_shim = _loaded_is_shim(f, loaded)
    if c.get('dlopen_error'):
        what = 'libcuda.so.1 cannot be loaded: %s' % c['dlopen_error']
        advice = 'the loader finds no usable libcuda.so.1 for the service: the link and loader findings say why'
    elif fc.get('error') == 'symbol not found':
        what = '%s (%s) has no %s' % (loaded, c.get('loaded_as'), fc.get('call'))
        advice = 'the library loaded as libcuda.so.1 lacks the driver API'
    else:
        what = '%s of %s returned %s %s' % (fc.get('call'), loaded, fc.get('rc'), fc.get('error'))
        advice = _DRIVER_ERROR_ADVICE.get(fc.get('rc'), 'the driver call fails')
    # a static finding (links, driver, the shim's own ELF or checksum) explains the failure: its fix comes first
    # and this one only says what the loaded file does. Otherwise the shim itself fails: nothing in the guest helps
    explained = _static_cause(f)
    sev = 'error' if log_mode(f) != 'gpu' and not explained else 'warning'
    text = '%s%s' % (advice, '' if is_shim or not loaded else ' (%s is not the shim %s)' % (
        loaded, (f.shims.get('cuda') or {}).get('path')))
    return [finding('DRIVER_API_ERROR', sev, 'the driver API fails for the service: %s (%s)' % (what, _probe_where(r)),
                    {'probe': probe_evidence(r), 'loaded_is_shim': is_shim, 'explained_by_static_findings': explained},
                    'manual', text + '; remediate changes nothing for it')]


def check_driver_zero_devices(f):
    r = judged_probe(f)
    if not r or r.get('timed_out'):
        return []
    c = r.get('cuda') or {}
    if c.get('failed_call') or c.get('dlopen_error') or c.get('device_count') != 0:
        return []
    return [finding('DRIVER_ZERO_DEVICES', 'error' if log_mode(f) != 'gpu' else 'warning',
                    'cuInit of %s succeeds but cuDeviceGetCount reports no device (%s)' % (c.get('loaded'), _probe_where(r)),
                    {'probe': probe_evidence(r), 'loaded_is_shim': _loaded_is_shim(f, c.get('loaded'))}, 'manual',
                    'the shim reports no device for this VM: check the vGPU assignment on the host side (and '
                    'CUDA_VISIBLE_DEVICES); nothing in the guest can add one')]


_CUDART_RE = re.compile(r'^libcudart\.so\.(\d+)(?:\.(\d+))?')     # discover/llama_server.go:197@v0.30.11


def cuda_runtime_version(dirs):
    """The CUDA runtime Ollama's driver gate assumes for a backend: the highest libcudart.so.<maj>.<min> in its
    lib dirs, else the cuda_vNN dir name with minor 0 (cudaRuntimeVersion, discover/llama_server.go:400@v0.30.11)."""
    best = None
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            names = []
        for n in names:
            m = _CUDART_RE.match(n)
            if m:
                best = max(best or (0, 0), (int(m.group(1)), int(m.group(2) or 0)))
        m = re.match(r'^cuda_v(\d+)$', os.path.basename(d))
        if m:
            best = max(best or (0, 0), (int(m.group(1)), 0))
    return best


def driver_gate(ollama_version, runtime, compute_major, nvidia_major):
    """(required major or None, rule) of Ollama's driver gate for a CUDA device of the cuda_v12 backend
    (filterOldCUDADriver, discover/cuda_compat.go:21-85@v0.30.11; v0.30.0-v0.30.10 checked only compute < 7
    against 570, discover/cuda_compat.go:10-45@v0.30.1). None: the device is kept."""
    if not nvidia_major or ollama_version is None or ollama_version < (0, 30, 0):
        return None, None
    old_cc = 0 < (compute_major or 0) < 7
    if ollama_version < (0, 30, 11):
        return (570, 'compute capability < 7.0 needs 570 (Ollama 0.30.0-0.30.10)') if old_cc and nvidia_major < 570 \
            else (None, None)
    if not runtime or runtime[0] != 12 or nvidia_major >= 570:
        return None, None
    if runtime >= (12, 4) and nvidia_major < 550:
        return 550, 'the CUDA %d.%d runtime of cuda_v12 may use compressed fatbins: 550 or newer' % runtime
    if runtime >= (12, 8) and old_cc:
        return 570, 'compute capability < 7.0 is JIT-compiled by the CUDA %d.%d runtime: 570 or newer' % runtime
    return None, None


def check_driver_too_old(f):
    r = judged_probe(f)
    if not r:
        return []
    nv, c = r.get('nvml') or {}, r.get('cuda') or {}
    major = nv.get('driver_major')
    if not major:
        return []
    res = log_result(f)
    version = _version_tuple(res.get('ollama_version')) if res else None
    v12 = [d for d in f.cuda_dirs if os.path.basename(d) == 'cuda_v12']
    runtime = cuda_runtime_version([f.p['ollama_lib_dir']] + v12) if v12 else None
    ccs = [int((d.get('compute') or '0').split('.')[0] or 0) for d in c.get('devices') or [] if d.get('compute')]
    cc = min(ccs) if ccs else None
    need, rule = driver_gate(version, runtime, cc, major)
    lines = [l for l in log_errors(f, 'gpu_warning') if 'NVIDIA driver too old' in l]
    ev = {'nvml_driver_version': nv.get('driver_version'), 'driver_major': major, 'ollama_version':
          res.get('ollama_version') if res else None, 'cuda_v12_runtime': '%d.%d' % runtime if runtime else None,
          'compute_capability': cc, 'required': need, 'rule': rule, 'log_lines': lines, 'nvml': nv.get('loaded')}
    fix = 'make the shim report the host\'s real driver: install an NVML shim build that reports %d or newer ' \
          '(nvmlSystemGetDriverVersion), or keep Ollama below 0.30.11 until then; remediate changes nothing for it'
    if need:
        return [finding('DRIVER_TOO_OLD', 'error' if log_mode(f) != 'gpu' or lines else 'warning',
                        'NVML (%s) reports NVIDIA driver %s; Ollama %s drops CUDA devices below %d (%s)%s' % (
                            nv.get('loaded'), nv.get('driver_version'), res.get('ollama_version') if res else '?',
                            need, rule, ': "NVIDIA driver too old" in the current start' if lines else ''),
                        ev, 'manual', fix % need)]
    # not gated by this Ollama, but by the next: 0.30.11+ with its CUDA 12.8 runtime needs 550
    later, _rule = driver_gate((0, 30, 11), (12, 8), cc, major)
    if later and (version is None or version < (0, 30, 11)):
        return [finding('DRIVER_TOO_OLD', 'warning', 'NVML reports NVIDIA driver %s: Ollama 0.30.11 and later drop '
                        'CUDA devices below %d (this Ollama, %s, does not check yet)' % (
                            nv.get('driver_version'), later, res.get('ollama_version') if res else 'unknown'),
                        ev, 'manual', fix % later)]
    return []


def check_nvml_missing(f):
    r = judged_probe(f)
    if not r or r.get('timed_out'):
        return []
    c, nv = r.get('cuda') or {}, r.get('nvml') or {}
    if not nv.get('attempted') or (nv.get('loaded') and not nv.get('failed_call')):
        return []
    fc = nv.get('failed_call')
    what = nv.get('dlopen_error') or '%s returned %s %s' % (fc.get('call'), fc.get('rc'), fc.get('error'))
    lines = [l for l in log_errors(f, 'gpu_warning') if 'could not verify NVIDIA driver' in l]
    ev = {'probe': probe_evidence(r), 'nvml_shim': f.p.get('nvml_shim'), 'log_lines': lines}
    if f.p.get('nvml_shim'):
        text = 'the NVML shim %s is configured but the service does not get it (%s): the shim and link findings ' \
               'say why' % (f.p['nvml_shim'], what)
    else:
        text = 'give Ollama an NVML shim - vgpu_shim_nvml_src in the inventory: site.yml preloads it and links ' \
               'libnvidia-ml.so.1 - so that Ollama 0.30.11+ can check the driver version it reports'
    return [finding('NVML_MISSING', 'warning', 'libnvidia-ml.so.1 is not usable for the service: %s%s' % (
        what, '; Ollama logs "could not verify NVIDIA driver compatibility for CUDA"' if lines else ''), ev, 'manual',
        text)]


def check_discovery_timeout(f):
    lines = log_errors(f, 'discovery_timeout')
    if not lines:
        return []
    gpu = _gpu_start(f)
    probe = judged_probe(f)
    ev = {'log_lines': lines, 'mode': log_mode(f), 'source': (f.log or {}).get('source'),
          'probe_hangs': bool(probe and probe.get('timed_out'))}
    summary = 'GPU discovery timed out in the current start (%d runner(s))%s' % (
        len(lines), '; another backend found the GPU' if gpu else '')
    if probe is not None and (probe.get('timed_out') or not probe.get('ok')):
        # the live probe fails the same way now: a restart is not predicted to change anything
        return [finding('DISCOVERY_TIMEOUT', 'warning' if gpu else 'error', summary, ev, 'manual',
                        'the live driver probe fails too (DRIVER_HANG / DRIVER_API_ERROR): a restart would time out '
                        'again - check the host side of the vGPU')]
    return [finding('DISCOVERY_TIMEOUT', 'warning' if gpu else 'error', summary, ev, 'restart',
                    'restart %s once; if it times out again the shim hangs in cuInit - check the host side of the '
                    'vGPU (the guest cannot fix that)' % f.p['unit'], daemon_reload=False)]


CHECKS = (
    ('NO_DEVICE', check_no_device),
    ('SNAP_OLLAMA', check_snap_ollama),
    ('GLOBAL_PRELOAD', check_global_preload),
    ('UNIT_START_FAILS', check_unit_start_fails),
    ('DRIVER_SHADOW', check_driver_shadow),
    ('SHIM_BAD', check_shim_bad),
    ('SHIM_UNREADABLE', check_shim_unreadable),
    ('SHIM_UNDEFINED_SYMBOL', check_shim_undefined_symbol),
    ('PRELOAD_MISSING_FILE', check_preload_missing_file),
    ('PRELOAD_INTERPOSES_LOADER', check_preload_interposes_loader),
    ('PRELOAD_CONFLICT', check_preload_conflict),
    ('LLM_LIBRARY_MISMATCH', check_llm_library_mismatch),
    ('VISIBLE_DEVICES', check_visible_devices),
    ('SANDBOX', check_sandbox),
    ('LINK_MISSING', check_link_missing),
    ('LINK_WRONG', check_link_wrong),
    ('DRIVER_HANG', check_driver_hang),
    ('DRIVER_API_ERROR', check_driver_api_error),
    ('DRIVER_ZERO_DEVICES', check_driver_zero_devices),
    ('DRIVER_TOO_OLD', check_driver_too_old),
    ('NVML_MISSING', check_nvml_missing),
    ('PRELOAD_NOT_APPLIED', check_preload_not_applied),
    ('PRELOAD_HIJACK_RISK', check_preload_hijack_risk),
    ('DISCOVERY_TIMEOUT', check_discovery_timeout),
)


def order_findings(findings):
    """Errors, then warnings, then info; within a severity by PRIORITY; stable otherwise."""
    return sorted(findings, key=lambda x: (_SEVERITY_RANK[x['severity']], PRIORITY.index(x['code'])))


def diagnose(f):
    findings = []
    for _code, check in CHECKS:
        findings.extend(check(f))
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
    paths = paths or SystemPaths(params.get('root') or '/')
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


def normalize_params(p):
    """Fill strategy-dependent defaults; raise ValueError with a sentence on bad input."""
    p = dict(p)
    if not p.get('shim'):
        p['shim'] = DEFAULT_SHIM[p['strategy']]
    for key in ('shim', 'nvml_shim', 'ollama_lib_dir', 'log_path'):
        if p.get(key) and not os.path.isabs(p[key]):
            raise ValueError('%s must be an absolute path, got %r' % (key, p[key]))
    for key in ('shim', 'nvml_shim', 'ollama_lib_dir'):
        if p.get(key):
            p[key] = os.path.normpath(p[key])
    for d in p.get('link_dirs') or []:
        if not os.path.isabs(d):
            raise ValueError('link_dirs must be absolute paths, got %r' % d)
    if p.get('preload') is not None:
        for e in p['preload']:
            if not e or not os.path.isabs(e) or ':' in e or re.search(r'\s', e):
                raise ValueError('preload must list absolute paths without ":" or whitespace, got %r' % (e,))
        p['preload'] = [os.path.normpath(e) for e in p['preload']]
    for n in p.get('link_names') or []:
        if not n or '/' in n:
            raise ValueError('link_names must be plain file names, got %r' % n)
    if '/' in (p.get('dropin') or '/') or not p['dropin'].endswith('.conf'):
        raise ValueError('dropin must be a file name ending in .conf, got %r' % p.get('dropin'))
    for key in ('shim_sha256', 'nvml_sha256'):
        if p.get(key):
            p[key] = normalize_sha256(p[key])
    if (p.get('log_timeout') or 0) < 0:
        raise ValueError('log_timeout must be 0 or more seconds')
    p.setdefault('history_path', None)
    p.setdefault('driver_probe', 'auto')
    p.setdefault('probe_timeout', PROBE_TIMEOUT)
    if p['history_path'] and not os.path.isabs(p['history_path']):
        raise ValueError('history_path must be an absolute path, got %r' % p['history_path'])
    if p['driver_probe'] not in ('auto', 'always', 'never'):
        raise ValueError('driver_probe must be auto, always or never, got %r' % p['driver_probe'])
    if not 0 < float(p['probe_timeout']) <= 120:
        raise ValueError('probe_timeout must be more than 0 and at most 120 seconds, got %r' % p['probe_timeout'])
    return p


def read_history(f):
    """What the last remediate run recorded ({} when there is no record); read-only."""
    path = f.p.get('history_path')
    if not path:
        return {}
    text = _read_small(f.paths.join(path), 1024 * 1024)
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError as e:
        f.notes.append('%s is not JSON (%s): no remediation history' % (path, e))
        return {}
    return data if isinstance(data, dict) else {}
