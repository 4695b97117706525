"""module_utils/vgpu_elf.py: the stdlib ELF reader on real gcc-built libraries and crafted bad ones."""
import os
import random
import shutil
import struct
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'elf'))
from module_harness import elf  # noqa: E402,F401  (session fixture)

from ansible.module_utils import vgpu_elf  # noqa: E402
from ansible.module_utils.vgpu_elf import (  # noqa: E402
    EM_AARCH64, EM_X86_64, ET_DYN, REQUIRED_SYMBOLS, ElfError, host_machine, parse_elf, read_elf, shim_problems,
)

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

SIM_SHIM = os.path.join(os.path.dirname(__file__), '..', '..', '.build', 'sim', 'shim')


def _sim(rel):
    p = os.path.join(SIM_SHIM, rel)
    if not os.path.exists(p):
        pytest.skip('reference shim %s not built (run simulator/build.sh)' % rel)
    return p


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
