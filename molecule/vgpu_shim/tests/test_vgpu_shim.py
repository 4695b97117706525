"""vgpu_shim after converge + idempotence: the shims are real root-owned files of the intended build, and
the loader finds them through /etc/ld.so.conf.d."""
import pytest

from vgpu_testlib import realpath, sha256, shim_sha256s

SHIM_DIR = "/usr/lib64"
SHIMS = {"libvgpu-cuda.so": "libcuda.so.1", "libvgpu-nvml.so": "libnvidia-ml.so.1"}


@pytest.mark.parametrize("name", sorted(SHIMS))
def test_shim_is_a_real_root_owned_file_of_the_intended_build(host, name):
    f = host.file("%s/%s" % (SHIM_DIR, name))
    assert f.is_file and not f.is_symlink
    assert (f.mode, f.user, f.group) == (0o755, "root", "root")
    assert sha256(host, f.path) == shim_sha256s()[name]


def test_no_backup_and_no_second_copy(host):
    # a fresh install replaces nothing, and nothing else in the loader dirs carries the shim's bytes
    assert host.run("ls -A %s | grep -c vgpu-backup", SHIM_DIR).stdout.strip() == "0"
    cuda = shim_sha256s()["libvgpu-cuda.so"]
    copies = host.check_output(
        "find /usr/lib64 /usr/local/lib /usr/lib/x86_64-linux-gnu -xdev -type f -name '*.so*' "
        "-exec sha256sum {} + | grep -c %s || true", cuda)
    assert copies == "1"


def test_nothing_staged_outside_the_install_dir(host):
    # the action plugin uploads into Ansible's own temp dir and removes it: no copy is left behind
    assert not host.file("/var/cache/vgpu").exists
    left = host.check_output("find /root/.ansible/tmp /tmp -xdev -name 'src-*libvgpu-*' 2>/dev/null || true")
    assert left == ""


def test_loader_path_entry(host):
    conf = host.file("/etc/ld.so.conf.d/vgpu.conf")
    assert (conf.mode, conf.user, conf.group) == (0o644, "root", "root")
    assert SHIM_DIR in conf.content_string.splitlines()


@pytest.mark.parametrize("shim,soname", sorted(SHIMS.items()))
def test_ld_cache_resolves_the_soname_to_the_shim(host, shim, soname):
    # ldconfig made <soname> -> <shim> in the shim dir (the shim's SONAME) and cached it
    cache = host.check_output("ldconfig -p")
    entries = [l.split("=>")[1].strip() for l in cache.splitlines() if l.strip().startswith(soname + " ")]
    assert "%s/%s" % (SHIM_DIR, soname) in entries, cache
    assert realpath(host, "%s/%s" % (SHIM_DIR, soname)) == "%s/%s" % (SHIM_DIR, shim)


def test_never_a_global_preload(host):
    f = host.file("/etc/ld.so.preload")
    assert not f.exists or "vgpu" not in f.content_string
