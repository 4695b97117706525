#!/bin/sh
# Ollama simulator installer: what upstream's https://ollama.com/install.sh
# does on Linux, from a local tarball instead of a download.
#
#   sh install.sh /path/to/ollama-X.Y.Z-linux-amd64.tgz
#
# Re-running it with a newer tarball IS the upgrade (like upstream):
# rm -rf /usr/local/lib/ollama, extract, rewrite /etc/systemd/system/ollama.service,
# daemon-reload, enable, restart.  /etc/systemd/system/ollama.service.d/ is
# never touched.
#
# Knobs (not upstream):
#   OLLAMA_SIM_ROOT=/some/dir   install below this root instead of / (tests):
#                               no user creation, no systemctl
#   OLLAMA_SIM_INSTALL_NVIDIA_DRIVER=1
#                               also do what upstream's script does on a guest
#                               that shows a 0x10de PCI device: install an
#                               NVIDIA driver (here: the look-alike
#                               shim/bad/libcuda.so.535.104.05 next to this
#                               script) as /usr/lib/x86_64-linux-gnu/libcuda.so.1
set -eu

status() { echo ">>> $*" >&2; }
error() { echo "ERROR: $*" >&2; exit 1; }
warning() { echo "WARNING: $*" >&2; }

TARBALL=${1:-}
[ -n "$TARBALL" ] || error "usage: sh install.sh /path/to/ollama-VERSION-linux-amd64.tgz"
[ -f "$TARBALL" ] || error "tarball not found: $TARBALL"
[ "$(uname -s)" = "Linux" ] || error 'This script is intended to run on Linux only.'
HERE=$(cd "$(dirname "$0")" && pwd)

ROOT=${OLLAMA_SIM_ROOT:-}
ROOT=${ROOT%/}
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    error "This script requires superuser permissions. Please re-run as root."
fi

OWN=""
[ "$(id -u)" -eq 0 ] && OWN="-o0 -g0"
BINDIR=$ROOT/usr/local/bin
OLLAMA_INSTALL_DIR=$ROOT/usr/local

if [ -d "$OLLAMA_INSTALL_DIR/lib/ollama" ] ; then
    status "Cleaning up old version at $OLLAMA_INSTALL_DIR/lib/ollama"
    rm -rf "$OLLAMA_INSTALL_DIR/lib/ollama"
fi
status "Installing ollama to $OLLAMA_INSTALL_DIR"
install $OWN -m755 -d "$BINDIR"
install $OWN -m755 -d "$OLLAMA_INSTALL_DIR/lib/ollama"
status "Extracting $(basename "$TARBALL")"
tar -xzf "$TARBALL" -C "$OLLAMA_INSTALL_DIR" --no-same-owner

install_success() {
    status 'The Ollama API is now available at 127.0.0.1:11434.'
    status 'Install complete. Run "ollama" from the command line.'
}

install_nvidia_driver() {
    src=$HERE/shim/bad/libcuda.so.535.104.05
    [ -f "$src" ] || { warning "no NVIDIA driver look-alike at $src"; return 0; }
    status "Installing NVIDIA driver 535.104.05..."
    libdir=$ROOT/usr/lib/x86_64-linux-gnu
    install $OWN -m755 -d "$libdir"
    install $OWN -m755 "$src" "$libdir/libcuda.so.535.104.05"
    ln -sf libcuda.so.535.104.05 "$libdir/libcuda.so.1"
    ln -sf libcuda.so.1 "$libdir/libcuda.so"
    if [ -z "$ROOT" ] && command -v ldconfig >/dev/null 2>&1; then ldconfig; fi
}

configure_systemd() {
    unitdir=$ROOT/etc/systemd/system
    if [ -z "$ROOT" ]; then
        if ! id ollama >/dev/null 2>&1; then
            status "Creating ollama user..."
            useradd -r -s /bin/false -U -m -d /usr/share/ollama ollama
        fi
        if getent group render >/dev/null 2>&1; then
            status "Adding ollama user to render group..."
            usermod -a -G render ollama
        fi
        if getent group video >/dev/null 2>&1; then
            status "Adding ollama user to video group..."
            usermod -a -G video ollama
        fi
        status "Adding current user to ollama group..."
        usermod -a -G ollama "$(whoami)"
    fi

    status "Creating ollama systemd service..."
    install $OWN -m755 -d "$unitdir"
    cat <<EOF > "$unitdir/ollama.service"
[Unit]
Description=Ollama Service
After=network-online.target

[Service]
ExecStart=/usr/local/bin/ollama serve
User=ollama
Group=ollama
Restart=always
RestartSec=3
Environment="PATH=$PATH"

[Install]
WantedBy=default.target
EOF
    chmod 0644 "$unitdir/ollama.service"

    if [ -n "$ROOT" ]; then
        status "OLLAMA_SIM_ROOT set: skipping systemctl"
        return 0
    fi
    SYSTEMCTL_RUNNING="$(systemctl is-system-running 2>/dev/null || true)"
    if [ ! -d /run/systemd/system ]; then
        SYSTEMCTL_RUNNING=offline
    fi
    case $SYSTEMCTL_RUNNING in
        running|degraded|starting|initializing|maintenance)
            status "Enabling and starting ollama service..."
            systemctl daemon-reload
            systemctl enable ollama
            start_service() { systemctl restart ollama; install_success; }
            trap start_service EXIT
            ;;
        *)
            warning "systemd is not running"
            ;;
    esac
}

trap install_success EXIT
if [ -n "$ROOT" ] || command -v systemctl >/dev/null 2>&1; then
    configure_systemd
fi
if [ "${OLLAMA_SIM_INSTALL_NVIDIA_DRIVER:-0}" = 1 ]; then
    install_nvidia_driver
fi
