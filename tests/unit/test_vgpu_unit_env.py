"""module_utils/vgpu_unit_env.py: the environment the next start of a unit gets, each variable with its source.

The expected values of the env-file and precedence cases were read off a real systemd 252 (Debian 12, the
test image): a oneshot unit dumping /proc/self/environ with the same files (see each test). Upstream rules:
src/basic/env-file.c (parse_env_file_internal) and src/core/execute.c:4614,5140,5659@v252.31."""
import os

import pytest

from ansible.module_utils import vgpu_env_file as EF
from ansible.module_utils import vgpu_manager_env as ME
from ansible.module_utils import vgpu_unit_env as E
from ansible.module_utils import vgpu_unit_syntax as US


# ------------------------------------------------------------------------------------------- EnvironmentFile=

# The file given to systemd 252 as EnvironmentFile=/etc/default/t1; the service got exactly EXPECTED_T1.
T1 = (
    '# comment \\\n'
    'CONT_COMMENT=eaten\n'
    'X1=file1\n'
    ' X2 = "quoted  value" \n'
    'X3=a\\\n'
    'b\n'
    'export X4=exp\n'
    "X5='multi\n"
    "line'\n"
    'X6="in \\$dq \\q"\n'
    'ENV_VS_FILE=file\n'
)
EXPECTED_T1 = {'X1': 'file1', 'X2': 'quoted  value', 'X3': 'ab', 'X5': 'multi\nline', 'X6': 'in $dq \\q',
               'ENV_VS_FILE': 'file'}


def test_env_file_as_systemd_252_read_it():
    parsed = EF.parse_env_file(T1)
    assert EF.env_file_environment(T1) == EXPECTED_T1
    # a comment line ending in a backslash swallowed CONT_COMMENT; "export X4" is not a variable name
    assert 'CONT_COMMENT' not in EF.env_file_environment(T1)
    assert [i['text'] for i in parsed['ignored']] == ['export X4']
    lines = dict((a['name'], (a['line'], a['end_line'])) for a in parsed['assignments'])
    assert lines == {'X1': (3, 3), 'X2': (4, 4), 'X3': (5, 6), 'X5': (8, 9), 'X6': (10, 10), 'ENV_VS_FILE': (11, 11)}


@pytest.mark.parametrize('text, env', [
    ('A=1\nA=2\n', {'A': '2'}),                       # a later assignment wins
    ('A=\n', {'A': ''}),                              # empty value
    ('NOEQUALS\nB=1', {'B': '1'}),                    # a line without "=" is ignored; no final newline
    ('; semicolon comment\n#x=1\nC=3 # not a comment\n', {'C': '3 # not a comment'}),
    ('D="a" "b"\n', {'D': 'ab'}),                     # quotes end in PRE_VALUE: the next quote continues
    ("E='keep \\n literally'\n", {'E': 'keep \\n literally'}),
    ('F="line1\\\nline2"\n', {'F': 'line1line2'}),    # backslash-newline inside double quotes is eaten
    ('G=  spaced value   \n', {'G': 'spaced value'}),  # unquoted: trimmed both sides
    ('H=a\r\nI=b\r\n', {'H': 'a', 'I': 'b'}),
    ('1BAD=x\nOK_1=y\n', {'OK_1': 'y'}),
])
def test_env_file_grammar(text, env):
    assert EF.env_file_environment(text) == env


def test_remove_env_file_assignments_keeps_every_other_byte():
    text = '# tuning\r\nOLLAMA_KEEP_ALIVE=24h\nCUDA_VISIBLE_DEVICES=-1\nX3=a\\\nb\n\n# end\n'
    new, removed = EF.remove_env_file_assignments(text, ['CUDA_VISIBLE_DEVICES', 'X3'])
    assert new == '# tuning\r\nOLLAMA_KEEP_ALIVE=24h\n\n# end\n'
    assert [(r['name'], r['line'], r['end_line']) for r in removed] == [('CUDA_VISIBLE_DEVICES', 3, 3), ('X3', 4, 5)]
    assert EF.remove_env_file_assignments(new, ['CUDA_VISIBLE_DEVICES']) == (new, [])


def test_env_file_line_numbers_count_blank_lines():
    """A blank line (or one of blanks) before an assignment counts: the removal takes out the assignment's own
    line, not the one above it."""
    text = '# tuning\n\n  \nCUDA_VISIBLE_DEVICES=-1\nB=2\n'
    assert [(a['name'], a['line']) for a in EF.parse_env_file(text)['assignments']] == [('CUDA_VISIBLE_DEVICES', 4),
                                                                                        ('B', 5)]
    assert EF.remove_env_file_assignments(text, ['CUDA_VISIBLE_DEVICES'])[0] == '# tuning\n\n  \nB=2\n'


# ------------------------------------------------------------------------------------------- unit-file words

def test_remove_setting_words_environment_keeps_other_words_as_written():
    text = ('[Unit]\nDescription=x\n[Service]\n'
            'Environment="OLLAMA_KEEP_ALIVE=24h" "OLLAMA_LLM_LIBRARY=cuda"\n'
            'Environment=CUDA_VISIBLE_DEVICES=-1\n'
            'ExecStart=/usr/bin/env\n')
    new, removed = US.remove_setting_words(text, 'Service', 'Environment', ['OLLAMA_LLM_LIBRARY',
                                                                             'CUDA_VISIBLE_DEVICES'])
    assert new == ('[Unit]\nDescription=x\n[Service]\nEnvironment="OLLAMA_KEEP_ALIVE=24h"\n'
                   'ExecStart=/usr/bin/env\n')
    assert [(r['name'], r['line']) for r in removed] == [('OLLAMA_LLM_LIBRARY', 4), ('CUDA_VISIBLE_DEVICES', 5)]
    assert US.unit_settings_left(new, 'Service') == 2 and US.unit_settings_left(new) == 3


def test_remove_setting_words_names_and_manager_section():
    text = '[Service]\nPassEnvironment=FROMPID1 CUDA_VISIBLE_DEVICES \\\n  OTHER\n'
    new, removed = US.remove_setting_words(text, 'Service', 'PassEnvironment', ['CUDA_VISIBLE_DEVICES'], kind='name')
    assert new == '[Service]\nPassEnvironment=FROMPID1 OTHER\n'
    assert removed == [{'name': 'CUDA_VISIBLE_DEVICES', 'line': 2, 'text': 'CUDA_VISIBLE_DEVICES'}]
    conf = '[Manager]\nDefaultEnvironment="A=from conf" CUDA_VISIBLE_DEVICES=-1\n'
    new, removed = US.remove_setting_words(conf, 'Manager', 'DefaultEnvironment', ['CUDA_VISIBLE_DEVICES'])
    assert new == '[Manager]\nDefaultEnvironment="A=from conf"\n'
    # a name mentioned only as a value, or in another section, is left alone
    assert US.remove_setting_words('[Service]\nEnvironment=X=CUDA_VISIBLE_DEVICES\n', 'Service', 'Environment',
                                  ['CUDA_VISIBLE_DEVICES'])[1] == []


# ------------------------------------------------------------------------------------------- manager environment

def test_show_environment_quoting_of_systemd_252():
    # `systemctl show-environment` on systemd 252 after set-environment "D=x y"
    out = "A=$'from conf'\nB=2\nLANG=C.UTF-8\nD=$'x y'\nE=$'tab\\there \\'q\\''\n"
    assert ME.parse_show_environment(out) == {'A': 'from conf', 'B': '2', 'LANG': 'C.UTF-8', 'D': 'x y',
                                             'E': "tab\there 'q'"}


def _write(root, path, text, mode=0o644):
    full = os.path.join(root, path.lstrip('/'))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, 'w') as f:
        f.write(text)
    os.chmod(full, mode)
    return full


def test_manager_environment_attribution(tmp_path):
    root = str(tmp_path)
    conf = _write(root, '/etc/systemd/system.conf.d/10-t.conf', '[Manager]\nDefaultEnvironment="A=from conf" B=2\n')
    _write(root, '/usr/lib/systemd/system.conf.d/10-t.conf', '[Manager]\nDefaultEnvironment=MASKED=1\n')
    _write(root, '/proc/cmdline', 'root=/dev/vda1 systemd.setenv=K=cmd quiet\n')
    shown = {'A': 'from conf', 'B': 'changed', 'K': 'cmd', 'C': 'client', 'PATH': ME.SYSTEMD_DEFAULT_PATH}
    m = ME.manager_environment(shown, root=root)
    src = m['sources']
    assert (src['A']['via'], src['A']['path'], src['A']['line']) == ('default_environment', conf, 2)
    assert src['A']['also_possible'] == 'set_environment'
    assert src['B']['via'] == 'set_environment'          # the configuration says 2: changed at runtime
    assert src['K']['via'] == 'kernel_cmdline'
    assert src['C']['via'] == 'set_environment'
    assert src['PATH']['via'] == 'default_path'
    assert 'MASKED' not in m['environment']               # /etc's 10-t.conf masks /usr/lib's
    assert E.describe_source(src['A']) == ('the manager environment: DefaultEnvironment= in %s line 2 (or systemctl '
                                           'set-environment with the same value)' % conf)


# ------------------------------------------------------------------------------------------- predict_environment

UNIT = 'ollama.service'


def _unit_tree(root):
    sd = os.path.join(root, 'etc/systemd/system')
    _write(root, '/etc/systemd/system/ollama.service',
           '[Service]\nUser=root\nEnvironment="PATH=/usr/bin" ENV_VS_FILE=env X1=env\n'
           'EnvironmentFile=%s\nEnvironmentFile=-%s\nEnvironmentFile=%s\nExecStart=/usr/local/bin/ollama serve\n'
           % (os.path.join(root, 'etc/default/t1'), os.path.join(root, 'etc/default/missing'),
              os.path.join(root, 'etc/default/t2')))
    _write(root, '/etc/default/t1', T1)
    _write(root, '/etc/default/t2', 'X1=file2\n')
    _write(root, '/etc/systemd/system/ollama.service.d/g.conf',
           '[Service]\nEnvironmentFile=%s/etc/t.d/*.env\nPassEnvironment=FROMPID1 NOTSET\n'
           'Environment=C=unit_overrides_client\nUnsetEnvironment=B\n' % root)
    _write(root, '/etc/t.d/a.env', 'G1=a\n')
    _write(root, '/etc/t.d/b.env', 'G1=b\n')
    _write(root, '/etc/t.d/.c.env', 'G1=hidden\n')
    return [sd]


def test_predict_environment_matches_what_systemd_252_gave_the_service(tmp_path):
    root = str(tmp_path)
    dirs = _unit_tree(root)
    manager = ME.manager_environment({'LANG': 'C.UTF-8', 'PATH': ME.SYSTEMD_DEFAULT_PATH, 'B': 'fromconf',
                                     'C': 'client', 'D': 'x y'}, root=root)
    p = E.predict_environment(UNIT, dirs, manager=manager, pid1_environ={'FROMPID1': 'pid1val', 'container': 'podman'},
                              root=root)
    env = p['environment']
    # what the envdump unit got on systemd 252 (volatile INVOCATION_ID/JOURNAL_STREAM/SYSTEMD_EXEC_PID aside)
    for k, v in dict(EXPECTED_T1, X1='file2', C='unit_overrides_client', D='x y', FROMPID1='pid1val', G1='b',
                     LANG='C.UTF-8', PATH='/usr/bin').items():
        assert env[k] == v, k
    assert 'B' not in env and p['unset_by']['B']['entry'] == 'B'
    assert 'NOTSET' not in env and 'container' not in env
    # sources, with lines
    assert E.source_text(p['sources']['X1']) == os.path.join(root, 'etc/default/t2') + ':1'
    assert p['sources']['ENV_VS_FILE']['kind'] == 'environment_file'      # EnvironmentFile= beats Environment=
    assert [s['kind'] for s in p['assignments']['X1']] == ['environment', 'environment_file', 'environment_file']
    assert p['sources']['FROMPID1']['kind'] == 'pass_environment'
    assert p['sources']['FROMPID1']['setting_line'] == 3
    assert p['sources']['D']['via'] == 'set_environment'
    assert p['start_fails'] == []
    files = [f['path'] for e in p['environment_files'] for f in e['files']]
    assert files[-2:] == [os.path.join(root, 'etc/t.d/a.env'), os.path.join(root, 'etc/t.d/b.env')]


def test_a_missing_required_environment_file_fails_the_start(tmp_path):
    root = str(tmp_path)
    dirs = _unit_tree(root)
    _write(root, '/etc/systemd/system/ollama.service.d/h.conf', '[Service]\nEnvironmentFile=/etc/nonexist\n')
    p = E.predict_environment(UNIT, dirs, root=root)
    assert len(p['start_fails']) == 1 and '/etc/nonexist' in p['start_fails'][0]
    # an empty EnvironmentFile= resets the list before it
    _write(root, '/etc/systemd/system/ollama.service.d/i.conf', '[Service]\nEnvironmentFile=\n')
    p = E.predict_environment(UNIT, dirs, root=root)
    assert p['start_fails'] == [] and p['environment_files'] == []
    assert p['environment']['X1'] == 'env'


def test_invalid_utf8_environment_file(tmp_path):
    root = str(tmp_path)
    dirs = _unit_tree(root)
    with open(os.path.join(root, 'etc/default/t2'), 'wb') as f:
        f.write(b'X1=\xff\n')
    p = E.predict_environment(UNIT, dirs, root=root)
    assert p['environment']['X1'] == 'file1'
    assert 'not valid UTF-8' in p['start_fails'][0]


def test_daemon_reload_pending_is_noted(tmp_path):
    root = str(tmp_path)
    dirs = _unit_tree(root)
    props = {'EnvironmentFiles': '/etc/default/t1 (ignore_errors=no)', 'PassEnvironment': 'FROMPID1'}
    p = E.predict_environment(UNIT, dirs, props=props, root=root)
    assert any('EnvironmentFile=' in n and 'daemon-reload' in n for n in p['notes'])
    assert any('PassEnvironment=' in n for n in p['notes'])


def test_environment_differences(tmp_path):
    root = str(tmp_path)
    p = E.predict_environment(UNIT, _unit_tree(root), root=root)
    running = dict(p['environment'], INVOCATION_ID='x', X1='old')
    running.pop('G1')
    diffs = E.environment_differences(p, running)
    assert [(d['variable'], d['running'], d['next_start']) for d in diffs] == [('G1', None, 'b'), ('X1', 'old', 'file2')]
    assert E.environment_differences(p, None) == []


# ------------------------------------------------------------------------------------------- fixing at the source

def test_source_fix_rules(tmp_path):
    root = str(tmp_path)
    dirs = _unit_tree(root)
    sd = dirs[0]
    _write(root, '/usr/lib/ollama/env', 'CUDA_VISIBLE_DEVICES=-1\n')
    _write(root, '/etc/default/ollama-real', 'CUDA_VISIBLE_DEVICES=-1\n')
    os.symlink(os.path.join(root, 'etc/default/ollama-real'), os.path.join(root, 'etc/default/ollama-link'))
    fix = E.source_fix({'kind': 'environment_file', 'path': os.path.join(root, 'etc/default/t1'), 'line': 3,
                        'setting_path': os.path.join(sd, UNIT), 'setting_line': 4}, 'X1', UNIT, sd, root)
    assert fix['editable'] and fix['how'] == 'edit_environment_file'
    fix = E.source_fix({'kind': 'environment_file', 'path': os.path.join(root, 'usr/lib/ollama/env'), 'line': 1},
                       'CUDA_VISIBLE_DEVICES', UNIT, sd, root)
    assert not fix['editable'] and 'delete line 1' in fix['manual'] and 'UnsetEnvironment=CUDA_VISIBLE_DEVICES' in fix['manual']
    fix = E.source_fix({'kind': 'environment_file', 'path': os.path.join(root, 'etc/default/ollama-link'), 'line': 1},
                       'CUDA_VISIBLE_DEVICES', UNIT, sd, root)
    assert not fix['editable'] and 'symlink' in fix['reason']
    os.chmod(os.path.join(root, 'etc/default/t2'), 0o666)
    fix = E.source_fix({'kind': 'environment_file', 'path': os.path.join(root, 'etc/default/t2'), 'line': 1},
                       'X1', UNIT, sd, root)
    assert not fix['editable'] and 'writable by every user' in fix['reason']
    assert E.source_fix({'kind': 'manager', 'via': 'set_environment'}, 'X', UNIT, sd, root)['how'] == 'unset_environment'
    fix = E.source_fix({'kind': 'manager', 'via': 'kernel_cmdline'}, 'X', UNIT, sd, root)
    assert not fix['editable'] and 'kernel command line' in fix['manual']
    fix = E.source_fix({'kind': 'environment', 'path': '/usr/lib/systemd/system/ollama.service', 'line': 3},
                       'X', UNIT, sd, root)
    assert not fix['editable']


def test_removal_plan_takes_every_assignment(tmp_path):
    root = str(tmp_path)
    dirs = _unit_tree(root)
    p = E.predict_environment(UNIT, dirs, root=root)
    plan = E.removal_plan(p, 'X1', UNIT, dirs[0], root)
    assert [(f['how'], os.path.basename(f['path'])) for f in plan] == [
        ('edit_unit_file', UNIT), ('edit_environment_file', 't1'), ('edit_environment_file', 't2')]
    assert E.removal_plan(p, 'B', UNIT, dirs[0], root) == []    # unset: nothing to remove
