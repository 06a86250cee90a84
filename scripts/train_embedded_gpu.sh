#!/usr/bin/env bash
# Train the small embedded models (tiny DA-CLIP, IR-SDE UNet, direct restorer) on one GPU.
#
# Run from anywhere on a machine with python3 + torch (CUDA), numpy, scikit-image, pillow,
# pluggy, huggingface_hub, tqdm, regex and timm. open_clip_torch, ftfy and wcwidth may be
# missing: put their wheels in .whl/ and they are installed into $SITE (no index, no deps):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       open_clip_torch==3.3.0 ftfy wcwidth
#
# The three stages run in sequence with time budgets (minutes of training each; evaluation,
# start-up and saving come on top, about a minute in all), then the results are checked
# (loaded back through the strict checkpoint loader, sizes, a full-image restoration) and
# copied into $OUT: daclip_tiny.pt, irsde_tiny.pth, direct_tiny.pth, provenance.json,
# train_log.jsonl, check.json (6 files; the training states stay in $WORK). With BENCH set
# to a benchmark folder (`daclip make-benchmark`), `daclip evaluate` then runs both restorers
# of the new models on it and bench_direct.json / bench_irsde.json are copied too.
#
# Environment (defaults in brackets):
#   STAGES [daclip irsde direct] (which stages, in this order)
#   DACLIP (a trained DA-CLIP file: copied in as the one the UNet stages train against; the
#           daclip stage is then left out, e.g. DACLIP=daclip_plugin/models/tiny/daclip_tiny.pt)
#   DEVICE [cuda]  PRESET [gpu]  WORKERS [14]  SEED [0]  CLIP_VIEW [tiles] (how the DA-CLIP sees images)
#   MIN_DACLIP [2]  MIN_IRSDE [2]  MIN_DIRECT [2.25]  MINUTES (sets all three)
#   EXTRA (more `daclip train` options for every stage)  EVAL, EVAL_SIZE (held-out eval)
#   ARGS_DACLIP, ARGS_IRSDE, ARGS_DIRECT (options for one stage, e.g. "--init FILE --lr 3e-4")
#   BENCH (benchmark folder to evaluate on)  BENCH_LIMIT (images per degradation for IR-SDE)
#   WORK [/tmp/daclip_train]  OUT [outputs/embedded]  SITE [/tmp/site]
# CPU rehearsal: DEVICE=cpu MINUTES=0.3 EXTRA="--batch 8 --patch 48" WORKERS=2 EVAL=1 EVAL_SIZE=32 \
#                bash scripts/train_embedded_gpu.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-gpu}
WORKERS=${WORKERS:-14}
SEED=${SEED:-0}
CLIP_VIEW=${CLIP_VIEW:-tiles}
MIN_DACLIP=${MINUTES:-${MIN_DACLIP:-2}}
MIN_IRSDE=${MINUTES:-${MIN_IRSDE:-2}}
MIN_DIRECT=${MINUTES:-${MIN_DIRECT:-2.25}}
WORK=${WORK:-/tmp/daclip_train}
OUT=${OUT:-$ROOT/outputs/embedded}
SITE=${SITE:-/tmp/site}
EXTRA=${EXTRA:-}
BENCH=${BENCH:-}
BENCH_LIMIT=${BENCH_LIMIT:-}
STAGES=${STAGES:-daclip irsde direct}
DACLIP=${DACLIP:-}

START=$(date +%s)
say() { echo "[train_embedded $(( $(date +%s) - START ))s] $*"; }

copy_out() {
    mkdir -p "$OUT"
    for name in daclip_tiny.pt irsde_tiny.pth direct_tiny.pth provenance.json train_log.jsonl check.json \
            bench_direct.json bench_irsde.json; do
        if [ -f "$WORK/$name" ]; then cp "$WORK/$name" "$OUT/"; fi
    done
    say "copied to $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
}
trap copy_out EXIT

if compgen -G ".whl/*.whl" > /dev/null; then
    say "installing $(ls .whl | tr '\n' ' ')into $SITE"
    python3 -m pip install -q --no-index --no-deps --disable-pip-version-check --target "$SITE" .whl/*.whl
fi
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$WORK"

python3 - "$DEVICE" <<'PY'
import sys, torch, numpy, open_clip, skimage, daclip_plugin
device = sys.argv[1]
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, open_clip {open_clip.__version__} ({open_clip.__file__}), "
      f"numpy {numpy.__version__}, scikit-image {skimage.__version__}, daclip_plugin from {daclip_plugin.__file__}")
if device.startswith("cuda"):
    assert torch.cuda.is_available(), "no CUDA device"
    print("GPU:", torch.cuda.get_device_name(0))
PY

run_stage() {
    local stage=$1 minutes=$2
    shift 2
    say "stage $stage: $minutes min"
    # shellcheck disable=SC2086
    python3 -m daclip_plugin train "$stage" --out "$WORK" --preset "$PRESET" --device "$DEVICE" \
        --seed "$SEED" --workers "$WORKERS" --max-minutes "$minutes" --clip-view "$CLIP_VIEW" \
        ${EVAL:+--eval-per-class "$EVAL"} ${EVAL_SIZE:+--eval-size "$EVAL_SIZE"} $EXTRA "$@"
}

FAILED=""
if [ -n "$DACLIP" ]; then
    say "DA-CLIP: $DACLIP (no daclip stage)"
    cp "$DACLIP" "$WORK/daclip_tiny.pt"
    STAGES=$(echo "$STAGES" | tr ' ' '\n' | grep -vx daclip | tr '\n' ' ')
fi
for stage in $STAGES; do
    case $stage in
        # shellcheck disable=SC2086
        daclip) run_stage daclip "$MIN_DACLIP" ${ARGS_DACLIP:-} ;;  # the other stages need it: a failure here stops the script
        # shellcheck disable=SC2086
        irsde) run_stage irsde "$MIN_IRSDE" ${ARGS_IRSDE:-} || FAILED="$FAILED irsde" ;;
        # shellcheck disable=SC2086
        direct) run_stage direct "$MIN_DIRECT" ${ARGS_DIRECT:-} || FAILED="$FAILED direct" ;;
        *) say "unknown stage $stage (daclip, irsde, direct)"; exit 2 ;;
    esac
done

say "checking the saved models"
python3 - "$WORK" "$DEVICE" "$CLIP_VIEW" <<'PY'
import json, sys, time
from pathlib import Path
import numpy as np
import torch
from daclip_plugin import training
from daclip_plugin.data import degradations, sources
from daclip_plugin.engine.direct import DEGRADATIONS, DirectRestorer
from daclip_plugin.training.models import load_daclip_quietly
from daclip_plugin.weights import checkpoints

work, device, clip_view = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
files = {stage: work / name for stage, name in training.FILE_NAMES.items()}
daclip = load_daclip_quietly(files["daclip"])  # architecture inferred from the tensors
assert checkpoints.infer_clip_cfg(checkpoints.read_state_dict(files["daclip"])) == training.TINY_CLIP_CFG
missing = [stage for stage, path in files.items() if not path.is_file()]
files = {stage: path for stage, path in files.items() if path.is_file()}
for stage in ("irsde", "direct"):
    if stage in files:
        checkpoints.load_unet(files[stage])
provenance = json.loads((work / training.PROVENANCE_NAME).read_text())
sizes = {stage: path.stat().st_size for stage, path in files.items()}
check = {"bytes": sizes, "total_mb": round(sum(sizes.values()) / 1e6, 3), "missing": missing}
check["eval"] = {stage: {k: v for k, v in (entry.get("eval") or {}).items() if k in ("accuracy", "psnr_in", "psnr_out", "n")}
                 for stage, entry in provenance["stages"].items()}
check["steps"] = {stage: entry["steps"] for stage, entry in provenance["stages"].items()}
check["train_seconds"] = {stage: entry["train_seconds"] for stage, entry in provenance["stages"].items()}

# One full held-out photograph per degradation, restored in one pass by the direct restorer.
full = {}
if "direct" in files:
    restorer = DirectRestorer(load_daclip_quietly(files["daclip"], device), checkpoints.load_unet(files["direct"], device=device),
                              DEGRADATIONS, clip_view)
    clean = sources.clean_images("eval")["coffee"][:256, :256]
for name in degradations.DEGRADATIONS if "direct" in files else ():
    lq = degradations.degrade(clean, name, 123)
    start = time.perf_counter()
    out = restorer.restore(lq)
    probs = restorer.classify(lq)
    full[name] = {"psnr_in": round(training.psnr(lq, clean), 2), "psnr_out": round(training.psnr(out, clean), 2),
                  "predicted": max(probs, key=probs.get), "seconds": round(time.perf_counter() - start, 3)}
check["direct_full_image_coffee_256"] = full
(work / "check.json").write_text(json.dumps(check, indent=1))
print(json.dumps({k: v for k, v in check.items() if k != "direct_full_image_coffee_256"}, indent=1))
for name, row in full.items():
    print(f"  {name:16s} {row['psnr_in']:6.2f} -> {row['psnr_out']:6.2f} dB  predicted {row['predicted']}")
assert check["total_mb"] <= 25, f"the three files take {check['total_mb']} MB (> 25 MB)"
PY
bench() {
    local restorer=$1 file=$2 json=$3
    shift 3
    [ -f "$WORK/$file" ] || return 0
    say "benchmark $BENCH: restorer $restorer"
    python3 -m daclip_plugin evaluate "$BENCH" --restorer "$restorer" --model tiny --device "$DEVICE" \
        --daclip-path "$WORK/daclip_tiny.pt" --unet-path "$WORK/$file" --json "$WORK/$json" -q "$@"
}
if [ -n "$BENCH" ]; then
    bench daclip-direct direct_tiny.pth bench_direct.json || FAILED="$FAILED bench-direct"
    bench daclip irsde_tiny.pth bench_irsde.json ${BENCH_LIMIT:+--limit "$BENCH_LIMIT"} || FAILED="$FAILED bench-irsde"
fi
if [ -n "$FAILED" ]; then
    say "FAILED stages:$FAILED"
    exit 1
fi
say "done"
