"""Peak memory of one UNet call (and of whole restorations) by architecture and image size.

Each measurement runs in a fresh subprocess and reads its peak resident memory
(``ru_maxrss``) before and after the work: the difference is what the work itself needed,
whatever torch and the model take. Random weights: the numbers depend only on the shapes.

    python benchmarks/bench_memory.py unet --archs tiny universal-ir wild-ir --sizes 256 512
    python benchmarks/bench_memory.py restore --sizes 1024x1024 4000x3000 --restorers daclip-direct
    python benchmarks/bench_memory.py sampler --sizes 4000x3000 --steps 3
    python benchmarks/bench_memory.py restore --sizes 4000x3000 --restorers daclip --model random-universal-ir

``--model random-universal-ir`` saves DA-CLIP ViT-B-32 and universal-ir UNet files with
random weights (the released models' shapes), then measures loading them and restoring
with MaRS at ``--steps`` network calls.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

UNET_CHILD = """
import json, resource, sys, time
import torch
sys.path.insert(0, {root!r})
from daclip_plugin.nn import configs
from daclip_plugin.nn.unet import ConditionalUNet
torch.manual_seed(0)
cfg = configs.config("unet", {arch!r})
unet = ConditionalUNet(**cfg).eval()
context = torch.randn(1, cfg["context_dim"])
x = torch.rand(1, 3, {height}, {width})
cond = torch.rand(1, 3, {height}, {width})
with torch.no_grad():
    unet(x[..., :32, :32], cond[..., :32, :32], 50, text_context=context, image_context=context)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
with torch.no_grad():
    out = unet(x, cond, 50, text_context=context, image_context=context)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"peak_mib": (after - before) / 1024, "seconds": seconds}}))
"""

RESTORE_CHILD = """
import json, os, resource, sys, time
import numpy as np
sys.path.insert(0, {root!r})
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import daclip_plugin
image = np.random.default_rng(0).integers(0, 256, ({height}, {width}, 3), dtype=np.uint8)
start = time.perf_counter()
daclip_plugin.restore(image, **{options!r})
seconds = time.perf_counter() - start
print(json.dumps({{"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds}}))
"""

RANDOM_CHILD = """
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from daclip_plugin.engine.pipeline import load_pipeline
start = time.perf_counter()
pipeline = load_pipeline("universal-ir", daclip_path={daclip!r}, unet_path={unet!r}, device="cpu")
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
image = np.random.default_rng(0).random(({height}, {width}, 3), dtype=np.float32)
pipeline.restore(image, sampler="mars", sampler_options={{"steps": {steps}}}, memory_budget={budget})
seconds = time.perf_counter() - start
print(json.dumps({{"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds,
                  "load_peak_mib": loaded}}))
"""


def _random_files(directory: Path) -> tuple[str, str]:
    """DA-CLIP ViT-B-32 and universal-ir UNet files with random weights (the released shapes)."""
    import torch

    sys.path.insert(0, str(ROOT))
    from daclip_plugin.nn.daclip import DaCLIP
    from daclip_plugin.nn.unet import ConditionalUNet
    from daclip_plugin.weights import checkpoints

    torch.manual_seed(0)
    daclip, unet = directory / "daclip_ViT-B-32.pt", directory / "universal-ir.pth"
    checkpoints.save_daclip(DaCLIP(checkpoints.RELEASED_DACLIP_CONFIGS["daclip_ViT-B-32"]), daclip)
    checkpoints.save_unet(ConditionalUNet(**checkpoints.RELEASED_UNET_CONFIGS["universal-ir"]), unet)
    return str(daclip), str(unet)


SAMPLER_CHILD = """
import json, resource, sys
import torch
sys.path.insert(0, {root!r})
from daclip_plugin.engine.mars import sample_mars
from daclip_plugin.engine.pipeline import OFFICIAL_SDE
from daclip_plugin.engine.sde import IRSDESchedule
mu = torch.rand(1, 3, {height}, {width})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sample_mars(lambda x, t: x * 0.01, mu, IRSDESchedule.from_config(OFFICIAL_SDE), steps={steps},
            generator=torch.Generator().manual_seed(0))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"peak_mib": (after - before) / 1024, "seconds": 0.0}}))
"""


def _run(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height or width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("unet", "restore", "sampler"))
    parser.add_argument("--archs", nargs="+", default=["tiny", "universal-ir", "wild-ir"])
    parser.add_argument("--sizes", nargs="+", type=_size, default=[(256, 256), (512, 512)], metavar="WxH")
    parser.add_argument("--restorers", nargs="+", default=["daclip-direct"])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--steps", type=int, default=2, help="MaRS network calls of the daclip restorer")
    parser.add_argument("--budget", help="memory_budget option of the restorers (MiB)")
    args = parser.parse_args()

    if args.what == "sampler":
        print("| sampler | size | peak memory beyond the condition (MiB) | in 144 MB-per-12-MP tensors |")
        print("| --- | --- | --- | --- |")
        for width, height in args.sizes:
            result = _run(SAMPLER_CHILD.format(root=str(ROOT), width=width, height=height, steps=args.steps))
            copies = result["peak_mib"] * 2**20 / (width * height * 3 * 4)
            print(f"| MaRS ({args.steps} calls, ode, order 2) | {width}x{height} | {result['peak_mib']:.0f} | {copies:.1f} |")
        return
    if args.what == "unet":
        print("| UNet | size | peak memory of the call (MiB) | per megapixel (MiB) | seconds |")
        print("| --- | --- | --- | --- | --- |")
        for arch in args.archs:
            for width, height in args.sizes:
                result = _run(UNET_CHILD.format(root=str(ROOT), arch=arch, width=width, height=height))
                per_mp = result["peak_mib"] / (width * height / 1e6)
                print(f"| {arch} | {width}x{height} | {result['peak_mib']:.0f} | {per_mp:.0f} | {result['seconds']:.1f} |",
                      flush=True)
        return
    print("| restorer | model | size | peak memory of the process (MiB) | seconds |")
    print("| --- | --- | --- | --- | --- |")
    scratch = tempfile.TemporaryDirectory()
    files = _random_files(Path(scratch.name)) if args.model == "random-universal-ir" else None
    for restorer in args.restorers:
        for width, height in args.sizes:
            if args.model == "random-universal-ir":
                budget = int(args.budget) if args.budget else None
                code = RANDOM_CHILD.format(root=str(ROOT), width=width, height=height, steps=args.steps, budget=budget,
                                           daclip=files[0], unet=files[1])
                result = _run(code)
                print(f"| {restorer} (MaRS, {args.steps} calls) | universal-ir shapes | {width}x{height} | "
                      f"{result['peak_mib']:.0f} (loading: {result['load_peak_mib']:.0f}) | {result['seconds']:.1f} |",
                      flush=True)
                continue
            options = {"restorer": restorer, "model": args.model, "device": "cpu"}
            if restorer == "daclip":
                options.update(sampler="mars", steps=args.steps)
            if args.budget:
                options["memory_budget"] = int(args.budget)
            result = _run(RESTORE_CHILD.format(root=str(ROOT), width=width, height=height, options=options))
            print(f"| {restorer} | {args.model} | {width}x{height} | {result['peak_mib']:.0f} | {result['seconds']:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
