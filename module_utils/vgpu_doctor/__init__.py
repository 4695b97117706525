# -*- coding: utf-8 -*-
# The vgpu_doctor module's shared code, one job per submodule (target side, Python 3.8+ stdlib).
"""Why does Ollama run on the CPU? Collect read-only evidence on a guest, then judge it code by code.

Import the submodules, not this package (it imports nothing, so AnsiballZ ships only what is used):

* ``engine``: ``doctor(params, paths, probe)``, ``diagnose(facts)``, ``summary_line``, ``read_history``; it also
  offers ``Probe``, ``SystemPaths`` and ``normalize_params`` for library/vgpu_doctor.py.
* ``catalogue``: the failure codes (``CODES``), their ``PRIORITY``, fix ``ACTIONS``, ``SEVERITIES``,
  ``finding()``, ``order_findings()`` and the check registry (``CHECKS``, ``@check(code)``).
* ``params``: ``Params`` (the typed parameter record), ``normalize_params``, what the parameters imply.
* ``paths``: ``SystemPaths(root)`` (fixed system locations under a root, for fake hosts) and ``Probe``
  (the doctor's only ways to ask the host beyond reading files: ``systemctl show``, ``journalctl``,
  ``ldconfig -p``, ``rpm -qf``, ``ld.so --help``, load tests and the live driver probe).
* ``facts``: ``Facts`` and ``gather(params, paths, probe)``, which runs the gatherers: ``gather_unit`` (the
  unit, its environment, conflicts), ``log`` (the current start's log), ``gather_host`` (processes, shims,
  links, driver files, PCI, snap, unsafe paths), ``resolution`` (loader cache, preloads, where the runners
  find libcuda.so.1), ``probes`` (load tests, the live driver probe).
* ``checks_host``, ``checks_env``, ``checks_runtime``: one pure ``check_<code>(facts)`` per code of the
  catalogue, with the judgements they share in ``judge`` and the log views in ``log_evidence``.

The loader emulation itself (ld.so.cache, glibc's search order, Go's filepath.Glob) is
module_utils/vgpu_loader.py.
"""
