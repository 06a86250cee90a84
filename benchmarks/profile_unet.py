"""Where the time of one UNet call goes: torch.profiler over the call the restorers make.

Builds a UNet of the released or embedded shapes with random weights, runs
:func:`daclip_plugin.prepare_unet`'s call once to warm up, then profiles ``--repeats`` calls
(reusing freed memory, as restorations do) and prints the share of CPU time by kind of
operator (convolutions, normalisation, attention, element-wise arithmetic, copies and
layout) and the top operators.

    python benchmarks/profile_unet.py --arch universal-ir --size 256 --repeats 3 [--precision bf16]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from daclip_plugin import prepare_unet  # noqa: E402
from daclip_plugin.engine.heap import reuse_freed_memory  # noqa: E402
from daclip_plugin.nn import configs  # noqa: E402
from daclip_plugin.nn.unet import ConditionalUNet  # noqa: E402

#: Operator kinds, by the first pattern found in an operator's name.
KINDS = (
    ("convolution", ("conv", "mkldnn_convolution")),
    ("attention", ("attention", "softmax", "bmm", "baddbmm", "matmul", "_efficient", "_flash", "einsum")),
    ("linear", ("linear", "addmm", "mm")),
    ("normalisation", ("norm", "var", "mean", "rsqrt", "std")),
    ("activation", ("silu", "gelu", "sigmoid")),
    ("element-wise", ("add", "mul", "sub", "div", "exp", "pow", "sqrt", "lerp", "where", "clamp")),
    ("copies and layout", ("copy", "cat", "clone", "contiguous", "permute", "transpose", "reshape", "view", "pad",
                           "index", "upsample", "empty", "zero", "fill", "to", "stack", "chunk", "split")),
)


def kind_of(name: str) -> str:
    lowered = name.lower()
    for kind, patterns in KINDS:
        if any(pattern in lowered for pattern in patterns):
            return kind
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="universal-ir", choices=configs.names("unet"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--top", type=int, default=12, help="how many operators to list")
    parser.add_argument("--precision", default="fp32", help="fp32, or bf16 on CPUs with bfloat16 instructions")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = configs.config("unet", args.arch)
    call = prepare_unet(ConditionalUNet(**cfg), device="cpu", precision=args.precision)
    x, cond = torch.rand(2, 1, 3, args.size, args.size)
    context = torch.randn(1, cfg["context_dim"]) if cfg.get("context_dim") else None
    with reuse_freed_memory():  # as a restoration runs it
        call(x, cond, 50, text_context=context, image_context=context)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(args.repeats):
                call(x, cond, 50, text_context=context, image_context=context)
    events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]
    # self time: each microsecond counted once, in the operator that spent it
    total = sum(e.self_cpu_time_total for e in events)
    by_kind: dict[str, float] = defaultdict(float)
    for event in events:
        by_kind[kind_of(event.key)] += event.self_cpu_time_total
    per_call = total / args.repeats / 1e6
    print(f"{args.arch} at {args.size} px, {args.precision}, {torch.get_num_threads()} threads: "
          f"{per_call:.3f} s of operator time per call\n")
    print("| kind | share of the time |")
    print("| --- | --- |")
    for kind, spent in sorted(by_kind.items(), key=lambda item: -item[1]):
        print(f"| {kind} | {100 * spent / total:.1f}% |")
    print("\n| operator | kind | share | calls per UNet call |")
    print("| --- | --- | --- | --- |")
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        share = 100 * event.self_cpu_time_total / total
        print(f"| `{event.key}` | {kind_of(event.key)} | {share:.1f}% | {event.count // args.repeats} |")


if __name__ == "__main__":
    main()
