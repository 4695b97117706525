"""After site.yml and playbooks/rollback.yml the host is what it was before provisioning."""
import difflib

EVIDENCE = "/var/tmp/vgpu-rollback-test"


def test_file_tree_equals_the_one_before_provisioning(host):
    before = host.file(EVIDENCE + "/before.txt").content_string
    after = host.check_output("python3 %s/tree_digest.py", EVIDENCE) + "\n"
    diff = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), "before", "after"))
    assert before == after, diff
    # the fingerprint covers what matters here (guard against a digest that silently sees nothing)
    assert "/usr/local/lib/libcuda.so.1 0644 0:0 file " in after
    assert "/etc/systemd/system/ollama.service.d/override.conf" in after
    assert "/usr/lib64/libvgpu-cuda.so" not in after and "/etc/ld.so.conf.d/vgpu.conf" not in after


def test_the_running_server_has_none_of_the_toolkits_environment(host):
    pid = host.check_output("systemctl show -p MainPID --value ollama.service")
    env = host.check_output("tr '\\0' '\\n' < /proc/%s/environ", pid).splitlines()
    assert not any(e.startswith("LD_PRELOAD=") for e in env)
    assert "OLLAMA_KEEP_ALIVE=10m" in env  # the admin's drop-in still applies
    maps = host.check_output("cat /proc/%s/maps", pid)
    assert "libvgpu" not in maps
