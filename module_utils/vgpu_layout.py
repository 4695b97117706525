# -*- coding: utf-8 -*-
# The toolkit's layout, defined once for the modules (target side, Python 3.8+ stdlib).
"""Where things live on a host, per strategy - the fallbacks the modules use when a task passes nothing.

The roles take the same values from roles/vgpu/defaults/main.yml (vgpu_strategy, vgpu_shim_dir,
vgpu_ollama_lib_dir, vgpu_link_dirs, vgpu_unit, vgpu_dropin) and always pass them explicitly; a test keeps
the two equal (tests/unit/test_vgpu_layout.py).

preload       shims in /usr/lib64, LD_PRELOAD drop-in, libcuda.so.1 links in the five places the loader
              and Ollama's discovery may look (the shim dir, /usr/local/lib, Ollama's lib dir and its
              cuda_v12 / cuda_v13 backend dirs)
library_path  shims and their name links in /opt/vgpu/lib, LD_LIBRARY_PATH / OLLAMA_LIBRARY_PATH drop-in
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os

STRATEGIES = ('preload', 'library_path')
SHIM_DIRS = {'preload': '/usr/lib64', 'library_path': '/opt/vgpu/lib'}
OLLAMA_LIB_DIR = '/usr/local/lib/ollama'
UNIT = 'ollama.service'
DROPIN = 'vgpu.conf'
CUDA_SHIM = 'libvgpu-cuda.so'
NVML_SHIM = 'libvgpu-nvml.so'


def shim_dir(strategy):
    """The directory the shims are installed in for ``strategy``."""
    return SHIM_DIRS[strategy]


def default_link_dirs(strategy, shim_dir_path=None, ollama_lib_dir=OLLAMA_LIB_DIR):
    """The directories that get the libcuda.so.1 links for ``strategy`` (before cuda_v* discovery)."""
    shim_dir_path = shim_dir_path or SHIM_DIRS[strategy]
    if strategy == 'library_path':
        return [shim_dir_path]
    return [shim_dir_path, '/usr/local/lib', ollama_lib_dir, os.path.join(ollama_lib_dir, 'cuda_v12'),
            os.path.join(ollama_lib_dir, 'cuda_v13')]


def cuda_dirs(ollama_lib_dir):
    """Existing <ollama_lib_dir>/cuda_v* directories, sorted (each is one runner's backend dir)."""
    if not os.path.isdir(ollama_lib_dir):
        return []
    found = [d for d in glob.glob(os.path.join(glob.escape(ollama_lib_dir), 'cuda_v*')) if os.path.isdir(d)]
    return sorted(os.path.normpath(d) for d in found)


def unique_dirs(dirs):
    """``dirs`` normalized, first occurrence kept."""
    out = []
    for d in dirs:
        d = os.path.normpath(d)
        if d not in out:
            out.append(d)
    return out
