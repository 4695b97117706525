#!/usr/bin/env bash
# Build the reference shims, their broken variants, the simulated Ollama
# backends and the Ollama tarballs into ${VGPU_BUILD_DIR:-<repo>/.build}/sim/.
#
# Idempotent: when nothing under simulator/ changed (and the version list and
# compiler are the same) it does nothing.  The new tree is built beside the old
# one and swapped in at the end, so readers never see a half-built tree.
#
# Environment:
#   VGPU_BUILD_DIR     build root (default <repo>/.build)
#   VGPU_SIM_VERSIONS  space separated "VERSION:dir,dir" items (default below)
#   CC                 C compiler (default gcc)
#   VGPU_SIM_FORCE=1   rebuild even when up to date
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
BUILD_ROOT=${VGPU_BUILD_DIR:-$REPO/.build}
OUT=$BUILD_ROOT/sim
CC=${CC:-gcc}
# The simulated releases and their GPU dirs: the "releases" of simulator/fidelity.json (0.32.15, the
# latest stable tag, ships lib/ollama/{cuda_v12,cuda_v13,vulkan}: Dockerfile:265-269 + scripts/build_linux.sh
# @v0.32.15 put rocm_v* and mlx* in other tarballs)
DEFAULT_VERSIONS=$(python3 -c 'import json, sys
print(" ".join("%s:%s" % (r["version"], r["gpu_dirs"]) for r in json.load(open(sys.argv[1]))["releases"]))' \
    "$HERE/fidelity.json")
VERSIONS=${VGPU_SIM_VERSIONS:-$DEFAULT_VERSIONS}

die() { echo "simulator/build.sh: $*" >&2; exit 1; }

command -v "$CC" >/dev/null 2>&1 || die "C compiler '$CC' not found (apt-get install gcc)"
for tool in tar gzip sha256sum python3; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found"
done

mkdir -p "$BUILD_ROOT"
exec 9>"$BUILD_ROOT/.sim-build.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

stamp=$( {
    echo "versions=$VERSIONS"
    "$CC" --version 2>/dev/null | head -n1
    cd "$HERE"
    find . -type f \( -name '*.c' -o -name '*.h' -o -name '*.py' -o -name '*.sh' -o -name '*.json' -o -name 'ollama-sim-upgrade' \) \
        -not -path '*/__pycache__/*' -print | LC_ALL=C sort | xargs sha256sum
} | sha256sum | cut -d' ' -f1)

if [ "${VGPU_SIM_FORCE:-0}" != 1 ] && [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$stamp" ]; then
    echo "simulator: up to date ($OUT)"
    exit 0
fi

TMP=$(mktemp -d "$BUILD_ROOT/.sim-new.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

CFLAGS="-O2 -g0 -fPIC -fvisibility=hidden -std=gnu99 -Wall -Wextra -Wno-unused-parameter -Wno-unused-function -Werror=implicit-function-declaration"
SHIM=$HERE/shim
GG=$HERE/ggml
mkdir -p "$TMP/shim/bad" "$TMP/ggml"

shim() {  # like so(), without the C runtime's init/fini stubs: no DT_INIT/INIT_ARRAY at all
    so "$@" -nostartfiles
}
so() {  # so OUTPUT SONAME SOURCES/FLAGS...
    local out=$1 soname=$2
    shift 2
    # shellcheck disable=SC2086
    "$CC" $CFLAGS -shared -Wl,--no-as-needed -Wl,-soname,"$soname" -o "$out" "$@"
}

# --- 1. reference shims ---------------------------------------------------
shim "$TMP/shim/libvgpu-cuda.so" libcuda.so.1 "$SHIM/vgpu_cuda.c"
shim "$TMP/shim/libvgpu-nvml.so" libnvidia-ml.so.1 "$SHIM/vgpu_nvml.c"
shim "$TMP/shim/libvgpu-cudart.so" libcudart.so.12 "$SHIM/vgpu_cudart.c" "$TMP/shim/libvgpu-cuda.so"

# --- 2. broken variants -----------------------------------------------------
BAD=$TMP/shim/bad
shim "$BAD/libvgpu-cuda-nocuinit.so" libcuda.so.1 -DNO_CUINIT "$SHIM/vgpu_cuda.c"
shim "$BAD/libcuda.so.535.104.05" libcuda.so.1 -DFAKE_NVIDIA_DRIVER "$SHIM/vgpu_cuda.c"
shim "$BAD/libvgpu-cuda-interpose.so" libcuda.so.1 "$SHIM/vgpu_cuda.c" "$SHIM/interpose.c" -ldl
shim "$BAD/libvgpu-nvml-needs-cuda.so" libnvidia-ml.so.1 -DNVML_NEEDS_CUDA "$SHIM/vgpu_nvml.c"
shim "$BAD/libvgpu-nvml-driver535.so" libnvidia-ml.so.1 -DVGPU_DEFAULT_NVIDIA_DRIVER='"535.104.05"' "$SHIM/vgpu_nvml.c"
shim "$BAD/libcuda-stub.so" libcuda.so.1 "$SHIM/vgpu_cuda_stub.c"
shim "$BAD/libvgpu-cuda-err999.so" libcuda.so.1 -DCUINIT_ERROR=999 "$SHIM/vgpu_cuda.c"
shim "$BAD/libvgpu-cuda-zero.so" libcuda.so.1 -DZERO_DEVICES "$SHIM/vgpu_cuda.c"
shim "$BAD/libvgpu-cuda-hang.so" libcuda.so.1 -DVGPU_DEFAULT_INIT_DELAY_MS='"600000"' "$SHIM/vgpu_cuda.c"
patch_bytes() {  # FILE OFFSET BYTES(octal escapes)
    # shellcheck disable=SC2059
    printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
cp "$TMP/shim/libvgpu-cuda.so" "$BAD/libvgpu-cuda-aarch64.so"
patch_bytes "$BAD/libvgpu-cuda-aarch64.so" 18 '\267\000'      # e_machine = 183 (EM_AARCH64)
cp "$TMP/shim/libvgpu-cuda.so" "$BAD/libvgpu-cuda-elf32.so"
patch_bytes "$BAD/libvgpu-cuda-elf32.so" 4 '\001'             # EI_CLASS = ELFCLASS32
head -c 4096 "$TMP/shim/libvgpu-cuda.so" > "$BAD/libvgpu-cuda-truncated.so"
chmod 0755 "$TMP"/shim/*.so "$BAD"/*
(cd "$TMP/shim" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)

# --- 3. simulated Ollama backends ------------------------------------------
so "$TMP/ggml/libggml-base.so" libggml-base.so "$GG/ggml_base.c"
so "$TMP/ggml/libggml-cpu-x64.so" libggml-cpu-x64.so -DCPU_VARIANT='"x64"' "$GG/ggml_cpu.c" "$TMP/ggml/libggml-base.so"
so "$TMP/ggml/libggml-vulkan.so" libggml-vulkan.so "$GG/ggml_vulkan.c" "$TMP/ggml/libggml-base.so" -ldl
# The CUDA runtime upstream bundles in cuda_vNN (CMake RUNTIME_DEPENDENCIES of
# ggml-cuda: the versioned file plus its SONAME link), from the toolkit of the
# Dockerfile (CUDA12VERSION=12.8, CUDA13VERSION=13.0 from 0.11.4 on; cudart
# 12.8.90 is the name upstream's own tests use, discover/cuda_compat_test.go:21
# @v0.32.15; the 13.0 patch level is not pinned anywhere upstream).
cudart_name() {  # cuda_vNN -> libcudart.so.X.Y.Z (empty: none modelled)
    case $1 in
        cuda_v12) echo libcudart.so.12.8.90 ;;
        cuda_v13) echo libcudart.so.13.0.96 ;;
    esac
}
build_cudart() {  # file name -> ggml/cudart/<name>, SONAME libcudart.so.<major>
    local name=$1 rest major minor
    rest=${name#libcudart.so.}
    major=${rest%%.*}; rest=${rest#*.}; minor=${rest%%.*}
    [ -f "$TMP/ggml/cudart/$name" ] && return 0
    mkdir -p "$TMP/ggml/cudart"
    so "$TMP/ggml/cudart/$name" "libcudart.so.$major" -nostartfiles \
        -DCUDART_VERSION=$((major * 1000 + minor * 10)) "$GG/cudart_stub.c"
}
ver_ge() {  # ver_ge A B: A >= B (dotted versions)
    [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]
}
build_cuda_backend() {  # cuda_vNN -> ggml/cuda_vNN/libggml-cuda.so, needs driver >= NN.0
    local dir=$1 major
    major=${dir#cuda_v}
    case $major in ''|*[!0-9]*) die "bad CUDA dir name '$dir'";; esac
    [ -f "$TMP/ggml/$dir/libggml-cuda.so" ] && return 0
    mkdir -p "$TMP/ggml/$dir"
    # Linked against the shim only to get DT_NEEDED libcuda.so.1 (its SONAME); no RPATH.
    so "$TMP/ggml/$dir/libggml-cuda.so" libggml-cuda.so -DMIN_DRIVER=$((major * 1000)) \
        "$GG/ggml_cuda.c" "$TMP/ggml/libggml-base.so" "$TMP/shim/libvgpu-cuda.so" -ldl
}

# --- 4. tarballs (upstream layout) -----------------------------------------
: > "$TMP/versions.txt"
for item in $VERSIONS; do
    ver=${item%%:*}
    dirs=${item#*:}
    [ "$dirs" = "$item" ] && dirs=""
    stage=$TMP/stage/$ver
    mkdir -p "$stage/bin" "$stage/lib/ollama"
    # bin/ollama: the simulator with the fidelity table's source= lines and the release baked in
    python3 "$HERE/fidelity.py" embed "$HERE/ollama/ollama.py" "$ver" | sed "s/@PAYLOADS@/${dirs}/g" > "$stage/bin/ollama"
    # Layouts (simulator/fidelity.json, kind "layout"):
    #   < 0.3.7   no tarball upstream: the bare binary (scripts/build_linux.sh:24@v0.3.6), its runners
    #             embedded payloads extracted at start (llm/payload.go:23-44@v0.3.6); here bin/ollama alone
    #   < 0.5.8   lib/ollama/runners/<name>_avx/ (ollama_llama_server + libggml_<name>.so) and the CUDA
    #             runtimes flat in lib/ollama (make/common-defs.make:35-36, make/gpu.make:12,42,72-78@v0.5.7)
    #   0.10.0-0.11.10  flat: libggml-*.so, libggml-cuda.so and the CUDA 12 runtime in lib/ollama
    #             (CMakeLists.txt:81-88@v0.11.4)
    #   otherwise lib/ollama/{libggml-base.so,libggml-cpu-*.so,cuda_vNN/,vulkan/} (CMakeLists.txt:38,77@v0.5.8)
    if ! ver_ge "$ver" 0.3.7; then
        layout=binary
    elif ! ver_ge "$ver" 0.5.8; then
        layout=runners
    elif ver_ge "$ver" 0.10.0 && ! ver_ge "$ver" 0.11.11; then
        layout=flat
    else
        layout=dirs
    fi
    stub_runner() {
        printf '#!/bin/sh\necho "ollama_llama_server: model runner stand-in (not simulated)" >&2\nexit 1\n' > "$1"
    }
    case $layout in
        binary)
            rmdir "$stage/lib/ollama" "$stage/lib"
            dirs="" ;;
        runners)
            for d in ${dirs//,/ }; do
                case $d in
                    cuda_v11) rt=libcudart.so.11.3.109; soname_link=libcudart.so.11.0 ;;  # cuda-toolkit-11-3
                    cuda_v12) rt=libcudart.so.12.4.127; soname_link=libcudart.so.12 ;;    # cuda-toolkit-12-4
                    *) die "backend dir '$d' is not in the runners layout of $ver" ;;
                esac
                build_cudart "$rt"
                cp "$TMP/ggml/cudart/$rt" "$stage/lib/ollama/"
                ln -s "$rt" "$stage/lib/ollama/$soname_link"
                build_cuda_backend "$d"
                mkdir -p "$stage/lib/ollama/runners/${d}_avx"
                cp "$TMP/ggml/$d/libggml-cuda.so" "$stage/lib/ollama/runners/${d}_avx/libggml_$d.so"
                stub_runner "$stage/lib/ollama/runners/${d}_avx/ollama_llama_server"
            done
            for c in cpu_avx cpu_avx2; do
                mkdir -p "$stage/lib/ollama/runners/$c"
                stub_runner "$stage/lib/ollama/runners/$c/ollama_llama_server"
            done
            dirs="" ;;
        flat)
            cp "$TMP/ggml/libggml-base.so" "$TMP/ggml/libggml-cpu-x64.so" "$stage/lib/ollama/"
            for d in ${dirs//,/ }; do
                [ "$d" = cuda_v12 ] || die "backend dir '$d' is not in the flat layout of $ver"
                build_cuda_backend "$d"
                cp "$TMP/ggml/$d/libggml-cuda.so" "$stage/lib/ollama/"
                rt=$(cudart_name "$d")
                build_cudart "$rt"
                cp "$TMP/ggml/cudart/$rt" "$stage/lib/ollama/"
                ln -s "$rt" "$stage/lib/ollama/${rt%.*.*}"
            done
            dirs="" ;;
        dirs)
            cp "$TMP/ggml/libggml-base.so" "$TMP/ggml/libggml-cpu-x64.so" "$stage/lib/ollama/" ;;
    esac
    for d in ${dirs//,/ }; do
        mkdir -p "$stage/lib/ollama/$d"
        case $d in
            cuda_v*)
                build_cuda_backend "$d"
                cp "$TMP/ggml/$d/libggml-cuda.so" "$stage/lib/ollama/$d/"
                rt=$(cudart_name "$d")
                if [ -n "$rt" ] && ver_ge "$ver" 0.11.4; then
                    build_cudart "$rt"
                    cp "$TMP/ggml/cudart/$rt" "$stage/lib/ollama/$d/"
                    ln -s "$rt" "$stage/lib/ollama/$d/${rt%.*.*}"
                fi
                ;;
            vulkan)  cp "$TMP/ggml/libggml-vulkan.so" "$stage/lib/ollama/$d/" ;;
            *) die "unknown backend dir '$d' in '$item'" ;;
        esac
    done
    find "$stage" -type d -exec chmod 0755 {} +
    find "$stage" -type f -exec chmod 0755 {} +  # (symlinks untouched)
    members=bin; [ -d "$stage/lib" ] && members="bin lib"
    # shellcheck disable=SC2086
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2025-01-01 00:00:00Z' \
        -C "$stage" -cf - $members | gzip -n -9 > "$TMP/ollama-$ver-linux-amd64.tgz"
    echo "$ver ${dirs:-none}" >> "$TMP/versions.txt"   # the cuda_vNN/vulkan dirs the tarball has
done
rm -rf "$TMP/stage"

# --- 5. installer ------------------------------------------------------------
install -m 0755 "$HERE/install.sh" "$TMP/install.sh"
install -m 0755 "$HERE/ollama-sim-upgrade" "$TMP/ollama-sim-upgrade"
install -m 0644 "$HERE/ollama/ollama.py" "$TMP/ollama.py.in"
(cd "$TMP" && LC_ALL=C sha256sum ./*.tgz install.sh | sed 's| \./| |' > SHA256SUMS)

echo "$stamp" > "$TMP/.stamp"
chmod 0755 "$TMP"
if [ -e "$OUT" ]; then
    old=$(mktemp -d "$BUILD_ROOT/.sim-old.XXXXXX")
    mv "$OUT" "$old/sim"
    mv "$TMP" "$OUT"
    rm -rf "$old"
else
    mv "$TMP" "$OUT"
fi
trap - EXIT
echo "simulator: built $OUT"
