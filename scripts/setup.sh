#!/usr/bin/env bash
# Set up everything daclip-plugin needs on a fresh Debian/Ubuntu machine, then run a job.
#
#   bash scripts/setup.sh test [PYTEST_ARGS...]   # the test suite (under a virtual X server)
#   bash scripts/setup.sh demo                    # restore the bundled sample images with the
#                                                 # embedded model 'tiny' (offline) into outputs/demo
#   bash scripts/setup.sh env                     # only set up .venv
#
# Environment:
#   DACLIP_VENV    virtual environment folder (default: .venv)
#   DACLIP_TORCH   pip requirement(s) for PyTorch (default: the CPU-tested pins below);
#                  set it to e.g. "torch torchvision --index-url https://download.pytorch.org/whl/cu124"
#                  to use a GPU build of your choice.
#   DACLIP_DEMO_OUT  folder for the demo's results (default: outputs/demo)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${DACLIP_VENV:-.venv}
TORCH=${DACLIP_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
APT_PACKAGES="xvfb libgl1 libegl1 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0
  libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1
  g++"  # g++: torch.compile's CPU kernels (the compile option's test)

install_system_packages() {
    command -v apt-get >/dev/null || { echo "no apt-get: install Xvfb and Qt's X11 libraries yourself"; return 0; }
    local missing="" package sudo=""
    for package in $APT_PACKAGES; do
        dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
    done
    [ -z "$missing" ] && return 0
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "installing system packages:$missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
}

setup_venv() {
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q $TORCH
    "$VENV/bin/python" -m pip install -q -e ".[test,qt,distributed]"
}

run_demo() {
    local out=${DACLIP_DEMO_OUT:-outputs/demo}
    echo "copying the bundled sample images into $out/samples"
    "$VENV/bin/daclip" samples "$out/samples" >/dev/null
    # the embedded model works offline; its preferred restorer is the one-pass daclip-direct
    "$VENV/bin/daclip" restore "$out"/samples/*.png --model tiny --side-by-side --overwrite -o "$out"
    echo "done: $out/NAME_restored.png (restored) and $out/NAME_restored_compare.png (input | restored)"
}

job=${1:-test}
shift || true
case "$job" in
    env)
        install_system_packages
        setup_venv
        ;;
    test)
        install_system_packages
        setup_venv
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    demo)
        install_system_packages
        setup_venv
        run_demo
        ;;
    *)
        echo "usage: bash scripts/setup.sh {test|demo|env} [args...]" >&2
        exit 2
        ;;
esac
