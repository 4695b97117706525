"""vgpu_probe: the live driver-API probe, with real subprocesses, the real loader and real shims.

The reference shims and bad builds come from simulator/build.sh (.build/sim/shim/, built here when
missing) and are copied into a temporary directory readable by everyone at the start of the session (a
colleague's rebuild swaps .build/sim under us; the `nobody` test needs a readable copy). Bad builds
that are not there yet are skipped with a reason. tests/fixtures/probe/*.c are scriptable stand-ins
(any cuInit rc, crash, exit, spam, fork, N devices; an NVML with any init rc and version string).
"""
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from ansible.module_utils import vgpu_probe as P
from ansible.module_utils import vgpu_probe_child as PC
from ansible.module_utils import vgpu_probe_result as PR

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(REPO, 'tests', 'fixtures', 'probe')
BUILD = os.path.join(os.environ.get('VGPU_BUILD_DIR') or os.path.join(REPO, '.build'), 'sim')

NAME = 'NVIDIA vH100 80GB HBM3'
TOTAL = 81559 << 20
PCI = '0000:00:05.0'
UUID = 'GPU-8a3c5f1e-2b7d-4e90-9c61-5d2f7a0b3e48'
BASE_ENV = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'LC_ALL': 'C'}
NOBODY = 'nobody'


class Shims(object):
    def __init__(self, root):
        self.root = root

    def path(self, name):
        return os.path.join(self.root, 'shim', name)

    @property
    def cuda(self):
        return self.path('libvgpu-cuda.so')

    @property
    def nvml(self):
        return self.path('libvgpu-nvml.so')

    def bad(self, name):
        """a bad build's copy, or skip when the simulator does not build it (yet)"""
        p = self.path(os.path.join('bad', name))
        if not os.path.exists(p):
            pytest.skip('%s not built by simulator/build.sh (yet)' % name)
        return p

    def fixture(self, name):
        return os.path.join(self.root, 'fixtures', name)


def _gcc(out, src, soname):
    subprocess.run(['gcc', '-O1', '-fPIC', '-shared', '-Wall', '-Wl,-soname,' + soname, '-o', out,
                    os.path.join(FIXTURES, src)], check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.chmod(out, 0o755)


@pytest.fixture(scope='session')
def shims():
    if not shutil.which(os.environ.get('CC', 'gcc')):
        pytest.skip('gcc not installed: cannot build the reference shims')
    if not os.path.exists(os.path.join(BUILD, 'shim', 'libvgpu-cuda.so')):
        r = subprocess.run(['bash', os.path.join(REPO, 'simulator', 'build.sh')], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=600)
        assert r.returncode == 0, r.stdout
    root = tempfile.mkdtemp(prefix='vgpu-probe-', dir='/tmp')
    os.chmod(root, 0o755)
    shutil.copytree(os.path.join(BUILD, 'shim'), os.path.join(root, 'shim'))
    os.makedirs(os.path.join(root, 'fixtures'))
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o755)
    _gcc(os.path.join(root, 'fixtures', 'libcuda-rc.so'), 'cuda_rc.c', 'libcuda.so.1')
    _gcc(os.path.join(root, 'fixtures', 'libnvml-rc.so'), 'nvml_rc.c', 'libnvidia-ml.so.1')
    yield Shims(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def libdir():
    """make_dir({'libcuda.so.1': target, ...}) -> a fresh dir (readable by all) of symlinks"""
    made = []

    def make(links=None):
        d = tempfile.mkdtemp(prefix='vgpu-probe-lib-', dir='/tmp')
        os.chmod(d, 0o755)
        made.append(d)
        for name, target in (links or {}).items():
            os.symlink(target, os.path.join(d, name))
        return d
    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


def env(**kw):
    e = dict(BASE_ENV)
    e.update(kw)
    return e


def call_names(section):
    return [c['call'] for c in section['calls']]


def the_call(section, name, **match):
    found = [c for c in section['calls'] if c['call'] == name and all(c.get(k) == v for k, v in match.items())]
    assert found, (name, section['calls'])
    return found[-1]


# ------------------------------------------------------------------------------------------ healthy shim

def test_good_shim_via_ld_preload(shims):
    r = P.run_probe([], env(LD_PRELOAD=shims.cuda))
    assert r['ok'] is True and r['error'] is None and r['completed'] is True
    assert r['timed_out'] is False and r['killed'] is False and r['unkillable'] is False
    assert r['rc'] == 0 and r['signal'] is None and r['last_call'] is None
    c = r['cuda']
    assert c['opened_as'] == 'libcuda.so.1' and c['dlopen_error'] is None
    assert c['loaded'] == os.path.realpath(shims.cuda)
    assert c['loaded_as'] == shims.cuda and c['found_by'] == 'dladdr'
    assert os.path.realpath(shims.cuda) in c['mapped']
    assert c['driver_version'] == 12080 and c['device_count'] == 1
    assert c['devices'] == [{'index': 0, 'name': NAME, 'total_mem': TOTAL, 'compute': '9.0', 'pci_bus_id': PCI,
                             'integrated': False}]
    assert c['missing_symbols'] == [] and c['upstream_error'] is None and c['failed_call'] is None
    # upstream's order: cuInit, cuDriverGetVersion, (NVML), cuDeviceGetCount, then per device
    assert call_names(c) == ['cuInit', 'cuDriverGetVersion', 'cuDeviceGetCount', 'cuDeviceGet',
                             'cuDeviceGetAttribute', 'cuDeviceGetAttribute', 'cuDeviceGetAttribute',
                             'cuDeviceGetName', 'cuDeviceTotalMem_v2', 'cuDeviceGetPCIBusId']
    assert [c2['attr'] for c2 in c['calls'] if c2['call'] == 'cuDeviceGetAttribute'] == [75, 76, 18]
    init = c['calls'][0]
    assert init['rc'] == 0 and init['error'] == 'CUDA_SUCCESS' and isinstance(init['ms'], float)
    assert r['ld_preload'] == shims.cuda and r['cuda_visible_devices'] is None
    assert r['as_user'] == 'uid %d' % os.geteuid()
    assert r['child']['uid'] == os.getuid() and r['child']['python']
    json.dumps(r)


def test_good_shim_via_ld_library_path(shims, libdir):
    top = libdir({'libcuda.so.1': shims.cuda})
    gpu = libdir()
    r = P.run_probe([top, gpu], env(LD_LIBRARY_PATH='/nonexistent/inherited'))
    assert r['ok'] is True, r
    assert r['ld_library_path'] == '%s:%s:/nonexistent/inherited' % (top, gpu)
    assert r['lib_dirs'] == [top, gpu]
    c = r['cuda']
    assert c['loaded'] == os.path.realpath(shims.cuda)
    assert c['loaded_as'] == os.path.join(top, 'libcuda.so.1')
    assert c['devices'][0]['name'] == NAME and c['devices'][0]['pci_bus_id'] == PCI


def test_lib_dirs_come_before_the_inherited_library_path(shims, libdir):
    lookalike = shims.path('bad/libcuda.so.535.104.05')
    inherited = libdir({'libcuda.so.1': lookalike})
    ours = libdir({'libcuda.so.1': shims.cuda})
    r = P.run_probe([ours], env(LD_LIBRARY_PATH=inherited))
    assert r['ok'] is True and r['cuda']['loaded'] == os.path.realpath(shims.cuda)
    # without Ollama's own link the service's LD_LIBRARY_PATH finds the "real driver", which has no device
    r = P.run_probe([libdir()], env(LD_LIBRARY_PATH=inherited))
    assert r['ok'] is False
    assert r['cuda']['loaded'] == os.path.realpath(lookalike)
    assert the_call(r['cuda'], 'cuInit')['error'] == 'CUDA_ERROR_NO_DEVICE'


def test_falls_back_to_libcuda_so(shims, libdir):
    d = libdir({'libcuda.so': shims.cuda})
    r = P.run_probe([d], env())
    assert r['ok'] is True and r['cuda']['opened_as'] == 'libcuda.so' and r['cuda']['dlopen_error'] is None


def test_preloaded_shim_wins_over_the_search_path(shims, libdir):
    d = libdir({'libcuda.so.1': shims.path('bad/libcuda.so.535.104.05')})
    r = P.run_probe([d], env(LD_PRELOAD=shims.cuda))
    assert r['ok'] is True and r['cuda']['loaded'] == os.path.realpath(shims.cuda)


# ------------------------------------------------------------------------------------------ NVML

def test_nvml_shim_driver_version(shims, libdir):
    d = libdir({'libnvidia-ml.so.1': shims.nvml})
    r = P.run_probe([d], env(LD_PRELOAD=shims.cuda))
    n = r['nvml']
    assert r['ok'] is True
    assert n['opened_as'] == 'libnvidia-ml.so.1' and n['loaded'] == os.path.realpath(shims.nvml)
    assert n['loaded_as'] == os.path.join(d, 'libnvidia-ml.so.1')
    assert n['driver_version'] == '570.133.20' and n['driver_major'] == 570 and n['driver_major_error'] is None
    assert n['device_count'] == 1 and n['failed_call'] is None and n['upstream_error'] is None
    assert call_names(n) == ['nvmlInit_v2', 'nvmlSystemGetDriverVersion', 'nvmlDeviceGetCount_v2', 'nvmlShutdown']
    assert n['calls'][0]['error'] == 'NVML_SUCCESS'
    r = P.run_probe([d], env(LD_PRELOAD=shims.cuda, VGPU_SIM_NVIDIA_DRIVER='550.54.15'))
    assert (r['nvml']['driver_version'], r['nvml']['driver_major']) == ('550.54.15', 550)


def test_nvml_driver535_build(shims, libdir):
    d = libdir({'libnvidia-ml.so.1': shims.bad('libvgpu-nvml-driver535.so')})
    r = P.run_probe([d], env(LD_PRELOAD=shims.cuda))
    assert r['nvml']['driver_major'] == 535 and r['nvml']['driver_version'].startswith('535.')


def test_no_nvml_on_the_path(shims):
    r = P.run_probe([], env(LD_PRELOAD=shims.cuda))
    n = r['nvml']
    assert r['ok'] is True
    assert n['attempted'] is True and n['opened_as'] is None and n['loaded'] is None
    assert n['dlopen_error'].startswith('dlopen libnvidia-ml.so.1: ')
    assert '; dlopen libnvidia-ml.so: ' in n['dlopen_error']
    assert 'cannot open shared object file' in n['dlopen_error']
    assert n['calls'] == [] and n['driver_major'] is None


def test_nvml_is_asked_even_when_cuinit_fails(shims, libdir):
    d = libdir({'libnvidia-ml.so.1': shims.nvml})
    r = P.run_probe([d], env(LD_PRELOAD=shims.cuda, VGPU_SIM_DEVICE_COUNT='0'))
    assert r['ok'] is False
    assert call_names(r['cuda']) == ['cuInit']          # upstream stops after a failed cuInit
    assert r['nvml']['driver_major'] == 570              # we still ask NVML (the driver gate)


def test_nvml_init_failure_and_odd_version(shims, libdir):
    d = libdir({'libnvidia-ml.so.1': shims.fixture('libnvml-rc.so')})
    r = P.run_probe([d], env(LD_PRELOAD=shims.cuda, PROBE_NVML_INIT_RC='9'))
    n = r['nvml']
    assert call_names(n) == ['nvmlInit_v2']
    assert n['calls'][0]['rc'] == 9 and n['calls'][0]['error'] == 'NVML_ERROR_DRIVER_NOT_LOADED'
    assert n['upstream_error'] == 'nvmlInit_v2 failed: 9' and n['failed_call']['call'] == 'nvmlInit_v2'
    assert r['ok'] is True                               # CUDA answered; NVML is only the driver gate
    r = P.run_probe([d], env(LD_PRELOAD=shims.cuda, PROBE_NVML_VERSION='garbage'))
    n = r['nvml']
    assert n['driver_version'] == 'garbage' and n['driver_major'] is None
    assert 'parse NVIDIA driver version' in n['driver_major_error']
    # nvmlDeviceGetCount_v2 is our extra call: reported per call when missing
    assert n['missing_symbols'] == ['nvmlDeviceGetCount_v2'] and n['upstream_error'] is None
    cnt = the_call(n, 'nvmlDeviceGetCount_v2')
    assert cnt['rc'] is None and cnt['error'] == 'symbol not found' and 'undefined symbol' in cnt['detail']
    assert n['device_count'] is None and n['failed_call']['call'] == 'nvmlDeviceGetCount_v2'
    assert call_names(n)[-1] == 'nvmlShutdown'


def test_nvml_needing_cuda_symbols(shims, libdir):
    broken = shims.path('bad/libvgpu-nvml-needs-cuda.so')
    # RTLD_LOCAL libcuda from the search path does not provide cuDeviceGetCount to the NVML shim
    d = libdir({'libcuda.so.1': shims.cuda, 'libnvidia-ml.so.1': broken})
    r = P.run_probe([d], env())
    assert r['ok'] is True
    assert 'undefined symbol: cuDeviceGetCount' in r['nvml']['dlopen_error']
    # as LD_PRELOAD on its own it stops every program before main: Python never starts
    r = P.run_probe([], env(LD_PRELOAD=broken))
    assert r['ok'] is False and r['child'] is None and r['rc'] == 127
    assert 'never started Python' in r['error'] and 'undefined symbol: cuDeviceGetCount' in r['output']


# ------------------------------------------------------------------------------------------ failures

def test_device_count_zero_knob(shims):
    r = P.run_probe([], env(LD_PRELOAD=shims.cuda, VGPU_SIM_DEVICE_COUNT='0'))
    c = r['cuda']
    assert r['ok'] is False and r['error'] is None and r['completed'] is True
    assert c['calls'][0]['call'] == 'cuInit' and c['calls'][0]['rc'] == 100
    assert c['calls'][0]['error'] == 'CUDA_ERROR_NO_DEVICE'
    assert c['failed_call']['call'] == 'cuInit' and c['upstream_error'] == 'cuInit failed: 100'
    assert c['devices'] == [] and c['driver_version'] is None
    assert c['loaded'] == os.path.realpath(shims.cuda)


@pytest.mark.parametrize('build,rc,name', [
    ('libcuda-stub.so', 34, 'CUDA_ERROR_STUB_LIBRARY'),
    ('libvgpu-cuda-err999.so', 999, 'CUDA_ERROR_UNKNOWN'),
])
def test_bad_builds_cuinit_error(shims, build, rc, name):
    lib = shims.bad(build)
    r = P.run_probe([], env(LD_PRELOAD=lib))
    init = the_call(r['cuda'], 'cuInit')
    assert (init['rc'], init['error']) == (rc, name)
    assert r['ok'] is False and r['cuda']['failed_call']['call'] == 'cuInit'
    assert r['cuda']['loaded'] == os.path.realpath(lib)


@pytest.mark.parametrize('rc,name', [(34, 'CUDA_ERROR_STUB_LIBRARY'), (999, 'CUDA_ERROR_UNKNOWN'),
                                     (803, 'CUDA_ERROR_SYSTEM_DRIVER_MISMATCH'),
                                     (804, 'CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE'),
                                     (4242, 'CUDA_ERROR_4242')])
def test_cuinit_error_names(shims, rc, name):
    r = P.run_probe([], env(LD_PRELOAD=shims.fixture('libcuda-rc.so'), PROBE_CUINIT_RC=str(rc)))
    init = the_call(r['cuda'], 'cuInit')
    assert (init['rc'], init['error']) == (rc, name)
    assert r['cuda']['upstream_error'] == 'cuInit failed: %d' % rc and r['ok'] is False
    assert call_names(r['cuda']) == ['cuInit']


def test_zero_devices_build(shims):
    r = P.run_probe([], env(LD_PRELOAD=shims.bad('libvgpu-cuda-zero.so')))
    assert the_call(r['cuda'], 'cuInit')['rc'] == 0
    cnt = the_call(r['cuda'], 'cuDeviceGetCount')
    assert cnt['rc'] == 0 and cnt['value'] == 0
    assert r['cuda']['devices'] == [] and r['ok'] is False


def test_zero_devices_fixture(shims):
    r = P.run_probe([], env(LD_PRELOAD=shims.fixture('libcuda-rc.so'), PROBE_DEVICE_COUNT='0'))
    assert the_call(r['cuda'], 'cuDeviceGetCount')['value'] == 0 and r['cuda']['device_count'] == 0
    assert r['cuda']['devices'] == [] and r['ok'] is False and r['cuda']['failed_call'] is None
    assert r['cuda']['upstream_error'] is None     # upstream returns no device, no error


def test_fallbacks_optional_symbols_and_failed_attribute(shims):
    lib = shims.fixture('libcuda-rc.so')
    r = P.run_probe([], env(LD_PRELOAD=lib, PROBE_DEVICE_COUNT='3'))
    c = r['cuda']
    assert r['ok'] is True and c['driver_version'] == 12040
    assert sorted(c['missing_symbols']) == ['cuDeviceGetPCIBusId', 'cuDeviceTotalMem_v2']
    assert c['upstream_error'] is None
    assert [d['total_mem'] for d in c['devices']] == [1 << 30, 2 << 30, 3 << 30]
    assert set(d['compute'] for d in c['devices']) == {'8.6'}
    assert all(d['integrated'] is None and d['pci_bus_id'] is None and d['name'] == 'Probe Test GPU'
               for d in c['devices'])
    assert 'cuDeviceTotalMem' in call_names(c) and 'cuDeviceGetPCIBusId' not in call_names(c)
    bad = c['failed_call']
    assert (bad['call'], bad['attr'], bad['rc'], bad['error']) == ('cuDeviceGetAttribute', 18, 1,
                                                                   'CUDA_ERROR_INVALID_VALUE')


def test_device_cap(shims):
    r = P.run_probe([], env(LD_PRELOAD=shims.fixture('libcuda-rc.so'), PROBE_DEVICE_COUNT='100'))
    assert r['cuda']['device_count'] == 100 and len(r['cuda']['devices']) == P.MAX_DEVICES
    assert len(json.dumps(r)) < 64 * 1024


def test_nocuinit_build(shims):
    lib = shims.path('bad/libvgpu-cuda-nocuinit.so')
    r = P.run_probe([], env(LD_PRELOAD=lib))
    c = r['cuda']
    assert r['ok'] is False and r['error'] is None
    assert c['calls'][0]['call'] == 'cuInit' and c['calls'][0]['rc'] is None
    assert c['calls'][0]['error'] == 'symbol not found' and 'undefined symbol: cuInit' in c['calls'][0]['detail']
    assert call_names(c) == ['cuInit']
    assert c['missing_symbols'] == ['cuInit'] and c['upstream_error'].startswith('dlsym cuInit: ')
    assert c['loaded'] == os.path.realpath(lib) and c['found_by'] == 'dlinfo'
    assert c['failed_call']['call'] == 'cuInit'
    assert r['nvml']['attempted'] is True


def test_nothing_loadable(shims, libdir):
    r = P.run_probe([libdir()], env())
    c = r['cuda']
    assert r['ok'] is False and r['error'] is None and r['completed'] is True
    assert c['opened_as'] is None and c['loaded'] is None and c['calls'] == []
    assert c['dlopen_error'] == ('dlopen libcuda.so.1: libcuda.so.1: cannot open shared object file: No such file '
                                 'or directory; dlopen libcuda.so: libcuda.so: cannot open shared object file: '
                                 'No such file or directory')
    assert c['upstream_error'] == c['dlopen_error']


def test_wrong_machine_is_skipped_by_the_loader(shims, libdir):
    d = libdir({'libcuda.so.1': shims.path('bad/libvgpu-cuda-aarch64.so')})
    r = P.run_probe([d], env())
    assert r['ok'] is False and r['cuda']['opened_as'] is None
    assert 'dlopen libcuda.so.1: ' in r['cuda']['dlopen_error']


def test_truncated_shim_kills_the_child_in_dlopen(shims, libdir):
    d = libdir({'libcuda.so.1': shims.path('bad/libvgpu-cuda-truncated.so')})
    r = P.run_probe([d], env())
    assert r['ok'] is False and r['completed'] is False and r['error'] is None
    assert r['signal'] == 'SIGBUS' and r['rc'] == -signal.SIGBUS
    assert r['last_call'] == 'dlopen libcuda.so.1'


def test_crash_and_exit_inside_cuinit(shims):
    lib = shims.fixture('libcuda-rc.so')
    r = P.run_probe([], env(LD_PRELOAD=lib, PROBE_CUINIT_CRASH='1'))
    assert r['signal'] == 'SIGSEGV' and r['last_call'] == 'cuInit' and r['completed'] is False
    assert r['error'] is None and r['ok'] is False
    assert r['cuda']['loaded'] == os.path.realpath(lib)     # reconstructed from the progress lines
    r = P.run_probe([], env(LD_PRELOAD=lib, PROBE_CUINIT_EXIT='3'))
    assert r['rc'] == 3 and r['signal'] is None and r['last_call'] == 'cuInit' and r['completed'] is False


def test_shim_output_does_not_confuse_the_parser(shims):
    r = P.run_probe([], env(LD_PRELOAD=shims.fixture('libcuda-rc.so'), PROBE_CUINIT_SPAM='100',
                            PROBE_DEVICE_COUNT='1'))
    assert r['ok'] is True and r['completed'] is True and r['output'] == 'x' * 100


def test_visible_devices(shims):
    r = P.run_probe([], env(LD_PRELOAD=shims.cuda, CUDA_VISIBLE_DEVICES='-1'))
    assert r['cuda_visible_devices'] == '-1' and r['ok'] is False
    assert the_call(r['cuda'], 'cuInit')['error'] == 'CUDA_ERROR_NO_DEVICE'
    r = P.run_probe([], env(LD_PRELOAD=shims.cuda, CUDA_VISIBLE_DEVICES=''))
    assert the_call(r['cuda'], 'cuInit')['rc'] == 100
    for visible in ('0', UUID[:12]):
        r = P.run_probe([], env(LD_PRELOAD=shims.cuda, CUDA_VISIBLE_DEVICES=visible))
        assert r['ok'] is True and len(r['cuda']['devices']) == 1, visible


# ------------------------------------------------------------------------------------------ time limits

def test_hang_build(shims):
    lib = shims.bad('libvgpu-cuda-hang.so')
    r = P.run_probe([], env(LD_PRELOAD=lib), timeout=0.5)
    assert r['timed_out'] is True and r['killed'] is True and r['last_call'] == 'cuInit'
    assert r['elapsed'] < 1.5 and r['ok'] is False


def test_delay_knob_times_out_in_cuinit(shims):
    t = time.monotonic()
    r = P.run_probe([], env(LD_PRELOAD=shims.cuda, VGPU_SIM_INIT_DELAY_MS='5000'), timeout=0.5)
    wall = time.monotonic() - t
    assert r['timed_out'] is True and r['killed'] is True and r['unkillable'] is False
    assert r['last_call'] == 'cuInit' and r['completed'] is False and r['ok'] is False
    assert r['error'] is None and r['rc'] == -signal.SIGKILL and r['signal'] == 'SIGKILL'
    assert 0.45 <= r['elapsed'] < 1.5 and wall < 1.5
    assert r['cuda']['loaded'] == os.path.realpath(shims.cuda)   # known before the hang
    assert r['nvml']['attempted'] is False


def test_probes_run_concurrently(shims):
    e = env(LD_PRELOAD=shims.cuda, VGPU_SIM_INIT_DELAY_MS='1000')
    t = time.monotonic()
    handles = [P.start_probe([], e, timeout=5) for _ in range(3)]
    results = P.finish_probes(handles)
    wall = time.monotonic() - t
    assert all(r['ok'] for r in results)
    assert wall < 2.5, wall       # one after another would be >= 3 s


def test_finishing_one_probe_keeps_reading_the_others(shims):
    """A probe whose shim writes more than a pipe holds must not stall while another one is finished."""
    lib = shims.fixture('libcuda-rc.so')
    loud = P.start_probe([], env(LD_PRELOAD=lib, PROBE_CUINIT_SPAM='300000', PROBE_DEVICE_COUNT='1'), timeout=5)
    slow = P.start_probe([], env(LD_PRELOAD=shims.cuda, VGPU_SIM_INIT_DELAY_MS='600'), timeout=5)
    assert P.finish_probe(slow)['ok'] is True
    r = P.finish_probe(loud)
    assert r['ok'] is True and r['timed_out'] is False and r['elapsed'] < 1.5
    assert P.finish_probe(loud) is r


def test_leftover_process_holding_the_pipes(shims):
    r = P.run_probe([], env(LD_PRELOAD=shims.fixture('libcuda-rc.so'), PROBE_CUINIT_FORK='1',
                            PROBE_DEVICE_COUNT='1'), timeout=5)
    assert r['ok'] is True and r['completed'] is True
    assert r['leftover'] is True and r['killed'] is True and r['timed_out'] is False and r['elapsed'] < 1.5


def test_probe_timing(shims, capsys):
    """Measured, not asserted tightly (2 shared cores): python startup, a healthy and a failing probe."""
    def best(fn, n=5):
        times = []
        for _ in range(n):
            t = time.monotonic()
            fn()
            times.append(time.monotonic() - t)
        return min(times), sorted(times)[n // 2]
    py = P.default_python()
    startup = best(lambda: subprocess.run([py, '-I', '-S', '-B', '-c', 'pass'], check=True))
    imports = best(lambda: subprocess.run([py, '-I', '-S', '-B', '-c', 'import ctypes, json'], check=True))
    healthy = best(lambda: P.run_probe([], env(LD_PRELOAD=shims.cuda)))
    failing = best(lambda: P.run_probe([], env(LD_PRELOAD=shims.cuda, VGPU_SIM_DEVICE_COUNT='0')))
    missing = best(lambda: P.run_probe([], env()))
    with capsys.disabled():
        print('\nvgpu_probe timing (best/median of 5, s): python -I -S startup %.3f/%.3f, +ctypes,json '
              '%.3f/%.3f, healthy probe %.3f/%.3f, cuInit 100 %.3f/%.3f, no libcuda %.3f/%.3f'
              % (startup + imports + healthy + failing + missing))
    assert healthy[1] < 2.0 and failing[1] < 2.0


# ------------------------------------------------------------------------------------------ users

class Which(object):
    def __init__(self, *present):
        self.present = present

    def __call__(self, name):
        return '/usr/bin/' + name if name in self.present else None


def _free_uid():
    for uid in range(54321, 54400):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    pytest.skip('no free uid')


def test_user_argv_shapes():
    argv = ['/usr/bin/python3', '-c', 'pass']
    both = Which('setpriv', 'runuser')
    assert P.user_argv(argv, 'nobody', euid=1000, which=both) == (argv, 'uid 1000')
    assert P.user_argv(argv, euid=0, which=both) == (argv, 'uid 0')
    assert P.user_argv(argv, 'root', euid=0, which=both) == (argv, 'uid 0')
    assert P.user_argv(argv, uid=0, euid=0, which=both) == (argv, 'uid 0')
    try:
        nb = pwd.getpwnam(NOBODY)
    except KeyError:
        pytest.skip('no nobody user')
    out, who = P.user_argv(argv, NOBODY, euid=0, which=both)
    assert who == NOBODY
    assert out == ['/usr/bin/setpriv', '--reuid=%d' % nb.pw_uid, '--regid=%d' % nb.pw_gid, '--init-groups',
                   '--'] + argv
    assert P.user_argv(argv, NOBODY, gid=123, groups=[5, 6], euid=0, which=both)[0][:5] == \
        ['/usr/bin/setpriv', '--reuid=%d' % nb.pw_uid, '--regid=123', '--groups=5,6', '--']
    assert P.user_argv(argv, NOBODY, groups=[], euid=0, which=both)[0][3] == '--clear-groups'
    assert P.user_argv(argv, str(nb.pw_uid), euid=0, which=both)[1] == NOBODY
    free = _free_uid()
    out, who = P.user_argv(argv, uid=free, euid=0, which=both)
    assert out[:5] == ['/usr/bin/setpriv', '--reuid=%d' % free, '--regid=%d' % free, '--clear-groups', '--']
    assert who == 'uid %d' % free
    runuser = Which('runuser')
    assert P.user_argv(argv, NOBODY, euid=0, which=runuser) == (['/usr/bin/runuser', '-u', NOBODY, '--'] + argv,
                                                               NOBODY)
    assert P.user_argv(argv, uid=free, euid=0, which=runuser) == (argv, 'uid 0')   # runuser needs a name
    assert P.user_argv(argv, NOBODY, euid=0, which=Which()) == (argv, 'uid 0')
    with pytest.raises(ValueError):
        P.user_argv(argv, 'no-such-user-here', euid=0, which=both)


def test_unknown_user_is_a_probe_error(shims):
    if os.geteuid() != 0:
        pytest.skip('needs root (users are only switched as root)')
    r = P.run_probe([], env(LD_PRELOAD=shims.cuda), user_spec='no-such-user-here')
    assert r['ok'] is False and 'cannot run the probe as' in r['error'] and r['child'] is None


def _need_root_nobody():
    if os.geteuid() != 0 or not shutil.which('setpriv'):
        pytest.skip('needs root and setpriv')
    try:
        return pwd.getpwnam(NOBODY)
    except KeyError:
        pytest.skip('no nobody user')


def test_real_probe_as_nobody(shims, libdir):
    nb = _need_root_nobody()
    d = libdir({'libnvidia-ml.so.1': shims.nvml})
    r = P.run_probe([d], env(LD_PRELOAD=shims.cuda), user_spec=NOBODY)
    assert r['ok'] is True and r['as_user'] == NOBODY, r
    assert r['child']['uid'] == nb.pw_uid and r['child']['euid'] == nb.pw_uid and r['child']['gid'] == nb.pw_gid
    assert r['nvml']['driver_major'] == 570
    r = P.run_probe([d], env(LD_PRELOAD=shims.cuda), user_spec={'uid': nb.pw_uid, 'gid': nb.pw_gid, 'groups': []})
    assert r['ok'] is True and r['child']['groups'] == [] and r['child']['uid'] == nb.pw_uid


def test_shim_unreadable_for_the_user(shims, libdir):
    _need_root_nobody()
    d = libdir()
    private = os.path.join(d, 'libvgpu-cuda.so')
    shutil.copy(shims.cuda, private)
    os.chmod(private, 0o600)
    r = P.run_probe([], env(LD_PRELOAD=private), user_spec=NOBODY)
    assert r['ok'] is False and r['error'] is None
    assert 'cannot be preloaded' in r['output']               # the loader's own line, as the service gets it
    assert 'cannot open shared object file' in r['cuda']['dlopen_error']


def test_python_not_runnable_as_the_user(shims, libdir):
    _need_root_nobody()
    # an interpreter only root may run (a script: some kernels here let a 0700 ELF be exec'd by anyone,
    # but the script's interpreter still has to read it)
    d = libdir()
    python = os.path.join(d, 'python3')
    with open(python, 'w') as f:
        f.write('#!/bin/sh\nexec %s "$@"\n' % P.default_python())
    os.chmod(python, 0o700)
    r = P.run_probe([], env(LD_PRELOAD=shims.cuda), user_spec=NOBODY, python=python)
    assert r['ok'] is False and r['child'] is None
    assert 'never started Python as nobody' in r['error'] and 'Permission denied' in r['error']


# ------------------------------------------------------------------------------------------ run_bounded

def _gone(pid, within=2.0):
    """the process is gone (or a zombie waiting for its new parent)"""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open('/proc/%d/stat' % pid) as f:
                if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                    return True
        except (IOError, OSError):
            return True
        time.sleep(0.02)
    return False


def test_run_bounded_kills_a_group_that_ignores_sigterm():
    script = 'trap "" TERM; sleep 30 & echo $!; wait; wait'
    r = P.run_bounded(['/bin/sh', '-c', script], BASE_ENV, 0.5)
    assert r['timed_out'] is True and r['killed'] is True and r['unkillable'] is False
    assert r['rc'] == -signal.SIGKILL and r['elapsed'] < 1.5
    assert _gone(int(r['stdout'].split()[0]))      # the grandchild went with the group


def test_run_bounded_does_not_wait_for_a_grandchild_holding_the_pipe():
    t = time.monotonic()
    r = P.run_bounded(['/bin/sh', '-c', 'sleep 30 & echo $!; echo done; exit 0'], BASE_ENV, 10)
    assert time.monotonic() - t < 1.5
    assert r['rc'] == 0 and r['timed_out'] is False and r['leftover'] is True and r['killed'] is True
    assert r['stdout'].split()[1] == 'done'
    assert _gone(int(r['stdout'].split()[0]))


def test_run_bounded_gives_up_on_an_unkillable_child(monkeypatch):
    monkeypatch.setattr(P.os, 'killpg', lambda pgid, sig: None)    # SIGKILL "does nothing", as in D state
    t = time.monotonic()
    r = P.run_bounded(['/bin/sh', '-c', 'echo $$; exec sleep 30'], BASE_ENV, 0.3)
    monkeypatch.undo()
    pid = int(r['stdout'].split()[0])
    try:
        assert time.monotonic() - t < 1.2
        assert r['unkillable'] is True and r['timed_out'] is True and r['rc'] is None
        assert 0.45 <= r['elapsed'] < 1.2
    finally:
        os.kill(pid, signal.SIGKILL)


def test_unkillable_probe_is_an_error(shims, monkeypatch):
    monkeypatch.setattr(P.os, 'killpg', lambda pgid, sig: None)
    h = P.start_probe([], env(LD_PRELOAD=shims.cuda, VGPU_SIM_INIT_DELAY_MS='3000'), timeout=0.3)
    pid = h.job.proc.pid
    r = P.finish_probe(h)
    monkeypatch.undo()
    os.kill(pid, signal.SIGKILL)
    assert r['unkillable'] is True and r['last_call'] == 'cuInit'
    assert 'did not die' in r['error'] and 'cuInit' in r['error']


def test_run_bounded_large_output_and_stderr():
    code = 'import sys; sys.stdout.write("a" * 300000); sys.stderr.write("err")'
    r = P.run_bounded([sys.executable, '-c', code], BASE_ENV, 5)
    assert r['rc'] == 0 and len(r['stdout']) == 300000 and r['stderr'] == 'err'
    assert r['timed_out'] is False and r['killed'] is False and r['leftover'] is False


def test_run_bounded_stdin_is_devnull():
    r = P.run_bounded(['/bin/cat'], BASE_ENV, 2)
    assert r['rc'] == 0 and r['stdout'] == '' and r['timed_out'] is False


def test_missing_program():
    with pytest.raises(OSError):
        P.run_bounded(['/nonexistent/program'], BASE_ENV, 1)
    r = P.run_probe([], env(), python='/nonexistent/python3')
    assert r['ok'] is False and r['error'].startswith('cannot start the probe (/nonexistent/python3)')


# ------------------------------------------------------------------------------------------ pure parts

def test_probe_command():
    e = {'PATH': '/bin', 'LD_LIBRARY_PATH': '/a::/b:/lib/ollama', 'LD_PRELOAD': '/x.so', 'CUDA_VISIBLE_DEVICES': '0',
         'ld_library_path': '/odd'}
    before = dict(e)
    argv, child = P.probe_command(['/lib/ollama', '/lib/ollama/cuda_v12', ''], e, '/py')
    assert e == before
    assert argv[:5] == ['/py', '-I', '-S', '-B', '-c'] and argv[5] == PC.CHILD_CODE
    assert json.loads(argv[6]) == {'cuda': ['libcuda.so.1', 'libcuda.so'],
                                   'nvml': ['libnvidia-ml.so.1', 'libnvidia-ml.so'], 'max_devices': P.MAX_DEVICES}
    assert child == {'PATH': '/bin', 'LD_LIBRARY_PATH': '/lib/ollama:/lib/ollama/cuda_v12:/a:/b',
                     'LD_PRELOAD': '/x.so', 'CUDA_VISIBLE_DEVICES': '0'}
    assert 'LD_LIBRARY_PATH' not in P.probe_command([], {'LD_LIBRARY_PATH': ''}, '/py')[1]
    assert P.library_path(['/l', '/l'], '/l:/m') == ['/l', '/m']


def test_child_code_compiles_for_python38():
    compile(PC.CHILD_CODE, '<child>', 'exec')
    assert 'walrus' not in PC.CHILD_CODE and ':=' not in PC.CHILD_CODE


def test_module_imports_without_ansible():
    code = 'import sys; sys.path.insert(0, %r); import vgpu_probe; print(vgpu_probe.PROBE_TIMEOUT)' % (
        os.path.join(REPO, 'module_utils'))
    r = subprocess.run([P.default_python(), '-I', '-S', '-c', code], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    assert r.returncode == 0 and r.stdout.strip() == '3.0', r.stdout
    # its parts import each other as ansible.module_utils.* (what AnsiballZ ships), falling back to the plain
    # names; nothing else of Ansible
    for name in ('vgpu_probe.py', 'vgpu_probe_child.py', 'vgpu_probe_result.py'):
        src = open(os.path.join(REPO, 'module_utils', name)).read()
        assert 'import ansible' not in src, name
        for line in src.splitlines():
            if 'from ansible' in line:
                assert line.startswith('    from ansible.module_utils.vgpu_probe_'), (name, line)
                assert line.replace('ansible.module_utils.', '') in src, (name, line)


def test_parse_nvidia_driver_major():
    assert PR.parse_nvidia_driver_major('570.133.20') == (570, None)
    assert PR.parse_nvidia_driver_major(' 535\n') == (535, None)
    assert PR.parse_nvidia_driver_major('+12.3') == (12, None)
    assert PR.parse_nvidia_driver_major('') == (None, 'empty NVIDIA driver version')
    assert PR.parse_nvidia_driver_major('r570.1')[0] is None
    assert PR.parse_nvidia_driver_major('5 70.1')[0] is None


def test_error_tables():
    want = {0: 'CUDA_SUCCESS', 1: 'CUDA_ERROR_INVALID_VALUE', 2: 'CUDA_ERROR_OUT_OF_MEMORY',
            3: 'CUDA_ERROR_NOT_INITIALIZED', 4: 'CUDA_ERROR_DEINITIALIZED', 34: 'CUDA_ERROR_STUB_LIBRARY',
            35: 'CUDA_ERROR_INSUFFICIENT_DRIVER', 46: 'CUDA_ERROR_DEVICE_UNAVAILABLE', 100: 'CUDA_ERROR_NO_DEVICE',
            101: 'CUDA_ERROR_INVALID_DEVICE', 200: 'CUDA_ERROR_INVALID_IMAGE', 201: 'CUDA_ERROR_INVALID_CONTEXT',
            209: 'CUDA_ERROR_NO_BINARY_FOR_GPU', 215: 'CUDA_ERROR_UNSUPPORTED_LIMIT',
            222: 'CUDA_ERROR_UNSUPPORTED_PTX_VERSION', 304: 'CUDA_ERROR_OPERATING_SYSTEM',
            803: 'CUDA_ERROR_SYSTEM_DRIVER_MISMATCH', 804: 'CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE',
            999: 'CUDA_ERROR_UNKNOWN'}
    assert dict((k, PR.cuda_error_name(k)) for k in want) == want
    assert PR.cuda_error_name(-3) == 'CUDA_ERROR_-3'
    assert [PR.nvml_error_name(i).startswith('NVML_') for i in range(20)] == [True] * 20
    assert PR.nvml_error_name(0) == 'NVML_SUCCESS' and PR.nvml_error_name(9) == 'NVML_ERROR_DRIVER_NOT_LOADED'
    assert PR.nvml_error_name(999) == 'NVML_ERROR_UNKNOWN' and PR.nvml_error_name(77) == 'NVML_ERROR_77'
    assert all(not PR.nvml_error_name(i).endswith('_%d' % i) for i in range(20))


def test_partial_output_is_reconstructed():
    out = '\n'.join([
        '{"vgpu_probe":"start","pid":1,"uid":5,"euid":5,"gid":5,"groups":[],"python":"3.8.0"}',
        '{"vgpu_probe":"lib","lib":"cuda","info":{"attempted":true,"opened_as":"libcuda.so.1","dlopen_error":null,'
        '"loaded":"/opt/x.so","loaded_as":"/opt/x.so","found_by":"dladdr","mapped":["/opt/x.so"],'
        '"missing_symbols":[],"dlsym_errors":{}}}',
        '{"vgpu_probe":"begin","lib":"cuda","call":"cuInit"}',
        '{"vgpu_probe":"end","lib":"cuda","rec":{"call":"cuInit","ms":1.0,"rc":0}}',
        '{"vgpu_probe":"begin","lib":"cuda","call":"cuDriverGetVersion"}',
        'shim noise',
        '{"vgpu_probe":"end","lib":"cuda","rec":{"call":"cuDr',      # cut short by the kill
    ])
    meta = {'as_user': 'uid 5', 'ld_library_path': None, 'ld_preload': None, 'cuda_visible_devices': None,
            'lib_dirs': [], 'timeout': 1}
    run = {'rc': -9, 'stdout': out, 'stderr': '', 'timed_out': True, 'killed': True, 'leftover': False,
           'unkillable': False, 'elapsed': 1.0}
    r = PR.probe_result(meta, run, None)
    assert r['last_call'] == 'cuDriverGetVersion' and r['completed'] is False and r['error'] is None
    assert r['cuda']['loaded'] == '/opt/x.so' and r['cuda']['calls'][0]['error'] == 'CUDA_SUCCESS'
    assert r['child']['python'] == '3.8.0' and r['signal'] == 'SIGKILL'
    assert 'shim noise' in r['output'] and r['ok'] is False
