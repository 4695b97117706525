# -*- coding: utf-8 -*-
# What the modules that edit a configuration file on the host share (target side, Python 3.8+ stdlib only).
"""The run's time stamp, and reading the one regular file a module is about to edit: never through a symlink,
never a directory, UTF-8 only - each refusal a fail_json that says what to do instead."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import calendar
import os
import stat
import time

STAMP_FORMAT = '%Y%m%dT%H%M%SZ'


def run_stamp(module, stamp):
    """(stamp, epoch): the given UTC stamp (YYYYmmddTHHMMSSZ, the names of backups and moved-aside files), or now.
    Fails the module on a malformed one."""
    stamp = stamp or time.strftime(STAMP_FORMAT, time.gmtime())
    try:
        return stamp, calendar.timegm(time.strptime(stamp, STAMP_FORMAT))
    except ValueError:
        module.fail_json(msg='stamp must be a UTC time as YYYYmmddTHHMMSSZ (e.g. 20261203T120000Z), got %r' % stamp)


def read_for_edit(module, path, manual, result):
    """(lstat, raw bytes, text) of the regular file at ``path``, or None when there is none. Fails the module
    (with ``result``) for a symlink, a directory or other special file, an unreadable or non-UTF-8 file;
    ``manual`` is what a person does instead (e.g. 'edit the file it points to by hand')."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        module.fail_json(msg='%s is a symlink (-> %s): not changed, the toolkit never writes through one; %s'
                         % (path, os.readlink(path), manual), **result)
    if not stat.S_ISREG(st.st_mode):
        module.fail_json(msg='%s is not a regular file (%s): not changed; %s'
                         % (path, 'a directory' if stat.S_ISDIR(st.st_mode) else 'a special file', manual), **result)
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except (IOError, OSError) as e:
        module.fail_json(msg='cannot read %s: %s' % (path, e), **result)
    try:
        return st, raw, raw.decode('utf-8')
    except UnicodeDecodeError:
        module.fail_json(msg='%s is not valid UTF-8: not changed; %s' % (path, manual), **result)
