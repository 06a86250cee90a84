#!/usr/bin/env bash
# The GPU check in one command, a few minutes on one NVIDIA GPU: the official-fixture parity
# tests on CUDA, then benchmarks/check_gpu.py (every precision, eager, channels-last and
# compiled with CUDA graphs; whole restorations with the embedded model).
#
# Runs on a machine with python3 + torch (CUDA), numpy, pillow, pluggy, huggingface_hub,
# scikit-image, tqdm and pytest. Wheels of what it lacks go in .whl/ and are installed into
# $SITE (no index, no dependencies), e.g.
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl open_clip_torch==3.3.0 ftfy wcwidth
#
# Writes parity.log, check_gpu.md and check_gpu.json into $OUT [outputs/gpu-check]; more
# arguments go to check_gpu.py (e.g. --sizes 256 512 1024). A rehearsal on the CPU:
#   DEVICE=cpu bash scripts/check_gpu.sh --arch tiny --sizes 32 --precisions fp32 --photo-size 48 --compile-precisions
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/outputs/gpu-check}
SITE=${SITE:-/tmp/site}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
DACLIP_PARITY_DEVICE=$DEVICE python3 -m pytest -q -p no:cacheprovider tests/test_official_parity.py 2>&1 \
    | tee "$OUT/parity.log" || status=1
python3 benchmarks/check_gpu.py --device "$DEVICE" --json "$OUT/check_gpu.json" "$@" 2>&1 | tee "$OUT/check_gpu.md" || status=1
exit $status
