"""The GPU path checked end to end in a few minutes: each precision, eager and compiled, timed and compared.

For every ``--precisions`` and ``--sizes``, times one UNet call of the released shapes
(random weights, ``--arch``) as the restorers make it (:func:`daclip_plugin.prepare_unet`),
in PyTorch's channels-last layout (a candidate: cuDNN's tensor-core kernels prefer it) and,
at ``--compile-precisions``, compiled (``compile=True``: inductor with CUDA graphs; the
first call's time includes compiling), with each one's largest difference from the exact
``fp32`` call, relative to its largest value. Then restores a sample photograph with the
embedded ``tiny`` model through the public API at each precision (eager, and compiled at
``--compile-precisions``) and compares the results with the ``fp32`` restoration (PSNR).
Prints markdown tables; ``--json FILE`` also writes every row.

    python benchmarks/check_gpu.py                       # on the GPU, about five minutes
    python benchmarks/check_gpu.py --sizes 256 512 1024 --repeats 10
    python benchmarks/check_gpu.py --device cpu --arch tiny --sizes 32 --precisions fp32 --compile-precisions  # dry run
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import daclip_plugin  # noqa: E402
from daclip_plugin.engine.devices import select_device, unet_precision  # noqa: E402
from daclip_plugin.nn import configs  # noqa: E402
from daclip_plugin.nn.unet import ConditionalUNet  # noqa: E402
from daclip_plugin.sample_data import sample_images  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, device: torch.device, repeats: int) -> tuple[torch.Tensor, float, float]:
    """``run()``'s output, the seconds of its first call (compiling, capturing) and the median of ``repeats`` more."""
    synchronize(device)
    start = time.perf_counter()
    out = run()
    synchronize(device)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return out, first, statistics.median(times)


def channels_last_call(unet: ConditionalUNet, device: torch.device, precision: str):
    """The prepared call's arithmetic with the UNet and its inputs in the channels-last layout."""
    unet = copy.deepcopy(unet).to(memory_format=torch.channels_last)

    def call(x, cond, t, *, text_context, image_context):
        last = torch.channels_last
        with torch.no_grad(), unet_precision(device, precision):
            out = unet(x.contiguous(memory_format=last), cond.contiguous(memory_format=last), t,
                       text_context=text_context, image_context=image_context)
        return out.float().contiguous()

    return call


def unet_rows(args, device: torch.device):
    torch.manual_seed(0)
    config = configs.config("unet", args.arch)
    unet = ConditionalUNet(**config).to(device).eval()
    for size in args.sizes:
        generator = torch.Generator().manual_seed(size)
        x, cond = (tensor.to(device) for tensor in torch.rand(2, 1, 3, size, size, generator=generator))
        text, image = (tensor.to(device) for tensor in torch.randn(2, 1, config["context_dim"], generator=generator))
        exact = daclip_plugin.prepare_unet(unet, device, "fp32")
        reference = exact(x, cond, 50, text_context=text, image_context=image)
        scale = float(reference.abs().max())
        for precision in args.precisions:
            variants = {"eager": daclip_plugin.prepare_unet(unet, device, precision)}
            if device.type == "cuda":
                variants["eager, channels-last"] = channels_last_call(unet, device, precision)
            if precision in args.compile_precisions:
                variants["compiled"] = daclip_plugin.prepare_unet(unet, device, precision, compile=True)
            for variant, call in variants.items():
                run = functools.partial(call, x, cond, 50, text_context=text, image_context=image)
                out, first, median = timed(run, device, args.repeats)
                yield {
                    "size": size, "precision": precision, "variant": variant, "first_s": first, "median_s": median,
                    "error": float((out - reference).abs().max()) / scale,
                    "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else math.nan,
                }
                del call, run, out
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


#: The restorations of the embedded model that are checked: its one-pass restorer, and its
#: IR-SDE sampler with MaRS (ten calls of a compiled UNet replay one captured graph).
RESTORERS = {"daclip-direct": {}, "daclip": {"sampler": "mars", "steps": 10}}


def restore_rows(args, device: torch.device):
    """Whole restorations of a sample photograph with the embedded model, through the public API."""
    name, photo = next(iter(sample_images().items()))
    photo = photo[: args.photo_size, : args.photo_size]
    for restorer, settings in RESTORERS.items():
        reference = None
        for precision in args.precisions:
            for compiled in (False, True) if precision in args.compile_precisions else (False,):
                options = {"model": "tiny", "device": str(device), "precision": precision, "compile": compiled,
                           **settings}
                run = functools.partial(daclip_plugin.restore, photo, restorer, **options)
                out, first, second = timed(run, device, 1)
                out = out.astype(np.float64) / 255
                reference = out if reference is None else reference
                yield {"image": name, "restorer": restorer, "precision": precision,
                       "variant": "compiled" if compiled else "eager", "first_s": first, "median_s": second,
                       "psnr_to_fp32": psnr(out, reference)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", default="universal-ir", choices=("universal-ir", "wild-ir", "tiny"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "tf32", "bf16", "fp16"])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the first (the median is shown)")
    parser.add_argument("--photo-size", type=int, default=512, help="the sample photograph is cropped to this")
    parser.add_argument("--compile-precisions", nargs="*", default=["bf16", "fp16"],
                        help="the precisions also timed compiled (each size compiles once, a minute or so)")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args()
    device = select_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, {args.arch}\n", flush=True)
    print("| size | precision | UNet call | first call | median | max error (relative) | peak memory |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows = {"unet": [], "restore": []}
    for row in unet_rows(args, device):
        rows["unet"].append(row)
        print(f"| {row['size']} px | {row['precision']} | {row['variant']} | {row['first_s']:.2f} s | "
              f"{row['median_s'] * 1000:.1f} ms | {row['error']:.1e} | {row['peak_mib']:.0f} MiB |", flush=True)
    print("\n| image | restorer | precision | UNet | first run | second run | PSNR to fp32 eager |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in restore_rows(args, device):
        rows["restore"].append(row)
        print(f"| {row['image']} | {row['restorer']} | {row['precision']} | {row['variant']} | {row['first_s']:.2f} s | "
              f"{row['median_s']:.2f} s | {row['psnr_to_fp32']:.1f} dB |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
