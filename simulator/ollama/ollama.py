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
        self.sources = SOURCES[self.source_key()]

    def source_key(self):
        if self.era == "v0.3":
            return "0.3.6"
        if self.era == "variant":
            return "0.11.4" if self.ver >= (0, 6, 0) else "0.5.7"
        if self.era == "v0.12":
            return "0.13.5"
        return "0.30.1"


# source=file.go:N of the lines we print, from the upstream sources.
SOURCES = {
    "0.3.6": {"config": "routes.go:1125", "blobs": "images.go:782", "unused": "images.go:790",
              "listen": "routes.go:1172", "extract": "payload.go:30", "dynlibs": "payload.go:44",
              "looking": "gpu.go:204", "nocompat": "gpu.go:350", "compute": "types.go:105",
              "nodev": "gpu.go:560", "noload": "gpu.go:568", "failure": "gpu.go:204",
              "llmlib": "server.go:171", "debug": "gpu.go:510"},
    "0.5.7": {"config": "routes.go:1187", "blobs": "images.go:432", "unused": "images.go:439",
              "listen": "routes.go:1238", "extract": "payload.go:30", "dynlibs": "routes.go:1267",
              "looking": "gpu.go:226", "nocompat": "gpu.go:392", "compute": "types.go:131",
              "nodev": "gpu.go:620", "noload": "gpu.go:630", "failure": "gpu.go:226",
              "llmlib": "server.go:158", "debug": "gpu.go:512"},
    "0.11.4": {"config": "routes.go:1304", "blobs": "images.go:477", "unused": "images.go:484",
               "listen": "routes.go:1357", "looking": "gpu.go:217", "nocompat": "gpu.go:377",
               "compute": "types.go:130", "nodev": "gpu.go:602", "noload": "gpu.go:612",
               "failure": "gpu.go:217", "lowvram": "routes.go:1398", "llmlib": "server.go:275",
               "debug": "gpu.go:500"},
    "0.13.5": {"config": "routes.go:1554", "blobs": "images.go:493", "unused": "images.go:500",
               "listen": "routes.go:1607", "discovering": "runner.go:67", "vulkan_off": "runner.go:106",
               "failure": "runner.go:464", "override": "runner.go:485", "override2": "runner.go:489",
               "compute_gpu": "types.go:42", "compute_cpu": "types.go:60", "starting": "server.go:429",
               "lowvram": "routes.go:1648", "vramctx": "routes.go:1739", "cloud": "routes.go:1665",
               "took": "runner.go:440", "skipreq": "runner.go:98", "filtered": "runner.go:146",
               "debug": "runner.go:458"},
    "0.30.1": {"config": "routes.go:1919", "cloud": "routes.go:1921", "blobs": "images.go:864",
               "unused": "images.go:871", "listen": "routes.go:1981", "discovering": "runner.go:60",
               "failure": "runner.go:513", "watchdog": "runner.go:575", "override": "runner.go:713",
               "override2": "runner.go:717", "compute_gpu": "types.go:32", "compute_cpu": "types.go:50",
               "vramctx": "routes.go:2031", "took": "runner.go:501", "skipreq": "runner.go:90",
               "filtered": "runner.go:152", "debug": "llama_server.go:122"},
}
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
        "OLLAMA_NUM_PARALLEL": s("OLLAMA_NUM_PARALLEL") or ("1" if p.ver >= (0, 7, 0) else "0"),
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
    if p.ver >= (0, 11, 0):
        m["OLLAMA_CONTEXT_LENGTH"] = s("OLLAMA_CONTEXT_LENGTH") or ("4096" if p.ver < (0, 30, 0) else "0")
        if p.ver < (0, 30, 0):
            m["OLLAMA_NEW_ENGINE"] = env_bool("OLLAMA_NEW_ENGINE")
    if p.ver >= (0, 12, 11):
        m["GGML_VK_VISIBLE_DEVICES"] = s("GGML_VK_VISIBLE_DEVICES")
        m["OLLAMA_REMOTES"] = (s("OLLAMA_REMOTES") or "ollama.com").split(",")
        m["OLLAMA_VULKAN"] = vulkan_enabled(p)
    if p.ver >= (0, 30, 0):
        for k in ("LLAMA_ARG_FIT", "LLAMA_ARG_FIT_TARGET", "OLLAMA_EDITOR", "OLLAMA_MAX_TRANSFER_STREAMS"):
            m[k] = s(k)
        m["OLLAMA_DEBUG_LOG_REQUESTS"] = env_bool("OLLAMA_DEBUG_LOG_REQUESTS")
        m["OLLAMA_GO_TEMPLATE"] = env_bool("OLLAMA_GO_TEMPLATE")
        m["OLLAMA_IGPU_ENABLE"] = env_bool("OLLAMA_IGPU_ENABLE")
        m["OLLAMA_NO_CLOUD"] = env_bool("OLLAMA_NO_CLOUD")
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
    result = {"dirs": dirs, "libs": [], "pid": os.getpid()}
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
            try:
                lib = ctypes.CDLL(path, mode=mode)
            except OSError as e:
                entry["error"] = str(e)
                continue
            entry["loaded"] = True
            try:
                fn = lib.ggml_backend_sim_discover
            except AttributeError:
                continue  # CPU backends have nothing to enumerate
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            buf = ctypes.create_string_buffer(65536)
            rc = fn(buf, len(buf))
            try:
                entry["result"] = json.loads(buf.value.decode("utf-8", "replace"))
            except ValueError:
                entry["error"] = "backend returned %d and unparsable output" % rc
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


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
        for lib in self.data.get("libs", []):
            res = lib.get("result") or {}
            for raw in res.get("devices") or []:
                out.append(Device(raw, self.libdir, res.get("backend", ""), res.get("driver_version")))
        return out

    def failures(self):
        """(library path, error text, result dict) for every backend that failed"""
        out = []
        if not self.data:
            return out
        for lib in self.data.get("libs", []):
            res = lib.get("result") or {}
            if lib.get("error"):
                out.append((lib.get("path"), lib["error"], res))
            elif res.get("error"):
                err = res["error"]
                out.append((lib.get("path"), "%s: %s (%s)" % (err.get("call"), err.get("message"), err.get("code")), res))
        return out


SIGNAL_TEXT = {4: "illegal instruction", 6: "aborted", 7: "bus error", 9: "killed", 11: "segmentation fault",
               15: "terminated"}


def exit_text(code):
    """os.ProcessState.String()"""
    if code is None:
        return "unknown"
    if code < 0:
        return "signal: " + SIGNAL_TEXT.get(-code, "signal %d" % -code)
    return "exit status %d" % code


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
        paths = list(dirs)
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
        if self.p.era == "v0.12":
            self.log.info("starting", "starting runner", "cmd", " ".join(args))
        res = RunnerResult(gpudir, extra or {})
        res.dirs = dirs
        res.started = time.time()
        proc = subprocess.Popen([sys.executable] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.runner_env(dirs, extra), close_fds=True)
        self.procs.append(proc)
        return res, proc

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

    def report(self, res):
        """logs after one runner finished (upstream shapes)"""
        p, log = self.p, self.log
        if res.timed_out:
            if p.era == "v0.30":
                log.warn("watchdog", "llama-server GPU discovery watchdog timed out", "OLLAMA_LIBRARY_PATH", res.dirs,
                         "extra_envs", res.extra_envs, "error", "context deadline exceeded")
                log.info("failure", "failure during llama-server GPU discovery", "OLLAMA_LIBRARY_PATH", res.dirs,
                         "extra_envs", res.extra_envs, "error", "context deadline exceeded", "detail", "")
            else:
                log.info("failure", "failure during GPU discovery", "OLLAMA_LIBRARY_PATH", res.dirs,
                         "extra_envs", res.extra_envs, "error", "failed to finish discovery before timeout")
            return
        if p.era in ("v0.12", "v0.30"):
            log.debug("took", "bootstrap discovery took", "duration", go_duration(int(res.duration * 1e9)),
                      "OLLAMA_LIBRARY_PATH", res.dirs, "extra_envs", res.extra_envs)
        if res.data is None:
            log.debug("debug", "runner exited without reporting devices", "OLLAMA_LIBRARY_PATH", res.dirs,
                      "code", res.exit_code, "stderr", res.stderr.strip()[-500:])
            if p.era == "v0.12" and res.exit_code is not None and res.exit_code < 0:
                # upstream: ExitCode() is -1 for a signalled runner -> logged at INFO
                log.info("failure", "failure during GPU discovery", "OLLAMA_LIBRARY_PATH", res.dirs,
                         "extra_envs", res.extra_envs, "error", "runner crashed")
            elif p.era == "v0.30":
                log.info("failure", "failure during llama-server GPU discovery", "OLLAMA_LIBRARY_PATH", res.dirs,
                         "extra_envs", res.extra_envs, "error",
                         "llama-server --list-devices failed: %s" % exit_text(res.exit_code), "detail", "")
            return
        for path, err, result in res.failures():
            code = ((result or {}).get("error") or {}).get("code")
            driver_lib = (result or {}).get("driver_lib")
            if p.era in ("v0.3", "variant") and driver_lib and code is not None and \
                    ((result or {}).get("error") or {}).get("call") == "cuInit":
                self.old_driver_message(driver_lib, code)
            log.debug("debug", "backend library failed to initialize", "library", path, "error", err)

    def old_driver_message(self, lib, code):
        """pre-0.12 in-process driver bootstrap messages (gpu.go loadNVCUDAMgmt)"""
        log = self.log
        if self.p.era == "v0.3":
            if code == 100:
                log.info("nodev", "no nvidia devices detected", "library", lib)
            elif code in (35, 803):
                log.warn("nodev", "version mismatch between driver and cuda driver library - reboot or upgrade may be required",
                         "library", lib, "error", "cuda driver library init failure: %d" % code)
            else:
                log.info("noload", "unable to load cuda driver library", "library", lib,
                         "error", "cuda driver library init failure: %d" % code)
        else:
            if code == 100:
                log.info("nodev", "no nvidia devices detected by library %s" % lib)
            elif code in (35, 803):
                log.warn("nodev", "version mismatch between driver and cuda driver library - reboot or upgrade may be required: library %s" % lib)
            else:
                log.info("noload", "Unable to load cudart library %s: cuda driver library init failure: %d" % (lib, code))

    def dirs_to_probe(self):
        p, log = self.p, self.log
        requested = env_var("OLLAMA_LLM_LIBRARY")
        out = []
        for d in gpu_lib_dirs(self.libdir):
            base = os.path.basename(d)
            if p.era in ("v0.12", "v0.30") and requested and base != requested and \
                    not (p.era == "v0.30" and requested.startswith("mlx_")):
                log.debug("skipreq", "skipping available library at user's request", "requested", requested, "libDir", d)
                continue
            if "cuda_jetpack" in base:
                continue
            if "vulkan" in base:
                if p.era == "v0.30":
                    if not vulkan_enabled(p):
                        continue
                elif p.era == "v0.12":
                    if not vulkan_enabled(p):
                        if p.vulkan_optin:
                            log.info("vulkan_off", "experimental Vulkan support disabled.  To enable, set OLLAMA_VULKAN=1")
                        continue
                else:
                    continue
            out.append(d)
        return out

    def run(self):
        """-> list of Device (deduplicated, in log order)"""
        p = self.p
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

    def validate(self, devices):
        """second pass: a runner limited to the device, deep init (GGML_CUDA_INIT=1)"""
        p = self.p
        pending = []
        for d in devices:
            if d.backend != "CUDA":
                continue
            dev_id = str(d.ordinal) if p.era == "v0.30" else d.id
            extra = {"CUDA_VISIBLE_DEVICES": dev_id, "GGML_CUDA_INIT": "1"}
            pending.append((d, self.start(d.libdir, extra)))
        keep = [d for d in devices if d.backend != "CUDA"]
        results = self.finish([x[1] for x in pending])
        for (d, _), res in zip(pending, results):
            self.report(res)
            if any(x.id == d.id for x in res.devices()):
                keep.append(d)
            else:
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


def runner_names(p, disc):
    names = ["cpu", "cpu_avx", "cpu_avx2"]
    for d in gpu_lib_dirs(disc.libdir):
        b = os.path.basename(d)
        if b.startswith("cuda_v"):
            names.append(b + ("_avx" if p.runner_avx_suffix else ""))
    return sorted(names)


def old_era_discovery(p, log, disc):
    if p.extract_embedded:
        log.info("extract", "extracting embedded files", "dir", os.path.join(
            os.environ.get("OLLAMA_TMPDIR") or "/tmp", "ollama%d" % (abs(hash(disc.libdir)) % 10 ** 9), "runners"))
    if p.dynamic_libs:
        names = runner_names(p, disc)
        if p.dynamic_libs_sprintf:
            log.info("dynlibs", "Dynamic LLM libraries %s" % go_fmt(names))
        else:
            log.info("dynlibs", "Dynamic LLM libraries", "runners", names)
    log.info("looking", "looking for compatible GPUs")
    dirs = [d for d in gpu_lib_dirs(disc.libdir) if os.path.basename(d).startswith("cuda_v")]
    try:
        results = disc.finish([disc.start(d) for d in dirs])
    finally:
        disc.kill_all()
    # the driver messages come once per driver library, not per backend dir
    seen = set()
    found = []
    for r in results:
        if r.timed_out or r.data is None:
            disc.report(r)
            continue
        for path, err, result in r.failures():
            lib = (result or {}).get("driver_lib")
            code = ((result or {}).get("error") or {}).get("code")
            if lib and ((result or {}).get("error") or {}).get("call") == "cuInit" and lib not in seen:
                seen.add(lib)
                disc.old_driver_message(lib, code)
            log.debug("debug", "backend library failed to initialize", "library", path, "error", err)
        found.extend(r.devices())
    devices = disc.dedupe(found)
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
    tokens = [t.strip() for t in env_var("CUDA_VISIBLE_DEVICES").split(",") if t.strip()]
    for d in devices:
        libs = [os.path.basename(x) for x in (libdir, d.libdir) if "lib/ollama" in x]
        name = "%s%d" % (d.backend, d.ordinal)
        if p.era == "v0.30":
            dev_id = str(d.ordinal)
            filter_id = tokens[d.ordinal] if d.ordinal < len(tokens) else dev_id
        else:
            dev_id, filter_id = d.id, ""
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
