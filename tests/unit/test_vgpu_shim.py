"""library/vgpu_shim.py: validate-then-install of one shim file, run in-process against temp dirs."""
import os
import shutil
import stat
import subprocess

import pytest
from module_harness import SIM_BUILD, SIM_SRC, refused_unchanged, run_module, sim_built, tree_state

import vgpu_shim
from ansible.module_utils import vgpu_shim_consumers as CON
from ansible.module_utils import vgpu_shim_plan as PLAN

SHIPPED_CONSUMERS = list(PLAN.DEFAULT_CONSUMERS)


@pytest.fixture(autouse=True)
def no_host_ollama(monkeypatch, tmp_path):
    """Hermetic: the consumers default points at an empty place, not at an Ollama this machine may have."""
    monkeypatch.setattr(vgpu_shim, 'DEFAULT_CONSUMERS', [str(tmp_path / 'no-ollama' / 'cuda_v*' / 'libggml-cuda.so')])


@pytest.fixture
def host(tmp_path, elf):
    """A staging dir with copies of the fixtures and an empty lib dir."""
    stage = tmp_path / 'stage'
    lib = tmp_path / 'usr' / 'lib64'
    stage.mkdir()
    lib.mkdir(parents=True)

    class Host(object):
        root = tmp_path
        dest = str(lib / 'libvgpu-cuda.so')
        libdir = str(lib)

        @staticmethod
        def stage_file(name):
            p = str(stage / os.path.basename(elf[name]))
            shutil.copy(elf[name], p)
            return p
    return Host


def install(capsys, src, dest, check=False, **kw):
    args = dict(src=src, dest=dest)
    args.update(kw)
    return run_module(vgpu_shim, args, capsys, check=check)


def refused(capsys, host, src, dest=None, expect=None, **kw):
    """Run, assert it failed with expect in the message and left the tree exactly as it was."""
    return refused_unchanged(host.root, lambda: install(capsys, src, dest or host.dest, **kw), expect)


# ------------------------------------------------------------------------------------------- success paths

def test_fresh_install_then_idempotent(capsys, host, sha):
    src = host.stage_file('cuda')
    res = install(capsys, src, host.dest, sha256=sha(src))
    assert res['changed'] and not res.get('failed')
    assert [a['action'] for a in res['plan']] == ['install']
    assert res['sha256'] == sha(src) == sha(host.dest)
    assert res['soname'] == 'libvgpu-cuda.so'
    assert res['symbols'] >= 9 and res['interposed_symbols'] == []
    assert res['machine'] in ('x86-64', 'aarch64')
    st = os.lstat(host.dest)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755 and (st.st_uid, st.st_gid) == (0, 0)
    assert 'sha256: %s' % sha(src) in res['diff']['after'] and 'absent' in res['diff']['before']
    # no temp files left behind
    assert sorted(os.listdir(host.libdir)) == ['libvgpu-cuda.so']

    again = install(capsys, src, host.dest, sha256=sha(src))
    assert not again['changed'] and again['plan'] == []


def test_check_mode_changes_nothing(capsys, host):
    src = host.stage_file('cuda')
    before = tree_state(host.root)
    res = install(capsys, src, host.dest, check=True)
    assert res['changed'] and res['plan'][0]['action'] == 'install'
    assert 'diff' in res
    assert tree_state(host.root) == before


def test_mode_and_owner_drift_fixed_without_rewrite(capsys, host):
    src = host.stage_file('cuda')
    install(capsys, src, host.dest)
    os.chmod(host.dest, 0o644)
    os.chown(host.dest, 1234, 1234)
    ino = os.stat(host.dest).st_ino
    check = install(capsys, src, host.dest, check=True)
    assert check['changed'] and check['plan'][0]['action'] == 'set_attributes'
    assert stat.S_IMODE(os.stat(host.dest).st_mode) == 0o644   # check mode left it
    res = install(capsys, src, host.dest)
    assert res['changed'] and [a['action'] for a in res['plan']] == ['set_attributes']
    st = os.stat(host.dest)
    assert st.st_ino == ino and stat.S_IMODE(st.st_mode) == 0o755 and (st.st_uid, st.st_gid) == (0, 0)


def test_replace_keeps_hidden_backup(capsys, host, sha):
    old = host.stage_file('cuda')
    install(capsys, old, host.dest)
    new = host.stage_file('cuda_v2')
    assert sha(new) != sha(old)
    res = install(capsys, new, host.dest)
    assert res['changed'] and [a['action'] for a in res['plan']] == ['backup', 'replace']
    backup = res['backup_file']
    assert os.path.dirname(backup) == host.libdir
    # hidden, so ldconfig (which looks at lib*.so*) never links a SONAME to it
    assert os.path.basename(backup).startswith('.libvgpu-cuda.so.') and backup.endswith('.vgpu-backup')
    assert sha(backup) == sha(old) and sha(host.dest) == sha(new)
    assert 'sha256: %s' % sha(old) in res['diff']['before']
    assert 'sha256: %s' % sha(new) in res['diff']['after']


def test_replace_without_backup(capsys, host):
    install(capsys, host.stage_file('cuda'), host.dest)
    res = install(capsys, host.stage_file('cuda_v2'), host.dest, backup=False)
    assert res['changed'] and 'backup_file' not in res
    assert sorted(os.listdir(host.libdir)) == ['libvgpu-cuda.so']


def test_dest_symlink_is_replaced_not_written_through(capsys, host, sha):
    src = host.stage_file('cuda')
    victim = os.path.join(str(host.root), 'victim.so')
    with open(victim, 'wb') as f:
        f.write(b'do not touch')
    os.symlink(victim, host.dest)
    res = install(capsys, src, host.dest)
    assert res['changed'] and res['plan'][0]['action'] == 'replace_symlink'
    assert not os.path.islink(host.dest) and sha(host.dest) == sha(src)
    assert open(victim, 'rb').read() == b'do not touch'


def test_interposing_shim_installs_with_warning(capsys, host):
    res = install(capsys, host.stage_file('interpose'), host.dest)
    assert res['changed'] and res['interposed_symbols'] == ['dlopen', 'dlsym', 'open']
    assert any('PRELOAD_INTERPOSES_LOADER' in w for w in res.get('warnings', []))


def test_nvml_kind_defaults(capsys, host, tmp_path):
    dest = os.path.join(host.libdir, 'libvgpu-nvml.so')
    res = install(capsys, host.stage_file('nvml'), dest, kind='nvml')
    assert res['changed'] and res['soname'] == 'libvgpu-nvml.so'


def test_explicit_empty_required_symbols(capsys, host):
    res = install(capsys, host.stage_file('nvml'), host.dest, kind='cuda', required_symbols=[])
    assert res['changed']


def test_sha256_prefix_and_case_accepted(capsys, host, sha):
    src = host.stage_file('cuda')
    res = install(capsys, src, host.dest, sha256='SHA256:' + sha(src).upper())
    assert res['changed'] and res['sha256'] == sha(src)


def test_unsafe_dest_dir_warns(capsys, host):
    os.chmod(host.libdir, 0o775)
    res = install(capsys, host.stage_file('cuda'), host.dest)
    assert any('PRELOAD_HIJACK_RISK' in w for w in res.get('warnings', []))


# ------------------------------------------------------------------------------------------- refusals

def test_src_missing(capsys, host):
    refused(capsys, host, os.path.join(str(host.root), 'stage', 'nope.so'), expect='does not exist')


def test_src_is_directory(capsys, host):
    refused(capsys, host, os.path.join(str(host.root), 'stage'), expect='is a directory')


def test_wrong_sha256(capsys, host):
    refused(capsys, host, host.stage_file('cuda'), sha256='0' * 64, expect='expected ' + '0' * 64)


def test_malformed_sha256(capsys, host):
    refused(capsys, host, host.stage_file('cuda'), sha256='abc', expect='64 hexadecimal')


def test_wrong_architecture(capsys, host):
    refused(capsys, host, host.stage_file('aarch64'), expect='built for aarch64')


def test_elf32(capsys, host):
    refused(capsys, host, host.stage_file('elf32'), expect='ELF32')


def test_big_endian(capsys, host):
    res = refused(capsys, host, host.stage_file('bigendian'), expect='big-endian')
    assert res['problems'] == ['src %s is big-endian, a little-endian library is needed'
                               % os.path.join(str(host.root), 'stage', 'bigendian.so')]


def test_truncated(capsys, host):
    refused(capsys, host, host.stage_file('truncated'), expect='truncated')


def test_not_elf(capsys, host):
    refused(capsys, host, host.stage_file('notelf'), expect='not an ELF file')


def test_executable(capsys, host):
    refused(capsys, host, host.stage_file('exec_nopie'), expect='ET_DYN')
    refused(capsys, host, host.stage_file('exec_pie'), expect='position-independent executable')


def test_missing_cuinit(capsys, host):
    res = refused(capsys, host, host.stage_file('no_cuinit'), expect='cuInit')
    assert 'cuDriverGetVersion' not in res['msg']


def test_cuda_shim_as_nvml_missing_symbols(capsys, host):
    refused(capsys, host, host.stage_file('cuda'), kind='nvml', expect='nvmlInit_v2')


def test_missing_cuinit_does_not_touch_existing_install(capsys, host):
    install(capsys, host.stage_file('cuda'), host.dest)
    refused(capsys, host, host.stage_file('no_cuinit'), expect='cuInit')


def test_dest_is_directory(capsys, host):
    os.mkdir(host.dest)
    refused(capsys, host, host.stage_file('cuda'), expect='is a directory')


def test_dest_parent_missing(capsys, host):
    refused(capsys, host, host.stage_file('cuda'), dest=os.path.join(host.libdir, 'sub', 'libvgpu-cuda.so'),
            expect='does not exist; create it first')


def test_bad_mode_and_owner(capsys, host):
    refused(capsys, host, host.stage_file('cuda'), mode='rwx', expect='octal')
    refused(capsys, host, host.stage_file('cuda'), owner='no-such-user-vgpu', expect='does not exist on this host')


def test_all_problems_listed_at_once(capsys, host):
    res = refused(capsys, host, host.stage_file('no_cuinit'), sha256='1' * 64)
    assert 'cuInit' in res['msg'] and 'expected ' + '1' * 64 in res['msg']
    assert len(res['problems']) == 2


def test_reference_shim_with_its_sha256sums(capsys, host):
    """The project's reference shim (simulator/build.sh) installs with the checksum from its SHA256SUMS."""
    shim_dir = os.path.join(SIM_BUILD, 'shim')
    sums = os.path.join(shim_dir, 'SHA256SUMS')
    if not os.path.exists(sums):
        pytest.skip('reference shims not built (run simulator/build.sh)')
    table = dict(reversed(line.split()) for line in open(sums) if line.strip())
    src = os.path.join(host.root, 'stage', 'libvgpu-cuda.so')
    shutil.copy(os.path.join(shim_dir, 'libvgpu-cuda.so'), src)
    res = install(capsys, src, host.dest, sha256=table['libvgpu-cuda.so'])
    assert res['changed'] and not res.get('failed') and res['soname'] == 'libcuda.so.1'


# ---------------------------------------------------------------------------------- several shims in one run

def shims_args(host, *specs, **kw):
    """specs: (fixture name, dest basename, kind, {extra spec keys})."""
    args = dict(shims=[dict(dict(src=host.stage_file(n), dest=os.path.join(host.libdir, d), kind=k), **x)
                       for n, d, k, x in specs])
    args.update(kw)
    return args


def loader_conf(host):
    d = os.path.join(str(host.root), 'etc', 'ld.so.conf.d')
    if not os.path.isdir(d):
        os.makedirs(d)
    return os.path.join(d, 'vgpu.conf')


def test_shims_and_loader_conf_in_one_run_then_idempotent(capsys, host):
    conf = loader_conf(host)
    args = shims_args(host, ('cuda', 'libvgpu-cuda.so', 'cuda', {}), ('nvml', 'libvgpu-nvml.so', 'nvml', {}),
                      loader_conf=conf)
    res = run_module(vgpu_shim, args, capsys)
    assert res['changed'] and not res.get('failed'), res
    assert [a['action'] for a in res['plan']] == ['install', 'install', 'write_loader_conf']
    assert [s['soname'] for s in res['shims']] == ['libvgpu-cuda.so', 'libvgpu-nvml.so']
    assert open(conf).read() == ('# Managed by Ansible (vgpu toolkit): paravirtual GPU shim libraries\n%s\n'
                                 % host.libdir)
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o644
    assert res['loader_conf'] == dict(path=conf, state='present', dirs=[host.libdir], changed=True)
    assert host.libdir in res['diff']['after'] and 'absent' in res['diff']['before']
    again = run_module(vgpu_shim, args, capsys)
    assert not again['changed'] and again['plan'] == [] and not again['loader_conf']['changed']


def test_one_bad_shim_refuses_the_whole_run(capsys, host):
    conf = loader_conf(host)
    args = shims_args(host, ('cuda', 'libvgpu-cuda.so', 'cuda', {}),
                      ('no_cuinit', 'libvgpu-cuda2.so', 'cuda', {}), loader_conf=conf)
    before = tree_state(host.root)
    res = run_module(vgpu_shim, args, capsys)
    assert res.get('failed') and 'does not export required symbol cuInit' in res['msg']
    assert 'Nothing was changed' in res['msg']
    assert tree_state(host.root) == before


def test_same_dest_twice_is_refused(capsys, host):
    args = shims_args(host, ('cuda', 'libvgpu-cuda.so', 'cuda', {}), ('cuda_v2', 'libvgpu-cuda.so', 'cuda', {}))
    before = tree_state(host.root)
    res = run_module(vgpu_shim, args, capsys)
    assert res.get('failed') and 'is given for more than one shim' in res['msg']
    assert tree_state(host.root) == before


def test_shims_excludes_the_one_shim_form(capsys, host):
    args = shims_args(host, ('cuda', 'libvgpu-cuda.so', 'cuda', {}))
    args['dest'] = host.dest
    res = run_module(vgpu_shim, args, capsys)
    assert res.get('failed') and 'mutually exclusive' in res['msg']


def test_without_src_the_installed_build_is_validated_in_place(capsys, host, sha):
    src = host.stage_file('cuda')
    install(capsys, src, host.dest)
    os.chmod(host.dest, 0o700)
    # the intended build is there: no src needed, the drifted mode is fixed in place
    res = run_module(vgpu_shim, dict(dest=host.dest, sha256=sha(src)), capsys)
    assert res['changed'] and [a['action'] for a in res['plan']] == ['set_attributes'], res
    assert res['soname'] == 'libvgpu-cuda.so' and stat.S_IMODE(os.stat(host.dest).st_mode) == 0o755
    again = run_module(vgpu_shim, dict(dest=host.dest, sha256=sha(src)), capsys)
    assert not again['changed']


def test_without_src_another_build_asks_for_it(capsys, host, sha):
    install(capsys, host.stage_file('cuda'), host.dest)
    want = sha(host.stage_file('cuda_v2'))
    before = tree_state(host.root)
    res = run_module(vgpu_shim, dict(shims=[dict(dest=host.dest, sha256=want),
                                            dict(dest=os.path.join(host.libdir, 'libvgpu-nvml.so'),
                                                 kind='nvml', sha256=want)]), capsys)
    assert res.get('failed') and res['needs_src'] == [host.dest, os.path.join(host.libdir, 'libvgpu-nvml.so')]
    assert 'Nothing was changed' in res['msg']
    assert tree_state(host.root) == before


def test_installed_build_that_fails_validation_is_refused(capsys, host, sha):
    src = host.stage_file('no_cuinit')
    install(capsys, src, host.dest, required_symbols=[])
    res = run_module(vgpu_shim, dict(dest=host.dest, sha256=sha(src)), capsys)
    assert res.get('failed') and 'installed %s does not export required symbol cuInit' % host.dest in res['msg']


def test_without_src_or_sha256_is_refused(capsys, host):
    res = run_module(vgpu_shim, dict(dest=host.dest), capsys)
    assert res.get('failed') and 'give src' in res['msg']


def test_create_parent(capsys, host, sha):
    dest = os.path.join(str(host.root), 'opt', 'vgpu', 'lib', 'libvgpu-cuda.so')
    src = host.stage_file('cuda')
    refused_res = run_module(vgpu_shim, dict(src=src, dest=dest), capsys)
    assert refused_res.get('failed') and 'does not exist; create it first' in refused_res['msg']
    before = tree_state(host.root)
    check = run_module(vgpu_shim, dict(src=src, dest=dest, create_parent=True), capsys, check=True)
    assert [a['action'] for a in check['plan']] == ['create_dir', 'install']
    assert tree_state(host.root) == before
    res = run_module(vgpu_shim, dict(src=src, dest=dest, create_parent=True), capsys)
    assert res['changed'] and sha(dest) == sha(src)
    assert stat.S_IMODE(os.stat(os.path.dirname(dest)).st_mode) == 0o755


def test_loader_conf_absent_removes_it(capsys, host):
    conf = loader_conf(host)
    src = host.stage_file('cuda')
    run_module(vgpu_shim, dict(src=src, dest=host.dest, loader_conf=conf), capsys)
    res = run_module(vgpu_shim, dict(src=src, dest=host.dest, loader_conf=conf, loader_conf_state='absent'),
                     capsys)
    assert res['changed'] and [a['action'] for a in res['plan']] == ['remove_loader_conf']
    assert not os.path.exists(conf)
    again = run_module(vgpu_shim, dict(src=src, dest=host.dest, loader_conf=conf, loader_conf_state='absent'),
                       capsys)
    assert not again['changed']


def test_loader_conf_directory_is_refused(capsys, host):
    conf = loader_conf(host)
    os.mkdir(conf)
    src = host.stage_file('cuda')
    before = tree_state(host.root)
    res = run_module(vgpu_shim, dict(src=src, dest=host.dest, loader_conf=conf), capsys)
    assert res.get('failed') and 'is a directory, not a file' in res['msg']
    assert tree_state(host.root) == before


def test_loader_conf_symlink_is_replaced_not_written_through(capsys, host):
    conf = loader_conf(host)
    victim = os.path.join(str(host.root), 'victim.conf')
    with open(victim, 'w') as f:
        f.write('/somewhere\n')
    os.symlink(victim, conf)
    res = run_module(vgpu_shim, dict(src=host.stage_file('cuda'), dest=host.dest, loader_conf=conf), capsys)
    assert res['changed'] and not os.path.islink(conf)
    assert open(victim).read() == '/somewhere\n'


# ---------------------------------------------------------------------------- consumers (host evidence)
# The shim must export every cu*/nvml* symbol the installed consumers (Ollama's libggml-cuda.so) leave
# undefined: the loader opens them RTLD_NOW, one missing symbol and the CUDA backend does not load.

@pytest.fixture
def ollama(host):
    """<root>/usr/local/lib/ollama with the simulated CUDA backends (cuda_v12, cuda_v13) of simulator/build.sh."""
    lib = os.path.join(str(host.root), 'usr', 'local', 'lib', 'ollama')
    for d in ('cuda_v12', 'cuda_v13'):
        os.makedirs(os.path.join(lib, d))
        shutil.copy(sim_built('ggml/%s/libggml-cuda.so' % d), os.path.join(lib, d, 'libggml-cuda.so'))
    return lib


def gcc_so(host, name, code, *flags):
    if shutil.which('gcc') is None:
        pytest.skip('gcc not installed')
    d = os.path.join(str(host.root), 'build')
    if not os.path.isdir(d):
        os.mkdir(d)
    src = os.path.join(d, name + '.c')
    with open(src, 'w') as f:
        f.write(code)
    out = os.path.join(d, name)
    subprocess.run(['gcc', '-shared', '-fPIC', '-w', '-o', out, src] + list(flags), check=True)
    return out


def reference_shim_without(host, *hidden):
    """The reference CUDA shim (simulator/shim/vgpu_cuda.c) built with some exports hidden."""
    if shutil.which('gcc') is None:
        pytest.skip('gcc not installed')
    stage = os.path.join(str(host.root), 'stage')
    vs = os.path.join(stage, 'hide.map')
    with open(vs, 'w') as f:
        f.write('{ global: *; local: %s; };\n' % '; '.join(hidden))
    out = os.path.join(stage, 'libvgpu-cuda-without.so')
    subprocess.run(['gcc', '-O2', '-fPIC', '-fvisibility=hidden', '-std=gnu99', '-w', '-shared', '-nostartfiles',
                    '-Wl,-soname,libcuda.so.1', '-Wl,--version-script=%s' % vs, '-o', out,
                    os.path.join(SIM_SRC, 'shim', 'vgpu_cuda.c')], check=True)
    return out


def stage_reference(host, rel='libvgpu-cuda.so'):
    p = os.path.join(str(host.root), 'stage', os.path.basename(rel))
    shutil.copy(sim_built('shim/' + rel), p)
    return p


def test_documented_defaults_match_the_module():
    import yaml
    doc = yaml.safe_load(vgpu_shim.DOCUMENTATION)
    assert doc['options']['consumers']['default'] == SHIPPED_CONSUMERS
    assert SHIPPED_CONSUMERS[:2] == ['/usr/local/lib/ollama/cuda_v*/libggml-cuda.so',
                                     '/usr/local/lib/ollama/libggml-cuda.so']
    text = ' '.join(doc['options']['required_symbols']['description'])
    for name in CON.REQUIRED_SYMBOLS['cuda'] + CON.REQUIRED_SYMBOLS['nvml']:
        assert name in text, name
    for cite in ('discover/gpu_info_nvcuda.c:22-31@v0.11.10', 'discover/native_probe_linux.go:250-283@v0.30.11',
                 'CMakeLists.txt:115-119@v0.13.5', 'ggml-backend-reg.cpp:173@v0.13.5',
                 'mem_nvml.cpp:178-184@v0.13.5', 'no in-repo evidence'):
        assert cite in text, cite
    returns = yaml.safe_load(vgpu_shim.RETURN)
    assert {'consumer_files', 'consumers_checked', 'consumer_missing'} <= set(returns)


def test_shim_missing_cumemcreate_refused_naming_the_consumer(capsys, host):
    res = refused(capsys, host, host.stage_file('no_cumemcreate'), expect='cuMemCreate')
    assert ('does not export required symbol cuMemCreate (needed by libggml-cuda.so for its VMM pool, '
            'ml/backend/ggml/ggml/src/ggml-cuda/ggml-cuda.cu:569@v0.13.5)') in res['msg']


def test_consumers_pass_with_the_reference_shim(capsys, host, ollama):
    src = stage_reference(host)
    pattern = os.path.join(ollama, 'cuda_v*', 'libggml-cuda.so')
    check = install(capsys, src, host.dest, check=True, consumers=[pattern])
    assert check['changed'] and not check.get('failed')
    res = install(capsys, src, host.dest, consumers=[pattern, os.path.join(ollama, 'libggml-cuda.so')])
    assert res['changed'] and not res.get('failed'), res
    want = [os.path.join(ollama, 'cuda_v12', 'libggml-cuda.so'), os.path.join(ollama, 'cuda_v13', 'libggml-cuda.so')]
    assert res['consumers_checked'] == want == check['consumers_checked']
    assert res['shims'][0]['consumers_checked'] == want
    assert [c['path'] for c in res['consumer_files']] == want       # the missing top-level file: not matched
    first = res['consumer_files'][0]
    assert first['error'] is None and first['weak_symbols'] == {'cuda': [], 'nvml': []}
    assert {'cuDeviceGet', 'cuDeviceGetAttribute', 'cuGetErrorString', 'cuMemCreate', 'cuMemMap',
            'cuMemAddressReserve', 'cuMemSetAccess', 'cuMemUnmap', 'cuMemRelease', 'cuMemAddressFree',
            'cuMemGetAllocationGranularity'} <= set(first['symbols']['cuda'])
    assert first['symbols']['nvml'] == []


def test_consumers_default(capsys, host, ollama, monkeypatch):
    """Without consumers the module checks its default globs (here pointed at the temp tree)."""
    monkeypatch.setattr(vgpu_shim, 'DEFAULT_CONSUMERS', [p.replace('/usr/local/lib/ollama', ollama)
                                                         for p in SHIPPED_CONSUMERS[:2]])
    src = reference_shim_without(host, 'cuMemMap', 'cuMemUnmap')
    res = refused(capsys, host, src, required_symbols=[], expect='does not export cuMemMap, cuMemUnmap, which %s'
                  % os.path.join(ollama, 'cuda_v12', 'libggml-cuda.so'))
    assert 'undefined symbol: cuMemMap' in res['msg']
    assert len(res['problems']) == 2            # cuda_v12 and cuda_v13
    assert res['consumer_missing'] == [
        dict(dest=host.dest, consumer=os.path.join(ollama, d, 'libggml-cuda.so'), symbols=['cuMemMap', 'cuMemUnmap'])
        for d in ('cuda_v12', 'cuda_v13')]


def test_consumer_lacking_symbol_refused_and_host_unchanged(capsys, host, ollama, sha):
    """A shim that passes its required_symbols but lacks what an installed backend references: refused,
    in check mode too, and an existing install is left as it was."""
    good = stage_reference(host)
    install(capsys, good, host.dest, consumers=[])
    bad = reference_shim_without(host, 'cuMemCreate')
    consumers = [os.path.join(ollama, 'cuda_v12', 'libggml-cuda.so')]
    for check in (True, False):
        before = tree_state(host.root)
        res = install(capsys, bad, host.dest, check=check, required_symbols=[], consumers=consumers)
        assert res.get('failed') and 'Nothing was changed' in res['msg']
        assert res['problems'] == [
            'src %s does not export cuMemCreate, which %s on this host references (undefined there): the loader '
            'would refuse that file with "undefined symbol: cuMemCreate". Rebuild the shim to export it, or '
            'upgrade/remove that file' % (bad, consumers[0])]
        assert tree_state(host.root) == before
    assert sha(host.dest) == sha(good)
    # with the default required_symbols the same shim fails both checks, each naming who needs cuMemCreate
    res = refused(capsys, host, bad, consumers=consumers)
    assert len(res['problems']) == 1 and 'libggml-cuda.so for its VMM pool' in res['problems'][0]


WEAK_CONSUMER = r"""
extern int cuInit(unsigned int);
extern int cuMemCreate(void *, unsigned long, const void *, unsigned long long) __attribute__((weak));
extern int cudaMalloc(void **, unsigned long);
int use(void) { void *p = 0; return cuInit(0) + (cuMemCreate ? cuMemCreate(0, 0, 0, 0) : 0) + cudaMalloc(&p, 1); }
"""


def test_weak_undefined_is_optional(capsys, host):
    consumer = gcc_so(host, 'libweak-consumer.so', WEAK_CONSUMER)
    res = install(capsys, host.stage_file('no_cumemcreate'), host.dest, required_symbols=[], consumers=[consumer])
    assert res['changed'] and not res.get('failed'), res
    assert res['consumers_checked'] == [consumer]
    assert res['consumer_files'] == [dict(path=consumer, symbols={'cuda': ['cuInit'], 'nvml': []},
                                          weak_symbols={'cuda': ['cuMemCreate'], 'nvml': []}, error=None)]


def test_nvml_and_cudart_kinds(capsys, host):
    consumer = gcc_so(host, 'libnvml-consumer.so',
                      'extern int nvmlNewCall(void); extern int cuInit(unsigned);\n'
                      'int use(void) { return nvmlNewCall() + cuInit(0); }\n')
    nvml_dest = os.path.join(host.libdir, 'libvgpu-nvml.so')
    res = refused(capsys, host, host.stage_file('nvml'), dest=nvml_dest, kind='nvml', consumers=[consumer],
                  expect='does not export nvmlNewCall, which %s' % consumer)
    assert 'cuInit' not in res['msg']          # the CUDA shim's business, not the NVML one's
    # a cudart shim is not judged by consumer files
    res = install(capsys, host.stage_file('cudart'), os.path.join(host.libdir, 'libvgpu-cudart.so'), kind='cudart',
                  consumers=[consumer])
    assert res['changed'] and res['consumers_checked'] == []


def test_installed_build_checked_against_a_new_consumer(capsys, host, sha):
    """Validated in place (no src): an Ollama installed later that needs more is caught on the next run."""
    src = host.stage_file('cuda')
    install(capsys, src, host.dest, consumers=[])
    consumer = gcc_so(host, 'libggml-cuda.so', 'extern int cuBrandNew(void); int use(void) { return cuBrandNew(); }\n')
    before = tree_state(host.root)
    res = run_module(vgpu_shim, dict(dest=host.dest, sha256=sha(src), consumers=[consumer]), capsys)
    assert res.get('failed') and 'installed %s does not export cuBrandNew, which %s' % (host.dest, consumer) \
        in res['msg']
    assert tree_state(host.root) == before


def test_unreadable_consumer_warns_and_is_skipped(capsys, host):
    d = os.path.join(str(host.root), 'ollama', 'cuda_v12')
    os.makedirs(d)
    with open(os.path.join(d, 'libggml-cuda.so'), 'w') as f:
        f.write('not an ELF file\n')
    res = install(capsys, host.stage_file('cuda'), host.dest,
                  consumers=[os.path.join(str(host.root), 'ollama', 'cuda_v*', 'libggml-cuda.so')])
    assert res['changed'] and res['consumers_checked'] == []
    assert res['consumer_files'][0]['error'] and 'not an ELF file' in res['consumer_files'][0]['error']
    assert any('was not checked' in w and 'libggml-cuda.so' in w for w in res['warnings'])


def test_relative_consumer_refused(capsys, host):
    refused(capsys, host, host.stage_file('cuda'), consumers=['lib/ollama/*.so'], expect='absolute paths')


def test_shims_form_checks_each_kind(capsys, host, ollama):
    src = stage_reference(host)
    nvml = stage_reference(host, 'libvgpu-nvml.so')
    args = dict(shims=[dict(src=src, dest=host.dest, kind='cuda'),
                       dict(src=nvml, dest=os.path.join(host.libdir, 'libvgpu-nvml.so'), kind='nvml')],
                consumers=[os.path.join(ollama, 'cuda_v*', 'libggml-cuda.so')])
    res = run_module(vgpu_shim, args, capsys)
    assert res['changed'] and not res.get('failed'), res
    assert [len(s['consumers_checked']) for s in res['shims']] == [2, 2]
    again = run_module(vgpu_shim, args, capsys)
    assert not again['changed']
