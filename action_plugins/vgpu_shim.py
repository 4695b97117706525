# -*- coding: utf-8 -*-
# Controller side of the vgpu_shim module: checksum each shim artifact here, refuse a wrong build before
# anything is sent, and upload only the shims the host does not already hold.
#
# A run that changes nothing is one module call (no temp directory, no transfer): the module is first
# called without src, with the artifact's sha256; it validates the installed files in place, or fails with
# needs_src naming the ones it lacks. Only those are uploaded (into Ansible's own temp directory, also in
# check mode, so that check mode validates a new artifact on the host as a real run would) and the module
# is called again with them.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import hashlib
import os
import re

from ansible.errors import AnsibleError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.hashing import secure_hash

SHA256_RE = re.compile(r'^[0-9a-f]{64}$')


class ActionModule(ActionBase):

    # a temp directory is made only when a shim has to be uploaded (saves round trips on a no-op run)
    TRANSFERS_FILES = False

    def _local_artifact(self, spec, label):
        """Resolve and checksum one controller-side artifact; return (path, sha256) or raise ValueError."""
        src = spec.get('src')
        if not src:
            raise ValueError('%s: src is empty - set it to the controller path of your libvgpu-%s.so build (the '
                             'vgpu_shim role: vgpu_shim_%s_src, and vgpu_shim_%s_sha256 to its checksum), or set '
                             'remote_src=true for a file already on the host' % (label, label, label, label))
        try:
            path = self._find_needle('files', src)
        except AnsibleError:
            raise ValueError('The %s shim artifact %s is missing or not a regular file on the controller: set '
                             'src to your libvgpu-%s.so build' % (label, src, label))
        if os.path.isdir(path):
            raise ValueError('The %s shim artifact %s is a directory on the controller: give the library file '
                             'itself (your libvgpu-%s.so build)' % (label, src, label))
        if not os.path.isfile(path):
            raise ValueError('The %s shim artifact %s is missing or not a regular file on the controller'
                             % (label, src))
        got = secure_hash(path, hashlib.sha256)
        want = spec.get('sha256')
        if want:
            norm = str(want).strip().lower()
            norm = norm[7:] if norm.startswith('sha256:') else norm
            if not SHA256_RE.match(norm):
                raise ValueError('sha256 for %s must be 64 hex characters (optionally "sha256:..."), got %r'
                                 % (src, want))
            if norm != got:
                raise ValueError('%s has sha256 %s, expected %s: not the intended build' % (path, got, norm))
        return path, got

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        args = copy.deepcopy(dict(self._task.args))
        if boolean(args.get('remote_src', False), strict=False):
            result.update(self._execute_module('vgpu_shim', module_args=args, task_vars=task_vars))
            return result

        # the shim specs, as dicts inside args (the one-shim form keeps its keys at the top level)
        specs = args['shims'] if isinstance(args.get('shims'), list) else [args]
        local = {}
        try:
            for spec in specs:
                if not isinstance(spec, dict):
                    raise ValueError('each entry of shims must be a dict with src and dest, got %r' % (spec,))
                label = spec.get('kind') or 'cuda'
                path, got = self._local_artifact(spec, label)
                spec['sha256'] = got
                local[spec.get('dest')] = (path, spec.pop('src'))
        except ValueError as e:
            result.update(failed=True, msg='%s. Nothing was changed (nothing was sent to the host).' % e)
            return result

        # 1: the host validates what it has, or says which builds it lacks
        res = self._execute_module('vgpu_shim', module_args=args, task_vars=task_vars)
        missing = res.get('needs_src') if res.get('failed') else None
        if missing:
            # 2: upload only those and call again
            # without pipelining the first call made the temp dir already: share it
            tmpdir = self._connection._shell.tmpdir or self._make_tmp_path()
            try:
                sent = []
                for spec in specs:
                    if spec.get('dest') in missing:
                        path = local[spec['dest']][0]
                        remote = self._connection._shell.join_path(
                            tmpdir, 'src-%d-%s' % (len(sent), os.path.basename(spec['dest'])))
                        self._transfer_file(path, remote)
                        spec['src'] = remote
                        sent.append(remote)
                self._fixup_perms2([tmpdir] + sent)
                res = self._execute_module('vgpu_shim', module_args=args, task_vars=task_vars)
            finally:
                self._remove_tmp_path(self._connection._shell.tmpdir)
            res['uploaded'] = list(missing)
        else:
            res['uploaded'] = []
        # report the controller paths, not the temp copies
        for entry in res.get('shims') or []:
            if entry.get('dest') in local:
                entry['src'] = local[entry['dest']][1]
        if 'shims' not in args and args.get('dest') in local:
            res['src'] = local[args['dest']][1]
        result.update(res)
        return result
