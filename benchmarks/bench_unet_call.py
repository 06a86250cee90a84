"""Our UNet call side by side with the official code's, same weights, timed interleaved in one run.

Needs a checkout of the official DA-CLIP code (https://github.com/Algolzw/daclip-uir; its
UNet module imports ``einops``: ``pip install einops``). ``--official`` is the checkout, or
its ``models/modules`` folder. The official ``ConditionalUNet`` of the released shapes
(``--arch``) gets the random weights of ours, and each round times one call of every
variant in turn (the official module as it is, then :func:`daclip_plugin.prepare_unet` at
each ``--precisions``, inside :func:`~daclip_plugin.engine.heap.reuse_freed_memory` as the
restorers run it), so that the machine's changing load touches all alike. Prints the
median time per call, the speed-up over the official call and the largest difference from
the official output, relative to its largest value. ``--candidates`` adds the variants
that were tried and not kept: the call with glibc's default of returning freed memory at
once (what reusing it gains), in PyTorch's default memory format (what channels-last
gains), under ``torch.inference_mode``, on one thread instead of all cores, with dynamic
int8 linear layers (``torch.ao.quantization.quantize_dynamic``; convolutions have no
dynamic int8 form), under bfloat16 autocast (instead of the ``bf16`` precision's
:class:`~daclip_plugin.engine.unet_call.BFloat16Products`), and compiled by
``torch.compile`` (inductor, also with frozen, prepacked weights; compile times are printed).
``--in-thread`` makes the calls in a new thread, as the napari panel and Dask do (glibc
treats memory differently there, see :mod:`daclip_plugin.engine.heap`).

``--end-to-end`` times whole restorations instead, in one run: the official pipeline's work
(one DA-CLIP pass, then 100 posterior steps, each a call of the official UNet) against ours
(:class:`~daclip_plugin.engine.pipeline.DaclipPipeline` with MaRS at ``--steps`` calls).
The posterior arithmetic is ours (equal to the official code's to 1e-7, see
tests/test_official_parity.py) and costs microseconds next to a UNet call.

    python benchmarks/bench_unet_call.py --official ../daclip-uir --sizes 128 256 512 --precisions fp32 bf16
    python benchmarks/bench_unet_call.py --official ../daclip-uir --sizes 256 --candidates
    python benchmarks/bench_unet_call.py --official ../daclip-uir --end-to-end --sizes 512 --steps 10
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from daclip_plugin import prepare_unet  # noqa: E402
from daclip_plugin.engine.heap import reuse_freed_memory  # noqa: E402
from daclip_plugin.engine.pipeline import OFFICIAL_SDE, DaclipPipeline  # noqa: E402
from daclip_plugin.engine.sde import IRSDESchedule, sample_posterior  # noqa: E402
from daclip_plugin.nn import configs  # noqa: E402
from daclip_plugin.nn.daclip import DaCLIP  # noqa: E402
from daclip_plugin.nn.unet import ConditionalUNet  # noqa: E402

ARCH_FILE = "DenoisingUNet_arch.py"


def official_modules(path: Path) -> Path:
    """The folder holding the official ``DenoisingUNet_arch.py`` (the daclip-sde one in a checkout)."""
    if (path / ARCH_FILE).is_file():
        return path
    found = sorted(path.glob(f"**/daclip-sde/models/modules/{ARCH_FILE}")) or sorted(path.glob(f"**/{ARCH_FILE}"))
    if not found:
        raise SystemExit(f"no {ARCH_FILE} under {path}: give the daclip-uir checkout or its models/modules folder")
    return found[0].parent


def official_unet(path: Path, config: dict) -> torch.nn.Module:
    """The official ``ConditionalUNet`` of ``config`` (our config names; the official has no ``scale``)."""
    folder = official_modules(path)
    spec = importlib.util.spec_from_file_location(
        "official_modules", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules["official_modules"] = package
    spec.loader.exec_module(package)
    arguments = {key: value for key, value in config.items() if key != "scale"}
    return package.ConditionalUNet(**arguments)


def build(path: Path, arch: str) -> tuple[ConditionalUNet, torch.nn.Module]:
    torch.manual_seed(0)
    config = configs.config("unet", arch)
    ours = ConditionalUNet(**config).eval()
    official = official_unet(path, config).eval()
    official.load_state_dict(ours.state_dict(), strict=True)
    return ours, official


#: The variants tried and not kept, by name (``--candidates`` picks them by words of their names).
CANDIDATES = (
    "freed memory returned at once", "default memory format", "inference_mode", "1 thread",
    "dynamic int8 linear layers", "bfloat16 autocast", "torch.compile", "torch.compile, frozen weights",
)


def candidates(ours, x, cond, text, image, chosen: list[str]) -> dict:
    """The variants of our call that were measured and not kept (see the module docstring): those
    whose names contain one of ``chosen`` (all if it is empty), as (call, reuses freed memory)."""
    import copy

    call = prepare_unet(ours, device="cpu")
    last = torch.channels_last
    xl, condl = x.contiguous(memory_format=last), cond.contiguous(memory_format=last)

    def prepared():
        return call(x, cond, 50, text_context=text, image_context=image)

    def default_format():
        plain = copy.deepcopy(ours).to(memory_format=torch.contiguous_format)
        return lambda: plain(x, cond, 50, text_context=text, image_context=image)

    def inference_mode():
        with torch.inference_mode():
            return prepared()

    def one_thread():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return prepared()
        finally:
            torch.set_num_threads(threads)

    def int8():
        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notice
            warnings.simplefilter("ignore")
            quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(ours), {torch.nn.Linear})
        return functools.partial(prepare_unet(quantized, "cpu"), x, cond, 50, text_context=text, image_context=image)

    def autocast():  # the module itself: the prepared call switches autocast off at fp32
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return ours(xl, condl, 50, text_context=text, image_context=image).float()

    def compiled(**options):
        module = torch.compile(copy.deepcopy(ours), options=options)
        run = functools.partial(module, xl, condl, 50, text_context=text, image_context=image)
        start = time.perf_counter()
        with torch.no_grad():
            run()
        print(f"torch.compile {options}: {time.perf_counter() - start:.1f} s for the first call (compiling)\n",
              flush=True)
        return run

    makers = dict(zip(CANDIDATES, (
        lambda: (prepared, False), lambda: (default_format(), True), lambda: (inference_mode, True),
        lambda: (one_thread, True), lambda: (int8(), True), lambda: (autocast, True),
        lambda: (compiled(), True), lambda: (compiled(freezing=True), True),
    )))
    return {f"ours, {name}": make() for name, make in makers.items()
            if not chosen or any(word in name for word in chosen)}


def per_call(ours, official, size: int, precisions: list[str], rounds: int, context_dim: int,
             tried: Optional[list[str]]) -> list[dict]:
    generator = torch.Generator().manual_seed(size)
    x, cond = torch.rand(2, 1, 3, size, size, generator=generator)
    text, image = torch.randn(2, 1, context_dim, generator=generator)
    # name -> (call, whether it runs as the restorers run it: reusing freed memory)
    variants = {"official": (lambda: official(x, cond, 50, text_context=text, image_context=image), False)}
    for precision in precisions:
        call = prepare_unet(ours, device="cpu", precision=precision)
        variants[f"ours {precision}"] = (lambda call=call: call(x, cond, 50, text_context=text, image_context=image),
                                         True)
    if tried is not None:
        variants.update(candidates(ours, x, cond, text, image, tried))
    times: dict[str, list[float]] = {name: [] for name in variants}
    outputs = {}
    with torch.no_grad():
        for name, (run, _) in variants.items():  # warm-up: first calls allocate and pick kernels
            outputs[name] = run()
        for _ in range(rounds):
            for name, (run, reuse) in variants.items():
                with reuse_freed_memory() if reuse else contextlib.nullcontext():
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
    reference = outputs["official"]
    base = statistics.median(times["official"])
    return [
        {
            "size": size,
            "variant": name,
            "seconds": statistics.median(times[name]),
            "speedup": base / statistics.median(times[name]),
            "error": float((outputs[name] - reference).abs().max() / reference.abs().max()),
        }
        for name in variants
    ]


def end_to_end(ours, official, size: int, precisions: list[str], steps: int):
    """Yield a row per restoration as soon as it is done (the official one first)."""
    torch.manual_seed(1)
    daclip = DaCLIP(configs.config("daclip", "daclip_ViT-B-32")).eval()
    pipeline = DaclipPipeline(daclip, ours, IRSDESchedule.from_config(OFFICIAL_SDE))
    rgb = np.random.default_rng(size).random((size, size, 3)).astype(np.float32)
    with torch.no_grad():
        start = time.perf_counter()
        degradation, content = pipeline.contexts(rgb)
        lq = torch.from_numpy(rgb).permute(2, 0, 1)[None]

        def noise(x, t):
            return official(x, lq, t, text_context=degradation, image_context=content)

        sample_posterior(noise, lq, pipeline.schedule, generator=torch.Generator().manual_seed(0))
        base = time.perf_counter() - start
        yield {"size": size, "variant": f"official posterior, {pipeline.schedule.T} calls", "seconds": base, "speedup": 1.0}
        for precision in precisions:
            start = time.perf_counter()
            pipeline.restore(rgb, sampler="mars", sampler_options={"steps": steps}, precision=precision, tile_size=0)
            spent = time.perf_counter() - start
            yield {"size": size, "variant": f"ours MaRS, {steps} calls, {precision}", "seconds": spent,
                   "speedup": base / spent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="the daclip-uir checkout (or its models/modules)")
    parser.add_argument("--arch", default="universal-ir", choices=("universal-ir", "wild-ir"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=5, help="timed calls of each variant (the median is shown)")
    parser.add_argument("--end-to-end", action="store_true", help="whole restorations instead of single calls")
    parser.add_argument("--steps", type=int, default=10, help="MaRS network calls (with --end-to-end)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--in-thread", action="store_true", help="make the calls in a new thread, not the main one")
    parser.add_argument("--candidates", nargs="*", metavar="WORD",
                        help=f"also time the variants tried and not kept (those whose names hold a WORD; all if none "
                             f"is given): {'; '.join(CANDIDATES)}")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ours, official = build(args.official, args.arch)
    context_dim = configs.config("unet", args.arch)["context_dim"]
    print(f"{args.arch}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    if args.end_to_end:
        print("| size | restoration | wall time | speed-up |")
        print("| --- | --- | --- | --- |")
        for size in args.sizes:
            for row in end_to_end(ours, official, size, args.precisions, args.steps):
                print(f"| {size} px | {row['variant']} | {row['seconds']:.1f} s | {row['speedup']:.1f}x |", flush=True)
        return
    print(f"| size | UNet call | median of {args.rounds} | speed-up | max error (relative) |")
    print("| --- | --- | --- | --- | --- |")

    def table():
        for size in args.sizes:
            for row in per_call(ours, official, size, args.precisions, args.rounds, context_dim, args.candidates):
                print(f"| {size} px | {row['variant']} | {row['seconds']:.3f} s | {row['speedup']:.2f}x | "
                      f"{row['error']:.1e} |", flush=True)

    if args.in_thread:  # as the napari panel's workers and Dask's threads run restorations
        worker = threading.Thread(target=table)
        worker.start()
        worker.join()
    else:
        table()


if __name__ == "__main__":
    main()
