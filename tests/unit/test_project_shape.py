"""The project's shape, kept: every file under library/ and module_utils/ stays small enough to have one job
(~600 lines), every module renders its documentation from the three blocks Ansible reads, and no module_utils
package __init__ imports anything (AnsiballZ ships a package's __init__ with each of its submodules). Each shared
name has one owner: every importer takes it from the module that defines it, and no module re-exports a name it
does not use itself."""
import ast
import glob
import os

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIMIT = 600
SOURCES = sorted(glob.glob(os.path.join(TOP, 'library', '*.py')) + glob.glob(os.path.join(TOP, 'module_utils', '*.py'))
                 + glob.glob(os.path.join(TOP, 'module_utils', '*', '*.py')))


@pytest.mark.parametrize('path', SOURCES, ids=lambda p: os.path.relpath(p, TOP))
def test_file_stays_small(path):
    with open(path) as fh:
        lines = sum(1 for _ in fh)
    assert lines <= LIMIT, '%s has %d lines (limit %d): split it at the seam of its jobs' % (
        os.path.relpath(path, TOP), lines, LIMIT)


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(TOP, 'library', '*.py'))),
                         ids=lambda p: os.path.basename(p))
def test_module_has_the_documentation_blocks(path):
    with open(path) as fh:
        text = fh.read()
    assert text.startswith('#!/usr/bin/python\n')
    tree = ast.parse(text)
    names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
             if isinstance(t, ast.Name)}
    assert {'DOCUMENTATION', 'EXAMPLES', 'RETURN'} <= names
    assert 'supports_check_mode=True' in text and 'attributes:' in text


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(TOP, 'module_utils', '*', '__init__.py'))),
                         ids=lambda p: os.path.relpath(p, TOP))
def test_package_init_imports_nothing(path):
    with open(path) as fh:
        tree = ast.parse(fh.read())
    assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                and not (isinstance(n, ast.ImportFrom) and n.module == '__future__')]


def _module_utils_path(module):
    """module_utils/<...>.py (or <...>/__init__.py) of an ansible.module_utils.<...> name, None if not ours."""
    if not module or not module.startswith('ansible.module_utils.'):
        return None
    base = os.path.join(TOP, 'module_utils', *module.split('.')[2:])
    for p in (base + '.py', os.path.join(base, '__init__.py')):
        if os.path.isfile(p):
            return p
    return None


def _defined(path):
    """Top-level names a file defines itself (def, class, assignment), not those it imports."""
    with open(path) as fh:
        tree = ast.parse(fh.read())
    names = set()
    for node in tree.body:
        for n in [node] + (list(ast.walk(node)) if isinstance(node, (ast.If, ast.Try)) else []):
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
                names.add(n.name)
            elif isinstance(n, ast.Assign):
                names.update(t.id for tg in n.targets for t in ast.walk(tg) if isinstance(t, ast.Name))
    return names


IMPORTERS = sorted(set(SOURCES + glob.glob(os.path.join(TOP, 'action_plugins', '*.py'))
                       + glob.glob(os.path.join(TOP, 'roles', '*', 'filter_plugins', '*.py'))
                       + glob.glob(os.path.join(TOP, 'tests', '**', '*.py'), recursive=True)))
# imported for their side effect (each registers its checks), not to be used by name
SIDE_EFFECT_IMPORTS = {('module_utils/vgpu_doctor/engine.py', n) for n in ('checks_env', 'checks_host',
                                                                           'checks_runtime')}


@pytest.mark.parametrize('path', IMPORTERS, ids=lambda p: os.path.relpath(p, TOP))
def test_names_are_imported_from_their_owner(path):
    with open(path) as fh:
        tree = ast.parse(fh.read())
    wrong = []
    for node in ast.walk(tree):
        owner = _module_utils_path(node.module) if isinstance(node, ast.ImportFrom) else None
        if owner:
            defined = _defined(owner)
            wrong.extend('%s from %s' % (a.name, node.module) for a in node.names
                         if a.name not in defined and not _module_utils_path(node.module + '.' + a.name))
    assert not wrong, 'import these from the module that defines them: %s' % ', '.join(wrong)


@pytest.mark.parametrize('path', SOURCES, ids=lambda p: os.path.relpath(p, TOP))
def test_no_re_exports(path):
    with open(path) as fh:
        tree = ast.parse(fh.read())
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    rel = os.path.relpath(path, TOP)
    imported = [a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) and _module_utils_path(n.module)
                for a in n.names]
    unused = [name for name in imported if name not in used and (rel, name) not in SIDE_EFFECT_IMPORTS]
    assert not unused, '%s imports %s without using them: import them from their owner where they are used' % (
        rel, ', '.join(unused))
