"""module_utils/vgpu_systemd.py: unit-file and Environment= parsing, drop-in merge order, conflicts, environ."""
import os
import random

import pytest

from ansible.module_utils import vgpu_systemctl as SC
from ansible.module_utils import vgpu_systemd as S
from ansible.module_utils import vgpu_unit_syntax as US


# ------------------------------------------------------------------------------------------- unit-file syntax

def test_parse_unit_text_sections_comments_continuations():
    text = (
        '# comment\n'
        '; also a comment\n'
        '[Unit]\n'
        'Description = Ollama Service \n'
        '[Service]\n'
        'ExecStart=/usr/local/bin/ollama \\\n'
        '  # a comment inside a continuation is dropped\n'
        '  serve\n'
        'Environment="A=1"\n'
        'Environment=\n'
        'Broken line without equals\n'
        'Environment=B=2\\\\\n'
    )
    assert US.parse_unit_text(text) == [
        ('Unit', 'Description', 'Ollama Service'),
        ('Service', 'ExecStart', '/usr/local/bin/ollama  serve'),
        ('Service', 'Environment', '"A=1"'),
        ('Service', 'Environment', ''),
        ('Service', 'Environment', 'B=2\\\\'),    # even number of backslashes: no continuation
    ]


def test_parse_unit_text_crlf_and_trailing_continuation():
    assert US.parse_unit_text('[Service]\r\nEnvironment=A=1\r\nEnvironment=B=2 \\') == [
        ('Service', 'Environment', 'A=1'), ('Service', 'Environment', 'B=2')]


# ------------------------------------------------------------------------------------------- quoting

@pytest.mark.parametrize('value,words', [
    ('"A=b c" D=e', ['A=b c', 'D=e']),
    ("'A=b c'   D=e\t F=g", ['A=b c', 'D=e', 'F=g']),
    ('A="b c"', ['A=b c']),                       # quotes may start inside a word
    ('"A=x\\"y" B=\\x41\\101\\u00e9', ['A=x"y', 'B=AA\u00e9']),
    ('"A=tab\\there"', ['A=tab\there']),
    ('"A=back\\\\slash"', ['A=back\\slash']),
    ('', []),
    ('   ', []),
])
def test_split_words(value, words):
    assert US.split_words(value) == (words, None)


def test_split_words_errors_keep_earlier_words():
    words, err = US.split_words('A=1 "B=2')
    assert words == ['A=1'] and 'unbalanced' in err
    words, err = US.split_words('A=1 B=\\q C=3')
    assert words == ['A=1'] and 'escape' in err


def test_parse_environment_value():
    assert US.parse_environment_value('') is None
    assert US.parse_environment_value('   ') is None
    # unquoted space splits: "c" is not an assignment and is ignored, as systemd does
    assert US.parse_environment_value('A=b c') == [('A', 'b')]
    assert US.parse_environment_value('"A=b c" D=e =x') == [('A', 'b c'), ('D', 'e')]
    assert US.parse_environment_value('"P=100%%" "U=%n" "I=%i"', 'ollama@gpu0.service') == [
        ('P', '100%'), ('U', 'ollama@gpu0.service'), ('I', 'gpu0')]
    assert US.parse_environment_value('"Q=$HOME ${X}"') == [('Q', '$HOME ${X}')]   # no expansion


def test_environment_of_text_resets_and_overrides():
    text = ('[Unit]\nEnvironment=IGNORED=1\n'
            '[Service]\nEnvironment=A=1 B=2\nEnvironment=A=3\n')
    assert US.environment_of_text(text) == {'A': '3', 'B': '2'}
    assert US.environment_of_text(text + 'Environment=\nEnvironment=C=4\n') == {'C': '4'}
    assert US.variables_set_by(text) == ['A', 'B']


@pytest.mark.parametrize('value', [
    '/usr/lib64/libvgpu-cuda.so:/usr/lib64/libvgpu-nvml.so', 'a b  c', 'with "quotes"', "it's", 'back\\slash',
    'trailing\\', '100%', '%n%%', '$HOME', '\u00e9t\u00e9', '', 'tab\there', '\\x41',
])
def test_quote_round_trip(value):
    word = US.quote_environment_assignment('V', value)
    assert US.parse_environment_value(word, 'ollama.service') == [('V', value)]
    line = 'Environment=%s\n' % word
    assert US.environment_of_text('[Service]\n' + line, 'ollama.service') == {'V': value}


def test_quote_round_trip_random():
    rnd = random.Random(7)
    alphabet = 'ab :/"\'\\%$#;=\t\u00e9x'
    for _ in range(500):
        value = ''.join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        word = US.quote_environment_assignment('V', value)
        assert US.parse_environment_value(word, 'x.service') == [('V', value)], value


@pytest.mark.parametrize('name,value', [('A', 'x\ny'), ('A', 'x\ry'), ('A', 'nul\x00'), ('1A', 'x'),
                                        ('A-B', 'x'), ('', 'x')])
def test_quote_rejects(name, value):
    with pytest.raises(ValueError):
        US.quote_environment_assignment(name, value)


# ------------------------------------------------------------------------------------------- merge order

@pytest.fixture
def unitdirs(tmp_path):
    etc, run, usr = (str(tmp_path / d) for d in ('etc', 'run', 'usr'))
    for d in (etc, run, usr):
        os.makedirs(d)

    def write(base, rel, text):
        p = os.path.join(base, rel)
        if not os.path.isdir(os.path.dirname(p)):
            os.makedirs(os.path.dirname(p))
        with open(p, 'w') as f:
            f.write(text)
        return p
    write(usr, 'ollama.service', '[Service]\nExecStart=/usr/local/bin/ollama serve\nEnvironment="PATH=/usr/bin"\n')
    return etc, run, usr, write


def test_dropin_order_and_masking(unitdirs):
    etc, run, usr, write = unitdirs
    dirs = [etc, run, usr]
    ours = write(etc, 'ollama.service.d/vgpu.conf', '[Service]\nEnvironment="LD_PRELOAD=/a.so"\n')
    write(usr, 'ollama.service.d/vgpu.conf', '[Service]\nEnvironment="LD_PRELOAD=/masked.so"\n')
    over = write(run, 'ollama.service.d/zz-override.conf', '[Service]\nEnvironment="LD_PRELOAD=/evil.so" X=1\n')
    early = write(usr, 'ollama.service.d/10-early.conf', '[Service]\nEnvironment=CUDA_VISIBLE_DEVICES=\n')
    typewide = write(etc, 'service.d/50-all.conf', '[Service]\nEnvironment=OLLAMA_LLM_LIBRARY=cuda\n')
    write(etc, 'ollama.service.d/README', 'not a drop-in')
    write(etc, 'ollama.service.d/.hidden.conf', '[Service]\nEnvironment=H=1\n')
    masked = os.path.join(etc, 'ollama.service.d', '20-masked.conf')
    write(usr, 'ollama.service.d/20-masked.conf', '[Service]\nEnvironment=M=1\n')
    os.symlink('/dev/null', masked)

    assert S.dropin_files('ollama.service', dirs) == [early, typewide, ours, over]
    env, sources = S.effective_environment('ollama.service', dirs)
    assert env == {'PATH': '/usr/bin', 'CUDA_VISIBLE_DEVICES': '', 'OLLAMA_LLM_LIBRARY': 'cuda',
                   'LD_PRELOAD': '/evil.so', 'X': '1'}
    assert sources['LD_PRELOAD'] == over and sources['PATH'] == os.path.join(usr, 'ollama.service')

    conflicts = S.find_conflicts('ollama.service', dirs, ours)
    assert conflicts == [
        {'path': early, 'variables': ['CUDA_VISIBLE_DEVICES'], 'overrides_ours': False},
        {'path': typewide, 'variables': ['OLLAMA_LLM_LIBRARY'], 'overrides_ours': False},
        {'path': over, 'variables': ['LD_PRELOAD'], 'overrides_ours': True},
    ]


def test_effective_environment_with_planned_content(unitdirs):
    etc, run, usr, write = unitdirs
    dirs = [etc, run, usr]
    ours = os.path.join(etc, 'ollama.service.d', 'vgpu.conf')
    planned = {ours: '[Service]\nEnvironment="LD_PRELOAD=/p.so"\n'}
    env, sources = S.effective_environment('ollama.service', dirs, planned)
    assert env['LD_PRELOAD'] == '/p.so' and sources['LD_PRELOAD'] == ours
    write(etc, 'ollama.service.d/vgpu.conf', '[Service]\nEnvironment="LD_PRELOAD=/old.so"\n')
    env, _ = S.effective_environment('ollama.service', dirs, {ours: None})      # planned removal
    assert 'LD_PRELOAD' not in env
    assert S.dropin_files('ollama.service', dirs, {ours: None}) == []


def test_reset_in_dropin_clears_unit_environment(unitdirs):
    etc, run, usr, write = unitdirs
    write(etc, 'ollama.service.d/reset.conf', '[Service]\nEnvironment=\nEnvironment=A=1\n')
    env, sources = S.effective_environment('ollama.service', [etc, run, usr])
    assert env == {'A': '1'} and list(sources) == ['A']


def test_unset_environment_applies_after_every_assignment(unitdirs):
    """systemd.exec(5): UnsetEnvironment= removes variables after Environment= is applied, whichever file set
    them - an earlier drop-in's entry removes what a later one assigns; NAME=VALUE removes only that value."""
    etc, run, usr, write = unitdirs
    dirs = [etc, run, usr]
    early = write(etc, 'ollama.service.d/10-unset.conf',
                  '[Service]\nUnsetEnvironment=CUDA_VISIBLE_DEVICES "OLLAMA_DEBUG=1" X=nomatch\n')
    late = write(etc, 'ollama.service.d/zz-set.conf',
                 '[Service]\nEnvironment=CUDA_VISIBLE_DEVICES=-1 OLLAMA_DEBUG=1 X=1 KEEP=1\n')
    env, sources = S.effective_environment('ollama.service', dirs)
    assert env == {'PATH': '/usr/bin', 'X': '1', 'KEEP': '1'}
    assert sources == {'PATH': os.path.join(usr, 'ollama.service'), 'X': late, 'KEEP': late}
    d = S.environment_details('ollama.service', dirs)
    assert d['environment'] == env and d['sources'] == sources
    assert d['assigned'] == {'PATH': '/usr/bin', 'CUDA_VISIBLE_DEVICES': '-1', 'OLLAMA_DEBUG': '1', 'X': '1',
                             'KEEP': '1'}
    assert d['unset'] == [{'entry': e, 'path': early} for e in ('CUDA_VISIBLE_DEVICES', 'OLLAMA_DEBUG=1',
                                                                'X=nomatch')]
    assert d['unset_by'] == {'CUDA_VISIBLE_DEVICES': early, 'OLLAMA_DEBUG': early}
    # a systemd without UnsetEnvironment= (before 235) gives the service every assignment
    assert S.environment_details('ollama.service', dirs, honour_unset=False)['environment'] == d['assigned']


def test_unset_environment_reset_and_planned_content(unitdirs):
    etc, run, usr, write = unitdirs
    dirs = [etc, run, usr]
    write(etc, 'ollama.service.d/50-tuning.conf', '[Service]\nEnvironment=OLLAMA_LLM_LIBRARY=cuda A=1\n')
    ours = os.path.join(etc, 'ollama.service.d', 'vgpu.conf')
    # what the remediate fix / vgpu_dropin_extra would render into our drop-in
    planned = {ours: '[Service]\nEnvironment="LD_PRELOAD=/p.so"\nUnsetEnvironment=OLLAMA_LLM_LIBRARY\n'}
    env, sources = S.effective_environment('ollama.service', dirs, planned)
    assert 'OLLAMA_LLM_LIBRARY' not in env and 'OLLAMA_LLM_LIBRARY' not in sources
    assert env['A'] == '1' and sources['LD_PRELOAD'] == ours
    # an empty assignment in a later file resets the list: the variable is back
    reset = write(run, 'ollama.service.d/zz-reset.conf', '[Service]\nUnsetEnvironment=\nUnsetEnvironment=A\n')
    d = S.environment_details('ollama.service', dirs, planned)
    assert d['environment']['OLLAMA_LLM_LIBRARY'] == 'cuda' and 'A' not in d['environment']
    assert d['unset'] == [{'entry': 'A', 'path': reset}]
    # [Unit] section and other units' keys do not count
    write(run, 'ollama.service.d/zz-reset.conf', '[Unit]\nUnsetEnvironment=A\n')
    assert S.effective_environment('ollama.service', dirs, planned)[0]['A'] == '1'


def test_parse_unset_environment_value():
    assert US.parse_unset_environment_value('') is None and US.parse_unset_environment_value('  ') is None
    # names and assignments are kept; invalid names (and "=x") are ignored, as systemd does
    assert US.parse_unset_environment_value('A "B=two words" 1C A-B =x D=') == ['A', 'B=two words', 'D=']
    assert US.parse_unset_environment_value('"V=%n" W=100%%', 'ollama.service') == ['V=ollama.service', 'W=100%']
    # bad syntax: the words before it count
    assert US.parse_unset_environment_value('A B=\\q C') == ['A']
    assert US.variables_unset_by('[Service]\nUnsetEnvironment=A B=1\nUnsetEnvironment=A\n') == ['A', 'B']
    env = {'A': '1', 'B': '2', 'C': '3'}
    assert US.apply_unset(env, ['A', 'B=1', 'C=3']) == ['A', 'C'] and env == {'B': '2'}


def test_parse_show_unset_environment():
    assert SC.parse_show_unset_environment('CUDA_VISIBLE_DEVICES OLLAMA_DEBUG=1') == [
        'CUDA_VISIBLE_DEVICES', 'OLLAMA_DEBUG=1']
    assert SC.parse_show_unset_environment('"A=two words" B') == ['A=two words', 'B']
    assert SC.parse_show_unset_environment('') == [] and SC.parse_show_unset_environment(None) == []


def test_unit_file_priority(unitdirs):
    etc, run, usr, write = unitdirs
    write(etc, 'ollama.service', '[Service]\nEnvironment=FROM=etc\n')
    assert S.find_unit_file('ollama.service', [etc, run, usr]) == os.path.join(etc, 'ollama.service')
    env, _ = S.effective_environment('ollama.service', [etc, run, usr])
    assert env == {'FROM': 'etc'}
    assert S.find_unit_file('nope.service', [etc, run, usr]) is None


def test_dropin_dir_names():
    assert S.dropin_dir_names('ollama.service') == ['ollama.service.d', 'service.d']
    assert S.dropin_dir_names('a-b@x.service') == ['a-b@x.service.d', 'a-b@.service.d', 'a-.service.d',
                                                     'service.d']


def test_unit_search_dirs():
    assert S.unit_search_dirs() == list(S.UNIT_DIRS)
    assert S.unit_search_dirs('/etc/systemd/system')[0] == '/etc/systemd/system'
    custom = S.unit_search_dirs('/tmp/x')
    assert custom[0] == '/tmp/x' and '/etc/systemd/system' not in custom and '/usr/lib/systemd/system' in custom


def test_valid_unit_name():
    assert S.valid_unit_name('ollama.service') and S.valid_unit_name('getty@tty1.service')
    for bad in ('ollama', '../x.service', 'a/b.service', '', 'x.conf'):
        assert not S.valid_unit_name(bad)


# ------------------------------------------------------------------------------------------- running process

def test_parse_show_environment():
    assert SC.parse_show_environment('LD_PRELOAD=/a.so:/b.so PATH=/usr/bin [unprintable] EMPTY=') == {
        'LD_PRELOAD': '/a.so:/b.so', 'PATH': '/usr/bin', 'EMPTY': ''}
    assert SC.parse_show_environment('A=1 "B=two words"') == {'A': '1', 'B': 'two words'}
    assert SC.parse_show_environment('') == {}
    assert SC.parse_show_environment(None) == {}


def test_read_proc_environ_fake_root(tmp_path):
    d = tmp_path / '4242'
    d.mkdir()
    (d / 'environ').write_bytes(b'LD_PRELOAD=/a.so\x00PATH=/bin\x00WEIRD=x=y\x00\x00junk\x00')
    assert SC.read_proc_environ(4242, str(tmp_path)) == {'LD_PRELOAD': '/a.so', 'PATH': '/bin', 'WEIRD': 'x=y'}
    assert SC.read_proc_environ(1, str(tmp_path)) is None
    assert SC.read_proc_environ('x', str(tmp_path)) is None


def test_read_proc_environ_real_self():
    env = SC.read_proc_environ(os.getpid())
    assert env is not None and 'PATH' in env


# ------------------------------------------------------------------------------------------- systemctl

class FakeModule(object):
    def __init__(self, rc=0, out='', err='', have=True):
        self.rc, self.out, self.err, self.have = rc, out, err, have
        self.cmds = []

    def get_bin_path(self, name, required=False):
        return '/usr/bin/' + name if self.have else None

    def run_command(self, cmd):
        self.cmds.append(cmd)
        return self.rc, self.out, self.err

    def fail_json(self, **kw):
        raise RuntimeError(kw['msg'])


def test_try_systemctl_show():
    m = FakeModule(out='LoadState=loaded\nEnvironment=A=1 B=2\nMainPID=12\n')
    props, err = SC.try_systemctl_show(m, 'ollama.service', ['LoadState', 'Environment', 'MainPID'])
    assert err is None and props == {'LoadState': 'loaded', 'Environment': 'A=1 B=2', 'MainPID': '12'}
    assert m.cmds[0] == ['/usr/bin/systemctl', 'show', 'ollama.service', '--no-pager', '-p', 'LoadState',
                         '-p', 'Environment', '-p', 'MainPID']
    props, err = SC.try_systemctl_show(FakeModule(rc=1, err='System has not been booted with systemd'), 'x.service',
                                      ['LoadState'])
    assert props is None and 'not been booted' in err
    props, err = SC.try_systemctl_show(FakeModule(have=False), 'x.service', ['LoadState'])
    assert props is None and 'not found' in err


def test_systemctl_show_kept():
    assert SC.systemctl_show(FakeModule(out='ActiveState=active\n'), 'x.service', ['ActiveState']) == {
        'ActiveState': 'active'}
    with pytest.raises(RuntimeError):
        SC.systemctl_show(FakeModule(rc=1), 'x.service', ['ActiveState'])
