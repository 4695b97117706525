# -*- coding: utf-8 -*-
# Shared systemd helpers for the vGPU modules (target side, Python 3.8+ stdlib only).
"""Query systemd the way every vGPU module needs to: one ``systemctl show`` call per unit."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


def systemctl_show(module, unit, properties):
    """Return {property: value} for ``unit`` from one ``systemctl show`` call.

    ``module`` is an AnsibleModule (its run_command and get_bin_path are used).
    Unknown units come back with LoadState=not-found; callers decide what that means.
    """
    systemctl = module.get_bin_path('systemctl', required=True)
    cmd = [systemctl, 'show', unit, '--no-pager']
    for prop in properties:
        cmd.extend(['-p', prop])
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(msg='systemctl show %s failed (rc=%d): %s' % (unit, rc, err.strip()))
    result = {}
    for line in out.splitlines():
        key, sep, value = line.partition('=')
        if sep:
            result[key] = value
    return result
