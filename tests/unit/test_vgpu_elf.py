"""module_utils/vgpu_elf.py: the stdlib ELF reader on real gcc-built libraries and crafted bad ones."""
import os
import random
import shutil
import struct
import subprocess
import sys

import pytest
from ansible.module_utils import vgpu_elf
from ansible.module_utils import vgpu_shim_consumers as CON
from ansible.module_utils.vgpu_elf import (
    EM_AARCH64, EM_X86_64, ET_DYN, ElfError, host_machine, parse_elf, read_elf, shim_problems,
)
from ansible.module_utils.vgpu_shim_consumers import REQUIRED_SYMBOLS
from module_harness import SIM_SRC, sim_built

CUDA = REQUIRED_SYMBOLS['cuda']
X86 = EM_X86_64
pytestmark = pytest.mark.skipif(host_machine() != EM_X86_64, reason='fixtures and expectations assume an x86-64 host')


def test_host_machine_mapping():
    assert host_machine('x86_64') == EM_X86_64
    assert host_machine('aarch64') == EM_AARCH64
    assert host_machine('arm64') == EM_AARCH64
    assert host_machine('riscv64') is None
    assert host_machine() in (EM_X86_64, EM_AARCH64, None)


def test_good_cuda_shim(elf):
    info = read_elf(elf['cuda'])
    assert info.elf_class == 64 and info.endian == 'little'
    assert info.machine == host_machine() and info.type == ET_DYN
    assert info.soname == 'libvgpu-cuda.so'
    assert info.symbol_source == 'sections'
    exported = info.exported_symbols()
    for name in CUDA + ['vgpu_shim_abi_version', 'cuCtxSynchronize']:
        assert name in exported
    # hidden and static symbols are not exports
    assert 'vgpu_internal' not in exported and 'hidden_helper' not in exported
    assert info.missing_symbols(CUDA) == []
    assert info.interposed_symbols() == []
    assert shim_problems(info, CUDA, X86) == []


def test_weak_and_object_symbols_count_as_exports(elf):
    info = read_elf(elf['cuda'])
    by_name = dict((s.name, s) for s in info.symbols)
    assert by_name['cuCtxSynchronize'].bind == vgpu_elf.STB_WEAK
    assert by_name['vgpu_shim_abi_version'].type == vgpu_elf.STT_OBJECT
    assert info.missing_symbols(['cuCtxSynchronize', 'vgpu_shim_abi_version']) == []


def test_nvml_and_cudart_defaults(elf):
    assert shim_problems(read_elf(elf['nvml']), REQUIRED_SYMBOLS['nvml'], X86) == []
    assert shim_problems(read_elf(elf['cudart']), REQUIRED_SYMBOLS['cudart'], X86) == []


def test_needed_entries_of_an_executable(elf):
    info = read_elf(elf['exec_nopie'])
    assert 'libc.so.6' in info.needed
    assert info.soname is None


@pytest.mark.parametrize('variant', ['cuda_sysv', 'cuda_gnu'])
def test_hash_styles(elf, variant):
    info = read_elf(elf[variant])
    assert info.missing_symbols(CUDA) == []


@pytest.mark.parametrize('variant', ['noshdr', 'noshdr_sysv', 'noshdr_gnu'])
def test_without_section_headers_reads_pt_dynamic(elf, variant):
    """sstrip-style files: no section headers; symbols come from DT_SYMTAB sized by DT_HASH/DT_GNU_HASH."""
    full = read_elf(elf['cuda'])
    info = read_elf(elf[variant])
    assert info.symbol_source == 'dynamic'
    assert not info.has_section_headers
    assert info.soname == 'libvgpu-cuda.so'
    assert info.exported_symbols() == full.exported_symbols()
    assert shim_problems(info, CUDA, X86) == []


@pytest.mark.skipif(shutil.which('strip') is None, reason='strip not installed')
def test_strip_all_keeps_dynsym(elf):
    info = read_elf(elf['stripped'])
    assert info.missing_symbols(CUDA) == []


@pytest.mark.skipif(shutil.which('readelf') is None, reason='readelf not installed')
def test_exports_match_readelf_on_libc():
    libc = None
    for cand in ('/lib/x86_64-linux-gnu/libc.so.6', '/lib/aarch64-linux-gnu/libc.so.6', '/lib64/libc.so.6'):
        if os.path.exists(cand):
            libc = cand
            break
    if libc is None:
        pytest.skip('no libc.so.6 found')
    info = read_elf(libc)
    out = subprocess.run(['readelf', '-W', '--dyn-syms', libc], stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    expected = set()
    for line in out.splitlines():
        f = line.split()
        if (len(f) >= 8 and f[6] != 'UND' and f[4] in ('GLOBAL', 'WEAK', 'UNIQUE')
                and f[3] in ('FUNC', 'OBJECT', 'IFUNC') and f[5] in ('DEFAULT', 'PROTECTED')):
            expected.add(f[7].split('@')[0])
    assert set(info.exported_symbols()) == expected
    # libc defines every loader function: the interposition check must see them
    assert {'dlopen', 'dlsym', 'open', 'fopen'} <= set(info.interposed_symbols())


def test_missing_cuinit(elf):
    info = read_elf(elf['no_cuinit'])
    problems = shim_problems(info, CUDA, X86)
    assert len(problems) == 1 and 'cuInit' in problems[0]
    assert info.missing_symbols(CUDA) == ['cuInit']


def test_interposing_shim_reported(elf):
    info = read_elf(elf['interpose'])
    assert info.interposed_symbols() == ['dlopen', 'dlsym', 'open']
    assert shim_problems(info, CUDA, X86) == []   # a finding, not a validation error


def test_wrong_machine(elf):
    info = read_elf(elf['aarch64'])
    assert info.machine == EM_AARCH64
    problems = shim_problems(info, CUDA, X86)
    assert problems == ['is built for aarch64, this host is x86-64']


def test_elf32_class(elf):
    with_header = None
    try:
        with_header = read_elf(elf['elf32'])
    except ElfError as e:
        with_header = e.partial
    assert with_header is not None and with_header.elf_class == 32
    assert 'ELF32' in shim_problems(with_header, CUDA, X86, header_only=True)[0]


def test_big_endian_flag(elf):
    with pytest.raises(ElfError) as exc:
        read_elf(elf['bigendian'])
    assert exc.value.partial is not None and exc.value.partial.endian == 'big'
    assert any('big-endian' in p for p in shim_problems(exc.value.partial, CUDA, X86, header_only=True))


def test_et_exec_and_pie_refused(elf):
    assert 'shared object (ET_DYN)' in shim_problems(read_elf(elf['et_exec']), CUDA, X86)[0]
    assert 'shared object (ET_DYN)' in shim_problems(read_elf(elf['exec_nopie']), CUDA, X86)[0]
    pie = read_elf(elf['exec_pie'])
    assert pie.type == ET_DYN and pie.is_pie
    assert 'position-independent executable' in shim_problems(pie, CUDA, X86)[0]


def test_not_elf_and_empty(elf):
    with pytest.raises(ElfError, match='not an ELF file'):
        read_elf(elf['notelf'])
    with pytest.raises(ElfError, match='empty'):
        read_elf(elf['empty'])


def test_not_a_regular_file(tmp_path):
    with pytest.raises(ElfError, match='not a regular file'):
        read_elf(str(tmp_path))


def test_truncated_file(elf):
    with pytest.raises(ElfError, match='truncated'):
        read_elf(elf['truncated'])


def _load_end(data):
    """End of the last PT_LOAD segment in the file (ELF64 little-endian)."""
    phoff, = struct.unpack_from('<Q', data, 32)
    phentsize, phnum = struct.unpack_from('<HH', data, 54)
    end = 0
    for i in range(phnum):
        p_type, _f, p_offset, _v, _p, p_filesz = struct.unpack_from('<IIQQQQ', data, phoff + i * phentsize)
        if p_type == 1:
            end = max(end, p_offset + p_filesz)
    return end


@pytest.mark.parametrize('variant', ['cuda', 'noshdr', 'noshdr_sysv'])
def test_every_truncation_is_a_clean_error(elf, variant):
    """Cut the file at every offset: the reader raises ElfError (never struct.error, IndexError...). With
    section headers any cut is detected; without them, bytes after the last loadable segment are not part of
    the library (the loader never reads them), so only cuts before that point must fail."""
    data = open(elf[variant], 'rb').read()
    must_fail_below = len(data) if variant == 'cuda' else _load_end(data)
    assert 0 < must_fail_below <= len(data)
    offsets = list(range(0, 200)) + list(range(200, len(data), 7)) + [len(data) - 1]
    for n in offsets:
        if n < must_fail_below:
            with pytest.raises(ElfError):
                parse_elf(data[:n], 'cut-%d' % n)
        else:
            try:
                info = parse_elf(data[:n], 'cut-%d' % n)
            except ElfError:
                continue
            assert info.missing_symbols(CUDA) == []
    parse_elf(data)


@pytest.mark.parametrize('variant', ['cuda', 'noshdr_gnu'])
def test_random_corruption_never_tracebacks(elf, variant):
    data = open(elf[variant], 'rb').read()
    rnd = random.Random(20240601)
    for _ in range(1500):
        d = bytearray(data)
        for _k in range(rnd.randint(1, 6)):
            pos = rnd.randrange(min(len(d), 256)) if rnd.random() < 0.5 else rnd.randrange(len(d))
            d[pos] = rnd.randrange(256)
        try:
            parse_elf(bytes(d))
        except ElfError:
            pass


def test_garbage_header_values():
    hdr = bytearray(b'\x7fELF' + bytes([2, 1, 1]) + bytes(9))
    hdr += struct.pack('<HHIQQQIHHHHHH', 3, 62, 1, 0, 64, 0xFFFFFFFFFFFF, 0, 64, 56, 1, 64, 65535, 0)
    with pytest.raises(ElfError):
        parse_elf(bytes(hdr))
    bad_class = bytearray(hdr)
    bad_class[4] = 7
    with pytest.raises(ElfError, match='class'):
        parse_elf(bytes(bad_class))
    with pytest.raises(ElfError, match='truncated'):
        parse_elf(b'\x7fELF\x02\x01')


def test_summary(elf):
    s = read_elf(elf['cuda']).summary()
    assert s['class'] == 'ELF64' and s['soname'] == 'libvgpu-cuda.so' and s['symbols'] >= len(CUDA)


# ------------------------------------------------------------------------------------------- reference shims
# The project's reference shims (simulator/build.sh -> .build/sim/shim/) when they have been built.

def _sim(rel):
    return sim_built(os.path.join('shim', rel), 'reference shim %s' % rel)


@pytest.mark.parametrize('rel,kind', [('libvgpu-cuda.so', 'cuda'), ('libvgpu-nvml.so', 'nvml'),
                                      ('libvgpu-cudart.so', 'cudart')])
def test_reference_shims_pass_defaults(rel, kind):
    info = read_elf(_sim(rel))
    assert shim_problems(info, REQUIRED_SYMBOLS[kind]) == []
    assert info.interposed_symbols() == []


@pytest.mark.parametrize('rel,expect', [
    ('bad/libvgpu-cuda-aarch64.so', 'built for aarch64'),
    ('bad/libvgpu-cuda-elf32.so', 'ELF32'),
    ('bad/libvgpu-cuda-nocuinit.so', 'cuInit'),
    ('bad/libvgpu-cuda-truncated.so', 'truncated'),
])
def test_reference_bad_shims_refused(rel, expect):
    try:
        problems = shim_problems(read_elf(_sim(rel)), CUDA, X86)
    except ElfError as e:
        problems = (shim_problems(e.partial, CUDA, X86, header_only=True) if e.partial else []) or [str(e)]
    assert problems and expect in ' '.join(problems)


def test_reference_interposing_and_undefined():
    assert {'dlopen', 'dlsym'} <= set(read_elf(_sim('bad/libvgpu-cuda-interpose.so')).interposed_symbols())
    undefined = read_elf(_sim('bad/libvgpu-nvml-needs-cuda.so')).undefined_symbols()
    assert any(s.startswith('cu') for s in undefined)     # SHIM_UNDEFINED_SYMBOL evidence


# ------------------------------------------------------------------------------ what real consumers need
# REQUIRED_SYMBOLS['cuda'] / ['nvml'] are derived from SHIM_CONSUMERS (each consumer with its upstream
# evidence); the consumer check reads the same requirement off a file on the host (its UND symbols).

OLLAMA_GIT = os.environ.get('VGPU_OLLAMA_GIT', '/work/.mirror/ollama+ollama/repo')

EXPECTED_CUDA = [
    # Ollama <=0.12.3 discovery, discover/gpu_info_nvcuda.c:22-31@v0.11.10
    'cuInit', 'cuDriverGetVersion', 'cuDeviceGetCount', 'cuDeviceGet', 'cuDeviceGetAttribute', 'cuDeviceGetUuid',
    'cuDeviceGetName', 'cuCtxCreate_v3', 'cuMemGetInfo_v2', 'cuCtxDestroy',
    # Ollama 0.30 native probe, discover/native_probe_linux.go:279@v0.30.11
    'cuDeviceTotalMem_v2',
    # libggml-cuda.so (RTLD_NOW): the VMM pool and CU_CHECK's error strings
    'cuMemGetAllocationGranularity', 'cuMemCreate', 'cuMemAddressReserve', 'cuMemMap', 'cuMemRelease',
    'cuMemSetAccess', 'cuMemUnmap', 'cuMemAddressFree', 'cuGetErrorString',
    # the CUDA runtime (Driver Entry Point Access)
    'cuGetProcAddress', 'cuGetProcAddress_v2', 'cuGetExportTable',
]
EXPECTED_NVML = ['nvmlInit_v2', 'nvmlShutdown', 'nvmlDeviceGetHandleByUUID', 'nvmlDeviceGetMemoryInfo',
                 'nvmlDeviceGetName', 'nvmlErrorString', 'nvmlSystemGetDriverVersion', 'nvmlDeviceGetCount_v2']
CITATION = r'^(?P<path>[\w./-]+):(?P<lines>\d+(?:[-,]\d+)*)@(?P<tag>v[\d.]+)$'


def test_default_lists_are_the_union_of_consumers():
    import re
    assert REQUIRED_SYMBOLS['cuda'] == EXPECTED_CUDA
    assert REQUIRED_SYMBOLS['nvml'] == EXPECTED_NVML
    # the old defaults are all still there (the new list only adds)
    assert set(['cuInit', 'cuDriverGetVersion', 'cuDeviceGetCount', 'cuDeviceGet', 'cuDeviceGetAttribute',
                'cuDeviceGetName', 'cuDeviceTotalMem_v2', 'cuGetProcAddress_v2', 'cuGetErrorString']) <= set(CUDA)
    for kind in ('cuda', 'nvml'):
        derived = []
        for c in CON.SHIM_CONSUMERS:
            if c.kind == kind:
                derived.extend(n for n in c.symbols if n not in derived)
        assert derived == REQUIRED_SYMBOLS[kind]
    for c in CON.SHIM_CONSUMERS:
        assert c.name and c.source and c.how and c.needs
        for need in c.needs:
            # every need has its evidence: path:line@tag, or (the closed-source runtime) the NVIDIA docs, said so
            assert (re.match(CITATION, need.where) or need.where == 'module_utils/vgpu_probe_child.py'
                    or 'no in-repo evidence' in need.where), need
    runtime = [c for c in CON.SHIM_CONSUMERS if 'cuGetExportTable' in c.symbols]
    assert len(runtime) == 1 and 'Driver Entry Point Access' in runtime[0].source
    assert 'no in-repo evidence' in runtime[0].source


def test_citations():
    by = dict(((c.name, n.name), n.where) for c in CON.SHIM_CONSUMERS for n in c.needs)
    assert by[('Ollama <=0.12.3 GPU discovery', 'cuInit')] == 'discover/gpu_info_nvcuda.c:22@v0.11.10'
    assert by[('Ollama <=0.12.3 GPU discovery', 'cuCtxDestroy')] == 'discover/gpu_info_nvcuda.c:31@v0.11.10'
    assert by[('Ollama 0.30 native GPU probe', 'cuDeviceTotalMem_v2')] == 'discover/native_probe_linux.go:279@v0.30.11'
    assert by[('libggml-cuda.so', 'cuMemCreate')] == 'ml/backend/ggml/ggml/src/ggml-cuda/ggml-cuda.cu:569@v0.13.5'
    assert by[('Ollama 0.30 native GPU probe', 'nvmlSystemGetDriverVersion')] == \
        'discover/native_probe_linux.go:404@v0.30.11'
    assert by[('Ollama 0.12.5-0.13 ggml NVML memory query', 'nvmlDeviceGetHandleByUUID')] == \
        'ml/backend/ggml/ggml/src/mem_nvml.cpp:180@v0.13.5'


@pytest.mark.skipif(not os.path.isdir(OLLAMA_GIT), reason='no ollama/ollama git mirror (VGPU_OLLAMA_GIT)')
def test_citations_match_upstream_source():
    """Each path:line@tag names a line of that file at that tag that mentions the symbol."""
    import re
    checked = 0
    for c in CON.SHIM_CONSUMERS:
        for need in c.needs:
            m = re.match(CITATION, need.where)
            if not m:
                continue
            r = subprocess.run(['git', '-C', OLLAMA_GIT, 'show', '%s:%s' % (m.group('tag'), m.group('path'))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
            assert r.returncode == 0, r.stderr
            lines = r.stdout.splitlines()
            for part in m.group('lines').split(','):
                lo, _, hi = part.partition('-')
                text = '\n'.join(lines[int(lo) - 1:int(hi or lo)])
                assert need.name in text, (need, text)
                checked += 1
    assert checked >= 30


def test_missing_export_names_the_consumer(elf):
    problems = shim_problems(read_elf(elf['no_cumemcreate']), CUDA, X86)
    assert problems == ['does not export required symbol cuMemCreate (needed by libggml-cuda.so for its VMM pool, '
                        'ml/backend/ggml/ggml/src/ggml-cuda/ggml-cuda.cu:569@v0.13.5) (a defined global/weak '
                        'function or object in the dynamic symbol table is needed)']
    # a symbol two consumers need names both; one nobody in the table needs is just its name
    assert CON.describe_need('cuInit') == (
        'cuInit (needed by Ollama <=0.12.3 GPU discovery, discover/gpu_info_nvcuda.c:22@v0.11.10; '
        'Ollama 0.30 native GPU probe, discover/native_probe_linux.go:255@v0.30.11)')
    assert CON.describe_need('cuSomethingElse') == 'cuSomethingElse'
    assert 'the CUDA runtime' in CON.describe_need('cuGetExportTable')


def _gcc_so(tmp_path, name, code, *flags):
    src = tmp_path / (name + '.c')
    src.write_text(code)
    out = str(tmp_path / name)
    subprocess.run(['gcc', '-shared', '-fPIC', '-w', '-o', out, str(src)] + list(flags), check=True)
    return out


CONSUMER_C = r'''
extern int cuInit(unsigned int);
extern int cuMemCreate(void *, unsigned long, const void *, unsigned long long);
extern int cuWeakThing(void) __attribute__((weak));
extern int cudaMalloc(void **, unsigned long);
extern int cublasCreate_v2(void **);
extern int nvmlInit_v2(void);
extern int nvmlOptional(void) __attribute__((weak));
int consumer(void)
{
    void *p = 0;
    return cuInit(0) + cuMemCreate(0, 0, 0, 0) + (cuWeakThing ? cuWeakThing() : 0) + cudaMalloc(&p, 1)
        + cublasCreate_v2(&p) + nvmlInit_v2() + (nvmlOptional ? nvmlOptional() : 0);
}
int consumer_defines_this(void) { return 0; }
'''


@pytest.mark.skipif(shutil.which('gcc') is None, reason='gcc not installed')
def test_undefined_symbols_and_consumer_needs(tmp_path):
    info = read_elf(_gcc_so(tmp_path, 'libconsumer.so', CONSUMER_C))
    und = vgpu_elf.undefined_dynamic_symbols(info)
    names = [s.name for s in und]
    assert names == sorted(names) and len(names) == len(set(names))
    assert {'cuInit', 'cuMemCreate', 'cuWeakThing', 'cudaMalloc', 'cublasCreate_v2', 'nvmlInit_v2',
            'nvmlOptional'} <= set(names)
    assert 'consumer_defines_this' not in names and 'consumer' not in names
    assert dict((s.name, s.bind) for s in und)['cuWeakThing'] == vgpu_elf.STB_WEAK
    # cu + capital only: cudaMalloc / cublasCreate_v2 come from the runtime libraries, not the driver shim
    assert vgpu_elf.consumer_needs(info, 'cuda') == (['cuInit', 'cuMemCreate'], ['cuWeakThing'])
    assert vgpu_elf.consumer_needs(info, 'nvml') == (['nvmlInit_v2'], ['nvmlOptional'])
    assert vgpu_elf.consumer_needs(info, 'cudart') == ([], [])


def _sim_ggml(rel):
    return sim_built(os.path.join('ggml', rel), 'simulated backend %s' % rel)


@pytest.mark.parametrize('backend', ['cuda_v12/libggml-cuda.so', 'cuda_v13/libggml-cuda.so'])
def test_simulated_ggml_cuda_references_what_the_real_one_does(backend):
    ggml = read_elf(_sim_ggml(backend))
    required, optional = vgpu_elf.consumer_needs(ggml, 'cuda')
    real = [n.name for c in CON.SHIM_CONSUMERS if c.name == 'libggml-cuda.so' for n in c.needs]
    assert set(real) <= set(required) and optional == []
    assert 'libcuda.so.1' in ggml.needed
    # the reference shim and the toolkit stub satisfy it; the cuInit-less build does not
    assert vgpu_elf.missing_for_consumer(read_elf(_sim('libvgpu-cuda.so')), ggml, 'cuda') == []
    assert vgpu_elf.missing_for_consumer(read_elf(_sim('bad/libcuda-stub.so')), ggml, 'cuda') == []
    assert vgpu_elf.missing_for_consumer(read_elf(_sim('bad/libvgpu-cuda-nocuinit.so')), ggml, 'cuda') == ['cuInit']
    # what the old 9-name default did not ask for, and this backend cannot load without
    old = ['cuInit', 'cuDriverGetVersion', 'cuDeviceGetCount', 'cuDeviceGet', 'cuDeviceGetAttribute',
           'cuDeviceGetName', 'cuDeviceTotalMem_v2', 'cuGetProcAddress_v2', 'cuGetErrorString']
    assert {'cuMemCreate', 'cuMemMap', 'cuMemAddressReserve'} <= set(required) - set(old)


@pytest.mark.skipif(shutil.which('gcc') is None, reason='gcc not installed')
def test_static_check_agrees_with_the_loader(tmp_path):
    """A reference shim built without cuMemCreate: the check says what the real loader (RTLD_NOW) says."""
    ggml = _sim_ggml('cuda_v12/libggml-cuda.so')
    base = _sim_ggml('libggml-base.so')
    libdir = tmp_path / 'lib'
    libdir.mkdir()
    vs = tmp_path / 'hide.map'
    vs.write_text('{ global: *; local: cuMemCreate; };\n')
    shim = str(libdir / 'libcuda.so.1')
    subprocess.run(['gcc', '-O2', '-fPIC', '-fvisibility=hidden', '-std=gnu99', '-w', '-shared', '-nostartfiles',
                    '-Wl,-soname,libcuda.so.1', '-Wl,--version-script=%s' % vs, '-o', shim,
                    os.path.join(SIM_SRC, 'shim', 'vgpu_cuda.c')], check=True)
    info = read_elf(shim)
    assert vgpu_elf.missing_for_consumer(info, read_elf(ggml), 'cuda') == ['cuMemCreate']
    assert shim_problems(info, CUDA, X86) and 'libggml-cuda.so for its VMM pool' in shim_problems(info, CUDA, X86)[0]
    code = ('import ctypes, os, sys\n'
            'ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW | os.RTLD_GLOBAL)\n'
            'ctypes.CDLL(sys.argv[2], mode=os.RTLD_NOW | os.RTLD_LOCAL)\n')
    env = dict(os.environ, LD_LIBRARY_PATH=str(libdir))
    env.pop('LD_PRELOAD', None)
    r = subprocess.run([sys.executable, '-c', code, base, ggml], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode != 0 and 'undefined symbol: cuMemCreate' in r.stderr, r.stderr
    os.symlink(_sim('libvgpu-cuda.so'), str(tmp_path / 'libcuda.so.1'))
    env['LD_LIBRARY_PATH'] = str(tmp_path)
    r = subprocess.run([sys.executable, '-c', code, base, ggml], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0, r.stderr


VMM_PROBE = r'''
import ctypes, json, os, sys
C = ctypes
shim = C.CDLL(sys.argv[1], mode=os.RTLD_NOW | os.RTLD_GLOBAL)
C.CDLL(sys.argv[2], mode=os.RTLD_NOW | os.RTLD_GLOBAL)
ggml = C.CDLL(sys.argv[3], mode=os.RTLD_NOW | os.RTLD_LOCAL)
ggml.ggml_backend_sim_vmm_pool.argtypes = [C.c_int, C.c_size_t]
out = {"init": shim.cuInit(0)}
a = C.c_int(-1); shim.cuDeviceGetAttribute(C.byref(a), 102, 0); out["attr102"] = a.value

class Loc(C.Structure): _fields_ = [("type", C.c_int), ("id", C.c_int)]
class Prop(C.Structure):
    _fields_ = [("type", C.c_int), ("handle_types", C.c_int), ("location", Loc), ("win32", C.c_void_p),
                ("flags", C.c_ubyte * 8)]
class Access(C.Structure): _fields_ = [("location", Loc), ("flags", C.c_int)]
prop = Prop(1, 0, Loc(1, 0))
g = C.c_size_t(); out["gran_rc"] = shim.cuMemGetAllocationGranularity(C.byref(g), C.byref(prop), 1)
out["gran"] = g.value
MB2 = 2 << 20
h = C.c_ulonglong(); out["create_odd"] = shim.cuMemCreate(C.byref(h), MB2 + 1, C.byref(prop), C.c_ulonglong(0))
out["create"] = shim.cuMemCreate(C.byref(h), 2 * MB2, C.byref(prop), C.c_ulonglong(0))
free = C.c_size_t(); tot = C.c_size_t(); ctx = C.c_void_p()
shim.cuCtxCreate_v3(C.byref(ctx), None, 0, 0, 0)
shim.cuMemGetInfo_v2(C.byref(free), C.byref(tot)); out["free_with_alloc"] = free.value
va = C.c_ulonglong()
U, Z = C.c_ulonglong, C.c_size_t
out["reserve"] = shim.cuMemAddressReserve(C.byref(va), Z(1 << 35), Z(0), U(0), U(0))
out["va_aligned"] = va.value % MB2 == 0
out["map"] = shim.cuMemMap(C.c_ulonglong(va.value), C.c_size_t(2 * MB2), C.c_size_t(0), h, C.c_ulonglong(0))
out["map_again"] = shim.cuMemMap(C.c_ulonglong(va.value), C.c_size_t(MB2), C.c_size_t(0), h, C.c_ulonglong(0))
out["release"] = shim.cuMemRelease(h)
out["release_again"] = shim.cuMemRelease(h)
acc = Access(Loc(1, 0), 3)
out["access_unmapped"] = shim.cuMemSetAccess(U(va.value + 2 * MB2), Z(MB2), C.byref(acc), Z(1))
out["access"] = shim.cuMemSetAccess(C.c_ulonglong(va.value), C.c_size_t(2 * MB2), C.byref(acc), C.c_size_t(1))
buf = (C.c_ubyte * 16).from_address(va.value + MB2); buf[0] = 42; out["rw"] = buf[0]
out["free_busy"] = shim.cuMemAddressFree(C.c_ulonglong(va.value), C.c_size_t(1 << 35))
out["unmap_part"] = shim.cuMemUnmap(C.c_ulonglong(va.value), C.c_size_t(MB2))
out["unmap"] = shim.cuMemUnmap(C.c_ulonglong(va.value), C.c_size_t(2 * MB2))
shim.cuMemGetInfo_v2(C.byref(free), C.byref(tot)); out["free_after"] = free.value
out["addr_free"] = shim.cuMemAddressFree(C.c_ulonglong(va.value), C.c_size_t(1 << 35))
out["pool"] = ggml.ggml_backend_sim_vmm_pool(0, 5 << 20)
out["pool_too_big"] = ggml.ggml_backend_sim_vmm_pool(0, 1 << 50)
t = C.c_void_p(1); uuid = C.create_string_buffer(16)
out["export_table"] = shim.cuGetExportTable(C.byref(t), uuid); out["export_ptr"] = t.value
fn = C.c_void_p(); st = C.c_int(-1)
out["gpa"] = dict((n, shim.cuGetProcAddress_v2(n.encode(), C.byref(fn), 12080, C.c_ulonglong(0), C.byref(st)) == 0
                       and bool(fn.value)) for n in sys.argv[4].split(","))
print(json.dumps(out))
'''


def test_reference_shim_vmm_model():
    """The reference shim's VMM calls on the host-memory model, directly and as ggml's pool does them."""
    shim = _sim('libvgpu-cuda.so')
    base, ggml = _sim_ggml('libggml-base.so'), _sim_ggml('cuda_v12/libggml-cuda.so')
    env = {'PATH': '/usr/bin:/bin', 'VGPU_SIM_TOTAL_MIB': '81920', 'VGPU_SIM_FREE_MIB': '80000'}
    r = subprocess.run([sys.executable, '-c', VMM_PROBE, shim, base, ggml, ','.join(CUDA)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import json
    o = json.loads(r.stdout)
    assert o['init'] == 0 and o['attr102'] == 1
    assert o['gran_rc'] == 0 and o['gran'] == 2 << 20
    assert o['create_odd'] == 1 and o['create'] == 0               # size must be a multiple of the granularity
    assert o['free_with_alloc'] == (80000 << 20) - (4 << 20)        # physical memory counts against free
    assert o['reserve'] == 0 and o['va_aligned']
    assert o['map'] == 0 and o['map_again'] == 1                    # no double mapping
    assert o['release'] == 0 and o['release_again'] == 1            # released: the mapping keeps the memory
    assert o['access_unmapped'] == 1 and o['access'] == 0 and o['rw'] == 42
    assert o['free_busy'] == 1                                      # still mapped
    assert o['unmap_part'] == 1 and o['unmap'] == 0                 # whole mappings only
    assert o['free_after'] == 80000 << 20
    assert o['addr_free'] == 0
    assert o['pool'] == 0 and o['pool_too_big'] == 2                # CUDA_ERROR_OUT_OF_MEMORY
    # cuGetExportTable exists and fails honestly: the shim cannot provide NVIDIA's private tables
    assert o['export_table'] == 801 and o['export_ptr'] is None
    # cuGetProcAddress resolves every default symbol
    assert o['gpa'] == dict((n, True) for n in CUDA)


def test_catalogue_names_have_one_owner():
    """The consumer catalogue lives in vgpu_shim_consumers (import it from there); vgpu_elf does not re-export it,
    it only imports the two names its own code uses."""
    for name in ('ShimConsumer', 'SymbolNeed', 'describe_need', 'symbol_consumers'):
        assert getattr(CON, name).__module__ == CON.__name__, name
    for name in ('SHIM_CONSUMERS', 'REQUIRED_SYMBOLS', 'ShimConsumer', 'SymbolNeed', 'symbol_consumers'):
        assert not hasattr(vgpu_elf, name), name
    assert vgpu_elf.describe_need is CON.describe_need
    assert vgpu_elf.CONSUMER_SYMBOL_PATTERNS is CON.CONSUMER_SYMBOL_PATTERNS
