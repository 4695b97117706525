#!/usr/bin/python
# -*- coding: utf-8 -*-
# Say why Ollama is not on the vGPU: read-only evidence for every failure code, most likely cause first.

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: vgpu_doctor
short_description: Diagnose why Ollama on a paravirtual-GPU guest runs on the CPU
description:
  - Collects read-only evidence on the guest for every failure code of the toolkit's failure catalogue and
    returns one finding per problem, ordered most likely root cause first, each with the evidence it rests on
    and a machine-readable fix (C(fix.action)) that C(remediate.yml) acts on.
  - "Evidence: the state of every managed C(libcuda.so.1)/C(libnvidia-ml.so.1) link (the I(link_dirs) plus every
    existing C(<ollama_lib_dir>/cuda_v*) directory); the shims' ELF (class, machine, exports, checksum,
    libc/loader functions they interpose, undefined symbols); their readability as the unit's C(User=)
    (C(Group=), supplementary groups); the environment the unit's next start gets, from every source systemd
    uses, in systemd's precedence - the service manager's environment (C(systemctl show-environment):
    C(DefaultEnvironment=) of C(system.conf) and its drop-ins, C(systemd.setenv=), C(systemctl set-environment)),
    C(PassEnvironment=) (from C(/proc/1/environ)), C(Environment=) of the unit file and its drop-ins in order,
    C(EnvironmentFile=) files (globs, optional C(-) files, systemd's quoting and continuation rules, a later
    file winning), then C(UnsetEnvironment=) - each variable with its source (file and line, or the manager
    environment) in C(environment.sources), against C(/proc/<MainPID>/environ) and the runner processes (its
    children) including whether the shim is mapped in C(/proc/<pid>/maps);
    C(/etc/ld.so.preload); real NVIDIA driver libraries on the loader path (and the dpkg/rpm package that owns
    them); C(OLLAMA_LLM_LIBRARY) against the backend directories; C(CUDA_VISIBLE_DEVICES); C(PrivateDevices=)
    and C(ProtectKernelTunables=); a snap Ollama; PCI devices with vendor 0x10de; and the verdict and
    discovery-error lines of the current Ollama start, read with the same parser as M(ollama_gpu_mode)."
  - "Live evidence (I(driver_probe)): Ollama 0.30+ discards its discovery subprocesses' output at the default log
    level, so a failing driver shows only as the CPU line. The probe asks the driver itself, the way Ollama's
    discovery does, as the unit's user with the next start's environment (one fresh, time-limited subprocess per
    C(cuda_v*) directory, all at once; a second set without C(CUDA_VISIBLE_DEVICES) when that variable hides
    the device, so whether removing it would help is known): every call with its return code, its CUDA/NVML
    error name and its time, and the file really loaded (C(dladdr)). Result in C(driver_probe); findings
    DRIVER_HANG, DRIVER_API_ERROR, DRIVER_ZERO_DEVICES, DRIVER_TOO_OLD, NVML_MISSING."
  - "Fixes are planned only when they are predicted to change the outcome - a restart only when the next start's
    environment differs from the running process's and would be right (the variables of the layout, every
    runner resolving the shim, nothing hiding the device, the start not failing, the probe with that
    environment answering); a variable from an C(EnvironmentFile=), the manager or C(PassEnvironment=) gets
    C(unset_env) at that source (C(fix.sources), each with C(editable) and the manual step where the toolkit
    does not edit it), not a restart."
  - "Loader emulation: for each C(cuda_v*) runner the module works out which file the dynamic loader would load
    as C(libcuda.so.1) (and C(libnvidia-ml.so.1) with I(nvml_shim)), in glibc's order - an already loaded
    object with that SONAME (C(LD_PRELOAD), C(/etc/ld.so.preload)), then the runner's C(LD_LIBRARY_PATH)
    (C(<ollama_lib_dir>), C(<ollama_lib_dir>/cuda_vN), then the service's C(LD_LIBRARY_PATH), as Ollama builds
    it), then C(/etc/ld.so.cache) (parsed directly; C(ldconfig -p) as a fallback), then the loader's built-in
    directories - skipping files the service user cannot read and files of the wrong ELF class or machine, as
    the loader does. The result is in C(resolution) and decides severities, for example a missing link is
    only a warning when the runners still load the shim through C(LD_PRELOAD)."
  - "Ordering: errors before warnings before infos; within a severity by this priority - NO_DEVICE,
    SNAP_OLLAMA, GLOBAL_PRELOAD, UNIT_START_FAILS, DRIVER_SHADOW, SHIM_BAD, SHIM_UNREADABLE, SHIM_UNDEFINED_SYMBOL,
    PRELOAD_MISSING_FILE, PRELOAD_INTERPOSES_LOADER, PRELOAD_CONFLICT, LLM_LIBRARY_MISMATCH, VISIBLE_DEVICES,
    SANDBOX, LINK_MISSING, LINK_WRONG, DRIVER_HANG, DRIVER_API_ERROR, DRIVER_ZERO_DEVICES, DRIVER_TOO_OLD,
    NVML_MISSING, PRELOAD_NOT_APPLIED, PRELOAD_HIJACK_RISK, DISCOVERY_TIMEOUT. An earlier code is the more basic
    cause - one that makes the later ones moot or that must be fixed first."
  - "Read-only: nothing on the host is written. The only commands are C(systemctl show),
    C(systemctl show-environment), C(journalctl), C(ldconfig -p) (when the cache file cannot be parsed),
    C(ld.so --help), C(rpm -qf) (for a suspected driver file dpkg does not know), the driver probe, and, only
    when a shim's ELF shows symbols none of its libraries provide (or the log reports an undefined symbol), a
    load test - a fresh Python that C(dlopen)s the shim with C(LD_BIND_NOW=1) and the unit's C(LD_PRELOAD), as
    the unit's user (C(setpriv), else C(runuser))."
  - Finishes within about 3 seconds on a guest with I(log_timeout=0) (the driver probe adds about 0.05 s, or
    three times I(probe_timeout) when the driver hangs - a probe that runs out of time is tried once more with
    twice the time, so a child that only starved on a busy machine is not taken for a hang).
version_added: "1.0.0"
author: vgpu toolkit contributors
options:
  unit:
    description: The Ollama systemd unit.
    type: str
    default: ollama.service
  strategy:
    description:
      - The layout the host is meant to have - C(preload) (shims in C(/usr/lib64), C(LD_PRELOAD) drop-in, five
        C(libcuda.so.1) links) or C(library_path) (shims and name links in C(/opt/vgpu/lib), C(LD_LIBRARY_PATH)).
      - Decides the defaults of I(shim) and I(link_dirs) and what the unit's environment must contain.
    type: str
    choices: [preload, library_path]
    default: preload
  shim:
    description:
      - The installed CUDA driver shim. Default C(/usr/lib64/libvgpu-cuda.so) (preload) or
        C(/opt/vgpu/lib/libvgpu-cuda.so) (library_path).
    type: path
  nvml_shim:
    description: The installed NVML shim, when there is one (adds C(libnvidia-ml.so.1) to the checked links).
    type: path
  shim_sha256:
    description: Expected sha256 of I(shim) (C(sha256:) prefix allowed); a different file is SHIM_BAD.
    type: str
  nvml_sha256:
    description: Expected sha256 of I(nvml_shim).
    type: str
  link_names:
    description: Link names to check in each directory. Default C(libcuda.so.1), plus C(libnvidia-ml.so.1) when
      I(nvml_shim) is set. A name containing C(nvidia-ml) must point at I(nvml_shim), any other at I(shim).
    type: list
    elements: str
  link_dirs:
    description:
      - Directories that must hold the links. Default for C(preload) the shim's directory, C(/usr/local/lib),
        C(<ollama_lib_dir>), C(<ollama_lib_dir>/cuda_v12), C(<ollama_lib_dir>/cuda_v13); for C(library_path)
        the shim's directory. With C(preload) every existing C(<ollama_lib_dir>/cuda_v*) is added.
      - A directory that does not exist is reported in C(links) (state C(dir_missing)), not as a finding.
    type: list
    elements: path
  ollama_lib_dir:
    description: Ollama's library directory (its C(cuda_v*) subdirectories are the GPU runners' backends).
    type: path
    default: /usr/local/lib/ollama
  dropin:
    description: File name of the toolkit's drop-in in C(/etc/systemd/system/<unit>.d/).
    type: str
    default: vgpu.conf
  require_pci_device:
    description:
      - Whether a PCI device with vendor 0x10de must exist. When false (the simulated fleet, where the reference
        shim stands in for the device) its absence is an C(info) finding, not an error.
    type: bool
    default: true
  log_timeout:
    description:
      - Seconds to wait for the current start's verdict (the log is followed as it grows). C(0) judges what is
        in the log now and keeps the whole run within about 3 seconds.
    type: float
    default: 0
  log_path:
    description: Read the current start from this saved log instead of the unit's own sink (journald or its
      C(StandardError=) file).
    type: path
  load_test:
    description: Allow the C(LD_BIND_NOW) load test of a shim whose ELF shows unresolved symbols.
    type: bool
    default: true
  preload:
    description:
      - The C(LD_PRELOAD) entries our drop-in is meant to have, in order - what the operator's
        C(vgpu_dropin_preload) renders (for example only the NVML shim, with C(libcuda.so.1) links doing
        the rest). PRELOAD_NOT_APPLIED then asks the unit's C(LD_PRELOAD) for these, in this order, and
        SHIM_UNDEFINED_SYMBOL does not propose a drop-in that preloads the CUDA shim when this list leaves it out.
      - Unset - I(shim) then I(nvml_shim) for C(preload); nothing for C(library_path). An empty list expects
        no C(LD_PRELOAD) entry (the C(library_path) check of C(LD_LIBRARY_PATH) stays).
    type: list
    elements: path
  history_path:
    description:
      - The record C(remediate.yml) keeps of the fixes it applied and the mode of the start after them; returned
        as C(history) (read only - the doctor never writes it). A missing file is an empty history.
    type: path
    default: /var/lib/vgpu-toolkit/remediate.json
  driver_probe:
    description:
      - The live driver-API probe - in a fresh subprocess, as the unit's user, with the environment the next
        start gets (and Ollama's library directories first in C(LD_LIBRARY_PATH), as its discovery does), load
        C(libcuda.so.1) and call C(cuInit), C(cuDriverGetVersion), C(cuDeviceGetCount) and, per device, its name,
        memory, compute capability and PCI bus id; then C(libnvidia-ml.so.1) (C(nvmlInit_v2),
        C(nvmlSystemGetDriverVersion), C(nvmlDeviceGetCount_v2)). Read-only, killed after I(probe_timeout).
      - C(auto) runs it when the current start is not in GPU mode (or no verdict was found); C(always) also on
        a GPU-mode host; C(never) skips it.
    type: str
    choices: [auto, always, never]
    default: auto
  probe_timeout:
    description: Seconds one driver probe may take (a shim may hang in C(cuInit)); it is then killed and tried
      once more with twice the time; only a second timeout is reported as DRIVER_HANG.
    type: float
    default: 3.0
  root:
    description:
      - Test hook - a directory that stands in for C(/) for the fixed system locations (C(/etc), C(/proc),
        C(/sys), C(/snap), unit and loader directories). Paths in parameters and in files are used as written.
    type: path
    default: /
attributes:
  check_mode:
    support: full
    description: The module only reads; a check-mode run is the same as a normal run.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
notes:
  - Run as root; as another user the load test runs as that user and some C(/proc) files cannot be read.
  - DT_RPATH/DT_RUNPATH of Ollama's backend libraries are not evaluated.
  - The driver probe does not reproduce the unit's sandbox (C(PrivateDevices=), C(DeviceAllow=), namespaces) -
    SANDBOX reports those. It does not create a CUDA context (that allocates memory on the host GPU); a shim
    that fails only there passes the probe - remediate's history then stops a second attempt.
  - A systemd older than 235 does not know C(UnsetEnvironment=) (C(systemctl show) has no such property); the
    doctor then ignores it too and says so in C(notes).
seealso:
  - module: ollama_gpu_mode
  - module: cuda_links
  - module: systemd_dropin_env
'''

EXAMPLES = r'''
- name: Diagnose the host
  vgpu_doctor:
    nvml_shim: /usr/lib64/libvgpu-nvml.so
    shim_sha256: "{{ vgpu_shim_cuda_sha256 }}"
  register: doctor

- name: Show the most likely cause
  ansible.builtin.debug:
    msg: "{{ doctor.summary }}"

- name: The actions remediate.yml will take, most likely cause first
  ansible.builtin.debug:
    msg: "{{ doctor.findings | selectattr('severity', 'equalto', 'error') | map(attribute='fix') | list }}"

- name: Simulated fleet (no 0x10de device; wait up to 30 s for a start that is under way)
  vgpu_doctor:
    require_pci_device: false
    log_timeout: 30
'''

RETURN = r'''
findings:
  description:
    - One entry per problem, most likely root cause first (see the ordering in the description).
    - C(code) - one of the codes below; C(severity) - C(error), C(warning) or C(info); C(summary) - one sentence;
      C(evidence) - a dict with what the finding rests on (paths, values, C(log_lines), C(load_test) ...);
      C(fix) - a dict with C(action) and its arguments; C(fix_text) - what remediate will do, or what a person
      must do when C(action) is C(manual).
    - "Codes - LINK_MISSING: a managed C(libcuda.so.1)/C(libnvidia-ml.so.1) link is absent (typically after an
      Ollama upgrade); a warning while the runners still load the shim another way."
    - "LINK_WRONG: a managed link points elsewhere, dangles, or is a regular-file copy (a copy of the shim is a
      warning: it works until the shim is updated); or an unmanaged C(libcuda.so.1) that is not the shim is
      what a runner loads."
    - "SHIM_BAD: the shim is missing, not an ELF64 shared object for this machine, truncated, differs from
      I(shim_sha256), or lacks required exports (cuInit, cuDriverGetVersion, cuDeviceGetCount, cuDeviceGet,
      cuDeviceGetAttribute, cuDeviceGetName, cuDeviceTotalMem_v2, cuGetProcAddress_v2, cuGetErrorString;
      nvmlInit_v2, nvmlDeviceGetCount_v2, nvmlShutdown)."
    - "SHIM_UNREADABLE: the unit's user cannot read the shim (or an C(LD_PRELOAD) entry) or search a parent
      directory."
    - "SHIM_UNDEFINED_SYMBOL: the shim uses symbols none of its libraries provide (an NVML shim built against the
      CUDA shim) - an error when the load test or the current start's log shows the failure, a warning when it
      loads only because another preloaded library provides them."
    - "PRELOAD_NOT_APPLIED: the unit's environment lacks the strategy's C(LD_PRELOAD)/C(LD_LIBRARY_PATH) or the
      I(preload) entries (no or wrong drop-in; not reported when our drop-in has them right and a
      PRELOAD_CONFLICT file overrides or unsets them - moving that file is the fix), or the running process's
      environment differs from the unit's (changed without a restart), or systemd has not reloaded changed unit
      files, or the current start failed to preload a file that is fine now."
    - "PRELOAD_MISSING_FILE: C(LD_PRELOAD) names a file that does not exist (the loader prints \"cannot be
      preloaded\")."
    - "PRELOAD_CONFLICT: another drop-in (or the unit file) sets C(LD_PRELOAD), C(LD_LIBRARY_PATH),
      C(CUDA_VISIBLE_DEVICES) or C(OLLAMA_LLM_LIBRARY), or removes one with C(UnsetEnvironment=) - an error when
      its C(LD_PRELOAD)/C(LD_LIBRARY_PATH) is the one the service gets (or the service gets none) and the
      runners then miss the shim. A variable that an C(UnsetEnvironment=) elsewhere removes is not a conflict."
    - "PRELOAD_HIJACK_RISK: a shim, a preloaded library or a directory the runners search (Ollama's own, the
      unit's C(LD_LIBRARY_PATH)) can be changed by a non-root user - code injection into the service."
    - "GLOBAL_PRELOAD: C(/etc/ld.so.preload) loads a vGPU shim into every process on the host."
    - "PRELOAD_INTERPOSES_LOADER: a preloaded library exports libc/loader functions (dlopen, dlsym, open, stat
      ...) and can hijack the runners' backend loading; the cure is the library_path strategy."
    - "DRIVER_SHADOW: a real NVIDIA driver library (dpkg/rpm-owned, versioned driver name, NVIDIA driver strings,
      or a foreign C(libcuda.so.1) SONAME) is on the loader path - an error when a runner loads it, a warning
      when it is only present. Never removed automatically."
    - "LLM_LIBRARY_MISMATCH: C(OLLAMA_LLM_LIBRARY) names no directory in I(ollama_lib_dir) (C(cuda) vs
      C(cuda_v12)) or forces the CPU backend."
    - "VISIBLE_DEVICES: C(CUDA_VISIBLE_DEVICES) is set for the service - an error when it leaves no device
      visible (empty, C(-1), an index past the devices), else a warning."
    - "SANDBOX: the unit has C(PrivateDevices=yes) (an error: the device nodes are hidden) or
      C(ProtectKernelTunables=yes) (a warning: /sys and /proc/sys are read-only, not hidden)."
    - "SNAP_OLLAMA: a snap Ollama is installed - an error when it is the Ollama in use, else a warning."
    - "DISCOVERY_TIMEOUT: the current start logged \"failure during GPU discovery ... failed to finish discovery
      before timeout\" (a warning when the same start still found a GPU)."
    - "NO_DEVICE: no PCI device with vendor 0x10de in the guest (C(info) when I(require_pci_device=false))."
    - "UNIT_START_FAILS: the next start fails before the process runs - an C(EnvironmentFile=) without C(-)
      that is missing, unreadable or not UTF-8 (systemd fails the start with result C(resources)); no restart is
      planned on such a host."
    - "DRIVER_HANG: the live probe did not finish within I(probe_timeout), nor again within twice that
      (C(last_call) says where - typically
      C(cuInit) waiting for the host side); a restart would hang in discovery the same way."
    - "DRIVER_API_ERROR: the live probe could not load C(libcuda.so.1), or a driver call failed - C(cuInit) 100
      (no device), 999 (unknown: the shim cannot reach its host side), 34 (the CUDA toolkit's stub library) ...
      An error when the file that answered is the shim; a warning when another file answered and a static finding
      (links, driver, shim) explains why."
    - "DRIVER_ZERO_DEVICES: C(cuInit) succeeds but C(cuDeviceGetCount) reports no device."
    - "DRIVER_TOO_OLD: NVML's C(nvmlSystemGetDriverVersion) is below the installed Ollama's driver gate (0.30.11+:
      550 when its C(cuda_v12) runtime is 12.4+, 570 for compute capability < 7.0 with 12.8+; 0.30.0-0.30.10: 570
      for compute capability < 7.0), so Ollama drops the CUDA devices (C(NVIDIA driver too old)); a warning when
      only a later Ollama will."
    - "NVML_MISSING: C(libnvidia-ml.so.1) does not load or initialise for the service (a warning: Ollama 0.30.11+
      logs C(could not verify NVIDIA driver compatibility for CUDA) and keeps the devices)."
    - "C(fix.action) keys - C(relink) (run cuda_links for C(fix.target), C(fix.names); C(fix.replace_files) when
      regular files must go), C(reinstall_shim) (install the artifact again at C(fix.path), kind C(fix.kind)),
      C(fix_shim_mode) (chown root:root, chmod 0755 C(fix.paths)), C(rewrite_dropin) (render our drop-in
      C(fix.path) again, daemon-reload, restart), C(move_conflicting_dropin) (move C(fix.path) out of the .d
      directory, daemon-reload, restart), C(unset_env) (take C(fix.variables) out of every source in C(fix.sources) -
      unit files, C(EnvironmentFile=) files, C(PassEnvironment=), C(DefaultEnvironment=), the manager's runtime
      environment - with M(systemd_env_unset), keeping C(fix.keep); refused when C(fix.editable) is false), C(override_sandbox) (write C(fix.settings) into our drop-in,
      daemon-reload, restart), C(remove_global_preload) (remove C(fix.entries) from C(fix.path)),
      C(switch_strategy) (redeploy with C(vgpu_strategy=fix.strategy)), C(restart) (daemon-reload first when
      C(fix.daemon_reload)), C(manual) (nothing automatic - real driver present, no PCI device, snap Ollama,
      a shim that must be rebuilt or an I(preload) list that must gain the CUDA shim, an C(UnsetEnvironment=)
      in the unit file)."
  returned: always
  type: list
  elements: dict
  sample:
    - code: LINK_MISSING
      severity: error
      summary: "2 link(s) to /usr/lib64/libvgpu-cuda.so missing: /usr/local/lib/ollama/libcuda.so.1, ..."
      evidence: {paths: [/usr/local/lib/ollama/libcuda.so.1, /usr/local/lib/ollama/cuda_v12/libcuda.so.1],
                 runner_resolves_shim: false}
      fix: {action: relink, target: /usr/lib64/libvgpu-cuda.so, names: [libcuda.so.1], replace_files: false,
            paths: [/usr/local/lib/ollama/libcuda.so.1, /usr/local/lib/ollama/cuda_v12/libcuda.so.1]}
      fix_text: run cuda_links for /usr/lib64/libvgpu-cuda.so (names libcuda.so.1) to recreate them
healthy:
  description: No error finding, and the current start's verdict (when the log has one) is GPU mode.
  returned: always
  type: bool
verdict:
  description: The current start as the log parser sees it (C(mode), C(devices), C(ollama_version), C(started_at),
    C(discovery_errors), C(evidence), C(source)), or null when the log holds no server start.
  returned: always
  type: dict
resolution:
  description:
    - For each C(cuda_v*) runner and link name, the file the loader would load (C(path), C(real)), the search
      step that found it (C(LD_PRELOAD (SONAME libcuda.so.1)), C(LD_LIBRARY_PATH), C(ld.so.cache),
      C(default dirs)), whether it is the shim (C(ok), C(is_shim), C(copy_of_shim)), a load C(error), the
      candidates the loader would skip (C(skipped)), and which environment it used (C(env) - C(running) for the
      running process's, C(unit) for the unit's).
  returned: always
  type: list
  elements: dict
  sample:
    - {runner: cuda_v12, name: libcuda.so.1, path: /usr/lib64/libvgpu-cuda.so, step: "LD_PRELOAD (SONAME libcuda.so.1)",
       ok: true, env: running}
summary:
  description: One human line - the first error and its summary, or C(healthy (...)).
  returned: always
  type: str
elapsed:
  description: Seconds the diagnosis took.
  returned: always
  type: float
links:
  description: Every managed link with its C(state) (C(ok), C(missing), C(dangling), C(elsewhere), C(copy),
    C(foreign_file), C(is_target), C(not_a_file), C(dir_missing)).
  returned: always
  type: list
  elements: dict
service:
  description: Unit facts (load/active state, main PID, user and groups, sandbox settings, unit file).
  returned: always
  type: dict
environment:
  description: The environment the unit's next start gets (C(unit), every source, after C(UnsetEnvironment=)),
    the running main process's (C(running), null when not running), where each variable comes from
    (C(sources) - C(path:line), or C(manager environment (set_environment)) ...; C(source_details) the full
    records), the variables where the two differ (C(differences), each with its C(source)), the
    C(EnvironmentFile=) settings with the files they matched (C(environment_files)), the unit's
    C(UnsetEnvironment=) list (C(unset)) and which file's entry removed each variable (C(unset_by)), the
    drop-ins in order, and our drop-in's path.
  returned: always
  type: dict
driver_probe:
  description:
    - The live driver probe - C(ran) (false with C(reason) when skipped), C(elapsed), C(per_dir) (one short
      entry per C(cuda_v*) directory probed), C(next_start) (the probe with the next start's environment) and
      C(without_visible_devices) (the same without C(CUDA_VISIBLE_DEVICES), when it hides the device).
    - A probe - C(ok), C(as_user), C(elapsed), C(timed_out), C(last_call), C(lib_dirs), C(ld_library_path),
      C(ld_preload), C(cuda) and C(nvml) (C(loaded) - the real file that provides C(cuInit)/C(nvmlInit_v2),
      C(loaded_as), C(dlopen_error), C(calls) - each C({call, rc, error, ms, value}) -, C(driver_version),
      C(devices) / C(driver_major)), C(output) (what the shim or the loader printed).
  returned: always
  type: dict
history:
  description: What the last C(remediate.yml) run recorded on the host (I(history_path)) - C(last_run) with
    C(at), C(fixes), C(verdict) (the mode of the start after them); {} when there is none.
  returned: always
  type: dict
processes:
  description: The main process and its runner children - the loader-relevant variables of each and whether
    the shim is mapped.
  returned: always
  type: list
  elements: dict
shims:
  description: What the shims are (path, sha256, SONAME, ELF summary, problems, interposed functions).
  returned: always
  type: dict
log_source:
  description: Where the log was read (C(file:<path>) or C(journal:<match>)), null when none could be.
  returned: always
  type: str
notes:
  description: What could not be looked at, and where facts came from.
  returned: always
  type: list
  elements: str
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vgpu_doctor.engine import doctor
from ansible.module_utils.vgpu_doctor.params import normalize_params
from ansible.module_utils.vgpu_doctor.paths import Probe, SystemPaths


def main():
    module = AnsibleModule(
        argument_spec=dict(
            unit=dict(type='str', default='ollama.service'),
            strategy=dict(type='str', default='preload', choices=['preload', 'library_path']),
            shim=dict(type='path'),
            nvml_shim=dict(type='path'),
            shim_sha256=dict(type='str'),
            nvml_sha256=dict(type='str'),
            link_names=dict(type='list', elements='str'),
            link_dirs=dict(type='list', elements='path'),
            ollama_lib_dir=dict(type='path', default='/usr/local/lib/ollama'),
            dropin=dict(type='str', default='vgpu.conf'),
            require_pci_device=dict(type='bool', default=True),
            log_timeout=dict(type='float', default=0),
            log_path=dict(type='path'),
            load_test=dict(type='bool', default=True),
            preload=dict(type='list', elements='path'),
            history_path=dict(type='path', default='/var/lib/vgpu-toolkit/remediate.json'),
            driver_probe=dict(type='str', default='auto', choices=['auto', 'always', 'never']),
            probe_timeout=dict(type='float', default=3.0),
            root=dict(type='path', default='/'),
        ),
        supports_check_mode=True,
    )
    began = time.time()
    try:
        params = normalize_params(module.params)
    except ValueError as e:
        module.fail_json(msg='%s. Nothing was looked at.' % e, changed=False)
    result = doctor(params, SystemPaths(params.root), Probe(module))
    result['elapsed'] = round(time.time() - began, 3)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
