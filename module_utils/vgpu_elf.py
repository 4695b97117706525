# -*- coding: utf-8 -*-
# Stdlib ELF reader for the vGPU modules (target side, Python 3.8+ stdlib only).
"""Read just enough of an ELF file to judge a vGPU shim library.

What it reads: class, byte order, machine, type, DT_SONAME, DT_NEEDED, DT_FLAGS_1 and the dynamic
symbol table. It prefers section headers (.dynsym/.dynstr); when they are stripped or broken it reads
the PT_DYNAMIC segment (DT_SYMTAB/DT_STRTAB, symbol count from DT_HASH or DT_GNU_HASH), which is
what the dynamic loader itself uses. Garbage and truncated input raise ElfError with a sentence,
never struct.error or IndexError.

It also judges a file as a shim: shim_problems() against the exports it must have (REQUIRED_SYMBOLS,
derived from the consumer catalogue SHIM_CONSUMERS in module_utils/vgpu_shim_consumers.py: import both from
there), and consumer_needs() reads the same requirement off a consumer file on the host: its undefined
cu*/nvml* dynamic symbols.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import mmap
import os
import platform
import stat
import struct

# What a shim must export and who needs it is vgpu_shim_consumers' (import those names from there).
from ansible.module_utils.vgpu_shim_consumers import CONSUMER_SYMBOL_PATTERNS, describe_need

# e_ident / header constants (elf.h)
ELFMAG = b'\x7fELF'
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
ET_NONE, ET_REL, ET_EXEC, ET_DYN, ET_CORE = 0, 1, 2, 3, 4
EM_386, EM_ARM, EM_X86_64, EM_AARCH64, EM_RISCV, EM_PPC64, EM_S390 = 3, 40, 62, 183, 243, 21, 22
SHT_DYNAMIC, SHT_DYNSYM = 6, 11
PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_HASH, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT, DT_SONAME = 0, 1, 4, 5, 6, 10, 11, 14
DT_GNU_HASH = 0x6ffffef5
DT_FLAGS_1 = 0x6ffffffb
DF_1_PIE = 0x08000000
SHN_UNDEF = 0
STB_LOCAL, STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 0, 1, 2, 10
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_GNU_IFUNC = 0, 1, 2, 10

MACHINE_NAMES = {
    EM_386: 'i386', EM_ARM: 'arm', EM_X86_64: 'x86-64', EM_AARCH64: 'aarch64',
    EM_RISCV: 'riscv', EM_PPC64: 'ppc64', EM_S390: 's390',
}
TYPE_NAMES = {ET_NONE: 'none', ET_REL: 'relocatable', ET_EXEC: 'executable', ET_DYN: 'shared object',
              ET_CORE: 'core'}
BIND_NAMES = {STB_LOCAL: 'local', STB_GLOBAL: 'global', STB_WEAK: 'weak', STB_GNU_UNIQUE: 'unique'}
SYMTYPE_NAMES = {STT_NOTYPE: 'notype', STT_OBJECT: 'object', STT_FUNC: 'func', STT_GNU_IFUNC: 'ifunc'}

# platform.machine() spellings -> e_machine
_HOST_MACHINES = {
    'x86_64': EM_X86_64, 'amd64': EM_X86_64, 'aarch64': EM_AARCH64, 'arm64': EM_AARCH64,
}

# ---- consumer files on the host (host evidence) -------------------------------------------------------
# Which undefined symbols of a consumer a shim must provide: CONSUMER_SYMBOL_PATTERNS (vgpu_shim_consumers).


def undefined_dynamic_symbols(info):
    """The undefined (UND) named symbols of info's dynamic symbol table, as ElfSymbol objects sorted by name
    (one per name; bind tells a weak reference, which the loader may leave unresolved, from a strong one)."""
    by_name = {}
    for s in info.symbols:
        if s.defined or not s.name or s.bind == STB_LOCAL:
            continue
        # a name listed twice (odd, but possible): strong wins, it is the one that must resolve
        if s.name not in by_name or by_name[s.name].bind == STB_WEAK:
            by_name[s.name] = s
    return [by_name[n] for n in sorted(by_name)]


def consumer_needs(info, kind):
    """(required, optional): names of the undefined symbols of consumer info that a shim of kind provides -
    strong references (the loader refuses the consumer when one is missing under RTLD_NOW) and weak ones
    (left NULL when missing). Both sorted; ([], []) for a kind without a pattern (cudart)."""
    pattern = CONSUMER_SYMBOL_PATTERNS.get(kind)
    if pattern is None:
        return [], []
    required, optional = [], []
    for s in undefined_dynamic_symbols(info):
        if pattern.match(s.name):
            (optional if s.bind == STB_WEAK else required).append(s.name)
    return required, optional


def missing_for_consumer(shim_info, consumer_info, kind):
    """Names a consumer references (strong, undefined, of kind's namespace) that shim_info does not export."""
    required, _optional = consumer_needs(consumer_info, kind)
    have = set(shim_info.exported_symbols())
    return [n for n in required if n not in have]

# libc / loader functions a preloaded library must not define: an LD_PRELOADed definition wins over
# libc for the whole process, and in the field a shim exporting these hijacked Ollama's backend
# loading (PRELOAD_INTERPOSES_LOADER). The cure is the library_path strategy, not a wider list.
LOADER_INTERPOSE_SYMBOLS = frozenset([
    # dynamic loader
    'dlopen', 'dlmopen', 'dlsym', 'dlvsym', 'dlclose', 'dlerror', 'dladdr', 'dladdr1', 'dlinfo',
    'dl_iterate_phdr', '__libc_dlopen_mode', '__libc_dlsym', '_dl_sym',
    # opening and inspecting files (what the loader and Ollama's discovery do)
    'open', 'open64', 'openat', 'openat64', '__open', '__open64', '__open_2', '__open64_2',
    'creat', 'creat64', 'fopen', 'fopen64', 'freopen', 'freopen64', 'fdopen',
    'stat', 'stat64', 'lstat', 'lstat64', 'fstat', 'fstat64', 'fstatat', 'fstatat64', 'statx',
    '__xstat', '__xstat64', '__lxstat', '__lxstat64', '__fxstat', '__fxstat64', '__fxstatat', '__fxstatat64',
    'access', 'faccessat', 'euidaccess', 'eaccess', 'readlink', 'readlinkat', 'realpath', '__realpath_chk',
    'opendir', 'fdopendir', 'readdir', 'readdir64', 'readdir_r', 'scandir', 'scandir64', 'glob', 'glob64',
    'mmap', 'mmap64', 'ioctl', 'close', 'read', 'pread', 'pread64',
    # environment and process creation (runner subprocesses inherit these)
    'getenv', 'secure_getenv', 'setenv', 'unsetenv', 'putenv',
    'execve', 'execv', 'execvp', 'execvpe', 'fexecve', 'posix_spawn', 'posix_spawnp', 'fork', 'vfork',
])

# Bounds against garbage headers that claim absurd sizes.
_MAX_SYMBOLS = 2000000
_MAX_DYN_ENTRIES = 100000
_MAX_STRING = 65536


class ElfError(Exception):
    """The file is not an ELF file this reader can use; str() is a sentence for the user.

    ``partial`` is the ElfInfo read so far (class, byte order, machine, type) when the ELF header itself
    was readable, so a caller can say "built for aarch64" rather than only "corrupt".
    """

    def __init__(self, msg, partial=None):
        super(ElfError, self).__init__(msg)
        self.partial = partial


class ElfSymbol(object):
    __slots__ = ('name', 'bind', 'type', 'defined', 'visibility')

    def __init__(self, name, bind, stype, defined, visibility):
        self.name = name
        self.bind = bind
        self.type = stype
        self.defined = defined
        self.visibility = visibility

    @property
    def exported(self):
        """Defined, global or weak, default/protected visibility: other objects can bind to it."""
        return (self.defined and self.bind in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE)
                and self.visibility in (0, 3) and bool(self.name))

    @property
    def is_code_or_data(self):
        return self.type in (STT_FUNC, STT_OBJECT, STT_GNU_IFUNC)

    def __repr__(self):
        return 'ElfSymbol(%r, %s, %s, defined=%r)' % (
            self.name, BIND_NAMES.get(self.bind, self.bind), SYMTYPE_NAMES.get(self.type, self.type), self.defined)


class ElfInfo(object):
    """What read_elf() found. Only ELF64 and ELF32 are parsed; callers judge the values."""

    def __init__(self):
        self.path = None
        self.size = 0
        self.elf_class = None        # 32 or 64
        self.endian = None           # 'little' or 'big'
        self.machine = None          # e_machine number
        self.type = None             # e_type number
        self.soname = None
        self.needed = []
        self.flags_1 = 0
        self.symbols = []            # [ElfSymbol] from the dynamic symbol table
        self.symbol_source = None    # 'sections' or 'dynamic'
        self.has_section_headers = False
        self.has_dynamic = False

    @property
    def machine_name(self):
        return machine_name(self.machine)

    @property
    def type_name(self):
        return TYPE_NAMES.get(self.type, 'type %s' % self.type)

    @property
    def is_pie(self):
        return bool(self.flags_1 & DF_1_PIE)

    def exported_symbols(self):
        """Names of defined global/weak symbols (functions, data, ifuncs), sorted."""
        return sorted(set(s.name for s in self.symbols if s.exported and s.is_code_or_data))

    def undefined_symbols(self):
        return sorted(set(s.name for s in self.symbols if not s.defined and s.name))

    def missing_symbols(self, required):
        have = set(self.exported_symbols())
        return [name for name in required if name not in have]

    def interposed_symbols(self):
        """Exported libc/loader functions (see LOADER_INTERPOSE_SYMBOLS), sorted."""
        return sorted(set(s.name for s in self.symbols
                          if s.exported and s.type in (STT_FUNC, STT_GNU_IFUNC, STT_NOTYPE)
                          and s.name in LOADER_INTERPOSE_SYMBOLS))

    def summary(self):
        return {
            'class': 'ELF%s' % self.elf_class if self.elf_class else None,
            'endian': self.endian,
            'machine': self.machine_name,
            'type': self.type_name,
            'soname': self.soname,
            'needed': list(self.needed),
            'symbols': len(self.exported_symbols()),
            'symbol_source': self.symbol_source,
        }


def machine_name(machine):
    if machine is None:
        return None
    return MACHINE_NAMES.get(machine, 'e_machine %d' % machine)


def host_machine(uname_machine=None):
    """e_machine of this host (platform.machine(), falling back to os.uname()), or None if unknown."""
    name = uname_machine
    if name is None:
        name = platform.machine() or os.uname()[4]
    return _HOST_MACHINES.get((name or '').lower())


class _Reader(object):
    """Bounds-checked struct access over a bytes-like buffer."""

    def __init__(self, data, what):
        self.data = data
        self.size = len(data)
        self.what = what

    def unpack(self, fmt, offset, field):
        need = struct.calcsize(fmt)
        if offset < 0 or offset + need > self.size:
            raise ElfError('%s is truncated or corrupt: %s needs bytes %d..%d but the file has %d bytes'
                           % (self.what, field, offset, offset + need, self.size))
        return struct.unpack_from(fmt, self.data, offset)

    def cstring(self, offset, limit, field):
        """NUL-terminated string at offset, which must end before limit (end of its string table)."""
        limit = min(limit, self.size)
        if offset < 0 or offset >= limit:
            raise ElfError('%s is corrupt: %s string offset %d is outside its string table (ends at %d)'
                           % (self.what, field, offset, limit))
        end = self.data.find(b'\0', offset, min(limit, offset + _MAX_STRING))
        if end < 0:
            raise ElfError('%s is corrupt: %s string at offset %d is not NUL-terminated' % (self.what, field, offset))
        return bytes(self.data[offset:end]).decode('utf-8', 'replace')


def parse_elf(data, what='file'):
    """Parse ELF bytes (bytes, bytearray or mmap). Raises ElfError on anything unusable."""
    info = ElfInfo()
    try:
        return _parse(data, what, info)
    except ElfError as e:
        raise ElfError(str(e), info if info.machine is not None else None)
    except (struct.error, IndexError, ValueError, OverflowError, MemoryError) as e:
        # Belt and braces: every access is bounds-checked, but garbage must never be a traceback.
        raise ElfError('%s is corrupt: %s' % (what, e), info if info.machine is not None else None)


def read_elf(path):
    """Parse the ELF file at path (follows symlinks, like the loader). Raises ElfError (also for a missing,
    unreadable or non-regular file) or OSError for a read error after opening."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ElfError('%s is not a regular file' % path)
    except OSError as e:
        raise ElfError('%s cannot be read: %s' % (path, e.strerror or e))
    with open(path, 'rb') as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ElfError('%s is not a regular file' % path)
        size = st.st_size
        if size == 0:
            raise ElfError('%s is empty (0 bytes), not an ELF shared library' % path)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            info = parse_elf(mm, path)
        finally:
            mm.close()
    info.path = path
    return info


def _parse(data, what, info):
    r = _Reader(data, what)
    info.size = r.size
    if r.size < 4 or bytes(data[:4]) != ELFMAG:
        raise ElfError('%s is not an ELF file (no \\x7fELF magic)' % what)
    if r.size < 16:
        raise ElfError('%s is truncated: the ELF identification needs 16 bytes, the file has %d' % (what, r.size))
    ei_class = bytearray(data[4:5])[0]
    ei_data = bytearray(data[5:6])[0]
    if ei_class not in (ELFCLASS32, ELFCLASS64):
        raise ElfError('%s has an invalid ELF class byte %d' % (what, ei_class))
    if ei_data not in (ELFDATA2LSB, ELFDATA2MSB):
        raise ElfError('%s has an invalid ELF data-encoding byte %d' % (what, ei_data))
    info.elf_class = 64 if ei_class == ELFCLASS64 else 32
    info.endian = 'little' if ei_data == ELFDATA2LSB else 'big'
    e = '<' if ei_data == ELFDATA2LSB else '>'
    is64 = ei_class == ELFCLASS64

    if is64:
        (e_type, e_machine, _ver, _entry, e_phoff, e_shoff, _flags, _ehsize, e_phentsize, e_phnum,
         e_shentsize, e_shnum, e_shstrndx) = r.unpack(e + 'HHIQQQIHHHHHH', 16, 'the ELF header')
    else:
        (e_type, e_machine, _ver, _entry, e_phoff, e_shoff, _flags, _ehsize, e_phentsize, e_phnum,
         e_shentsize, e_shnum, e_shstrndx) = r.unpack(e + 'HHIIIIIHHHHHH', 16, 'the ELF header')
    info.type = e_type
    info.machine = e_machine

    fmt = _Formats(e, is64)
    segments = _program_headers(r, fmt, e_phoff, e_phentsize, e_phnum)
    loads = [s for s in segments if s[0] == PT_LOAD]
    for _t, p_offset, _vaddr, _memsz, p_filesz in loads:
        # the loader maps these bytes; a file shorter than its segments is a truncated copy
        if p_offset + p_filesz > r.size:
            raise ElfError('%s is truncated: a loadable segment ends at byte %d but the file has %d bytes'
                           % (what, p_offset + p_filesz, r.size))
    sections = _section_headers(r, fmt, e_shoff, e_shentsize, e_shnum)
    info.has_section_headers = bool(sections)

    dyn_entries = None
    dyn_section = [s for s in sections if s['type'] == SHT_DYNAMIC]
    if dyn_section:
        sec = dyn_section[0]
        dyn_entries = _dynamic_entries(r, fmt, sec['offset'], sec['size'])
    else:
        dyn_seg = [s for s in segments if s[0] == PT_DYNAMIC]
        if dyn_seg:
            dyn_entries = _dynamic_entries(r, fmt, dyn_seg[0][1], dyn_seg[0][4])
    info.has_dynamic = dyn_entries is not None
    dyn = {}
    needed_offsets = []
    for tag, val in (dyn_entries or []):
        if tag == DT_NEEDED:
            needed_offsets.append(val)
        elif tag not in dyn:
            dyn[tag] = val
    info.flags_1 = dyn.get(DT_FLAGS_1, 0)

    # Dynamic string table: from the section header of .dynamic (sh_link) or DT_STRTAB via PT_LOAD.
    strtab = None
    if dyn_section and 0 < dyn_section[0]['link'] < len(sections):
        s = sections[dyn_section[0]['link']]
        strtab = (s['offset'], s['offset'] + s['size'])
    elif DT_STRTAB in dyn:
        off = _vaddr_to_offset(loads, dyn[DT_STRTAB], what, 'DT_STRTAB')
        strtab = (off, off + dyn.get(DT_STRSZ, r.size - off))
    if strtab is not None:
        if DT_SONAME in dyn:
            info.soname = r.cstring(strtab[0] + dyn[DT_SONAME], strtab[1], 'DT_SONAME')
        info.needed = [r.cstring(strtab[0] + v, strtab[1], 'DT_NEEDED') for v in needed_offsets]
    elif dyn_entries and (DT_SONAME in dyn or needed_offsets):
        raise ElfError('%s is corrupt: it has a dynamic section but no string table' % what)

    dynsym = [s for s in sections if s['type'] == SHT_DYNSYM]
    if dynsym:
        sec = dynsym[0]
        if not 0 < sec['link'] < len(sections):
            raise ElfError('%s is corrupt: .dynsym links to string table section %d of %d'
                           % (what, sec['link'], len(sections)))
        strsec = sections[sec['link']]
        entsize = sec['entsize'] or fmt.sym_size
        if entsize < fmt.sym_size:
            raise ElfError('%s is corrupt: .dynsym entry size %d is too small' % (what, entsize))
        count = sec['size'] // entsize
        info.symbols = _symbols(r, fmt, sec['offset'], entsize, count,
                                (strsec['offset'], strsec['offset'] + strsec['size']))
        info.symbol_source = 'sections'
    elif DT_SYMTAB in dyn and strtab is not None:
        symoff = _vaddr_to_offset(loads, dyn[DT_SYMTAB], what, 'DT_SYMTAB')
        entsize = dyn.get(DT_SYMENT, fmt.sym_size)
        if entsize < fmt.sym_size:
            raise ElfError('%s is corrupt: DT_SYMENT %d is too small' % (what, entsize))
        count = _dynamic_symbol_count(r, fmt, loads, dyn, symoff, entsize, what)
        info.symbols = _symbols(r, fmt, symoff, entsize, count, strtab)
        info.symbol_source = 'dynamic'
    return info


# struct formats (without byte order) and sizes per class, ELF64 / ELF32: program header, section header,
# symbol, dynamic entry, address
_LAYOUTS = {
    True: (('IIQQQQQQ', 56), ('IIQQQQIIQQ', 64), ('IBBHQQ', 24), ('qQ', 16), ('Q', 8)),
    False: (('IIIIIIII', 32), ('IIIIIIIIII', 40), ('IIIBBH', 16), ('iI', 8), ('I', 4)),
}


class _Formats(object):
    def __init__(self, e, is64):
        self.e = e
        self.is64 = is64
        formats = [(e + f, size) for f, size in _LAYOUTS[is64]]
        (self.ph, self.ph_size), (self.sh, self.sh_size), (self.sym, self.sym_size) = formats[:3]
        (self.dyn, self.dyn_size), (self.addr, self.addr_size) = formats[3:]
        self.word = e + 'I'


def _program_headers(r, fmt, phoff, phentsize, phnum):
    """Program headers as tuples (p_type, p_offset, p_vaddr, p_memsz, p_filesz); [] when absent."""
    if phnum == 0 or phoff == 0:
        return []
    if phentsize < fmt.ph_size:
        raise ElfError('%s is corrupt: program header entry size %d is smaller than %d'
                       % (r.what, phentsize, fmt.ph_size))
    out = []
    for i in range(phnum):
        vals = r.unpack(fmt.ph, phoff + i * phentsize, 'program header %d' % i)
        if fmt.is64:
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align = vals
        else:
            p_type, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _flags, _align = vals
        out.append((p_type, p_offset, p_vaddr, p_memsz, p_filesz))
    return out


def _section_headers(r, fmt, shoff, shentsize, shnum):
    """Section headers as dicts, or [] when absent. A header table past the end of the file is an error:
    that is what a truncated download looks like."""
    if shoff == 0 or shnum == 0:
        return []
    if shentsize < fmt.sh_size:
        raise ElfError('%s is corrupt: section header entry size %d is smaller than %d'
                       % (r.what, shentsize, fmt.sh_size))
    if shoff + shnum * shentsize > r.size:
        raise ElfError('%s is truncated: its section headers end at byte %d but the file has %d bytes'
                       % (r.what, shoff + shnum * shentsize, r.size))
    out = []
    for i in range(shnum):
        (_name, sh_type, _flags, _addr, sh_offset, sh_size, sh_link, _info, _align,
         sh_entsize) = r.unpack(fmt.sh, shoff + i * shentsize, 'section header %d' % i)
        out.append({'type': sh_type, 'offset': sh_offset, 'size': sh_size, 'link': sh_link,
                    'entsize': sh_entsize})
    for sec in out:
        if sec['type'] in (SHT_DYNAMIC, SHT_DYNSYM) and sec['offset'] + sec['size'] > r.size:
            raise ElfError('%s is truncated: a %s section ends at byte %d but the file has %d bytes'
                           % (r.what, '.dynamic' if sec['type'] == SHT_DYNAMIC else '.dynsym',
                              sec['offset'] + sec['size'], r.size))
    return out


def _dynamic_entries(r, fmt, offset, size):
    out = []
    count = min(size // fmt.dyn_size, _MAX_DYN_ENTRIES)
    for i in range(count):
        tag, val = r.unpack(fmt.dyn, offset + i * fmt.dyn_size, 'dynamic entry %d' % i)
        if tag == DT_NULL:
            break
        out.append((tag, val))
    return out


def _vaddr_to_offset(loads, vaddr, what, field):
    for _t, p_offset, p_vaddr, _memsz, p_filesz in loads:
        if p_vaddr <= vaddr < p_vaddr + p_filesz:
            return vaddr - p_vaddr + p_offset
    if not loads:
        # No PT_LOAD (odd, but seen in hand-made files): assume file offset == address.
        return vaddr
    raise ElfError('%s is corrupt: %s address 0x%x is not inside any loadable segment' % (what, field, vaddr))


def _dynamic_symbol_count(r, fmt, loads, dyn, symoff, entsize, what):
    """Number of .dynsym entries without section headers: DT_HASH's nchain, else walk DT_GNU_HASH."""
    if DT_HASH in dyn:
        off = _vaddr_to_offset(loads, dyn[DT_HASH], what, 'DT_HASH')
        _nbucket, nchain = r.unpack(fmt.e + 'II', off, 'DT_HASH header')
        return min(nchain, _MAX_SYMBOLS)
    if DT_GNU_HASH in dyn:
        off = _vaddr_to_offset(loads, dyn[DT_GNU_HASH], what, 'DT_GNU_HASH')
        nbuckets, symoffset, bloom_size, _shift = r.unpack(fmt.e + 'IIII', off, 'DT_GNU_HASH header')
        if nbuckets > _MAX_SYMBOLS or bloom_size > _MAX_SYMBOLS:
            raise ElfError('%s is corrupt: DT_GNU_HASH claims %d buckets' % (what, nbuckets))
        buckets_off = off + 16 + bloom_size * fmt.addr_size
        chains_off = buckets_off + nbuckets * 4
        last = 0
        for i in range(nbuckets):
            (b,) = r.unpack(fmt.word, buckets_off + 4 * i, 'DT_GNU_HASH bucket %d' % i)
            last = max(last, b)
        if last < symoffset:
            return symoffset
        # follow the chain of the highest bucket until the end-of-chain bit
        idx = last
        while idx - symoffset < _MAX_SYMBOLS:
            (h,) = r.unpack(fmt.word, chains_off + 4 * (idx - symoffset), 'DT_GNU_HASH chain %d' % idx)
            idx += 1
            if h & 1:
                break
        return idx
    # Neither hash table: the string table conventionally follows the symbol table.
    if DT_STRTAB in dyn:
        stroff = _vaddr_to_offset(loads, dyn[DT_STRTAB], what, 'DT_STRTAB')
        if stroff > symoff:
            return min((stroff - symoff) // entsize, _MAX_SYMBOLS)
    raise ElfError('%s has no section headers and no DT_HASH/DT_GNU_HASH: cannot size its symbol table' % what)


def _symbols(r, fmt, offset, entsize, count, strtab):
    if count > _MAX_SYMBOLS:
        raise ElfError('%s is corrupt: it claims %d dynamic symbols' % (r.what, count))
    if count and offset + count * entsize > r.size:
        raise ElfError('%s is truncated: its dynamic symbol table ends at byte %d but the file has %d bytes'
                       % (r.what, offset + count * entsize, r.size))
    out = []
    for i in range(count):
        vals = r.unpack(fmt.sym, offset + i * entsize, 'dynamic symbol %d' % i)
        if fmt.is64:
            st_name, st_info, st_other, st_shndx, _value, _size = vals
        else:
            st_name, _value, _size, st_info, st_other, st_shndx = vals
        name = r.cstring(strtab[0] + st_name, strtab[1], 'symbol %d name' % i) if st_name else ''
        out.append(ElfSymbol(name, st_info >> 4, st_info & 0xf, st_shndx != SHN_UNDEF, st_other & 3))
    return out


def shim_problems(info, required_symbols=(), machine=None, header_only=False):
    """Reasons (sentences) why info is not a usable shim for this host; [] when it is.

    machine: expected e_machine (default: this host's). header_only: judge only class, byte order,
    machine and type (for ElfError.partial). Order: the most basic problem first.
    """
    problems = []
    if machine is None:
        machine = host_machine()
    if info.elf_class != 64:
        problems.append('is ELF%s, a 64-bit (ELFCLASS64) library is needed' % info.elf_class)
    if info.endian != 'little':
        problems.append('is %s-endian, a little-endian library is needed' % info.endian)
    if problems:
        # with the wrong class or byte order every later field is read with the wrong layout
        return problems
    if machine is not None and info.machine != machine:
        problems.append('is built for %s, this host is %s' % (info.machine_name, machine_name(machine)))
    if info.type != ET_DYN:
        problems.append('is an ELF %s, a shared object (ET_DYN) is needed' % info.type_name)
    elif info.is_pie:
        problems.append('is a position-independent executable, not a shared library')
    if header_only:
        return problems
    if info.type == ET_DYN and not info.has_dynamic:
        problems.append('has no dynamic section')
    if problems:
        return problems
    missing = info.missing_symbols(required_symbols)
    if missing:
        problems.append('does not export required symbol%s %s (a defined global/weak function or object in the '
                        'dynamic symbol table is needed)' % ('s' if len(missing) > 1 else '',
                                                             ', '.join(describe_need(n) for n in missing)))
    return problems
