# -*- coding: utf-8 -*-
# Small readers and parsers the doctor's gatherers and checks share (target side, Python 3.8+ stdlib).
"""Small helpers of the doctor: booleans, LD_PRELOAD / LD_LIBRARY_PATH lists, short file reads, file identity."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible.module_utils.vgpu_fs import sha256_file
from ansible.module_utils.vgpu_loader import realpath


_TRUE = ('yes', 'true', 'on', '1')


def is_true(value):
    """A systemd boolean (yes/true/on/1) as written in a unit or shown by systemctl."""
    return (value or '').strip().lower() in _TRUE


def split_preload(value):
    """LD_PRELOAD / ld.so.preload entries: glibc separates them by ':' and blanks."""
    return [w for w in re.split(r'[:\s]+', value or '') if w]


def split_path_list(value):
    """LD_LIBRARY_PATH entries ('' entries mean the current directory to glibc; not a place we judge)."""
    return [w for w in re.split(r'[:;]', value or '') if w]


def read_small(path, limit=65536):
    """The first ``limit`` bytes of a file as text, or None when it cannot be read."""
    try:
        with open(path, 'rb') as f:
            return f.read(limit).decode('utf-8', 'replace')
    except (IOError, OSError):
        return None


def same_file(a, b):
    """Whether a and b are the same file (by inode; by resolved path when one is missing)."""
    if not a or not b:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return realpath(a) == realpath(b)


def sha256_or_none(path):
    """The file's sha256 hex digest, or None when it cannot be read."""
    try:
        return sha256_file(path)
    except (IOError, OSError):
        return None


def version_tuple(text):
    """(0, 12, 6) from an Ollama version string such as '0.12.6-rc1'; None without digits."""
    parts = re.findall(r'\d+', (text or '').split('-')[0])[:3]
    return tuple(int(x) for x in parts) if parts else None


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
