#!/usr/bin/python3
"""Ollama simulator (test double for the vGPU fleet toolkit).

Installed as <prefix>/bin/ollama next to <prefix>/lib/ollama, like upstream.
GPU discovery is causal: `ollama serve` starts runner subprocesses
(`ollama runner --discover <dir>`) with the service's environment and Ollama's
library dirs first in LD_LIBRARY_PATH; each runner dlopen()s the backend
libraries (libggml-cuda.so has DT_NEEDED libcuda.so.1) and asks the driver API.
The server only logs what the runners found, in the log format of the Ollama
release this file was built for.  Python 3.8+, standard library only.
"""
import os
import sys
import json
import time

VERSION = "@VERSION@"
if VERSION.startswith("@"):
    VERSION = os.environ.get("OLLAMA_SIM_VERSION", "0.13.5")

# ---------------------------------------------------------------------------
# versions, eras, features
# ---------------------------------------------------------------------------


def parse_version(v):
    out = []
    for part in v.strip().lstrip("v").split("-")[0].split(".")[:3]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        out.append(int(digits or 0))
    while len(out) < 3:
        out.append(0)
    return tuple(out)


ERAS = ("v0.3", "variant", "v0.12", "v0.30")
# Representative release of each era: its log features and source= lines are
# used when OLLAMA_SIM_LOG_ERA overrides the era of the baked-in version.
ERA_REPRESENTATIVE = {"v0.3": "0.3.6", "variant": "0.5.7", "v0.12": "0.13.5", "v0.30": "0.30.1"}


def era_of(version):
    v = parse_version(version)
    if v <= (0, 3, 7):
        return "v0.3"
    if v <= (0, 12, 3):
        return "variant"
    if v < (0, 30, 0):
        return "v0.12"
    return "v0.30"


class Profile(object):
    """What the simulated release prints."""

    def __init__(self, version, era_override=None):
        self.version = version
        era = era_of(version)
        ver = parse_version(version)
        if era_override and era_override in ERAS and era_override != era:
            era = era_override
            ver = parse_version(ERA_REPRESENTATIVE[era])
        self.era = era
        self.ver = ver
        self.old_config_format = ver < (0, 7, 0)
        self.extract_embedded = (0, 3, 0) <= ver < (0, 5, 2)
        self.dynamic_libs = ver < (0, 5, 8)
        # FindGPULibs searches Ollama's own lib dir first from 0.3.14 (discover/gpu.go:519-523@v0.5.7,
        # :503@v0.11.4; not @v0.3.6)
        self.bundled_first = ver >= (0, 3, 14)
        self.dynamic_libs_sprintf = ver < (0, 3, 11)
        self.runner_avx_suffix = (0, 5, 0) <= ver < (0, 5, 8)
        self.cpu_variant_capability = (0, 3, 8) <= ver < (0, 5, 8)
        self.cuda_v11_low_cc = ver < (0, 6, 0)
        self.low_vram = (0, 11, 4) <= ver < (0, 15, 5)
        self.vram_ctx = ver >= (0, 15, 5)
        self.cloud_line = ver >= (0, 16, 2)
        self.filter_id = ver >= (0, 12, 10)
        self.vulkan_optin = era == "v0.12" and ver >= (0, 12, 11)
        self.vulkan_default = era == "v0.30"
        self.debug_level_names = ver >= (0, 7, 0)
        # filterOldCUDADriver (discover/cuda_compat.go), run on the cuda_v12
        # first pass (discover/runner.go:111@v0.30.1, :120@v0.32.15):
        #   "old" 0.30.0-0.30.10: only CUDA devices with compute major < 7 are
        #         checked, driver < 570 drops them (cuda_compat.go:10-45@v0.30.1)
        #   "new" 0.30.11+: every CUDA device, floors 550/570 chosen by the CUDA
        #         runtime version (cuda_compat.go:21-77@v0.30.11, same @v0.32.15)
        if ver >= (0, 30, 11):
            self.cuda_driver_gate = "new"
        elif ver >= (0, 30, 0):
            self.cuda_driver_gate = "old"
        else:
            self.cuda_driver_gate = None
        # v0.30: llama-server + native-probe discovery; subprocess output only
        # at TRACE (discover/llama_server.go:167-172@v0.30.1)
        self.llama_server_discovery = era == "v0.30"
        # the v0.12 era's failure line gains "detail" and follows "bootstrap discovery took"
        # (discover/runner.go:433,460,462@v0.24.0; :437,462,464@v0.13.5)
        self.failure_detail = era == "v0.12" and ver >= (0, 24, 0)
        self.took_first = self.failure_detail
        # 0.12.4-0.12.6 start discovery runners themselves: DEBUG "spawning runner with" + TRACE, extra_envs a
        # []string, LD_LIBRARY_PATH=<lib/ollama>:<dirs...>:<inherited> (discover/runner.go:448,465-529@v0.12.6);
        # llm.StartRunner (INFO "starting runner", a map) from 0.12.7. The second pass validates every
        # device (Vulkan with GGML_VK_VISIBLE_DEVICES) there (runner.go:127-154@v0.12.6), devices are not sorted
        # and Vulkan is probed without OLLAMA_VULKAN until 0.12.11. The simulator pins these at 0.12.6.
        self.own_runner_start = era == "v0.12" and ver < (0, 13, 5)
        self.sort_devices = not self.own_runner_start
        self.override_warnings = ver >= (0, 13, 0)
        self.sources = SOURCES[self.source_key()]

    def source_key(self):
        """the simulated release whose upstream lines this version prints: the newest
        simulated release of the same era that is not newer than it (the era's oldest
        below that); fidelity.json lists the simulated releases"""
        same = sorted((parse_version(v), v) for v in SOURCES if era_of(v) == self.era)
        best = same[0][1]
        for ver, v in same:
            if ver <= self.ver:
                best = v
        return best


# source=file.go:N of the lines we print: the log rows of the fidelity table
# (simulator/fidelity.json, each row cited path:line@tag and checked against
# upstream by `simulator/fidelity.py verify`).  build.sh bakes them in; from the
# source tree they are read from the table beside this file.
FIDELITY_SOURCES = None  # @FIDELITY_SOURCES@


def _load_sources():
    if FIDELITY_SOURCES is not None:
        return FIDELITY_SOURCES
    # from the source tree: simulator/fidelity.py reads the table (the same sources() build.sh bakes in)
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "vgpu_sim_fidelity", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fidelity.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.sources(mod.load())


SOURCES = _load_sources()
LOAD_SOURCES = {"offload": "ggml.go:482", "started": "server.go:1289", "loading": "server.go:215"}

# ---------------------------------------------------------------------------
# Go formatting
# ---------------------------------------------------------------------------

_SAFE = set(chr(c) for c in range(0x20, 0x7F)) - set('"\\')


def go_quote(s):
    """strconv.Quote"""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                        "\t": "\\t", "\v": "\\v"}[ch])
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02x" % o)
        elif o < 0x80 or ch.isprintable():
            out.append(ch)
        elif o <= 0xFFFF:
            out.append("\\u%04x" % o)
        else:
            out.append("\\U%08x" % o)
    out.append('"')
    return "".join(out)


def needs_quoting(s):
    """log/slog text handler rule"""
    if s == "":
        return True
    for ch in s:
        if ord(ch) < 0x80:
            if ch != "\\" and (ch == " " or ch == "=" or ch not in _SAFE):
                return True
        elif ch.isspace() or not ch.isprintable():
            return True
    return False


def go_fmt(v):
    """fmt %+v of the values we log"""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join("%s:%s" % (k, go_fmt(v[k])) for k in sorted(v)) + "]"
    return str(v)


def slog_str(v):
    s = go_fmt(v)
    return go_quote(s) if needs_quoting(s) else s


def human_bytes2(b):
    """format.HumanBytes2"""
    b = int(b)
    if b >= 1 << 30:
        return "%.1f GiB" % (b / float(1 << 30))
    if b >= 1 << 20:
        return "%.1f MiB" % (b / float(1 << 20))
    if b >= 1 << 10:
        return "%.1f KiB" % (b / float(1 << 10))
    return "%d B" % b


def human_bytes(b):
    """format.HumanBytes (decimal, used by the CLI)"""
    b = float(b)
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= size:
            v = b / size
            if v >= 100:
                return "%d %s" % (int(v), unit)
            if v >= 10:
                return "%.1f %s" % (v, unit) if v != int(v) else "%d %s" % (int(v), unit)
            return "%.1f %s" % (v, unit)
    return "%d B" % int(b)


def go_duration(ns):
    """time.Duration.String"""
    ns = int(ns)
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < 1000000000:
        for unit, size in (("ns", 1), ("\u00b5s", 1000), ("ms", 1000000)):
            if u < size * 1000:
                s = _frac(u, size) + unit
                break
    else:
        h, rem = divmod(u, 3600 * 1000000000)
        m, rem = divmod(rem, 60 * 1000000000)
        s = _frac(rem, 1000000000) + "s"
        if h:
            s = "%dh%dm%s" % (h, m, s)
        elif m:
            s = "%dm%s" % (m, s)
    return "-" + s if neg else s


def _frac(v, size):
    whole, frac = divmod(v, size)
    if not frac:
        return str(whole)
    digits = len(str(size)) - 1
    return ("%d.%0*d" % (whole, digits, frac)).rstrip("0")


def slog_time(t=None):
    t = time.time() if t is None else t
    lt = time.localtime(t)
    ms = int((t - int(t)) * 1000)
    off = lt.tm_gmtoff or 0
    if off == 0:
        zone = "Z"
    else:
        sign = "+" if off > 0 else "-"
        off = abs(off)
        zone = "%s%02d:%02d" % (sign, off // 3600, (off % 3600) // 60)
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + ".%03d" % ms + zone


def rfc3339nano(t):
    lt = time.localtime(t)
    ns = int(round((t - int(t)) * 1e9))
    off = lt.tm_gmtoff or 0
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    zone = "Z" if lt.tm_gmtoff == 0 else "%s%02d:%02d" % (sign, off // 3600, (off % 3600) // 60)
    frac = ("%09d" % ns).rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + ("." + frac if frac else "") + zone


# ---------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------


def env_var(key):
    """envconfig.Var: trimmed of spaces and quotes"""
    return os.environ.get(key, "").strip().strip("\"'")


def env_bool(key, default=False):
    s = env_var(key)
    if s == "":
        return default
    low = s.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    return True  # upstream: unparsable but set means true


def log_level():
    """envconfig.LogLevel -> 0 info, -4 debug, -8 trace"""
    s = env_var("OLLAMA_DEBUG")
    if not s:
        return 0
    if s.lower() in ("1", "t", "true"):
        return -4
    if s.lower() in ("0", "f", "false"):
        return 0
    try:
        return int(s) * -4
    except ValueError:
        return 0


def parse_host():
    """envconfig.Host -> (scheme, host, port, path)"""
    s = env_var("OLLAMA_HOST")
    default_port = "11434"
    if "://" in s:
        scheme, hostport = s.split("://", 1)
        if scheme == "http":
            default_port = "80"
        elif scheme == "https":
            default_port = "443"
    else:
        scheme, hostport = "http", s
    path = ""
    if "/" in hostport:
        hostport, path = hostport.split("/", 1)
    host = port = None
    if hostport.startswith("["):
        if "]:" in hostport:
            host, port = hostport[1:].split("]:", 1)
    elif hostport.count(":") == 1:
        host, port = hostport.split(":", 1)
    if port is None:
        host, port = "127.0.0.1", default_port
        h = hostport.strip("[]")
        if h:
            host = h
    try:
        n = int(port)
        if n < 0 or n > 65535:
            raise ValueError
    except ValueError:
        port = default_port
    return scheme, host, int(port), path


def host_url():
    scheme, host, port, path = parse_host()
    h = "[%s]" % host if ":" in host else host
    return "%s://%s:%d%s" % (scheme, h, port, ("/" + path) if path else "")


def models_dir():
    d = env_var("OLLAMA_MODELS")
    if d:
        return d
    return os.path.join(os.path.expanduser("~"), ".ollama", "models")


def go_duration_env(key, default_ns):
    s = env_var(key)
    if not s:
        return go_duration(default_ns)
    try:
        n = int(s)
        return go_duration(n * 1000000000) if n >= 0 else "2562047h47m16.854775807s"
    except ValueError:
        return s


ORIGINS_OLD = ["http://localhost", "https://localhost", "http://localhost:*", "https://localhost:*",
               "http://127.0.0.1", "https://127.0.0.1", "http://127.0.0.1:*", "https://127.0.0.1:*",
               "http://0.0.0.0", "https://0.0.0.0", "http://0.0.0.0:*", "https://0.0.0.0:*",
               "app://*", "file://*", "tauri://*"]


def server_env_map(p):
    """envconfig.Values() of the simulated release"""
    s = env_var
    m = {
        "CUDA_VISIBLE_DEVICES": s("CUDA_VISIBLE_DEVICES"),
        "GPU_DEVICE_ORDINAL": s("GPU_DEVICE_ORDINAL"),
        "HIP_VISIBLE_DEVICES": s("HIP_VISIBLE_DEVICES"),
        "HSA_OVERRIDE_GFX_VERSION": s("HSA_OVERRIDE_GFX_VERSION"),
        "ROCR_VISIBLE_DEVICES": s("ROCR_VISIBLE_DEVICES"),
        "OLLAMA_FLASH_ATTENTION": env_bool("OLLAMA_FLASH_ATTENTION"),
        "OLLAMA_HOST": host_url(),
        "OLLAMA_KEEP_ALIVE": go_duration_env("OLLAMA_KEEP_ALIVE", 300 * 10 ** 9),
        "OLLAMA_LLM_LIBRARY": s("OLLAMA_LLM_LIBRARY"),
        "OLLAMA_MAX_LOADED_MODELS": s("OLLAMA_MAX_LOADED_MODELS") or "0",
        "OLLAMA_MAX_QUEUE": s("OLLAMA_MAX_QUEUE") or "512",
        "OLLAMA_MODELS": models_dir(),
        "OLLAMA_NOHISTORY": env_bool("OLLAMA_NOHISTORY"),
        "OLLAMA_NOPRUNE": env_bool("OLLAMA_NOPRUNE"),
        # Uint("OLLAMA_NUM_PARALLEL", 0) envconfig/config.go:222@v0.9.6, 1 from v0.9.7-rc0 (:222@v0.10.0)
        "OLLAMA_NUM_PARALLEL": s("OLLAMA_NUM_PARALLEL") or ("1" if p.ver >= (0, 9, 7) else "0"),
        "OLLAMA_ORIGINS": ORIGINS_OLD + ([] if p.ver < (0, 4, 0) else ["vscode-webview://*"])
        + ([] if p.ver < (0, 6, 0) else ["vscode-file://*"]),
        "OLLAMA_SCHED_SPREAD": env_bool("OLLAMA_SCHED_SPREAD"),
    }
    if p.debug_level_names:
        lvl = log_level()
        m["OLLAMA_DEBUG"] = {0: "INFO", -4: "DEBUG", -8: "DEBUG-4"}.get(lvl, "INFO%+d" % lvl if lvl > 0 else "DEBUG%+d" % (lvl + 4))
    else:
        m["OLLAMA_DEBUG"] = log_level() < 0
    if p.ver < (0, 4, 0):
        m["OLLAMA_RUNNERS_DIR"] = s("OLLAMA_RUNNERS_DIR")
        m["OLLAMA_TMPDIR"] = s("OLLAMA_TMPDIR")
    if p.ver < (0, 12, 11):
        m["OLLAMA_INTEL_GPU"] = env_bool("OLLAMA_INTEL_GPU")
    if p.ver >= (0, 5, 0):
        for k in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
            m[k] = s(k)
        m["OLLAMA_GPU_OVERHEAD"] = s("OLLAMA_GPU_OVERHEAD") or "0"
        m["OLLAMA_KV_CACHE_TYPE"] = s("OLLAMA_KV_CACHE_TYPE")
        m["OLLAMA_LOAD_TIMEOUT"] = go_duration_env("OLLAMA_LOAD_TIMEOUT", 300 * 10 ** 9)
        if p.ver < (0, 30, 0):
            m["OLLAMA_MULTIUSER_CACHE"] = env_bool("OLLAMA_MULTIUSER_CACHE")
    if (0, 5, 12) <= p.ver < (0, 30, 0):
        m["OLLAMA_NEW_ENGINE"] = env_bool("OLLAMA_NEW_ENGINE")     # envconfig/config.go:170@v0.6.8, from 0.5.12
    if p.ver >= (0, 5, 13):
        # Uint("OLLAMA_CONTEXT_LENGTH", 2048) from 0.5.13 (envconfig/config.go:172@v0.6.1), 4096 from 0.6.7
        # (:172@v0.6.8), 0 (VRAM-based) from 0.15.5 (:232@v0.24.0)
        default_ctx = "2048" if p.ver < (0, 6, 7) else ("4096" if p.ver < (0, 15, 5) else "0")
        m["OLLAMA_CONTEXT_LENGTH"] = s("OLLAMA_CONTEXT_LENGTH") or default_ctx
    if p.ver >= (0, 12, 0):
        m["OLLAMA_REMOTES"] = (s("OLLAMA_REMOTES") or "ollama.com").split(",")
    if p.ver >= (0, 12, 6):
        m["GGML_VK_VISIBLE_DEVICES"] = s("GGML_VK_VISIBLE_DEVICES")
    if p.ver >= (0, 12, 11):
        m["OLLAMA_VULKAN"] = vulkan_enabled(p)
    if p.ver >= (0, 16, 0):
        m["OLLAMA_EDITOR"] = s("OLLAMA_EDITOR")
    if p.ver >= (0, 16, 2):
        m["OLLAMA_NO_CLOUD"] = env_bool("OLLAMA_NO_CLOUD")
    if p.ver >= (0, 18, 3):
        m["OLLAMA_DEBUG_LOG_REQUESTS"] = env_bool("OLLAMA_DEBUG_LOG_REQUESTS")
    if p.ver >= (0, 23, 3):
        m["OLLAMA_MAX_TRANSFER_STREAMS"] = s("OLLAMA_MAX_TRANSFER_STREAMS") or "4"   # config.go:285,327@v0.32.15
    if p.ver >= (0, 30, 0):
        for k in ("LLAMA_ARG_FIT", "LLAMA_ARG_FIT_TARGET"):
            m[k] = s(k)
        m["OLLAMA_GO_TEMPLATE"] = env_bool("OLLAMA_GO_TEMPLATE", True)   # GoTemplate(true), config.go:315@v0.32.15
        m["OLLAMA_IGPU_ENABLE"] = s("OLLAMA_IGPU_ENABLE")               # String(...)(), config.go:319@v0.32.15
    return m


def vulkan_enabled(p):
    return env_bool("OLLAMA_VULKAN", p.vulkan_default)


# ---------------------------------------------------------------------------
# logging
# ---------------------------------------------------------------------------

LEVEL_NAMES = {-8: "TRACE", -4: "DEBUG", 0: "INFO", 4: "WARN", 8: "ERROR"}


def emit(stream, text):
    """write UTF-8 whatever the locale (journald under LANG=C)"""
    try:
        buf = getattr(stream, "buffer", None)
        if buf is not None:
            buf.write(text.encode("utf-8", "replace"))
            buf.flush()
        else:
            stream.write(text)
            stream.flush()
    except (IOError, OSError, ValueError):
        pass


class Log(object):
    def __init__(self, profile):
        self.p = profile
        self.level = log_level()

    def _write(self, line):
        emit(sys.stderr, line + "\n")

    def log(self, level, src, msg, *attrs):
        if level < self.level:
            return
        src = self.p.sources.get(src) or LOAD_SOURCES.get(src, src)
        parts = ["time=" + slog_time(), "level=" + LEVEL_NAMES.get(level, "INFO"),
                 "source=" + src, "msg=" + slog_str(msg)]
        for i in range(0, len(attrs) - 1, 2):
            parts.append(slog_str(attrs[i]) + "=" + slog_str(attrs[i + 1]))
        self._write(" ".join(parts))

    def info(self, src, msg, *attrs):
        self.log(0, src, msg, *attrs)

    def warn(self, src, msg, *attrs):
        self.log(4, src, msg, *attrs)

    def debug(self, src, msg, *attrs):
        self.log(-4, src, msg, *attrs)

    def trace(self, src, msg, *attrs):
        self.log(-8, src, msg, *attrs)

    def raw(self, text):
        """a discovery subprocess's own output, passed through to stderr at
        TRACE only (discover/llama_server.go:167-172: io.Discard otherwise)"""
        if self.level > -8 or not text:
            return
        if isinstance(text, (list, tuple)):
            text = "".join(line + "\n" for line in text)
        self._write(text[:-1] if text.endswith("\n") else text)

    def old_style(self, src, level, msg, *attrs):
        """slog's default handler before Serve() installs the text handler:
        log.LstdFlags|log.Lshortfile output."""
        parts = [time.strftime("%Y/%m/%d %H:%M:%S"), self.p.sources.get(src, src) + ":", level, msg]
        for i in range(0, len(attrs) - 1, 2):
            parts.append(slog_str(attrs[i]) + "=" + slog_str(attrs[i + 1]))
        self._write(" ".join(parts))


# ---------------------------------------------------------------------------
# paths, host facts
# ---------------------------------------------------------------------------


def self_exe():
    return os.path.realpath(os.path.abspath(sys.argv[0]))


def lib_ollama_path():
    """ml.LibOllamaPath: <dir of the resolved executable>/../lib/ollama"""
    exe = self_exe()
    d = os.path.dirname(exe)
    cand = os.path.normpath(os.path.join(d, "..", "lib", "ollama"))
    if os.path.isdir(cand):
        return cand
    for c in (os.path.join(d, "build", "lib", "ollama"), os.path.join(os.getcwd(), "build", "lib", "ollama")):
        if os.path.isdir(c):
            return c
    return d


def gpu_lib_dirs(libdir):
    """dirs holding a *ggml-* file one level below lib/ollama, sorted"""
    out = []
    try:
        names = sorted(os.listdir(libdir))
    except OSError:
        return out
    for n in names:
        d = os.path.join(libdir, n)
        if not os.path.isdir(d):
            continue
        try:
            if any("ggml-" in f for f in os.listdir(d)):
                out.append(d)
        except OSError:
            continue
    return out


def meminfo():
    total = avail = free = bufcache = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                k, _, rest = line.partition(":")
                kb = int(rest.split()[0]) * 1024
                if k == "MemTotal":
                    total = kb
                elif k == "MemAvailable":
                    avail = kb
                elif k == "MemFree":
                    free = kb
                elif k in ("Buffers", "Cached"):
                    bufcache += kb
    except (OSError, ValueError, IndexError):
        pass
    return total, (avail or free + bufcache)


def cpu_capability():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    if "avx2" in flags:
                        return "avx2"
                    if "avx" in flags:
                        return "avx"
                    return "no vector extensions"
    except OSError:
        pass
    return "no vector extensions"


# ---------------------------------------------------------------------------
# runner: ollama runner --discover [DIR]
# ---------------------------------------------------------------------------


def runner_main(argv):
    """Load the backend libraries like ggml_backend_load_all_from_path and ask
    each for its devices.  Prints one JSON object on stdout."""
    import ctypes
    dirs = []
    explicit = None
    i = 0
    while i < len(argv):
        if argv[i] == "--discover":
            if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                explicit = argv[i + 1]
                i += 1
        i += 1
    exe_dir = os.path.dirname(self_exe())
    paths = os.environ.get("OLLAMA_LIBRARY_PATH")
    if paths is None:
        paths = lib_ollama_path()
    for p in paths.split(os.pathsep):
        if not p:
            continue
        ap = os.path.abspath(p)
        if ap != exe_dir and "lib/ollama" not in ap:
            continue  # upstream: skipping path which is not part of ollama
        if ap not in dirs:
            dirs.append(ap)
    if explicit and os.path.abspath(explicit) not in dirs:
        dirs.append(os.path.abspath(explicit))
    mode = os.RTLD_NOW | os.RTLD_LOCAL
    # ggml_server_log: what ggml prints in llama-server (ggml_backend_load_all_from_path
    # is silent about libraries that fail to load in release builds,
    # ml/backend/ggml/ggml/src/ggml-backend-reg.cpp:625-629@v0.13.5, the last vendored
    # copy; llama.cpp b9781 is fetched at build time since 0.30).  ggml_native_log: the
    # native probe loads only the cuda/hip/vulkan backends, with ggml_backend_load,
    # which is not silent (ggml-backend-reg.cpp:283@v0.13.5).
    result = {"dirs": dirs, "libs": [], "pid": os.getpid(), "ggml_server_log": [], "ggml_native_log": []}
    cpu_lines = []
    # libggml-base first and global: the backends link against it
    for d in dirs:
        base = os.path.join(d, "libggml-base.so")
        if os.path.exists(base):
            try:
                ctypes.CDLL(base, mode=os.RTLD_NOW | os.RTLD_GLOBAL)
            except OSError as e:
                result["libs"].append({"path": base, "loaded": False, "error": str(e)})
            break
    for d in dirs:
        try:
            names = sorted(n for n in os.listdir(d) if n.startswith("libggml-") and ".so" in n)
        except OSError as e:
            result["libs"].append({"path": d, "loaded": False, "error": str(e)})
            continue
        for n in names:
            if n.startswith("libggml-base"):
                continue
            path = os.path.join(d, n)
            entry = {"path": path, "loaded": False, "error": None, "result": None}
            result["libs"].append(entry)
            native = n in NATIVE_PROBE_BACKENDS
            try:
                lib = ctypes.CDLL(path, mode=mode)
            except OSError as e:
                entry["error"] = str(e)
                if native:
                    result["ggml_native_log"].append("load_backend: failed to load %s: %s" % (path, e))
                continue
            entry["loaded"] = True
            try:
                fn = lib.ggml_backend_sim_discover
            except AttributeError:
                cpu_lines.append("load_backend: loaded CPU backend from %s" % path)  # load_all: cpu last
                continue  # CPU backends have nothing to enumerate
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            buf = ctypes.create_string_buffer(65536)
            rc = fn(buf, len(buf))
            try:
                entry["result"] = json.loads(buf.value.decode("utf-8", "replace"))
            except ValueError:
                entry["error"] = "backend returned %d and unparsable output" % rc
                continue
            lines = ggml_backend_lines(entry["result"], path)
            result["ggml_server_log"].extend(lines)
            if native:
                result["ggml_native_log"].extend(lines)
    result["ggml_server_log"].extend(cpu_lines)
    result["native"] = native_probe(result, dirs)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


NATIVE_PROBE_BACKENDS = ("libggml-cuda.so", "libggml-hip.so", "libggml-vulkan.so")  # native_probe_platform.go:84-88@v0.30.11

# cudaGetErrorString of the runtime error ggml-cuda gets from cudaGetDeviceCount
# when the driver fails with that CUresult (the runtime maps driver errors 1:1)
CUDART_ERRORS = {1: "invalid argument", 2: "out of memory", 3: "initialization error",
                 34: "CUDA driver is a stub library",
                 35: "CUDA driver version is insufficient for CUDA runtime version",
                 100: "no CUDA-capable device is detected", 101: "invalid device ordinal",
                 201: "invalid device context",
                 803: "system has unsupported display driver / cuda driver combination",
                 999: "unknown error"}


def ggml_backend_lines(res, path):
    """what a loaded ggml backend prints while it registers: ggml_cuda_init
    (ml/backend/ggml/ggml/src/ggml-cuda/ggml-cuda.cu:247,264@v0.13.5; the Device
    line in the shape discover/llama_server.go:34@v0.30.11 parses), ggml_vulkan's
    device list (discover/llama_server_test.go:425@v0.32.15), then load_backend's
    "loaded" line (ggml-backend-reg.cpp:318@v0.13.5)"""
    backend = res.get("backend") or "?"
    devs = res.get("devices") or []
    out = []
    if backend == "CUDA":
        err = res.get("error")
        if err and not devs:
            out.append("ggml_cuda_init: failed to initialize CUDA: %s" % CUDART_ERRORS.get(err.get("code"), "unknown error"))
        else:
            out.append("ggml_cuda_init: found %d CUDA devices:" % len(devs))
            for d in devs:
                out.append("  Device %d: %s, compute capability %d.%d, VMM: yes, VRAM: %d MiB" % (
                    d.get("index", 0), d.get("name", ""), d.get("compute_major", 0), d.get("compute_minor", 0),
                    int(d.get("total", 0)) >> 20))
    elif backend == "Vulkan" and devs:
        out.append("ggml_vulkan: Found %d Vulkan devices:" % len(devs))
        for d in devs:
            out.append("ggml_vulkan: %d = %s (NVIDIA) | uma: 0 | fp16: 1 | bf16: 0 | warp size: 32 | "
                       "shared memory: 49152 | int dot: 1 | matrix cores: KHR_coopmat" % (d.get("index", 0), d.get("name", "")))
    out.append("load_backend: loaded %s backend from %s" % (backend, path))
    return out


def native_probe(result, dirs):
    """`ollama gpu-discover` of 0.30+ (runPlatformNativeProbe,
    discover/native_probe_linux.go:137-168@v0.30.11): the GGML devices of the
    backends loaded above, merged by PCI id with what the CUDA driver API says
    (probeCUDADriverLinux, :249-351), which also asks NVML for the NVIDIA driver
    branch (probeNVIDIADriverMajorLinux, :391-418).  Upstream runs this in a
    subprocess of its own with the same environment; the runner does it in the
    same process, after the backends.  -> {"devices", "error", "stderr"}"""
    ggml = []
    for lib in result["libs"]:
        res = lib.get("result") or {}
        if os.path.basename(lib.get("path") or "") not in NATIVE_PROBE_BACKENDS:
            continue
        for d in res.get("devices") or []:
            if int(d.get("total") or 0) == 0:
                continue
            ggml.append({"library": res.get("backend"), "index": d.get("index", 0),
                         "device_id": (d.get("pci_id") or "").lower(), "description": d.get("name", "")})
    cuda, cuda_err = [], None
    has_cuda = any("cuda" in os.path.basename(d).lower() for d in dirs) or any(
        os.path.exists(os.path.join(d, "libggml-cuda.so")) for d in dirs)   # nativeProbeHasCUDA, native_probe_platform.go:91
    if has_cuda:
        cuda, cuda_err = probe_cuda_driver()
    # mergeNativeProbeDevices (native_probe.go:125): CUDA driver facts join the GGML device with the same PCI id
    if ggml:
        devices = [dict(g) for g in ggml]
        for c in cuda:
            for g in devices:
                if g["library"] == "CUDA" and g["device_id"] and g["device_id"] == c["device_id"]:
                    for k in ("compute_major", "compute_minor", "cuda_driver_major", "cuda_driver_minor",
                              "nvidia_driver_major"):
                        g.setdefault(k, c.get(k))
                    break
    else:
        devices = list(cuda)
    error = None if devices else cuda_err
    stderr = "".join(line + "\n" for line in result["ggml_native_log"])
    if error:
        stderr += "Error: %s\n" % error   # cobra.CheckErr (main.go)
    return {"devices": devices, "error": error, "stderr": stderr}


def _dl():
    import ctypes
    libc = ctypes.CDLL(None)
    libc.dlopen.restype = ctypes.c_void_p
    libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.dlsym.restype = ctypes.c_void_p
    libc.dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    libc.dlerror.restype = ctypes.c_char_p
    libc.dlerror.argtypes = []
    return libc


def _dlopen_first(libc, names):
    """dlopenFirst (native_probe_linux.go:428): RTLD_NOW|RTLD_LOCAL, errors joined by "; " """
    errs = []
    for name in names:
        h = libc.dlopen(name.encode(), os.RTLD_NOW | os.RTLD_LOCAL)
        if h:
            return h, None
        e = libc.dlerror()
        errs.append("dlopen %s: %s" % (name, (e or b"").decode("utf-8", "replace")))
    return None, "; ".join(errs)


def _dlsym(libc, handle, name):
    libc.dlerror()
    sym = libc.dlsym(handle, name.encode())
    if sym:
        return sym, None
    e = libc.dlerror()
    return None, "dlsym %s: %s" % (name, (e or b"").decode("utf-8", "replace"))


def probe_cuda_driver():
    """probeCUDADriverLinux (discover/native_probe_linux.go:249-351@v0.30.11) -> (devices, error)"""
    import ctypes
    libc = _dl()
    h, err = _dlopen_first(libc, ["libcuda.so.1", "libcuda.so"])
    if not h:
        return [], err
    fns = {}
    for name in ("cuInit", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetAttribute",
                 "cuDeviceGetName"):
        fns[name], err = _dlsym(libc, h, name)
        if err:
            return [], err
    fns["cuDeviceTotalMem"], err = _dlsym(libc, h, "cuDeviceTotalMem_v2")
    if err:
        fns["cuDeviceTotalMem"], err2 = _dlsym(libc, h, "cuDeviceTotalMem")
        if err2:
            return [], err + "; " + err2
    fns["cuDeviceGetPCIBusId"], _ = _dlsym(libc, h, "cuDeviceGetPCIBusId")
    I, P = ctypes.c_int, ctypes.c_void_p
    F = lambda ptr, *args: ctypes.CFUNCTYPE(I, *args)(ptr)
    ret = F(fns["cuInit"], ctypes.c_uint)(0)
    if ret != 0:
        return [], "cuInit failed: %d" % ret
    v = I(0)
    major = minor = 0
    if F(fns["cuDriverGetVersion"], P)(ctypes.byref(v)) == 0:
        major, minor = v.value // 1000, (v.value - (v.value // 1000) * 1000) // 10
    nvidia = probe_nvidia_driver_major(libc)
    n = I(0)
    ret = F(fns["cuDeviceGetCount"], P)(ctypes.byref(n))
    if ret != 0:
        return [], "cuDeviceGetCount failed: %d" % ret
    attr = F(fns["cuDeviceGetAttribute"], P, I, I)
    out = []
    for i in range(n.value):
        dev = I(0)
        if F(fns["cuDeviceGet"], P, I)(ctypes.byref(dev), i) != 0:
            continue

        def attribute(a):
            val = I(0)
            return val.value if attr(ctypes.byref(val), a, dev.value) == 0 else 0
        name = ctypes.create_string_buffer(128)
        F(fns["cuDeviceGetName"], P, I, I)(name, 128, dev.value)
        total = ctypes.c_size_t(0)
        F(fns["cuDeviceTotalMem"], P, I)(ctypes.byref(total), dev.value)
        pci = ""
        if fns["cuDeviceGetPCIBusId"]:
            buf = ctypes.create_string_buffer(32)
            if F(fns["cuDeviceGetPCIBusId"], P, I, I)(buf, 32, dev.value) == 0:
                pci = buf.value.decode("utf-8", "replace").lower()
        out.append({"library": "CUDA", "index": i, "description": name.value.decode("utf-8", "replace"),
                    "device_id": pci, "integrated": attribute(18) == 1, "total_memory": total.value,
                    "compute_major": attribute(75), "compute_minor": attribute(76),
                    "cuda_driver_major": major, "cuda_driver_minor": minor, "nvidia_driver_major": nvidia})
    return out, None


def probe_nvidia_driver_major(libc):
    """probeNVIDIADriverMajorLinux (native_probe_linux.go:391-418@v0.30.11): NVML's
    nvmlSystemGetDriverVersion, parsed like parseNVIDIADriverMajor
    (native_probe_platform.go:121-132); any failure -> 0"""
    import ctypes
    h, err = _dlopen_first(libc, ["libnvidia-ml.so.1", "libnvidia-ml.so"])
    if not h:
        return 0
    syms = {}
    for name in ("nvmlInit_v2", "nvmlShutdown", "nvmlSystemGetDriverVersion"):
        syms[name], err = _dlsym(libc, h, name)
        if err:
            return 0
    I = ctypes.c_int
    if ctypes.CFUNCTYPE(I)(syms["nvmlInit_v2"])() != 0:
        return 0
    try:
        buf = ctypes.create_string_buffer(80)
        if ctypes.CFUNCTYPE(I, ctypes.c_char_p, ctypes.c_uint)(syms["nvmlSystemGetDriverVersion"])(buf, 80) != 0:
            return 0
        return parse_nvidia_driver_major(buf.value.decode("utf-8", "replace"))
    finally:
        ctypes.CFUNCTYPE(I)(syms["nvmlShutdown"])()


def parse_nvidia_driver_major(version):
    """parseNVIDIADriverMajor (discover/native_probe_platform.go:121@v0.30.11); error -> 0"""
    version = version.strip()
    if not version:
        return 0
    major = version.split(".", 1)[0]
    try:
        return go_atoi(major)
    except ValueError:
        return 0


def go_atoi(s):
    """strconv.Atoi: optional sign, ASCII digits only"""
    body = s[1:] if s[:1] in "+-" else s
    if not body or not all("0" <= ch <= "9" for ch in body):
        raise ValueError(s)
    return int(s)


# ---------------------------------------------------------------------------
# discovery (server side)
# ---------------------------------------------------------------------------


class Device(object):
    def __init__(self, raw, libdir, backend, driver):
        self.id = raw.get("id", "")
        self.index = int(raw.get("index", 0))
        self.name = raw.get("name", "")
        self.major = int(raw.get("compute_major", 0))
        self.minor = int(raw.get("compute_minor", 0))
        self.total = int(raw.get("total", 0))
        self.free = int(raw.get("free", 0))
        self.pci_id = raw.get("pci_id", "")
        self.libdir = libdir
        self.backend = backend
        self.driver = int(driver or 0)
        self.filter_id = ""
        self.nvidia_major = 0      # ml.DeviceInfo.NVIDIADriverMajor (native probe, CUDA only)
        self.libdirs = []          # ml.DeviceInfo.LibraryPath
        self.v030_id = str(self.index)

    @property
    def compute(self):
        return "%d.%d" % (self.major, self.minor)

    @property
    def driver_str(self):
        return "%d.%d" % (self.driver // 1000, (self.driver % 1000) // 10)


class RunnerResult(object):
    def __init__(self, libdir, extra_envs):
        self.libdir = libdir
        self.extra_envs = extra_envs
        self.timed_out = False
        self.exit_code = None
        self.data = None
        self.stderr = ""
        self.duration = 0.0

    def devices(self):
        out = []
        if not self.data:
            return out
        native = (self.data.get("native") or {}).get("devices") or []
        for lib in self.data.get("libs", []):
            res = lib.get("result") or {}
            for raw in res.get("devices") or []:
                d = Device(raw, self.libdir, res.get("backend", ""), res.get("driver_version"))
                d.libdirs = list(getattr(self, "dirs", []) or [])
                if d.backend == "CUDA":
                    for n in native:
                        if n.get("library") == "CUDA" and n.get("device_id") and \
                                n["device_id"].lower() == d.pci_id.lower():
                            d.nvidia_major = int(n.get("nvidia_driver_major") or 0)
                            break
                out.append(d)
        return out


SIGNAL_TEXT = {4: "illegal instruction", 6: "aborted", 7: "bus error", 9: "killed", 11: "segmentation fault",
               15: "terminated"}


def exit_attr(code):
    """llm.ExitStatus as a log value (llm/exit_status*.go@v0.30.1): "OK", "unknown"
    (signalled: ExitCode() is -1), else the number"""
    if code is None or code < 0:
        return "unknown"
    return "OK" if code == 0 else code


ERROR_PREFIXES = ("mlx:", "MLX:", "panic:", "fatal error:", "error:", "Error:", "CUDA error", "ROCm error",
                  "cudaMalloc failed", '"ERR"', "error loading model", "GGML_ASSERT",
                  "Deepseek2 does not support K-shift", "signal arrived during cgo execution", "llama_init_from_model:")


def status_last_error(lines):
    """llm.StatusWriter.LastError over the subprocess output (llm/status.go@v0.32.15),
    without the out-of-memory heuristics"""
    last = ""
    for line in lines:
        line = line.rstrip(" \t\r")
        hits = [(line.find(px), px) for px in ERROR_PREFIXES if px in line]
        if hits:
            i, px = min(hits)
            msg = px + line[i + len(px):].rstrip(" \t\r")
            last = last + "\n" + msg if last else msg
    return last[-8192:]


def visible_tokens(library):
    """visibleDeviceFilterTokens (discover/runner.go:598@v0.30.11), Linux"""
    key = {"CUDA": "CUDA_VISIBLE_DEVICES", "Vulkan": "GGML_VK_VISIBLE_DEVICES"}.get(library)
    if not key:
        return []
    return [t.strip() for t in env_var(key).split(",") if t.strip()]


def cuda_runtime_version(libdirs):
    """cudaRuntimeVersion (discover/llama_server.go:400-435@v0.30.11): the highest
    libcudart.so.<maj>[.<min>] file name in the dirs, or a cuda_vNN dir name (minor 0)"""
    import re
    best = None
    for d in libdirs:
        try:
            names = os.listdir(d)
        except OSError:
            names = []
        for n in names:
            m = re.match(r"libcudart\.so\.(\d+)(?:\.(\d+))?", n)
            if m:
                v = (int(m.group(1)), int(m.group(2) or 0))
                best = v if best is None or v > best else best
        m = re.match(r"^cuda_v(\d+)$", os.path.basename(d))
        if m:
            v = (int(m.group(1)), 0)
            best = v if best is None or v > best else best
    return best


def list_devices_lines(devices):
    """llama-server --list-devices (the shape deviceLineRegex reads, discover/llama_server.go:174-180@v0.30.11)"""
    out = ["Available devices:"]
    for d in devices:
        out.append("  %s%d: %s (%d MiB, %d MiB free)" % (d.backend, d.index, d.name, d.total >> 20, d.free >> 20))
    return out


def exit_text(code):
    """os.ProcessState.String()"""
    if code is None:
        return "unknown"
    if code < 0:
        return "signal: " + SIGNAL_TEXT.get(-code, "signal %d" % -code)
    return "exit status %d" % code


def free_tcp_port():
    """StartRunner's port: ListenTCP("localhost:0") and close (llm/server.go:330-337@v0.13.5)"""
    import socket
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    except OSError:
        import random
        return random.randint(49152, 65534)
    finally:
        s.close()


class Discovery(object):
    def __init__(self, profile, log):
        self.p = profile
        self.log = log
        self.libdir = lib_ollama_path()
        try:
            self.timeout = float(os.environ.get("OLLAMA_SIM_DISCOVERY_TIMEOUT", "10") or 10)
        except ValueError:
            self.timeout = 10.0
        self.procs = []

    def runner_env(self, dirs, extra):
        env = dict(os.environ)
        paths = ([self.libdir] if self.p.own_runner_start else []) + list(dirs)
        if "LD_LIBRARY_PATH" in os.environ:
            paths += [x for x in os.environ["LD_LIBRARY_PATH"].split(os.pathsep) if x]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
        env["OLLAMA_LIBRARY_PATH"] = os.pathsep.join(dirs)
        for k, v in (extra or {}).items():
            env[k] = v
        return env

    def start(self, gpudir, extra=None):
        import subprocess
        dirs = [self.libdir, gpudir] if gpudir else [self.libdir]
        exe = self_exe()
        args = [exe, "runner", "--discover"] + ([gpudir] if gpudir else [])
        cmd_text = "%s runner --ollama-engine --port %d" % (exe, free_tcp_port())
        if self.p.era == "v0.12" and self.p.own_runner_start:
            self.log.debug("spawning", "spawning runner with", "OLLAMA_LIBRARY_PATH", dirs,
                           "extra_envs", self.extra_envs_value(extra))
            self.log.trace("starting_trace", "starting runner for device discovery", "cmd", cmd_text)
        elif self.p.era == "v0.12":
            # StartRunner (llm/server.go:319-349,429@v0.13.5) logs exec.Cmd.String() of
            # `ollama runner --ollama-engine --port N`; the simulator runs its own arguments
            self.log.info("starting", "starting runner", "cmd", cmd_text)
        res = RunnerResult(gpudir, self.extra_envs_value(extra))
        res.dirs = dirs
        res.started = time.time()
        proc = subprocess.Popen([sys.executable] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.runner_env(dirs, extra), close_fds=True)
        self.procs.append(proc)
        return res, proc

    def extra_envs_value(self, extra):
        """what extra_envs prints as: a map, or before 0.12.7 the []string GGML_CUDA_INIT first
        (discover/runner.go:151-154@v0.12.6)"""
        if not self.p.own_runner_start:
            return extra or {}
        order = sorted(extra or {}, key=lambda k: (k != "GGML_CUDA_INIT", k))
        return ["%s=%s" % (k, extra[k]) for k in order]

    def finish(self, pending):
        import subprocess
        out = []
        for res, proc in pending:
            remaining = res.started + self.timeout - time.time()
            try:
                so, se = proc.communicate(timeout=max(remaining, 0.01))
                res.exit_code = proc.returncode
                res.stderr = se.decode("utf-8", "replace")
                for line in so.decode("utf-8", "replace").splitlines():
                    line = line.strip()
                    if line.startswith("{"):
                        try:
                            res.data = json.loads(line)
                        except ValueError:
                            pass
            except subprocess.TimeoutExpired:
                res.timed_out = True
                proc.kill()
                try:
                    proc.communicate(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            res.duration = time.time() - res.started
            out.append(res)
        return out

    def kill_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.kill()
                except OSError:
                    pass

    def took_line(self, res):
        self.log.debug("took", "bootstrap discovery took", "duration", go_duration(int(res.duration * 1e9)),
                       "OLLAMA_LIBRARY_PATH", res.dirs, "extra_envs", res.extra_envs)

    def failure_line(self, res, error):
        attrs = ["OLLAMA_LIBRARY_PATH", res.dirs, "extra_envs", res.extra_envs, "error", error]
        if self.p.failure_detail:   # "detail", status.LastError() (discover/runner.go:462@v0.24.0)
            attrs += ["detail", status_last_error(res.stderr.splitlines())]
        self.log.info("failure", "failure during GPU discovery", *attrs)

    def report(self, res):
        """logs after one runner finished, the v0.12 era (v0.30: report_v030)"""
        p, log = self.p, self.log
        if p.took_first:   # the deferred "took" runs before the failure line from 0.24.0 (runner.go:433,462@v0.24.0)
            self.took_line(res)
        if res.timed_out:
            self.failure_line(res, "failed to finish discovery before timeout")
            return
        if not p.took_first:
            self.took_line(res)
        if res.data is None:
            if res.exit_code is not None and res.exit_code < 0:
                # ExitCode() is -1 for a signalled runner -> INFO (discover/runner.go:463-465@v0.13.5)
                self.failure_line(res, "runner crashed")
            else:
                attrs = ["OLLAMA_LIBRARY_PATH", res.dirs, "extra_envs", res.extra_envs, "code", res.exit_code]
                if p.failure_detail:
                    attrs += ["detail", status_last_error(res.stderr.splitlines())]
                log.trace("exited", "runner exited", *attrs)
            return
        # the runner's own output reaches the server's stderr only at TRACE (discover/runner.go:431-434@v0.13.5)
        log.raw(res.data.get("ggml_server_log") or [])

    def dirs_to_probe(self):
        p, log = self.p, self.log
        requested = env_var("OLLAMA_LLM_LIBRARY")
        out = []
        for d in gpu_lib_dirs(self.libdir):
            base = os.path.basename(d)
            if p.era in ("v0.12", "v0.30") and requested and base != requested and \
                    not (p.era == "v0.30" and requested.startswith("mlx_")):
                log.debug("skipreq", "skipping available library at user%s request" % ("s" if p.own_runner_start else "'s"),
                          "requested", requested, "libDir", d)
                continue
            if "cuda_jetpack" in base:
                continue
            if "vulkan" in base:
                if p.era == "v0.30":
                    if not vulkan_enabled(p):
                        continue
                elif p.era == "v0.12" and p.vulkan_optin:
                    if not vulkan_enabled(p):
                        log.info("vulkan_off", "experimental Vulkan support disabled.  To enable, set OLLAMA_VULKAN=1")
                        continue
                else:
                    continue
            out.append(d)
        return out

    def run(self):
        """-> list of Device (deduplicated, in log order)"""
        p = self.p
        if p.llama_server_discovery:
            return self.run_v030()
        try:
            dirs = self.dirs_to_probe()
            results = self.finish([self.start(d) for d in dirs])
            for r in results:
                self.report(r)
            found = []
            for r in results:
                found.extend(r.devices())
            devices = self.dedupe(found)
            if p.era in ("v0.12", "v0.30"):
                devices = self.validate(devices)
                if p.sort_devices:   # by free memory (discover/types.go:30@v0.13.5; not @v0.12.6)
                    devices.sort(key=lambda d: -d.free)
            return devices
        finally:
            self.kill_all()

    def dedupe(self, found):
        """one entry per device: CUDA over others, then the newest lib dir"""
        best = {}
        order = []
        for d in found:
            key = d.id or d.pci_id
            cur = best.get(key)
            if cur is None:
                best[key] = d
                order.append(key)
                continue
            rank = (d.backend == "CUDA", os.path.basename(d.libdir))
            cur_rank = (cur.backend == "CUDA", os.path.basename(cur.libdir))
            if rank > cur_rank:
                best[key] = d
        devices = [best[k] for k in order]
        # ordinals per backend, as ggml numbers its devices
        counters = {}
        for d in devices:
            d.ordinal = counters.get(d.backend, 0)
            counters[d.backend] = d.ordinal + 1
        return devices

    # ---- the v0.30 era: llama-server + native probe (discover/runner.go GPUDevices) ----

    def run_v030(self):
        """GPUDevices' bootstrap (discover/runner.go:45-256@v0.30.1): first pass per
        dir (the cuda_v12 result through filterOldCUDADriver), second pass per CUDA
        device, overlap filter per library, ID remap, cross-library duplicates"""
        p, log = self.p, self.log
        t0 = time.time()
        try:
            results = self.finish([self.start(d) for d in self.dirs_to_probe()])
            found = []
            for r in results:
                self.report_v030(r)
                devs = [] if r.timed_out else r.devices()
                if os.path.basename(r.libdir or "") == "cuda_v12":
                    devs = self.cuda_gate(devs)
                found.extend(devs)
            log.debug("evaluating", "evaluating which, if any, devices to filter out", "initial_count", len(found))
            pending, deleted = [], set()
            supported = {}   # library -> libdir -> {ID: device}

            def support(d):
                supported.setdefault(d.backend, {}).setdefault(d.libdir, {})[d.v030_id] = d
            for d in found:
                if d.backend not in ("CUDA", "ROCm"):   # NeedsInitValidation, ml/device.go:664@v0.32.15
                    support(d)
                    continue
                log.debug("verifying", "verifying if device is supported", "library", d.libdir, "description", d.name,
                          "compute", d.compute, "id", d.v030_id, "pci_id", d.pci_id)
                extra = {"CUDA_VISIBLE_DEVICES": d.v030_id, "GGML_CUDA_INIT": "1"}
                pending.append((d, self.start(d.libdir, extra)))
            for (d, _), res in zip(pending, self.finish([x[1] for x in pending])):
                self.report_v030(res)
                if res.timed_out or not res.devices():
                    log.debug("filtered", "filtering device which didn't fully initialize", "id", d.v030_id,
                              "libdir", d.libdir, "pci_id", d.pci_id, "library", d.backend)
                    deleted.add(id(d))
                else:
                    support(d)
            self.filter_overlap(supported, found, deleted)
            devices, counters = [], {}
            for d in found:
                if id(d) in deleted:
                    log.trace("removing", "removing unsupported or overlapping GPU combination", "libDir", d.libdir,
                              "description", d.name, "compute", d.compute, "pci_id", d.pci_id)
                    continue
                n = counters.get(d.backend, 0)
                log.debug("adjusting", "adjusting filtering IDs", "FilterID", d.v030_id, "new_ID", str(n))
                d.filter_id = d.v030_id
                tokens = visible_tokens(d.backend)
                if d.filter_id.isdigit() and int(d.filter_id) < len(tokens):
                    d.filter_id = tokens[int(d.filter_id)]   # remapFilterIDForUserVisibleDevices
                d.ordinal = n
                d.v030_id = str(n)
                counters[d.backend] = n + 1
                devices.append(d)
            devices = self.drop_duplicates(devices)
            log.debug("gpu_took", "GPU bootstrap discovery took", "duration", go_duration(int((time.time() - t0) * 1e9)))
            devices.sort(key=lambda d: -d.free)
            return devices
        finally:
            self.kill_all()

    def filter_overlap(self, supported, found, deleted):
        """filterOverlapByLibrary (discover/runner.go:429-477@v0.30.1), anyMissing quirk included"""
        index = dict((id(d), i) for i, d in enumerate(found))
        for by_dir in supported.values():
            libdirs = sorted(by_dir, reverse=True)
            any_missing = False
            newest = None
            for newest in libdirs:
                for other in libdirs:
                    if other == newest:
                        continue
                    if len(by_dir[newest]) != len(by_dir[other]) or any(k not in by_dir[other] for k in by_dir[newest]):
                        any_missing = True
                        break
                if not any_missing:
                    break
            for other in libdirs:
                if other == newest:
                    continue
                for dev_id, d in by_dir[other].items():
                    if dev_id in by_dir[newest]:
                        self.log.debug("overlap", "filtering device with overlapping libraries", "id", dev_id,
                                       "library", other, "delete_index", index[id(d)], "kept_library", newest)
                        deleted.add(id(d))

    def drop_duplicates(self, devices):
        """the cross-library pass (discover/runner.go:200-242@v0.30.1): same PCI id
        (ml.DeviceInfo.Compare) -> keep CUDA/ROCm (PreferredLibrary)"""
        out = list(devices)
        i = 0
        while i < len(out):
            j = i + 1
            while j < len(out):
                a, b = out[i], out[j]
                if a.pci_id and b.pci_id:
                    same = a.pci_id.lower() == b.pci_id.lower()
                else:
                    same = a.v030_id == b.v030_id and a.pci_id == b.pci_id
                if not same:
                    j += 1
                    continue
                del out[j]
                if a.backend == b.backend:
                    continue
                if a.backend in ("CUDA", "ROCm"):
                    dropped = b
                else:
                    dropped, out[i] = a, b
                self.log.debug("dropdup", "dropping duplicate device", "id", dropped.v030_id, "library", dropped.backend,
                               "compute", dropped.compute, "name", "%s%d" % (dropped.backend, dropped.index),
                               "description", dropped.name, "libdirs", ",".join(dropped.libdirs),
                               "driver", dropped.driver_str, "pci_id", dropped.pci_id, "type", "discrete",
                               "total", human_bytes2(dropped.total), "available", human_bytes2(dropped.free))
            i += 1
        return out

    def cuda_gate(self, devices):
        """filterOldCUDADriver: discover/cuda_compat.go:10-45@v0.30.1 ("old") and
        :21-77@v0.30.11 = @v0.32.15 ("new")"""
        p, log = self.p, self.log
        if not p.cuda_driver_gate:
            return devices
        cuda = [d for d in devices if d.backend == "CUDA"]
        driver = next((d.nvidia_major for d in cuda if d.nvidia_major > 0), 0)   # nvidiaDriverMajorFromDevices

        def old_cuda(d):
            return d.backend == "CUDA" and 0 < d.major < 7
        if p.cuda_driver_gate == "old":
            if not any(old_cuda(d) for d in devices):
                return devices
            if driver == 0:
                log.warn("gate_unverified", "could not verify NVIDIA driver compatibility for an older NVIDIA GPU")
                return devices
            if driver >= 570:
                return devices
            out = []
            for d in devices:
                if old_cuda(d):
                    log.warn("gate_570", "NVIDIA driver too old", "device", d.name, "compute", d.compute,
                             "driver", driver, "required_driver", "570 or newer")
                    continue
                out.append(d)
            return out
        if not cuda:
            return devices
        if driver == 0:
            log.warn("gate_unverified", "could not verify NVIDIA driver compatibility for CUDA")
            return devices
        rt = cuda_runtime_version(cuda[0].libdirs)   # cudaRuntimeVersionFromDevices: the first CUDA device
        compressed = rt is not None and rt[0] == 12 and rt[1] >= 4
        legacy_jit = rt is not None and rt[0] == 12 and rt[1] >= 8
        if driver >= 570 or (not compressed and not legacy_jit):
            return devices
        out = []
        for d in devices:
            if d.backend != "CUDA":
                out.append(d)
            elif compressed and driver < 550:
                log.warn("gate_550", "NVIDIA driver too old", "device", d.name, "compute", d.compute,
                         "driver", driver, "required_driver", "550 or newer")
            elif legacy_jit and old_cuda(d):
                log.warn("gate_570", "NVIDIA driver too old", "device", d.name, "compute", d.compute,
                         "driver", driver, "required_driver", "570 or newer")
            else:
                out.append(d)
        return out

    def report_v030(self, res):
        """what one bootstrapDevicesWithMetalRetry call logs (discover/runner.go:479-515,
        discover/llama_server.go:42-165, discover/native_probe.go:254-263@v0.30.1;
        the same lines @v0.32.15): llama-server startup, --list-devices and the
        native probe are one runner here; their output shows at TRACE only"""
        p, log = self.p, self.log
        dirs = res.dirs
        dur = go_duration(int(res.duration * 1e9))
        log.trace("ls_trace", "running llama-server for discovery", "cmd", os.path.join(self.libdir, "llama-server"),
                  "libDirs", dirs)
        captured = [x for x in (res.stderr or "").splitlines() if x]

        def ls_took():
            log.debug("ls_took", "llama-server device discovery took", "duration", dur, "libDirs", dirs)

        def boot_took():
            log.debug("took", "bootstrap discovery took", "duration", dur, "OLLAMA_LIBRARY_PATH", dirs,
                      "extra_envs", res.extra_envs)
        if res.timed_out:
            # the watchdog returns at the deadline (runner.go:574-576); the discovery
            # goroutine then kills llama-server and logs on its own (llama_server.go:107-131)
            log.warn("watchdog", "llama-server GPU discovery watchdog timed out", "OLLAMA_LIBRARY_PATH", dirs,
                     "extra_envs", res.extra_envs, "error", "context deadline exceeded")
            boot_took()
            log.info("failure", "failure during llama-server GPU discovery", "OLLAMA_LIBRARY_PATH", dirs,
                     "extra_envs", res.extra_envs, "error", "context deadline exceeded", "detail", "")
            log.debug("ls_stopped", "llama-server discovery: stopped subprocess after collecting GPU info",
                      "exit", "unknown", "libDirs", dirs)
            log.warn("ls_timeout", "llama-server discovery: timed out waiting for server startup",
                     "error", "context deadline exceeded", "libDirs", dirs, "lines_captured", len(captured))
            ls_took()
            return
        if res.data is None:
            # llama-server died on its own (Kill fails: already gone), so did --list-devices
            log.raw(res.stderr)
            err, code = exit_text(res.exit_code), exit_attr(res.exit_code)
            log.debug("ls_exited", "llama-server discovery: server startup exited", "error", err, "exit", code,
                      "libDirs", dirs)
            log.warn("ls_sysinfo", "llama-server discovery: system_info line not found in output - "
                     "CUDA architecture filtering will be disabled. If GPU inference fails, "
                     "this may indicate an incompatible llama-server version.",
                     "libDirs", dirs, "lines_captured", len(captured))
            log.raw(res.stderr)
            log.debug("ls_listfail", "llama-server --list-devices failed", "error", err, "exit", code)
            ls_took()
            boot_took()
            log.info("failure", "failure during llama-server GPU discovery", "OLLAMA_LIBRARY_PATH", dirs,
                     "extra_envs", res.extra_envs, "error", "llama-server --list-devices failed: %s" % err,
                     "detail", status_last_error(captured + captured))
            return
        data = res.data
        server_log = data.get("ggml_server_log") or []
        log.raw(server_log)
        # killed once system_info was read: ExitCode() -1 -> ExitStatus "unknown"
        log.debug("ls_stopped", "llama-server discovery: stopped subprocess after collecting GPU info",
                  "exit", "unknown", "libDirs", dirs)
        log.raw(server_log + list_devices_lines(res.devices()))
        native = data.get("native") or {}
        log.raw(native.get("stderr"))
        if native.get("error"):
            if native.get("stderr"):
                log.debug("native_fail", "native GPU discovery failed", "error", "exit status 1",
                          "stderr", native["stderr"], "libDirs", dirs)
            else:
                log.debug("native_fail2", "native GPU discovery failed", "error", "exit status 1", "libDirs", dirs)
        ls_took()
        boot_took()

    def validate(self, devices):
        """second pass: a runner limited to the device, deep init (GGML_CUDA_INIT=1)"""
        p = self.p
        pending = []
        checked = ("CUDA", "Vulkan") if p.own_runner_start else ("CUDA",)
        for d in devices:
            if d.backend not in checked:
                continue
            dev_id = str(d.ordinal) if p.era == "v0.30" else d.id
            if d.backend == "Vulkan":
                extra = {"GGML_VK_VISIBLE_DEVICES": str(d.ordinal), "GGML_CUDA_INIT": "1"}
            else:
                extra = {"CUDA_VISIBLE_DEVICES": dev_id, "GGML_CUDA_INIT": "1"}
            pending.append((d, self.start(d.libdir, extra)))
        keep = [d for d in devices if d.backend not in checked]
        results = self.finish([x[1] for x in pending])
        for (d, _), res in zip(pending, results):
            self.report(res)
            if any(x.id == d.id for x in res.devices()):
                keep.append(d)
            elif "filtered" in p.sources:   # dropped silently before 0.12.7 (runner.go:155-156@v0.12.6)
                self.log.debug("filtered", "filtering device which didn't fully initialize", "id", d.id,
                               "libdir", d.libdir, "pci_id", d.pci_id, "library", d.backend)
        return [d for d in devices if d in keep]


# ---------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------


class _Stop(BaseException):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


class State(object):
    def __init__(self, profile, log):
        self.p = profile
        self.log = log
        self.devices = []
        self.models = {}
        import threading
        self.lock = threading.Lock()


def log_start(p, log):
    env_map = server_env_map(p)
    if p.old_config_format:
        log.old_style("config", "INFO", "server config", "env", env_map)
    else:
        log.info("config", "server config", "env", env_map)
    if p.cloud_line:
        log.info("cloud", "Ollama cloud disabled: %s" % go_fmt(env_bool("OLLAMA_NO_CLOUD")))
    blobs = 0
    try:
        os.makedirs(os.path.join(models_dir(), "blobs"), 0o755)
    except OSError:
        pass
    try:
        os.makedirs(os.path.join(models_dir(), "manifests"), 0o755)
    except OSError:
        pass
    try:
        blobs = len([n for n in os.listdir(os.path.join(models_dir(), "blobs")) if n.startswith("sha256")])
    except OSError:
        pass
    log.info("blobs", "total blobs: %d" % blobs)
    log.info("unused", "total unused blobs removed: 0")


def listen_addr_text(host, port):
    if host in ("", "0.0.0.0", "::"):
        return "[::]:%d" % port
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def make_server(state):
    import socket
    from http.server import ThreadingHTTPServer
    scheme, host, port, _ = parse_host()
    family = socket.AF_INET
    bind_host = host
    if host in ("", "0.0.0.0", "::"):
        if socket.has_ipv6:
            family, bind_host = socket.AF_INET6, "::"
        else:
            bind_host = "0.0.0.0"
    elif ":" in host:
        family = socket.AF_INET6

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

        def handle_error(self, request, client_address):
            # a client that gave up while discovery ran (the socket listens from the
            # start): Go's net/http drops such a connection without a log line
            if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                return
            ThreadingHTTPServer.handle_error(self, request, client_address)

        def server_bind(self):
            if self.address_family == socket.AF_INET6:
                try:
                    self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                except (OSError, AttributeError):
                    pass
            ThreadingHTTPServer.server_bind(self)

    handler = make_handler(state)
    try:
        srv = Server((bind_host, port), handler)
    except OSError as e:
        if family == socket.AF_INET6 and bind_host == "::":
            Server.address_family = socket.AF_INET
            srv = Server(("0.0.0.0", port), handler)
        else:
            reason = "address already in use" if e.errno == 98 else (e.strerror or str(e)).lower()
            sys.stderr.write("Error: listen tcp %s:%d: bind: %s\n" % (host, port, reason))
            sys.exit(1)
    return srv, listen_addr_text(host, port)


def serve_main():
    import signal
    p = Profile(VERSION, env_var("OLLAMA_SIM_LOG_ERA"))
    log = Log(p)
    state = State(p, log)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    srv = None
    disc = None
    try:
        srv, addr = make_server(state)
        log_start(p, log)
        log.info("listen", "Listening on %s (version %s)" % (addr, VERSION))
        disc = Discovery(p, log)
        if p.era in ("v0.3", "variant"):
            state.devices = old_era_discovery(p, log, disc)
        else:
            log.info("discovering", "discovering available GPUs...")
            override_warnings(p, log)
            state.devices = disc.run()
            log_details_new(p, log, state.devices, disc.libdir)
            total_vram = sum(max(d.total - overhead(), 0) for d in state.devices)
            vram_lines(p, log, total_vram)
        srv.serve_forever(poll_interval=0.5)
    except _Stop:
        pass
    finally:
        if disc is not None:
            disc.kill_all()
        if srv is not None:
            try:
                srv.server_close()
            except OSError:
                pass
    return 0


def overhead():
    try:
        return int(env_var("OLLAMA_GPU_OVERHEAD") or 0)
    except ValueError:
        return 0


def vram_lines(p, log, total_vram):
    threshold = 20 << 30
    if p.low_vram and total_vram < threshold:
        log.info("lowvram", "entering low vram mode", "total vram", human_bytes2(total_vram),
                 "threshold", human_bytes2(threshold))
    if p.vram_ctx:
        if total_vram >= 47 << 30:
            ctx = 262144
        elif total_vram >= 23 << 30:
            ctx = 32768
        else:
            ctx = 4096
        log.info("vramctx", "vram-based default context", "total_vram", human_bytes2(total_vram),
                 "default_num_ctx", ctx)


def override_warnings(p, log):
    if not p.override_warnings:   # from 0.13.0 (discover/runner.go:470@v0.13.0)
        return
    keys = ["CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"]
    if p.ver >= (0, 12, 11):
        keys.append("GGML_VK_VISIBLE_DEVICES")
    keys += ["GPU_DEVICE_ORDINAL", "HSA_OVERRIDE_GFX_VERSION"]
    found = False
    for k in keys:
        v = env_var(k)
        if v:
            found = True
            log.warn("override", "user overrode visible devices", k, v)
    if found:
        log.warn("override2", "if GPUs are not correctly discovered, unset and try again")


PAYLOADS = "@PAYLOADS@"   # the GPU runners a 0.3.x binary embeds (build.sh)


def runner_names(p, disc):
    """the runners the release can pick: 0.3.x its embedded payloads (cpu, cpu_avx,
    cpu_avx2 + GPU ones, llm/payload.go:23-44@v0.3.6), 0.5.x the dirs under
    lib/ollama/runners plus the built-in cpu (runners/common.go@v0.5.7)"""
    if p.extract_embedded or not os.path.isdir(os.path.join(disc.libdir, "runners")):
        gpu = [] if PAYLOADS.startswith("@") else [x for x in PAYLOADS.split(",") if x]
        return sorted(["cpu", "cpu_avx", "cpu_avx2"] + gpu)
    try:
        return sorted(set(["cpu"] + [n for n in os.listdir(os.path.join(disc.libdir, "runners"))
                                     if os.path.isdir(os.path.join(disc.libdir, "runners", n))]))
    except OSError:
        return ["cpu"]


# ---- before 0.12.4: GPU discovery inside the server process ------------------
# GetGPUInfo -> initCudaHandles (gpu/gpu.go:204,80-140@v0.3.6; discover/gpu.go:226,80-160@v0.5.7;
# discover/gpu.go:217,90-150@v0.11.4): FindGPULibs globs for libcuda.so*, resolves each match's
# symlinks and dlopen()s the result by its full path (RTLD_LAZY, gpu_info_nvcuda.c:33@v0.5.7);
# the first library whose ten symbols resolve and whose cuInit/cuDeviceGetCount succeed wins.
# No runner subprocess, no LD_LIBRARY_PATH of Ollama's own: the server's environment decides.

NVCUDA_GLOBS = [  # gpu/gpu_linux.go:29-39@v0.3.6 = discover/gpu_linux.go:33-43@v0.5.7 = @v0.11.4
    "/usr/local/cuda*/targets/*/lib/libcuda.so*",
    "/usr/lib/*-linux-gnu/nvidia/current/libcuda.so*",
    "/usr/lib/*-linux-gnu/libcuda.so*",
    "/usr/lib/wsl/lib/libcuda.so*",
    "/usr/lib/wsl/drivers/*/libcuda.so*",
    "/opt/cuda/lib*/libcuda.so*",
    "/usr/local/cuda/lib*/libcuda.so*",
    "/usr/lib*/libcuda.so*",
    "/usr/local/lib*/libcuda.so*",
]
CUDART_GLOBS = [  # gpu/gpu_linux.go:12-25@v0.3.6 = discover/gpu_linux.go:16-29@v0.5.7
    "/usr/local/cuda/lib64/libcudart.so*",
    "/usr/lib/x86_64-linux-gnu/nvidia/current/libcudart.so*",
    "/usr/lib/x86_64-linux-gnu/libcudart.so*",
    "/usr/lib/wsl/lib/libcudart.so*",
    "/usr/lib/wsl/drivers/*/libcudart.so*",
    "/opt/cuda/lib64/libcudart.so*",
    "/usr/local/cuda*/targets/aarch64-linux/lib/libcudart.so*",
    "/usr/lib/aarch64-linux-gnu/nvidia/current/libcudart.so*",
    "/usr/lib/aarch64-linux-gnu/libcudart.so*",
    "/usr/local/cuda/lib*/libcudart.so*",
    "/usr/lib*/libcudart.so*",
    "/usr/local/lib*/libcudart.so*",
]
NVCUDA_SYMBOLS = ("cuInit", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetAttribute",
                  "cuDeviceGetUuid", "cuDeviceGetName", "cuCtxCreate_v3", "cuMemGetInfo_v2",
                  "cuCtxDestroy")  # gpu/gpu_info_nvcuda.c:20-29@v0.3.6, discover/gpu_info_nvcuda.c:21-30@v0.5.7
CUDART_FIRST_SYMBOL = "cudaSetDevice"   # discover/gpu_info_cudart.c:18@v0.5.7 (first of its lookups)
CUDA_COMPUTE_MIN = (5, 0)               # CudaComputeMajorMin/MinorMin, discover/gpu.go:70-71@v0.5.7


def go_glob(pattern, dirs_only=False):
    """filepath.Glob: the directory part expanded first, per directory names sorted; '*' matches
    dot files too; errors ignored"""
    import fnmatch
    if not any(c in pattern for c in "*?["):
        return [pattern] if (os.path.isdir(pattern) if dirs_only else os.path.lexists(pattern)) else []
    parent, base = os.path.split(pattern)
    out = []
    for d in go_glob(parent, dirs_only=True):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        out.extend(os.path.join(d, n) for n in names if fnmatch.fnmatchcase(n, base)
                   and (not dirs_only or os.path.isdir(os.path.join(d, n))))
    return out


def resolve_links(path):
    """FindGPULibs' readlink loop (discover/gpu.go:555-563@v0.5.7): follow links one by one,
    relative targets joined to the link's dir; the last name is kept even if it does not exist"""
    lib = path
    for _ in range(40):   # upstream loops forever on a cycle; stop where the kernel would (ELOOP)
        try:
            tmp = os.readlink(lib)
        except OSError:
            break
        if not os.path.isabs(tmp):
            tmp = os.path.normpath(os.path.join(os.path.dirname(lib), tmp))
        lib = tmp
    return lib


def find_gpu_libs(p, log, base, defaults, bundled):
    """FindGPULibs (gpu/gpu.go:467-527@v0.3.6, discover/gpu.go:513-577@v0.5.7,
    discover/gpu.go:498-559@v0.11.4): bundled dirs first (0.3.14+), then each
    LD_LIBRARY_PATH entry (filepath.Abs: "" is the working directory), then the
    caller's patterns"""
    log.debug("search_lib", "Searching for GPU library", "name", base)
    patterns = [os.path.join(d, base) for d in bundled]
    for d in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        # 0.3.6 appended another "*" to a name that already ends in one (gpu/gpu.go:486@v0.3.6)
        patterns.append(os.path.join(os.path.abspath(d), base + ("*" if p.era == "v0.3" else "")))
    patterns += defaults
    log.debug("globs", "gpu library search", "globs", patterns)
    out = []
    for pat in patterns:
        if "PhysX" in pat:
            continue
        for m in go_glob(pat):
            lib = resolve_links(m)
            if lib not in out:
                out.append(lib)
    log.debug("discovered", "discovered GPU libraries", "paths", out)
    return out


def _raw(text):
    """the C side's LOG(verbose, ...) lines: plain stderr, only with OLLAMA_DEBUG"""
    if log_level() <= -4:
        emit(sys.stderr, text)


class NvcudaHandle(object):
    pass


def nvcuda_init(path):
    """nvcuda_init (gpu_info_nvcuda.c:6-104@v0.5.7) in this process -> (handle, err, cuda_err)"""
    import ctypes
    libc = _dl()
    _raw("initializing %s\n" % path)
    h = libc.dlopen(path.encode(), os.RTLD_LAZY)
    if not h:
        msg = (libc.dlerror() or b"").decode("utf-8", "replace")
        _raw("library %s load err: %s\n" % (path, msg))
        return None, "Unable to load %s library to query for Nvidia GPUs: %s" % (path, msg), -1
    fns = {}
    for name in NVCUDA_SYMBOLS:
        libc.dlerror()
        sym = libc.dlsym(h, name.encode())
        if not sym:
            msg = (libc.dlerror() or b"").decode("utf-8", "replace")
            _raw("dlerr: %s\n" % msg)
            libc.dlclose(h)
            return None, "symbol lookup for %s failed: %s" % (name, msg), -1
        _raw("dlsym: %s - 0x%x\n" % (name, sym))
        fns[name] = sym
    I, P = ctypes.c_int, ctypes.c_void_p
    F = lambda ptr, *args: ctypes.CFUNCTYPE(I, *args)(ptr)
    _raw("calling cuInit\n")
    ret = F(fns["cuInit"], ctypes.c_uint)(0)
    if ret != 0:
        _raw("cuInit err: %d\n" % ret)
        libc.dlclose(h)
        return None, "cuda driver library init failure: %d" % ret, ret
    hd = NvcudaHandle()
    hd.fns, hd.F, hd.libc, hd.h, hd.path = fns, F, libc, h, path
    hd.driver_major = hd.driver_minor = 0
    v = I(0)
    _raw("calling cuDriverGetVersion\n")
    if F(fns["cuDriverGetVersion"], P)(ctypes.byref(v)) == 0:
        _raw("raw version 0x%x\n" % v.value)
        hd.driver_major = v.value // 1000
        hd.driver_minor = (v.value - hd.driver_major * 1000) // 10
        _raw("CUDA driver version: %d.%d\n" % (hd.driver_major, hd.driver_minor))
    n = I(0)
    _raw("calling cuDeviceGetCount\n")
    ret = F(fns["cuDeviceGetCount"], P)(ctypes.byref(n))
    if ret != 0:
        _raw("cuDeviceGetCount err: %d\n" % ret)
        libc.dlclose(h)
        return None, "unable to get device count: %d" % ret, ret
    _raw("device count %d\n" % n.value)
    hd.count = n.value
    return hd, None, 0


def nvcuda_bootstrap(hd, i):
    """nvcuda_bootstrap (gpu_info_nvcuda.c:107-200@v0.5.7) -> (raw device dict, err)"""
    import ctypes
    I, P, F, fns = ctypes.c_int, ctypes.c_void_p, hd.F, hd.fns
    dev = I(-1)
    if F(fns["cuDeviceGet"], P, I)(ctypes.byref(dev), i) != 0:
        return None, "cuda driver library device failed to initialize"
    attr = F(fns["cuDeviceGetAttribute"], P, I, I)
    major, minor = I(0), I(0)
    if attr(ctypes.byref(major), 75, dev.value) != 0 or attr(ctypes.byref(minor), 76, dev.value) != 0:
        major, minor = I(0), I(0)
    uuid = (ctypes.c_ubyte * 16)()
    if F(fns["cuDeviceGetUuid"], P, I)(uuid, dev.value) != 0:
        gpu_id = "%d" % i
    else:
        b = list(uuid)
        gpu_id = "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x" % tuple(b)
    name = ctypes.create_string_buffer(96)
    if F(fns["cuDeviceGetName"], P, I, I)(name, 96, dev.value) != 0:
        name.value = b""
    ctx = P(0)
    ret = F(fns["cuCtxCreate_v3"], P, P, I, ctypes.c_uint, I)(ctypes.byref(ctx), None, 0, 0, dev.value)
    if ret != 0:
        return None, "cuda driver library failed to get device context %d" % ret
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    ret = F(fns["cuMemGetInfo_v2"], P, P)(ctypes.byref(free), ctypes.byref(total))
    if ret != 0:
        F(fns["cuCtxDestroy"], P)(ctx)
        return None, "cuda driver library device memory info lookup failure %d" % ret
    _raw("[%s] CUDA totalMem %d mb\n[%s] CUDA freeMem %d mb\n[%s] Compute Capability %d.%d\n" % (
        gpu_id, total.value // 1048576, gpu_id, free.value // 1048576, gpu_id, major.value, minor.value))
    F(fns["cuCtxDestroy"], P)(ctx)
    return {"id": gpu_id, "index": i, "name": name.value.decode("utf-8", "replace"), "compute_major": major.value,
            "compute_minor": minor.value, "total": total.value, "free": free.value}, None


def load_nvcuda_mgmt(p, log, paths):
    """LoadNVCUDAMgmt (gpu/gpu.go:546-577@v0.3.6) / loadNVCUDAMgmt (discover/gpu.go:604-634@v0.5.7):
    the first library that initialises; each failure logged as that release does"""
    for path in paths:
        hd, err, code = nvcuda_init(path)
        if hd is not None:
            return hd
        if p.era == "v0.3":
            if code in (35, 803):
                log.warn("mismatch", "version mismatch between driver and cuda driver library - reboot or upgrade "
                         "may be required", "library", path, "error", err)
            elif code == 100:
                log.info("nodev", "no nvidia devices detected", "library", path)
            elif code == 999:
                log.warn("unknown", "unknown error initializing cuda driver library", "library", path, "error", err)
                log.warn("unknown2", "see https://github.com/ollama/ollama/blob/main/docs/troubleshooting.md for more "
                         "information")
            elif "wrong ELF class" in err:
                log.debug("skip32", "skipping 32bit library", "library", path)
            else:
                log.info("noload", "unable to load cuda driver library", "library", path, "error", err)
            continue
        if code in (35, 803):
            log.warn("mismatch", "version mismatch between driver and cuda driver library - reboot or upgrade may be "
                     "required: library %s" % path)
        elif code == 100:
            log.info("nodev", "no nvidia devices detected by library %s" % path)
        elif code == 999:
            log.warn("unknown", "unknown error initializing cuda driver library %s: %s. see https://github.com/ollama/"
                     "ollama/blob/main/docs/troubleshooting.md for more information" % (path, err))
        elif "wrong ELF class" in err:
            log.debug("skip32", "skipping 32bit library", "library", path)
        else:
            log.info("noload", "Unable to load cudart library %s: %s" % (path, err))
    return None


def load_cudart_mgmt(p, log, paths):
    """LoadCUDARTMgmt (gpu/gpu.go:529-544@v0.3.6, discover/gpu.go:582-600@v0.5.7): only the symbol
    lookup is modelled (the tarballs' libcudart files are stand-ins without the runtime API, so
    this fallback never finds a GPU here; see the fidelity table)"""
    libc = _dl()
    for path in paths:
        h = libc.dlopen(path.encode(), os.RTLD_LAZY)
        if not h:
            err = "Unable to load %s library to query for Nvidia GPUs: %s" % (
                path, (libc.dlerror() or b"").decode("utf-8", "replace"))
        else:
            libc.dlerror()
            real = libc.dlsym(h, CUDART_FIRST_SYMBOL.encode())
            err = None if real else "symbol lookup for %s failed: %s" % (
                CUDART_FIRST_SYMBOL, (libc.dlerror() or b"").decode("utf-8", "replace"))
            libc.dlclose(h)
            if real:
                continue   # a real CUDA runtime (a host's toolkit): not called, not modelled
        if p.era == "v0.3":
            log.debug("cudart", "Unable to load cudart", "library", path, "error", err)
        else:
            log.debug("cudart", "Unable to load cudart library %s: %s" % (path, err))
    return None


_PAYLOADS_DIR = []


def payloads_dir(p):
    """PayloadsDir (gpu/assets.go:23-62@v0.3.6): $OLLAMA_RUNNERS_DIR, else $OLLAMA_TMPDIR/runners,
    else os.MkdirTemp("", "ollama")/runners (chosen once per process)"""
    if not _PAYLOADS_DIR:
        if env_var("OLLAMA_RUNNERS_DIR"):
            _PAYLOADS_DIR.append(env_var("OLLAMA_RUNNERS_DIR"))
        elif env_var("OLLAMA_TMPDIR"):
            _PAYLOADS_DIR.append(os.path.join(env_var("OLLAMA_TMPDIR"), "runners"))
        else:
            import random
            _PAYLOADS_DIR.append(os.path.join(os.environ.get("TMPDIR") or "/tmp",
                                              "ollama%d" % random.randint(10 ** 8, 10 ** 9 - 1), "runners"))
    return _PAYLOADS_DIR[0]


def old_era_discovery(p, log, disc):
    libdir = disc.libdir
    if p.extract_embedded:
        log.info("extract", "extracting embedded files", "dir", payloads_dir(p))
    if p.dynamic_libs:
        names = runner_names(p, disc)
        if p.dynamic_libs_sprintf:
            log.info("dynlibs", "Dynamic LLM libraries %s" % go_fmt(names))
        else:
            log.info("dynlibs", "Dynamic LLM libraries", "runners", names)
    log.info("looking", "looking for compatible GPUs")
    log.debug("searching", "searching for GPU discovery libraries for NVIDIA")
    bundled = [libdir] if p.bundled_first else []
    if p.era == "v0.3":
        cudart_patterns = [os.path.join(payloads_dir(p), "cuda*", "libcudart.so*")]  # gpu/gpu.go:100-104@v0.3.6
    elif p.ver >= (0, 6, 0):
        cudart_patterns = [os.path.join(libdir, "cuda_v*", "libcudart.so*")]          # discover/gpu.go:103@v0.11.4
    else:
        cudart_patterns = [os.path.join(libdir, "libcudart.so*")]                     # discover/gpu.go:109-112@v0.5.7
    hd = load_nvcuda_mgmt(p, log, find_gpu_libs(p, log, "libcuda.so*", NVCUDA_GLOBS, bundled))
    if hd is not None:
        log.debug("detected", "detected GPUs", "count", hd.count, "library", hd.path)
    else:
        load_cudart_mgmt(p, log, find_gpu_libs(p, log, "libcudart.so*", cudart_patterns + CUDART_GLOBS, bundled))
    devices = []
    for i in range(hd.count if hd is not None else 0):
        raw, err = nvcuda_bootstrap(hd, i)
        if err:
            log.info("memerr", "error looking up nvidia GPU memory", "error", err)
            continue
        d = Device(raw, libdir, "cuda", hd.driver_major * 1000 + hd.driver_minor * 10)
        if (d.major, d.minor) < CUDA_COMPUTE_MIN:
            log.info("tooold", "[%d] CUDA GPU is too old. Compute Capability detected: %d.%d" % (i, d.major, d.minor))
            continue
        devices.append(d)
    if hd is not None:
        _raw("releasing cuda driver library\n")
    total, avail = meminfo()
    if not devices:
        log.info("nocompat", "no compatible GPUs were discovered")
        attrs = ["id", "0", "library", "cpu"]
        if p.era == "variant":
            attrs += ["variant", cpu_capability() if p.cpu_variant_capability else ""]
        attrs += ["compute", "", "driver", "0.0", "name", "", "total", human_bytes2(total),
                  "available", human_bytes2(avail)]
        log.info("compute", "inference compute", *attrs)
        vram_lines(p, log, max(total - overhead(), 0))  # GetGPUInfo returns the CPU here
        return []
    for d in devices:
        attrs = ["id", d.id, "library", "cuda"]
        if p.era == "variant":
            attrs += ["variant", cuda_variant(p, d)]
        attrs += ["compute", d.compute, "driver", d.driver_str, "name", d.name,
                  "total", human_bytes2(d.total), "available", human_bytes2(d.free)]
        log.info("compute", "inference compute", *attrs)
    vram_lines(p, log, sum(max(d.total - overhead(), 0) for d in devices))
    return devices


def cuda_variant(p, d):
    major, minor = d.driver // 1000, (d.driver % 1000) // 10
    if major < 12 or (major == 12 and minor == 0) or (p.cuda_v11_low_cc and d.major < 6):
        return "v11"
    return "v12"


def log_details_new(p, log, devices, libdir):
    if not devices:
        total, avail = meminfo()
        log.info("compute_cpu", "inference compute", "id", "cpu", "library", "cpu", "compute", "", "name", "cpu",
                 "description", "cpu", "libdirs", "ollama", "driver", "", "pci_id", "", "type", "",
                 "total", human_bytes2(total), "available", human_bytes2(avail))
        return
    for d in devices:
        libs = [os.path.basename(x) for x in (libdir, d.libdir) if "lib/ollama" in x]
        if p.era == "v0.30":
            # ID/FilterID after the remap in run_v030; Name is llama-server's ("CUDA0")
            dev_id, filter_id, name = d.v030_id, d.filter_id, "%s%d" % (d.backend, d.index)
        else:
            dev_id, filter_id, name = d.id, "", "%s%d" % (d.backend, d.ordinal)
        attrs = ["id", dev_id]
        if p.filter_id:
            attrs += ["filter_id", filter_id]
        attrs += ["library", d.backend, "compute", d.compute, "name", name, "description", d.name,
                  "libdirs", ",".join(libs), "driver", d.driver_str, "pci_id", d.pci_id, "type", "discrete",
                  "total", human_bytes2(d.total), "available", human_bytes2(d.free)]
        log.info("compute_gpu", "inference compute", *attrs)


# ---------------------------------------------------------------------------
# HTTP API
# ---------------------------------------------------------------------------

MODEL_SIZE = 2019377152
MODEL_LAYERS = 29


def gin_line(status, dur_ns, ip, method, path):
    if dur_ns > 60 * 10 ** 9:
        dur_ns -= dur_ns % 10 ** 9
    return "[GIN] %s | %3d | %13s | %15s | %-7s  %s" % (
        time.strftime("%Y/%m/%d - %H:%M:%S"), status, go_duration(dur_ns), ip, method, go_quote(path))


def make_handler(state):
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        server_version = "ollama-sim"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def _send(self, status, body, ctype="application/json; charset=utf-8"):
            if not isinstance(body, bytes):
                body = body.encode("utf-8")
            self._status = status
            # logged before the body goes out: a client that has its answer has its access line too
            self._log_access()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _log_access(self):
            if self._logged:
                return
            self._logged = True
            ip = self.client_address[0]
            if ip.startswith("::ffff:"):
                ip = ip[len("::ffff:"):]  # Go reports v4-mapped peers as IPv4
            emit(sys.stdout, gin_line(self._status, int((time.time() - self._start) * 1e9),
                                      ip, self.command, self.path) + "\n")

        def _json(self, status, obj):
            self._send(status, json.dumps(obj, separators=(",", ":")))

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n > 0 else b""
            if not raw:
                return {}
            return json.loads(raw.decode("utf-8"))

        def _handle(self):
            self._start = time.time()
            self._status = 500
            self._logged = False
            path = self.path.split("?", 1)[0]
            try:
                self.route(path)
            except (ValueError, KeyError) as e:
                self._json(400, {"error": str(e)})
            finally:
                self._log_access()

        do_GET = do_POST = do_HEAD = do_DELETE = _handle

        def route(self, path):
            m = self.command
            if path == "/" and m in ("GET", "HEAD"):
                return self._send(200, "Ollama is running", "text/plain; charset=utf-8")
            if path == "/api/version" and m in ("GET", "HEAD"):
                return self._json(200, {"version": VERSION})
            if path == "/api/tags" and m in ("GET", "HEAD"):
                return self._json(200, {"models": []})
            if path == "/api/ps" and m == "GET":
                return self._json(200, {"models": running_models(state)})
            if path in ("/api/generate", "/api/chat") and m == "POST":
                return self.generate(path)
            return self._send(404, "404 page not found", "text/plain")

        def generate(self, path):
            req = self._body()
            model = req.get("model") or ""
            if not model:
                return self._json(400, {"error": "model is required"})
            if ":" not in model:
                model += ":latest"
            load_model(state, model, req.get("keep_alive"))
            now = rfc3339nano(time.time())
            chat = path == "/api/chat"
            prompt = req.get("prompt", "")
            if chat:
                msgs = req.get("messages") or []
                prompt = msgs[-1].get("content", "") if msgs else ""
            text = "The simulated vGPU says hello." if prompt else ""
            final = {"model": model, "created_at": now, "done": True,
                     "done_reason": "stop" if prompt else "load"}
            if prompt:
                final.update({"total_duration": 512345678, "load_duration": 123456789,
                              "prompt_eval_count": len(prompt.split()) + 8, "prompt_eval_duration": 23456789,
                              "eval_count": 8, "eval_duration": 345678901})
            body = {"role": "assistant", "content": text} if chat else None
            if req.get("stream", True) is False or not prompt:
                out = dict(final)
                if chat:
                    out["message"] = body
                else:
                    out["response"] = text
                    out["context"] = [1, 2, 3] if prompt else []
                return self._json(200, out)
            chunks = []
            for word in text.split(" "):
                piece = word + " " if word != text.split(" ")[-1] else word
                c = {"model": model, "created_at": now, "done": False}
                if chat:
                    c["message"] = {"role": "assistant", "content": piece}
                else:
                    c["response"] = piece
                chunks.append(json.dumps(c, separators=(",", ":")))
            fin = dict(final)
            if chat:
                fin["message"] = {"role": "assistant", "content": ""}
            else:
                fin["response"] = ""
            chunks.append(json.dumps(fin, separators=(",", ":")))
            self._send(200, "\n".join(chunks) + "\n", "application/x-ndjson")

        def version_string(self):
            return ""

    return Handler


def keep_alive_seconds(v):
    if v is None:
        s = env_var("OLLAMA_KEEP_ALIVE") or "5m"
    else:
        s = str(v)
    try:
        return float(s)
    except ValueError:
        pass
    total = 0.0
    num = ""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    i = 0
    while i < len(s):
        ch = s[i]
        if ch.isdigit() or ch in ".-":
            num += ch
            i += 1
            continue
        u = "ms" if s[i:i + 2] == "ms" else ch
        total += float(num or 0) * units.get(u, 0)
        num = ""
        i += len(u)
    return total if total else 300.0


def load_model(state, model, keep_alive):
    p, log = state.p, state.log
    ka = keep_alive_seconds(keep_alive)
    gpu = bool(state.devices)
    requested = env_var("OLLAMA_LLM_LIBRARY")
    if p.era in ("v0.3", "variant") and requested:
        names = runner_names(p, Discovery(p, log))
        if requested not in names:
            if "llmlib" in p.sources:   # llm/server.go:172@v0.3.6, :158@v0.5.7; gone by 0.11.4
                log.info("llmlib", "Invalid OLLAMA_LLM_LIBRARY %s - not found" % requested)
        elif requested.startswith("cpu"):
            gpu = False
    with state.lock:
        now = time.time()
        cur = state.models.get(model)
        if ka < 0:
            expires = now + 10 ** 9
        else:
            expires = now + ka
        if cur is None:
            layers = MODEL_LAYERS if gpu else 0
            log.info("offload", "offloaded %d/%d layers to GPU" % (layers, MODEL_LAYERS))
            log.info("started", "llama runner started in 0.52 seconds")
            cur = {"name": model, "size": MODEL_SIZE, "size_vram": MODEL_SIZE if gpu else 0}
            state.models[model] = cur
        cur["expires"] = expires
        if ka == 0:
            del state.models[model]


def running_models(state):
    out = []
    now = time.time()
    with state.lock:
        for name in sorted(state.models):
            m = state.models[name]
            if m["expires"] < now:
                del state.models[name]
                continue
            import hashlib
            digest = hashlib.sha256(name.encode()).hexdigest()
            out.append({
                "name": name, "model": name, "size": m["size"], "digest": digest,
                "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                            "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
                "expires_at": rfc3339nano(m["expires"]), "size_vram": m["size_vram"],
                "context_length": 4096,
            })
    return out


# ---------------------------------------------------------------------------
# client commands
# ---------------------------------------------------------------------------


def client_url(path):
    scheme, host, port, _ = parse_host()
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    h = "[%s]" % host if ":" in host else host
    return "%s://%s:%d%s" % (scheme, h, port, path)


def http(method, path, body=None, timeout=30):
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(client_url(path), data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode("utf-8")


def version_main():
    server = ""
    try:
        server = json.loads(http("GET", "/api/version", timeout=5)).get("version", "")
    except Exception:
        print("Warning: could not connect to a running Ollama instance")
    if server:
        print("ollama version is %s" % server)
    if server != VERSION:
        print("Warning: client version is %s" % VERSION)
    return 0


def human_until(expires_at_ts):
    d = expires_at_ts - time.time()
    if d > 10 ** 8:
        return "Forever"
    if d <= 0:
        return "Stopping..."
    mins = int(round(d / 60.0))
    if mins >= 2:
        return "%d minutes from now" % mins
    if mins == 1:
        return "About a minute from now"
    return "Less than a minute from now"


def parse_rfc3339(s):
    import datetime
    base, frac, zone = s, "", "Z"
    for i in range(len(s) - 1, 9, -1):
        if s[i] in "Z+-":
            base, zone = s[:i], s[i:]
            break
    if "." in base:
        base, frac = base.split(".", 1)
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    if zone == "Z":
        off = 0
    else:
        sign = 1 if zone[0] == "+" else -1
        hh, mm = zone[1:].split(":")
        off = sign * (int(hh) * 3600 + int(mm) * 60)
    epoch = (dt - datetime.datetime(1970, 1, 1)).total_seconds() - off
    return epoch + (float("0." + frac) if frac else 0.0)


def table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("    ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())


def ps_main():
    try:
        models = json.loads(http("GET", "/api/ps")).get("models", [])
    except Exception as e:
        sys.stderr.write("Error: could not connect to ollama app, is it running? (%s)\n" % e)
        return 1
    p = Profile(VERSION, env_var("OLLAMA_SIM_LOG_ERA"))
    ctx = p.ver >= (0, 12, 0)
    rows = [["NAME", "ID", "SIZE", "PROCESSOR"] + (["CONTEXT"] if ctx else []) + ["UNTIL"]]
    for m in models:
        size, vram = m.get("size", 0), m.get("size_vram", 0)
        if vram == 0:
            proc = "100% CPU"
        elif vram >= size:
            proc = "100% GPU"
        else:
            cpu_pct = int(round(100.0 * (size - vram) / size))
            proc = "%d%%/%d%% CPU/GPU" % (cpu_pct, 100 - cpu_pct)
        row = [m.get("name", ""), m.get("digest", "")[:12], human_bytes(size), proc]
        if ctx:
            row.append(str(m.get("context_length", 4096)))
        row.append(human_until(parse_rfc3339(m.get("expires_at", rfc3339nano(time.time())))))
        rows.append(row)
    table(rows)
    return 0


def list_main():
    try:
        json.loads(http("GET", "/api/tags"))
    except Exception as e:
        sys.stderr.write("Error: could not connect to ollama app, is it running? (%s)\n" % e)
        return 1
    table([["NAME", "ID", "SIZE", "MODIFIED"]])
    return 0


def run_main(args):
    if not args:
        sys.stderr.write("Error: requires at least 1 arg(s), only received 0\n")
        return 1
    model, prompt = args[0], " ".join(args[1:])
    if not prompt and not sys.stdin.isatty():
        prompt = sys.stdin.read().strip()
    try:
        out = json.loads(http("POST", "/api/generate", {"model": model, "prompt": prompt, "stream": False},
                              timeout=300))
    except Exception as e:
        sys.stderr.write("Error: %s\n" % e)
        return 1
    if out.get("response"):
        print(out["response"])
        print()
    return 0


USAGE = """Large language model runner

Usage:
  ollama [flags]
  ollama [command]

Available Commands:
  serve       Start ollama
  run         Run a model
  ps          List running models
  list        List models
  help        Help about any command

Flags:
  -h, --help      help for ollama
  -v, --version   Show version information

Use "ollama [command] --help" for more information about a command.
"""


def main(argv):
    if not argv:
        sys.stdout.write(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd in ("-v", "--version"):
        return version_main()
    if cmd in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if cmd in ("serve", "start"):
        return serve_main()
    if cmd == "runner":
        return runner_main(rest)
    if cmd == "ps":
        return ps_main()
    if cmd in ("list", "ls"):
        return list_main()
    if cmd == "run":
        return run_main(rest)
    sys.stderr.write('Error: unknown command "%s" for "ollama"\n' % cmd)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
