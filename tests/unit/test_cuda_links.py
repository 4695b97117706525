"""library/cuda_links.py (and the vgpu_fs helpers it rests on): link planning against temp dirs."""
import os
import shutil

import pytest
from ansible.module_utils import vgpu_fs
from module_harness import refused_unchanged, run_module, tree_state

import cuda_links


@pytest.fixture
def host(tmp_path, elf):
    """A fake root: /usr/lib64 with the installed shim, /usr/local/lib, Ollama's lib dir with cuda_v12 only."""
    r = str(tmp_path)
    lib64 = os.path.join(r, 'usr/lib64')
    ollama = os.path.join(r, 'usr/local/lib/ollama')
    for d in (lib64, os.path.join(ollama, 'cuda_v12')):
        os.makedirs(d)
    target = os.path.join(lib64, 'libvgpu-cuda.so')
    shutil.copy(elf['cuda'], target)

    class Host(object):
        root = r
        pass
    Host.target = target
    Host.lib64 = lib64
    Host.ollama = ollama
    Host.dirs = [lib64, os.path.join(r, 'usr/local/lib'), ollama, os.path.join(ollama, 'cuda_v12'),
                 os.path.join(ollama, 'cuda_v13')]
    Host.elf = elf
    return Host


def links(capsys, host, check=False, **kw):
    args = dict(target=host.target, dirs=host.dirs, ollama_lib_dir=host.ollama)
    args.update(kw)
    return run_module(cuda_links, args, capsys, check=check)


def by_path(res):
    return dict((it['path'], it) for it in res['links'])


def refused(capsys, host, expect, **kw):
    return refused_unchanged(host.root, lambda: links(capsys, host, **kw), expect)


# ------------------------------------------------------------------------------------------- present

def test_fresh_host(capsys, host):
    res = links(capsys, host)
    assert res['changed']
    items = by_path(res)
    v13 = os.path.join(host.ollama, 'cuda_v13', 'libcuda.so.1')
    assert items[v13]['action'] == 'skipped' and items[v13]['reason'] == 'directory missing'
    assert not os.path.exists(os.path.dirname(v13))           # not invented
    made = [p for p, it in items.items() if it['action'] == 'created']
    assert len(made) == 4
    for p in made:
        assert os.readlink(p) == host.target and items[p]['before'] is None and items[p]['after'] == host.target
    assert '%s -> %s' % (made[0], host.target) in res['diff']['after']
    assert '%s (absent)' % made[0] in res['diff']['before']
    # no temp links left behind
    assert sorted(os.listdir(host.lib64)) == ['libcuda.so.1', 'libvgpu-cuda.so']

    again = links(capsys, host)
    assert not again['changed']
    assert set(it['action'] for it in again['links']) == {'unchanged', 'skipped'}


def test_check_mode_changes_nothing(capsys, host):
    os.symlink('/nowhere/libcuda.so.1', os.path.join(host.lib64, 'libcuda.so.1'))
    before = tree_state(host.root)
    res = links(capsys, host, check=True)
    assert res['changed']
    assert by_path(res)[os.path.join(host.lib64, 'libcuda.so.1')]['action'] == 'replaced'
    assert tree_state(host.root) == before


def foreign_links(host, name, content=b''):
    """A file <root>/<name>, libcuda.so.1 in lib64 linked to it and a dangling libcuda.so.1 in Ollama's lib
    dir: (the file, the wrong link, the dangling link)."""
    other = os.path.join(host.root, name)
    with open(other, 'wb') as f:
        f.write(content)
    wrong = os.path.join(host.lib64, 'libcuda.so.1')
    dangling = os.path.join(host.ollama, 'libcuda.so.1')
    os.symlink(other, wrong)
    os.symlink('/gone/libcuda.so.1', dangling)
    return other, wrong, dangling


def test_wrong_and_dangling_links_replaced(capsys, host):
    other, wrong, dangling = foreign_links(host, 'other.so')
    res = links(capsys, host)
    items = by_path(res)
    assert items[wrong]['action'] == 'replaced' and items[wrong]['before'] == other
    assert items[dangling]['action'] == 'replaced' and items[dangling]['dangling'] is True
    assert items[dangling]['before'] == '/gone/libcuda.so.1'
    assert os.readlink(wrong) == host.target and os.readlink(dangling) == host.target
    assert os.path.exists(other)           # the old target is untouched


def test_replaced_link_is_kept_and_absent_puts_it_back(capsys, host):
    """A foreign link's text is kept as a hidden symlink backup (never followed); absent restores it."""
    driver, wrong, dangling = foreign_links(host, 'libcuda.so.535.104.05', b'not ours')
    res = links(capsys, host)
    items = by_path(res)
    for path, text in ((wrong, driver), (dangling, '/gone/libcuda.so.1')):
        kept = items[path]['backup_file']
        assert items[path]['action'] == 'replaced' and os.readlink(path) == host.target
        assert os.path.basename(kept).startswith('.libcuda.so.1.') and kept.endswith('.vgpu-backup')
        assert os.path.islink(kept) and os.readlink(kept) == text
    assert open(driver, 'rb').read() == b'not ours'
    assert not links(capsys, host)['changed']          # the backups do not disturb the next run

    off = links(capsys, host, state='absent')
    items = by_path(off)
    assert items[wrong]['action'] == 'restored' and items[wrong]['after'] == driver
    assert os.readlink(wrong) == driver and os.readlink(dangling) == '/gone/libcuda.so.1'
    assert not [n for n in os.listdir(host.lib64) if n.endswith('.vgpu-backup')]


def test_replaced_link_without_backup(capsys, host):
    wrong = os.path.join(host.lib64, 'libcuda.so.1')
    os.symlink('/gone/libcuda.so.1', wrong)
    res = links(capsys, host, backup=False)
    assert by_path(res)[wrong]['action'] == 'replaced' and 'backup_file' not in by_path(res)[wrong]
    assert not [n for n in os.listdir(host.lib64) if n.endswith('.vgpu-backup')]


def test_relative_link_to_target_is_unchanged(capsys, host):
    """ldconfig rewrites a SONAME link to a relative name; that is still our link."""
    rel = os.path.join(host.lib64, 'libcuda.so.1')
    os.symlink('libvgpu-cuda.so', rel)
    res = links(capsys, host)
    assert by_path(res)[rel]['action'] == 'unchanged'
    assert os.readlink(rel) == 'libvgpu-cuda.so'


def test_link_via_another_link_is_replaced(capsys, host):
    hop = os.path.join(host.root, 'hop.so')
    os.symlink(host.target, hop)
    chained = os.path.join(host.lib64, 'libcuda.so.1')
    os.symlink(hop, chained)
    res = links(capsys, host)
    assert by_path(res)[chained]['action'] == 'replaced'


def test_regular_file_copy_refused_without_replace_files(capsys, host):
    copy = os.path.join(host.ollama, 'cuda_v12', 'libcuda.so.1')
    shutil.copy(host.target, copy)
    res = refused(capsys, host, 'replace_files: true')
    assert copy in res['msg'] and 'identical copy of the shim' in res['msg']
    assert len(res['errors']) == 1


def test_regular_file_copy_backed_up_and_replaced(capsys, host, sha):
    stale = os.path.join(host.ollama, 'cuda_v12', 'libcuda.so.1')
    shutil.copy(host.elf['cuda_v2'], stale)        # an older shim build
    old_sha = sha(stale)
    res = links(capsys, host, replace_files=True)
    it = by_path(res)[stale]
    assert it['action'] == 'backed_up_and_replaced'
    assert it['before'] == 'regular file sha256=%s' % old_sha
    assert os.readlink(stale) == host.target
    backup = it['backup_file']
    assert os.path.basename(backup).startswith('.libcuda.so.1.') and backup.endswith('.vgpu-backup')
    assert sha(backup) == old_sha
    # the diff shows the file going
    assert '%s (regular file sha256=%s)' % (stale, old_sha) in res['diff']['before']


def test_replace_files_without_backup(capsys, host):
    stale = os.path.join(host.ollama, 'libcuda.so.1')
    shutil.copy(host.elf['cuda_v2'], stale)
    res = links(capsys, host, replace_files=True, backup=False)
    assert by_path(res)[stale]['action'] == 'replaced'
    assert vgpu_fs.find_backups(stale) == []


def test_real_driver_lookalike_refused(capsys, host):
    drv = os.path.join(host.lib64, 'libcuda.so.1')
    shutil.copy(host.elf['driver'], drv)
    res = refused(capsys, host, 'looks like a real NVIDIA driver library', replace_files=True)
    assert 'NVIDIA driver strings' in res['msg'] and 'SONAME is libcuda.so.1' in res['msg']
    assert 'replace_driver_libs' in res['msg']
    # without replace_files it is refused as a plain regular file
    refused(capsys, host, 'replace_files: true')


def test_real_driver_replaced_when_asked(capsys, host, sha):
    drv = os.path.join(host.lib64, 'libcuda.so.1')
    shutil.copy(host.elf['driver'], drv)
    drv_sha = sha(drv)
    res = links(capsys, host, replace_files=True, replace_driver_libs=True)
    it = by_path(res)[drv]
    assert it['action'] == 'backed_up_and_replaced' and sha(it['backup_file']) == drv_sha
    assert any('NVIDIA driver' in w for w in res['warnings'])


def test_directory_at_link_path(capsys, host):
    os.mkdir(os.path.join(host.ollama, 'libcuda.so.1'))
    refused(capsys, host, 'is a directory where a link should go')


def test_all_or_nothing(capsys, host):
    """One bad path fails the whole run before any of the (valid) links is made."""
    os.mkdir(os.path.join(host.ollama, 'cuda_v12', 'libcuda.so.1'))
    res = refused(capsys, host, 'is a directory')
    assert not os.path.lexists(os.path.join(host.lib64, 'libcuda.so.1'))
    assert len(res['errors']) == 1


def test_create_missing_dirs(capsys, host):
    res = links(capsys, host, create_missing_dirs=True)
    v13 = os.path.join(host.ollama, 'cuda_v13', 'libcuda.so.1')
    assert by_path(res)[v13]['action'] == 'created'
    assert os.readlink(v13) == host.target
    assert oct(os.stat(os.path.dirname(v13)).st_mode & 0o777) == oct(0o755)


def test_discover_ollama_dirs(capsys, host):
    for d in ('cuda_v11', 'cuda_v99'):
        os.mkdir(os.path.join(host.ollama, d))
    open(os.path.join(host.ollama, 'cuda_vfile'), 'w').close()   # not a dir: ignored
    res = links(capsys, host)
    assert os.path.join(host.ollama, 'cuda_v99') in res['dirs']
    assert os.path.join(host.ollama, 'cuda_vfile') not in res['dirs']
    assert os.readlink(os.path.join(host.ollama, 'cuda_v11', 'libcuda.so.1')) == host.target
    off = links(capsys, host, discover_ollama_dirs=False, state='absent')
    assert os.path.join(host.ollama, 'cuda_v99') not in off['dirs']


def test_duplicate_and_aliased_dirs_once(capsys, host):
    alias = os.path.join(host.root, 'lib64-alias')
    os.symlink(host.lib64, alias)
    res = links(capsys, host, dirs=[host.lib64, host.lib64 + '/', alias], discover_ollama_dirs=False)
    assert res['dirs'] == [host.lib64]
    assert len(res['links']) == 1


def test_several_names(capsys, host):
    res = links(capsys, host, dirs=[host.lib64], names=['libcuda.so.1', 'libcuda.so'], discover_ollama_dirs=False)
    assert [it['action'] for it in res['links']] == ['created', 'created']
    assert os.readlink(os.path.join(host.lib64, 'libcuda.so')) == host.target


def test_target_at_a_link_path_refused(capsys, host):
    refused(capsys, host, 'is the target itself', dirs=[host.lib64], names=['libvgpu-cuda.so'])


@pytest.mark.parametrize('case', ['missing', 'symlink', 'directory'])
def test_bad_target(capsys, host, case):
    if case == 'missing':
        target, expect = os.path.join(host.lib64, 'nope.so'), 'does not exist'
    elif case == 'symlink':
        target, expect = os.path.join(host.root, 'shim-link.so'), 'is a symlink'
        os.symlink(host.target, target)
    else:
        target, expect = host.lib64, 'not a regular file'
    refused(capsys, host, expect, target=target)


def test_bad_names_and_dirs(capsys, host):
    refused(capsys, host, 'plain file names', names=['../libcuda.so.1'])
    refused(capsys, host, 'absolute', dirs=['usr/lib64'])


def test_dir_path_is_a_file(capsys, host):
    bogus = os.path.join(host.root, 'usr/lib')
    open(bogus, 'w').close()
    refused(capsys, host, 'is not a directory', dirs=host.dirs + [bogus])


# ------------------------------------------------------------------------------------------- links (several sets)

def two_sets(host):
    """The CUDA and the NVML shim installed side by side; the links option for both."""
    nvml = os.path.join(host.lib64, 'libvgpu-nvml.so')
    shutil.copy(host.elf['nvml'], nvml)
    return nvml, [dict(target=host.target, names=['libcuda.so.1']), dict(target=nvml, names=['libnvidia-ml.so.1'])]


def sets_call(capsys, host, sets, check=False, **kw):
    args = dict(links=sets, dirs=host.dirs, ollama_lib_dir=host.ollama)
    args.update(kw)
    return run_module(cuda_links, args, capsys, check=check)


def test_links_two_sets_in_one_call(capsys, host):
    nvml, sets = two_sets(host)
    res = sets_call(capsys, host, sets)
    assert res['changed'], res
    # the items of the first set, then those of the second, each saying where it belongs
    assert [it['name'] for it in res['links']] == ['libcuda.so.1'] * 5 + ['libnvidia-ml.so.1'] * 5
    for it in res['links']:
        assert it['path'].endswith('/' + it['name'])
        assert it['target'] == (host.target if it['name'] == 'libcuda.so.1' else nvml)
    made = [it for it in res['links'] if it['action'] == 'created']
    assert len(made) == 8
    for it in made:
        assert os.readlink(it['path']) == it['target'] == it['after']
    assert os.readlink(os.path.join(host.ollama, 'cuda_v12', 'libnvidia-ml.so.1')) == nvml
    # the diff covers both sets
    assert '%s -> %s' % (os.path.join(host.lib64, 'libcuda.so.1'), host.target) in res['diff']['after']
    assert '%s -> %s' % (os.path.join(host.lib64, 'libnvidia-ml.so.1'), nvml) in res['diff']['after']
    assert '%s (absent)' % os.path.join(host.lib64, 'libnvidia-ml.so.1') in res['diff']['before']
    assert host.target in res['diff']['after_header'] and nvml in res['diff']['after_header']
    assert sorted(os.listdir(host.lib64)) == ['libcuda.so.1', 'libnvidia-ml.so.1', 'libvgpu-cuda.so',
                                              'libvgpu-nvml.so']

    again = sets_call(capsys, host, sets)
    assert not again['changed']
    assert set(it['action'] for it in again['links']) == {'unchanged', 'skipped'}

    # names defaults to libcuda.so.1 within a set; absent removes both sets' links
    gone = sets_call(capsys, host, [dict(target=host.target), dict(target=nvml, names=['libnvidia-ml.so.1'])],
                     state='absent')
    assert gone['changed'] and set(it['action'] for it in gone['links']) == {'removed', 'skipped'}
    assert sorted(os.listdir(host.lib64)) == ['libvgpu-cuda.so', 'libvgpu-nvml.so']


def test_links_check_mode_changes_nothing(capsys, host):
    _nvml, sets = two_sets(host)
    before = tree_state(host.root)
    res = sets_call(capsys, host, sets, check=True)
    assert res['changed']
    assert sorted(set((it['name'], it['action']) for it in res['links'])) == [
        ('libcuda.so.1', 'created'), ('libcuda.so.1', 'skipped'),
        ('libnvidia-ml.so.1', 'created'), ('libnvidia-ml.so.1', 'skipped')]
    assert tree_state(host.root) == before


@pytest.mark.parametrize('case', ['bad target', 'bad path'])
def test_links_one_bad_set_refuses_the_call(capsys, host, case):
    """The first set is fine; a problem in the second one leaves the first one's links unmade too."""
    nvml, sets = two_sets(host)
    if case == 'bad target':
        sets[1]['target'] = os.path.join(host.lib64, 'libvgpu-nvml-missing.so')
        expect = 'does not exist'
    else:
        os.mkdir(os.path.join(host.ollama, 'libnvidia-ml.so.1'))
        expect = 'is a directory where a link should go'
    res = refused_unchanged(host.root, lambda: sets_call(capsys, host, sets), expect)
    assert len(res['errors']) == 1
    assert not os.path.lexists(os.path.join(host.lib64, 'libcuda.so.1'))


def test_links_same_path_in_two_sets_refused(capsys, host):
    nvml, sets = two_sets(host)
    sets[1]['names'] = ['libnvidia-ml.so.1', 'libcuda.so.1']
    before = tree_state(host.root)
    res = sets_call(capsys, host, sets)
    assert res.get('failed') and 'planned by two sets' in res['msg'], res
    assert '%s is planned by two sets (targets %s and %s)' % (
        os.path.join(host.lib64, 'libcuda.so.1'), host.target, nvml) in res['msg']
    assert tree_state(host.root) == before
    # the same target listed twice is still two sets
    res = sets_call(capsys, host, [dict(target=host.target), dict(target=host.target)])
    assert res.get('failed') and 'planned by two sets' in res['msg'], res
    assert tree_state(host.root) == before


def test_links_over_another_sets_target_refused(capsys, host):
    nvml, sets = two_sets(host)
    sets[1]['names'] = ['libvgpu-cuda.so']            # would put an NVML link over the CUDA shim
    before = tree_state(host.root)
    res = sets_call(capsys, host, sets, replace_files=True, replace_driver_libs=True, discover_ollama_dirs=False,
                    dirs=[host.lib64])
    assert res.get('failed') and 'is the target of another set (%s)' % host.target in res['msg'], res
    assert tree_state(host.root) == before


def test_links_replaces_a_link_to_the_other_shim(capsys, host):
    """A libcuda.so.1 pointing at the NVML shim is replaced, not mistaken for that shim."""
    nvml, sets = two_sets(host)
    wrong = os.path.join(host.lib64, 'libcuda.so.1')
    os.symlink(nvml, wrong)
    res = sets_call(capsys, host, sets)
    assert by_path(res)[wrong]['action'] == 'replaced' and os.readlink(wrong) == host.target


def test_links_exclusive_with_target_and_names(capsys, host):
    _nvml, sets = two_sets(host)
    before = tree_state(host.root)
    for extra in (dict(target=host.target), dict(names=['libcuda.so.1'])):
        res = sets_call(capsys, host, sets, **extra)
        assert res.get('failed') and 'mutually exclusive' in res['msg'], res
    res = run_module(cuda_links, dict(dirs=host.dirs), capsys)
    assert res.get('failed') and 'one of the following is required: target, links' in res['msg'], res
    res = sets_call(capsys, host, [dict(names=['libcuda.so.1'])])
    assert res.get('failed') and 'target' in res['msg'], res
    assert tree_state(host.root) == before


def test_links_bad_names_and_empty_list(capsys, host):
    _nvml, sets = two_sets(host)
    sets[1]['names'] = ['../libnvidia-ml.so.1']
    res = sets_call(capsys, host, sets)
    assert res.get('failed') and 'plain file names' in res['msg'], res
    res = sets_call(capsys, host, [])
    assert res.get('failed') and 'at least one' in res['msg'], res


# ------------------------------------------------------------------------------------------- absent

def test_absent_removes_only_our_links_and_restores_backup(capsys, host, sha):
    stale = os.path.join(host.ollama, 'cuda_v12', 'libcuda.so.1')
    shutil.copy(host.elf['cuda_v2'], stale)
    stale_sha = sha(stale)
    links(capsys, host, replace_files=True)
    foreign = os.path.join(host.ollama, 'libcuda.so.1')
    os.unlink(foreign)
    os.symlink('/opt/other/libcuda.so.1', foreign)       # someone else's link
    regular = os.path.join(host.root, 'usr/local/lib/libcuda.so.1')
    os.unlink(regular)
    open(regular, 'w').close()

    check_before = tree_state(host.root)
    check = links(capsys, host, state='absent', check=True)
    assert check['changed'] and tree_state(host.root) == check_before

    res = links(capsys, host, state='absent')
    items = by_path(res)
    assert items[os.path.join(host.lib64, 'libcuda.so.1')]['action'] == 'removed'
    assert not os.path.lexists(os.path.join(host.lib64, 'libcuda.so.1'))
    assert items[stale]['action'] == 'restored'
    assert not os.path.islink(stale) and sha(stale) == stale_sha
    assert vgpu_fs.find_backups(stale) == []
    assert items[foreign]['action'] == 'unchanged' and os.readlink(foreign) == '/opt/other/libcuda.so.1'
    assert items[regular]['action'] == 'unchanged' and os.path.isfile(regular)
    assert '%s -> %s' % (os.path.join(host.lib64, 'libcuda.so.1'), host.target) in res['diff']['before']

    again = links(capsys, host, state='absent')
    assert not again['changed']


def test_absent_works_when_target_already_gone(capsys, host):
    links(capsys, host)
    os.unlink(host.target)
    res = links(capsys, host, state='absent')
    assert res['changed']
    assert not os.path.lexists(os.path.join(host.lib64, 'libcuda.so.1'))


# ------------------------------------------------------------------------------------------- vgpu_fs helpers

def test_driver_heuristic(host, tmp_path):
    drv = host.elf['driver']
    reasons = vgpu_fs.looks_like_nvidia_driver(drv, host.target, 'libvgpu-cuda.so', dpkg_info_dir=str(tmp_path))
    text = ' '.join(reasons)
    assert 'versioned NVIDIA driver library name' in text       # libcuda.so.535.104.05
    assert 'NVIDIA driver strings' in text and '/dev/nvidiactl' in text
    assert 'SONAME is libcuda.so.1' in text
    # a shim is not a driver; an identical copy of the reference never is
    assert vgpu_fs.looks_like_nvidia_driver(host.elf['cuda_v2'], host.target, 'libvgpu-cuda.so',
                                            dpkg_info_dir=str(tmp_path)) == []
    assert vgpu_fs.looks_like_nvidia_driver(host.target, host.target, None, dpkg_info_dir=str(tmp_path)) == []
    # same SONAME as the shim: a stale shim copy, not a driver
    assert vgpu_fs.looks_like_nvidia_driver(host.elf['cuda_soname1'], host.target, 'libcuda.so.1',
                                            dpkg_info_dir=str(tmp_path)) == []


def test_driver_heuristic_dpkg_owner(host, tmp_path):
    info = tmp_path / 'dpkg'
    info.mkdir()
    f = os.path.join(host.lib64, 'libfoo.so.1')
    shutil.copy(host.elf['nvml'], f)
    (info / 'libnvidia-compute-535:amd64.list').write_text('/.\n/usr\n%s\n' % f)
    reasons = vgpu_fs.looks_like_nvidia_driver(f, host.target, 'libvgpu-cuda.so', dpkg_info_dir=str(info))
    assert reasons == ['it belongs to the package libnvidia-compute-535 (dpkg)']
    assert vgpu_fs.package_owner(f, str(info)) == 'libnvidia-compute-535'
    assert vgpu_fs.package_owner(host.target, str(info)) is None


def test_backup_names_and_order(tmp_path):
    p = str(tmp_path / 'libcuda.so.1')
    with open(p, 'w') as f:
        f.write('one')
    b1 = vgpu_fs.make_backup(p, now=1000000000)
    b2 = vgpu_fs.make_backup(p, now=1000000000)          # same second: suffixed
    b3 = vgpu_fs.make_backup(p, now=1700000000)
    assert os.path.basename(b1) == '.libcuda.so.1.20010909T014640Z.vgpu-backup'
    assert os.path.basename(b2) == '.libcuda.so.1.20010909T014640Z-1.vgpu-backup'
    assert vgpu_fs.find_backups(p) == [b1, b2, b3]
    open(str(tmp_path / '.libcuda.so.1.junk.vgpu-backup'), 'w').close()   # not ours: ignored
    assert vgpu_fs.find_backups(p) == [b1, b2, b3]


def test_atomic_symlink_refuses_directory(tmp_path):
    d = tmp_path / 'libcuda.so.1'
    d.mkdir()
    with pytest.raises(OSError):
        vgpu_fs.atomic_symlink('/x', str(d))
    assert d.is_dir()


def test_check_mode_plans_links_to_a_shim_not_installed_yet(capsys, host):
    # site.yml --check on a fresh host: the shim task only *planned* the install
    target = os.path.join(host.lib64, 'libvgpu-cuda-new.so')
    before = tree_state(host.root)
    res = links(capsys, host, check=True, target=target)
    assert not res.get('failed'), res
    assert res['changed'] and all(it['after'] == target for it in res['links'] if it['action'] == 'created')
    assert any('does not exist yet' in w for w in res['warnings'])
    assert tree_state(host.root) == before
    # the real run still refuses it
    refused(capsys, host, 'does not exist', target=target)


def test_documented_defaults_come_from_the_layout():
    """DOCUMENTATION's dirs / ollama_lib_dir defaults are the module's, which are vgpu_layout's preload ones."""
    import yaml
    from ansible.module_utils.vgpu_layout import OLLAMA_LIB_DIR, default_link_dirs
    options = yaml.safe_load(cuda_links.DOCUMENTATION)['options']
    assert options['dirs']['default'] == cuda_links.DEFAULT_DIRS == default_link_dirs('preload')
    assert options['ollama_lib_dir']['default'] == OLLAMA_LIB_DIR
    assert options['names']['default'] == options['links']['suboptions']['names']['default'] == cuda_links.DEFAULT_NAMES


def test_candidate_dirs_adds_discovered_backends_once(tmp_path):
    ollama = tmp_path / 'ollama'
    for d in ('cuda_v12', 'cuda_v14'):
        (ollama / d).mkdir(parents=True)
    (ollama / 'cuda_v9.txt').write_text('not a dir')
    alias = tmp_path / 'alias'
    alias.symlink_to(ollama / 'cuda_v12')
    given = [str(ollama / 'cuda_v12') + '/', str(alias), str(tmp_path / 'missing')]
    assert cuda_links.candidate_dirs(given, str(ollama), True) == [
        str(ollama / 'cuda_v12'), str(tmp_path / 'missing'), str(ollama / 'cuda_v14')]
    assert cuda_links.candidate_dirs(given, str(ollama), False) == [str(ollama / 'cuda_v12'), str(tmp_path / 'missing')]
