# -*- coding: utf-8 -*-
# What the doctor found on the host: the fact record and the order of gathering (target side).
"""``gather(params, paths, probe)`` fills one ``Facts`` record, area by area (gather_unit, log, gather_host,
resolution, probes). It never writes; checks read the record, never the host.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible.module_utils.vgpu_doctor.gather_host import (
    gather_drivers, gather_links, gather_pci, gather_processes, gather_shims, gather_snap, gather_unsafe,
)
from ansible.module_utils.vgpu_doctor.gather_unit import gather_unit
from ansible.module_utils.vgpu_doctor.log import gather_log
from ansible.module_utils.vgpu_doctor.params import as_params
from ansible.module_utils.vgpu_doctor.probes import gather_driver_probe, gather_load_tests
from ansible.module_utils.vgpu_doctor.resolution import gather_loader, gather_preload, gather_resolution
from ansible.module_utils.vgpu_elf import host_machine


TIME_BUDGET = 2.7        # the doctor's own seconds (log_timeout > 0 adds its wait)


class Facts(object):
    """Everything gather() found; checks read it, never the host. One attribute per fact, by area (the
    gatherer that fills it in brackets); dict-valued ones keep the keys the module's result shows."""

    __slots__ = (
        'params', 'paths', 'machine', 'notes', 'deadline',
        # the unit (gather_unit)
        'unit', 'unit_env', 'unit_env_shown', 'unit_env_files', 'env_sources', 'env_records', 'predicted',
        'unset', 'unset_by', 'our_env', 'dropin_path', 'dropins', 'conflicts',
        # the log of the current start (log)
        'log',
        # the host (gather_host)
        'running_env', 'processes', 'shims', 'links', 'cuda_dirs', 'drivers', 'pci', 'snap', 'unsafe',
        # the loader's view (resolution)
        'cache', 'cache_source', 'default_dirs', 'global_preload', 'preload_entries', 'resolution',
        'resolution_after_restart', 'discovery',
        # what the doctor ran as the service user (probes)
        'load_tests', 'load_tests_unmatched_log', 'driver_probe',
    )

    def __init__(self, params, paths):
        self.params = params        # a params.Params record
        self.paths = paths          # a paths.SystemPaths
        self.machine = None         # the host's ELF e_machine
        self.notes = []
        self.deadline = time.time() + TIME_BUDGET
        self.unit = {}              # name, props, unit_file, load/active/sub state, main_pid, user, uid, gids, ...
        self.unit_env = {}          # the unit's environment at its next start (see gather_unit)
        self.unit_env_shown = {}    # as `systemctl show -p Environment` reports it now
        self.unit_env_files = {}    # merged from the unit file and drop-ins
        self.env_sources = {}       # {variable: the file that sets it for the next start (None: the manager)}
        self.env_records = {}       # {variable: its source record (vgpu_unit_env), with file and line}
        self.predicted = None       # vgpu_unit_env.predict_environment() of the next start
        self.unset = []             # the unit's UnsetEnvironment= list: [{'entry', 'path'}]
        self.unset_by = {}          # {variable: file whose UnsetEnvironment= removes it}
        self.our_env = {}           # what our drop-in alone assigns
        self.dropin_path = None
        self.dropins = []
        self.conflicts = []
        self.log = None             # {'source', 'error', 'result'} (ollama_log's parse of the current start)
        self.running_env = None
        self.processes = []
        self.shims = {}
        self.links = []
        self.cuda_dirs = []
        self.drivers = []
        self.pci = {'path': None, 'devices': [], 'nvidia': [], 'error': None}
        self.snap = {'dirs': [], 'units': []}
        self.unsafe = []
        self.cache = {}
        self.cache_source = None
        self.default_dirs = []
        self.global_preload = {'path': None, 'exists': False, 'entries': []}
        self.preload_entries = []
        self.resolution = []
        self.resolution_after_restart = None
        self.discovery = None       # discovery_model(): which upstream discovery the resolution models
        self.load_tests = {}
        self.load_tests_unmatched_log = []
        self.driver_probe = None    # the live driver-API probe: {'next_start': result, ...} (see gather_driver_probe)


def gather(params, paths, probe, log=True):
    """Collect the facts for ``params`` (a Params record from normalize_params). Read-only."""
    f = Facts(as_params(params), paths)
    f.deadline = time.time() + TIME_BUDGET
    f.machine = host_machine()
    gather_unit(f, probe)
    if log:
        gather_log(f, probe)   # first: the Ollama version decides the runners' search order
    gather_processes(f)
    gather_shims(f)
    gather_links(f)
    gather_loader(f, probe)
    gather_preload(f)
    gather_resolution(f)
    gather_drivers(f, probe)
    gather_pci(f)
    gather_snap(f)
    gather_unsafe(f)
    gather_load_tests(f, probe)
    gather_driver_probe(f, probe)
    return f
