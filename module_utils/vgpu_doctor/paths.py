# -*- coding: utf-8 -*-
# Where the doctor looks and how it asks the host (target side, Python 3.8+ stdlib).
"""``SystemPaths(root)`` puts the fixed system locations (``/etc``, ``/proc``, ``/sys``, ``/snap``, unit and
loader dirs) under a prefix so tests can build a fake host in a temporary directory; paths given as
parameters or written in files (LD_PRELOAD, link targets) are used as written. ``Probe(module)`` is the
doctor's only way to ask the host something beyond reading files (tests replace it).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess

from ansible.module_utils.vgpu_fs import DPKG_INFO_DIR
from ansible.module_utils.vgpu_probe import finish_probes, start_probe
from ansible.module_utils.vgpu_systemctl import systemctl_show_environment, try_systemctl_show
from ansible.module_utils.vgpu_systemd import UNIT_DIRS

# a clean environment for the read-only commands the doctor runs
COMMAND_ENV = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'LC_ALL': 'C'}


def _under_root(*paths):
    """A SystemPaths property: ``paths`` under the root (one path: a string; several: a list)."""
    if len(paths) == 1:
        return property(lambda self: self.join(paths[0]))
    return property(lambda self: [self.join(p) for p in paths])


class SystemPaths(object):
    """Fixed system locations, all under ``root`` (``/`` on a real host; a temporary tree in tests)."""

    ld_so_preload = _under_root('/etc/ld.so.preload')
    ld_so_cache = _under_root('/etc/ld.so.cache')
    proc = _under_root('/proc')
    pci_devices = _under_root('/sys/bus/pci/devices')
    snap_dirs = _under_root('/snap/ollama', '/var/lib/snapd/snap/ollama')
    unit_dirs = _under_root(*UNIT_DIRS)
    systemd_dir = _under_root('/etc/systemd/system')
    dpkg_info_dir = _under_root(DPKG_INFO_DIR)

    def __init__(self, root='/'):
        self.root = os.path.normpath(root or '/')

    def join(self, path):
        if self.root == '/':
            return path
        return os.path.join(self.root, path.lstrip('/'))


class Probe(object):
    """The doctor's only ways to ask the host something beyond reading files. Tests replace it.

    ``show(unit, props)`` -> (dict, None) or (None, reason); ``run(argv, env, timeout)`` -> (rc, out, err);
    ``which(name)`` -> path or None; ``log_source(current_log)`` -> a log source for follow_log."""

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
                               env=env if env is not None else dict(COMMAND_ENV),
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

    def log_source(self, spec):
        """The source of an ollama_follow.CurrentLog (the one opener's record), journalctl in COMMAND_ENV."""
        return spec.open(env=dict(COMMAND_ENV))
