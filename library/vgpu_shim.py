#!/usr/bin/python
# -*- coding: utf-8 -*-
# Install one vGPU shim library after proving it is one (target side, Python 3.8+ stdlib only).

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: vgpu_shim
short_description: Validate and install vGPU shim libraries (and their loader path entry)
description:
  - Checks that each shim is usable for this host before touching its I(dest) - a regular file, ELF64,
    little-endian, built for this host's machine (x86-64 or aarch64), a shared object (ET_DYN, not an
    executable), matching I(sha256), exporting every one of I(required_symbols) from its dynamic
    symbol table, and exporting every C(cu*)/C(nvml*) symbol the I(consumers) installed on the host
    (Ollama's C(libggml-cuda.so)) leave undefined. Any failed check, for any shim of the call, leaves the
    host exactly as it was.
  - Then installs it at I(dest) atomically (a temp file in the same directory renamed into place).
    A symlink at I(dest) is replaced by the file; its target is never written. A directory at I(dest)
    is an error.
  - Idempotent - the same content with the wrong mode, owner or group is fixed in place, without a rewrite.
  - One shim (I(src), I(dest), I(kind)) or all of a host's shims at once (I(shims)); with I(loader_conf)
    the same run also owns the C(/etc/ld.so.conf.d) file that puts the shims' directories on the loader path.
    Running C(ldconfig) is left to the caller (a handler), after the name links exist.
  - "Through its action plugin (the default), I(src) is a file on the controller: its sha256 is taken there,
    a wrong build is refused before anything is sent, and it is uploaded only when I(dest) does not already
    hold exactly that build - a run that changes nothing is one module call and no file transfer.
    With I(remote_src=true), I(src) is a file already on the host."
  - "Without I(src) (module only), I(sha256) is required: the file at I(dest) is validated in place when it has
    that checksum; otherwise the call fails with I(needs_src) and changes nothing."
  - Reports libc/loader functions the shim exports (C(dlopen), C(dlsym), C(open), C(stat), ...) as
    I(interposed_symbols) with a warning - preloaded, such a shim hijacks Ollama's own library loading
    (failure code PRELOAD_INTERPOSES_LOADER); use the library_path strategy for it.
  - The parent directory of I(dest) must exist, unless I(create_parent=true).
version_added: "1.0.0"
author: vgpu toolkit contributors
options:
  src:
    description:
      - The shim file - on the controller (found like M(ansible.builtin.copy) finds I(src), also in a
        role's C(files/)), or on the host with I(remote_src=true).
      - A symlink to a regular file is accepted; it is read through.
      - Mutually exclusive with I(shims).
    type: path
  remote_src:
    description:
      - Whether I(src) (and each I(shims[].src)) is already on the host. Handled by the action plugin.
    type: bool
    default: false
  dest:
    description:
      - Where the shim is installed, for example C(/usr/lib64/libvgpu-cuda.so). Required unless I(shims) is given.
    type: path
  kind:
    description:
      - Which library the shim replaces; selects the default I(required_symbols).
      - C(cuda) - the driver API (stands in for C(libcuda.so.1)); C(nvml) - C(libnvidia-ml.so.1);
        C(cudart) - the runtime API.
    type: str
    choices: [cuda, nvml, cudart]
    default: cuda
  sha256:
    description:
      - Expected sha256 of I(src) (64 hex characters, optionally prefixed C(sha256:)). Recommended - it is
        what tells a stale copy from the intended build.
    type: str
  required_symbols:
    description:
      - Exports the shim must define (global or weak, function or object, in the dynamic symbol table).
      - The defaults for C(cuda) and C(nvml) are the union of what the real consumers of the shim need
        (C(SHIM_CONSUMERS) in module_utils/vgpu_shim_consumers.py, with the upstream evidence per symbol; a
        refusal names the consumer that needs each missing export). Citations are C(path:line@tag) in ollama/ollama.
      - Default for C(cuda), from Ollama <=0.12.3 GPU discovery (all mandatory,
        C(discover/gpu_info_nvcuda.c:22-31@v0.11.10)) - cuInit, cuDriverGetVersion, cuDeviceGetCount,
        cuDeviceGet, cuDeviceGetAttribute, cuDeviceGetUuid, cuDeviceGetName, cuCtxCreate_v3, cuMemGetInfo_v2,
        cuCtxDestroy; from the Ollama 0.30 native probe (C(discover/native_probe_linux.go:250-283@v0.30.11))
        also cuDeviceTotalMem_v2; from C(libggml-cuda.so), which links the driver
        (C(ml/backend/ggml/ggml/src/ggml-cuda/CMakeLists.txt:115-119@v0.13.5)) and is loaded with C(RTLD_NOW)
        (C(ml/backend/ggml/ggml/src/ggml-backend-reg.cpp:173@v0.13.5)), its VMM pool's
        cuMemGetAllocationGranularity, cuMemCreate, cuMemAddressReserve, cuMemMap, cuMemRelease, cuMemSetAccess,
        cuMemUnmap, cuMemAddressFree (C(ggml-cuda.cu:283-293,539-596@v0.13.5)) and cuGetErrorString
        (C(ggml-cuda/common.cuh:222@v0.13.5)); from the CUDA runtime (NVIDIA's Driver API documentation,
        "Driver Entry Point Access"; no in-repo evidence) cuGetProcAddress, cuGetProcAddress_v2 and
        cuGetExportTable (it must exist; a shim may answer it with an error, as the reference one does).
      - Default for C(nvml), from ggml's NVML memory query in Ollama 0.12.5-0.13
        (C(ml/backend/ggml/ggml/src/mem_nvml.cpp:178-184@v0.13.5)) - nvmlInit_v2, nvmlShutdown,
        nvmlDeviceGetHandleByUUID, nvmlDeviceGetMemoryInfo, nvmlDeviceGetName, nvmlErrorString; from the
        Ollama 0.30 native probe (C(discover/native_probe_linux.go:392-404@v0.30.11)) nvmlSystemGetDriverVersion;
        for this toolkit's probe nvmlDeviceGetCount_v2.
      - Default for C(cudart) - cudaGetDeviceCount, cudaGetDevice, cudaSetDevice, cudaMemGetInfo,
        cudaDriverGetVersion, cudaRuntimeGetVersion, cudaGetErrorString.
      - An empty list checks no symbols (I(consumers) are still checked).
    type: list
    elements: str
  backup:
    description:
      - Keep the file being replaced as C(.<name>.<UTC timestamp>.vgpu-backup) in the same directory.
      - The name is hidden on purpose - ldconfig scans loader directories for C(lib*.so*) names and
        would point a SONAME link at a visible backup.
    type: bool
    default: true
  mode:
    description: Permissions of I(dest), octal string.
    type: str
    default: '0755'
  owner:
    description: Owner of I(dest) (name or uid).
    type: str
    default: root
  group:
    description: Group of I(dest) (name or gid).
    type: str
    default: root
  shims:
    description:
      - Several shims in one run, each validated before any is installed. I(backup), I(mode), I(owner),
        I(group) and I(create_parent) apply to all of them.
      - Mutually exclusive with I(src), I(dest), I(kind), I(sha256) and I(required_symbols).
    type: list
    elements: dict
    suboptions:
      src: {type: path, description: As I(src) above.}
      dest: {type: path, required: true, description: As I(dest) above.}
      kind: {type: str, choices: [cuda, nvml, cudart], default: cuda, description: As I(kind) above.}
      sha256: {type: str, description: As I(sha256) above.}
      required_symbols: {type: list, elements: str, description: As I(required_symbols) above.}
  create_parent:
    description: Create a missing parent directory of I(dest) (root-owned, C(0755)) instead of failing.
    type: bool
    default: false
  consumers:
    description:
      - Files on the host that load the shims - host evidence of what they must export, checked for every
        shim of the call (also in check mode, and for an installed build validated in place).
      - Each entry is an absolute path or glob pattern; one that matches nothing is skipped (Ollama not
        installed yet, or another layout). The files matched are reported in I(consumer_files).
      - Every undefined dynamic symbol of a consumer in the namespace of a shim's I(kind) - C(cu) and a
        capital letter (C(cuInit), C(cuMemCreate)) for C(cuda), C(nvml) and a capital letter for C(nvml) -
        must be exported by that shim; otherwise the call fails, naming the consumer file and the missing
        symbols, and changes nothing. C(libggml-cuda.so) is loaded with C(RTLD_NOW), so the real loader would
        refuse it with C(undefined symbol). C(cudaXxx), C(cublasXxx) and the like come from the runtime
        libraries Ollama bundles and are not the shim's; C(cudart) shims are not checked against consumers.
      - A weak undefined reference is optional (the loader leaves it NULL) and is not required.
      - A consumer that cannot be read as an ELF file is reported with a warning and not checked.
      - An empty list checks no consumer files.
    type: list
    elements: str
    default: [/usr/local/lib/ollama/cuda_v*/libggml-cuda.so, /usr/local/lib/ollama/libggml-cuda.so,
              /usr/local/lib/ollama/runners/cuda_v*/libggml_cuda_v*.so,
              /usr/lib/ollama/cuda_v*/libggml-cuda.so, /usr/lib/ollama/libggml-cuda.so]
  loader_conf:
    description:
      - A file in C(/etc/ld.so.conf.d) that lists the directories of the installed shims, one per line, so
        that the loader (after C(ldconfig)) finds them by name. Not managed when unset.
    type: path
  loader_conf_state:
    description: C(present) writes I(loader_conf); C(absent) removes it (for layouts that do not need it).
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Validates everything and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Before/after sha256, SONAME, mode and owner of each I(dest), and the I(loader_conf) text.
notes:
  - The ELF reader is pure Python (module_utils/vgpu_elf.py); it reads section headers, or the
    PT_DYNAMIC segment when section headers are stripped.
  - A warning is also given when I(dest) or one of its directories is writable by a non-root user
    (failure code PRELOAD_HIJACK_RISK).
seealso:
  - module: cuda_links
  - module: systemd_dropin_env
'''

EXAMPLES = r'''
- name: Install the CUDA and NVML shims from the controller and put their directory on the loader path
  vgpu_shim:
    shims:
      - src: files/libvgpu-cuda.so
        dest: /usr/lib64/libvgpu-cuda.so
        kind: cuda
        sha256: "{{ vgpu_cuda_shim_sha256 }}"
      - src: files/libvgpu-nvml.so
        dest: /usr/lib64/libvgpu-nvml.so
        kind: nvml
    loader_conf: /etc/ld.so.conf.d/vgpu.conf
  register: shims
  notify: Refresh loader cache

- name: Install a shim that is already on the host, checking one extra export
  vgpu_shim:
    src: /var/tmp/vgpu/libvgpu-nvml.so
    remote_src: true
    dest: /usr/lib64/libvgpu-nvml.so
    kind: nvml
    required_symbols: [nvmlInit_v2, nvmlDeviceGetCount_v2, nvmlShutdown, nvmlDeviceGetHandleByIndex_v2]

- name: Install the CUDA shim, checking it against an Ollama installed under /opt/ollama
  vgpu_shim:
    src: files/libvgpu-cuda.so
    dest: /opt/vgpu/lib/libvgpu-cuda.so
    consumers: [/opt/ollama/lib/ollama/cuda_v*/libggml-cuda.so]

- name: Validate the installed CUDA shim in place (fails with needs_src when it is not that build)
  vgpu_shim:
    dest: /usr/lib64/libvgpu-cuda.so
    sha256: "{{ vgpu_cuda_shim_sha256 }}"
  check_mode: true
'''

RETURN = r'''
dest:
  description: The installed path (the keys from here to I(backup_file) are given at the top level for the
    one-shim form, and per shim in I(shims)).
  returned: one-shim form
  type: str
sha256:
  description: sha256 of the shim (I(src), and I(dest) after the run).
  returned: always
  type: str
soname:
  description: DT_SONAME of the shim, or null when it has none.
  returned: always
  type: str
needed:
  description: DT_NEEDED entries of the shim.
  returned: always
  type: list
  elements: str
symbols:
  description: Number of exported (defined global/weak function or object) dynamic symbols.
  returned: always
  type: int
interposed_symbols:
  description: Exported libc/loader functions (PRELOAD_INTERPOSES_LOADER); empty is good.
  returned: always
  type: list
  elements: str
  sample: [dlopen, dlsym]
machine:
  description: ELF machine of the shim, for example C(x86-64).
  returned: always
  type: str
consumers_checked:
  description: The I(consumer_files) this shim was checked against (empty for C(cudart), or when no consumer
    file was found).
  returned: always
  type: list
  elements: str
  sample: [/usr/local/lib/ollama/cuda_v12/libggml-cuda.so, /usr/local/lib/ollama/cuda_v13/libggml-cuda.so]
backup_file:
  description: Backup of the replaced file, when one was (or in check mode would be) made.
  returned: when a regular file with other content was replaced and I(backup) is true
  type: str
plan:
  description: The changes, in order - C(install) (new file), C(replace) (other content),
    C(replace_symlink) (a link at I(dest)), C(backup), C(set_attributes) (mode/owner/group only).
  returned: always
  type: list
  elements: dict
changed:
  description: Whether any I(dest) or I(loader_conf) was (or in check mode would be) changed.
  returned: always
  type: bool
shims:
  description: One entry per shim - I(dest), I(kind), I(sha256), I(soname), I(needed), I(symbols),
    I(interposed_symbols), I(machine), I(consumers_checked), I(plan), I(backup_file) - as the top-level keys
    of the one-shim form.
  returned: always
  type: list
  elements: dict
loader_conf:
  description: The loader path file - I(path), I(state), I(dirs) and whether it I(changed).
  returned: when I(loader_conf) is set
  type: dict
consumer_files:
  description:
    - The files the I(consumers) patterns matched, in order, each with the undefined symbols a shim provides -
      I(path), I(symbols) (its strong undefined references a shim provides, a list per kind - C(cuda), C(nvml)),
      I(weak_symbols) (its weak ones, optional, per kind) and I(error) (why the file was not checked, or null).
  returned: always
  type: list
  elements: dict
  sample:
    - path: /usr/local/lib/ollama/cuda_v12/libggml-cuda.so
      symbols: {cuda: [cuDeviceGet, cuDeviceGetAttribute, cuGetErrorString, cuMemAddressFree], nvml: []}
      weak_symbols: {cuda: [], nvml: []}
      error: null
consumer_missing:
  description: On a consumer refusal, per shim and consumer file - I(dest), I(consumer) and the I(symbols) the
    shim lacks.
  returned: when a shim does not export what a consumer file references (the call failed)
  type: list
  elements: dict
needs_src:
  description: The I(dest)s that do not hold the build with the given I(sha256) and had no I(src) (the call failed).
  returned: on that failure
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.vgpu_elf import host_machine
from ansible.module_utils.vgpu_fs import atomic_write, resolve_gid, resolve_uid
from ansible.module_utils.vgpu_shim_plan import (
    DEFAULT_CONSUMERS, Shim, load_consumers, parse_mode, plan_loader_conf, render_state,
)


def main():
    shim_options = dict(
        src=dict(type='path'),
        dest=dict(type='path', required=True),
        kind=dict(type='str', default='cuda', choices=['cuda', 'nvml', 'cudart']),
        sha256=dict(type='str'),
        required_symbols=dict(type='list', elements='str'),
    )
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path'),
            remote_src=dict(type='bool', default=False),
            dest=dict(type='path'),
            kind=dict(type='str', default='cuda', choices=['cuda', 'nvml', 'cudart']),
            sha256=dict(type='str'),
            required_symbols=dict(type='list', elements='str'),
            shims=dict(type='list', elements='dict', options=shim_options),
            backup=dict(type='bool', default=True),
            mode=dict(type='str', default='0755'),
            owner=dict(type='str', default='root'),
            group=dict(type='str', default='root'),
            create_parent=dict(type='bool', default=False),
            consumers=dict(type='list', elements='str', default=list(DEFAULT_CONSUMERS)),
            loader_conf=dict(type='path'),
            loader_conf_state=dict(type='str', default='present', choices=['present', 'absent']),
        ),
        required_one_of=[('dest', 'shims')],
        mutually_exclusive=[('shims', 'src'), ('shims', 'dest'), ('shims', 'sha256'),
                            ('shims', 'required_symbols')],
        supports_check_mode=True,
    )
    p = module.params
    single = p['shims'] is None
    shims = [Shim(p)] if single else [Shim(spec) for spec in p['shims']]
    dests = [s.dest for s in shims]
    what = ', '.join(d for d in dests if d) or 'the shims'

    def refuse(problems, **extra):
        module.fail_json(msg='Refusing to install %s: %s. Nothing was changed.' % (what, '; '.join(problems)),
                         problems=problems, **extra)

    # ---- validate parameters and every shim; any problem fails before anything is touched
    problems = []
    if not shims:
        problems.append('shims is empty: give at least one shim')
    try:
        mode = parse_mode(p['mode'])
    except ValueError as e:
        problems.append(str(e))
        mode = None
    uid = gid = None
    try:
        uid = resolve_uid(p['owner'])
    except ValueError as e:
        problems.append(str(e))
    try:
        gid = resolve_gid(p['group'])
    except ValueError as e:
        problems.append(str(e))
    twice = sorted(set(d for d in dests if d and dests.count(d) > 1))
    if twice:
        problems.append('dest %s is given for more than one shim' % ', '.join(twice))
    if p['loader_conf'] and not os.path.isabs(p['loader_conf']):
        problems.append('loader_conf must be an absolute path, got %r' % p['loader_conf'])
    consumers, consumer_problems = load_consumers(p['consumers'])
    problems.extend(consumer_problems)
    if problems:
        refuse(problems)
    consumer_files = [c.result() for c in consumers]
    for c in consumers:
        if c.error:
            module.warn('consumer %s was not checked: %s' % (c.path, c.error))
    machine = host_machine()
    for s in shims:
        s.check(machine, mode, uid, gid, p['backup'], p['create_parent'], consumers)
        problems.extend(s.problems)
    if problems:
        extra = {}
        missing = [m for s in shims for m in s.consumer_missing]
        if missing:
            extra['consumer_missing'] = missing
        refuse(problems, dest=dests[0] if single else dests, src=p['src'] if single else None,
               consumer_files=consumer_files, **extra)
    needs_src = [s.dest for s in shims if s.needs_src]
    if needs_src:
        module.fail_json(msg='%s does not hold the build with the given sha256 and no src was given: give src '
                             '(through the vgpu_shim action it is uploaded from the controller). Nothing was '
                             'changed.' % ', '.join(needs_src), needs_src=needs_src)

    # ---- the loader path file
    loader_step, loader_before, loader_after, loader = None, '', '', None
    if p['loader_conf']:
        dirs = sorted(set(os.path.dirname(d) for d in dests))
        loader_step, loader_before, loader_after, problems = plan_loader_conf(
            p['loader_conf'], p['loader_conf_state'], dirs)
        if problems:
            refuse(problems)
        loader = dict(path=p['loader_conf'], state=p['loader_conf_state'], dirs=dirs, changed=bool(loader_step))

    plan = [step for s in shims for step in s.plan] + ([loader_step] if loader_step else [])
    changed = bool(plan)

    def report():
        """The result's shims and plan, as they stand (apply fills in the backups it made)."""
        out = dict(changed=changed, shims=[s.result() for s in shims], consumer_files=consumer_files,
                   plan=[dict((k, v) for k, v in step.items() if k != 'content') for step in plan])
        if loader:
            out['loader_conf'] = loader
        if single:
            out.update(out['shims'][0], plan=out['plan'], src=p['src'])
        return out

    result = report()
    if module._diff:
        before = ''.join(render_state(s.dest, s.before) for s in shims)
        after = ''.join(render_state(s.dest, s.after) for s in shims)
        if loader:
            before += '%s:\n%s' % (p['loader_conf'], loader_before or '(absent)\n')
            after += '%s:\n%s' % (p['loader_conf'], loader_after or '(absent)\n')
        result['diff'] = {'before': before, 'after': after, 'before_header': what,
                          'after_header': '%s (from %s)' % (what, p['src']) if single and p['src'] else what}
    for s in shims:
        for w in s.warnings:
            module.warn(w)

    if not changed or module.check_mode:
        module.exit_json(**result)

    # ---- apply: every shim, then the loader path (ldconfig is the caller's, after the links)
    current = None
    try:
        for s in shims:
            current = s.dest
            s.apply(module, mode, uid, gid)
        if loader_step:
            current = loader_step['path']
            if loader_step['action'] == 'write_loader_conf':
                atomic_write(current, loader_step['content'].encode('utf-8'), 0o644, 0, 0, module=module)
            else:
                os.unlink(current)
    except (IOError, OSError, ValueError) as e:
        module.fail_json(msg='Installing %s failed: %s; the shims before it in the list were installed, the rest '
                             'were not. Fix the cause and run again.' % (current, e), **result)
    result.update(report())
    module.exit_json(**result)


if __name__ == '__main__':
    main()
