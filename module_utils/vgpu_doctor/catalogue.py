# -*- coding: utf-8 -*-
# The failure catalogue of the vgpu_doctor module (target side, Python 3.8+ stdlib).
"""Codes, their priority, fix actions and severities; the check registry.

Every code of ``CODES`` has its place in ``PRIORITY`` and exactly one check function, registered with
``@check(code)`` (the checks_* modules); ``diagnose()`` (engine) runs the registered checks in PRIORITY order.
Adding a code means adding it here and writing its check.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


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

# The unit's sandbox settings that hide the device from the service (SANDBOX).
SANDBOX_SETTINGS = ('PrivateDevices', 'ProtectKernelTunables')


def finding(code, severity, summary, evidence, action, fix_text, **fix):
    assert code in CODES and severity in SEVERITIES and action in ACTIONS, (code, severity, action)
    fx = {'action': action}
    fx.update(fix)
    return {'code': code, 'severity': severity, 'summary': summary, 'evidence': evidence, 'fix': fx,
            'fix_text': fix_text}


def order_findings(findings):
    """Errors, then warnings, then info; within a severity by PRIORITY; stable otherwise."""
    return sorted(findings, key=lambda x: (_SEVERITY_RANK[x['severity']], PRIORITY.index(x['code'])))


# code -> its check, f(facts) -> [finding]; filled by @check in checks_host, checks_env and checks_runtime
CHECKS = {}


def check(code):
    """Register the decorated function as the one check of ``code`` (a code of CODES)."""
    if code not in CODES:
        raise ValueError('%s is not a code of the catalogue' % code)

    def register(fn):
        if CHECKS.get(code, fn).__name__ != fn.__name__:
            raise ValueError('%s has two checks: %s and %s' % (code, CHECKS[code].__name__, fn.__name__))
        CHECKS[code] = fn
        return fn
    return register
