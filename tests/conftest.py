"""Make the project's modules importable the way Ansible imports them on a target:
module_utils/<name>.py as ansible.module_utils.<name>, library/<name>.py as a plain module.

Shared for every test file (no sys.path edits or helper copies in the test files):
- tests/fixtures/elf is on sys.path: ``from module_harness import run_module, tree_state, FakeSystemctl``
  and ``import elf_fixtures`` work as they are.
- tests/fixtures/doctor (``import fakehost, scenarios``: the doctor's fake guests) and
  roles/vgpu_remediate/filter_plugins (``import vgpu_remediate``: the remediate plan filters) are on sys.path too.
- fixtures ``elf`` (session: {name: path} of the compiled ELF fixtures; skips without gcc) and
  ``safe_tmp`` (a root-only temp tree) from module_harness, usable without importing them.
- fixture ``sha``: module_harness.sha256_file (hex sha256 of a file), ``sha(path)``.
- ``repo_root`` / ``fixtures_dir`` fixtures (absolute paths of the checkout and of tests/fixtures), with
  the same values as the module constants TOP and FIXTURES.
"""
import os
import sys

import ansible.module_utils
import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(TOP, 'tests', 'fixtures')
ansible.module_utils.__path__.append(os.path.join(TOP, 'module_utils'))
sys.path.insert(0, os.path.join(TOP, 'library'))
sys.path.insert(0, os.path.join(FIXTURES, 'elf'))
sys.path.insert(0, os.path.join(FIXTURES, 'doctor'))
sys.path.insert(0, os.path.join(TOP, 'roles', 'vgpu_remediate', 'filter_plugins'))

from module_harness import elf, safe_tmp, sha256_file  # noqa: E402,F401  (fixtures for every test file)


@pytest.fixture
def sha():
    """sha256_file, for tests that compare file contents: ``sha(path)``."""
    return sha256_file


@pytest.fixture(scope='session')
def repo_root():
    """Absolute path of the checkout (where ansible.cfg, library/ and module_utils/ are)."""
    return TOP


@pytest.fixture(scope='session')
def fixtures_dir():
    """Absolute path of tests/fixtures."""
    return FIXTURES
