"""The ``daclip`` command line."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Optional, Sequence

from . import __version__, plugins
from .cli_flags import add_option_flags, declared, given
from .cli_images import EXIT_FAILURE, EXIT_USAGE, cmd_classify, cmd_restore
from .errors import DaclipError, InvalidImageError, InvalidOptionError, OutputError, UnknownNameError


def _print_components(title: str, registry: dict[str, plugins.Registered]) -> None:
    print(f"{title}:")
    if not registry:
        print("  (none)")
    width = max((len(name) for name in registry), default=0)
    for name in sorted(registry):
        entry = registry[name]
        description = getattr(entry.component, "description", "")
        line = f"  {name:<{width}}  [{entry.plugin}]"
        print(f"{line}  {description}" if description else line)


def cmd_plugins(args: argparse.Namespace) -> int:
    """List registered restorers and classifiers with the plugin providing each."""
    _print_components("Restorers", plugins.restorers())
    _print_components("Classifiers", plugins.classifiers())
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the named models, with each file's size, whether it is here, and its path."""
    from . import weights

    specs = weights.list_models()
    if not specs:
        print("Models: (none)")
    for spec in specs:
        print(f"{spec.name}  [{weights.model_plugin(spec.name)}]  {spec.description}")
        if getattr(spec, "restorer", None):
            print(f"  preferred restorer: {spec.restorer}")
        if getattr(spec, "clip_view", "resize") != "resize":
            print(f"  DA-CLIP input: {spec.clip_view}")
        rows = []
        for file_status in weights.status(spec):
            found = f"{file_status.path}  ({file_status.source})"
            where = found if file_status.found else f"(daclip download {spec.name})"
            state = weights.file_availability(file_status)
            rows.append((file_status.label, file_status.file.filename, weights.format_size(file_status.size), state, where))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
    folder = weights.weights_dir()
    print(
        f"\nFiles are looked for in: {weights.ENV_WEIGHTS_DIR} "
        f"({folder if folder is not None else 'not set'}), then the Hugging Face cache "
        f"({weights.hub_cache_dir()}).\nDownload a model with: daclip download NAME [--dir DIR]"
    )
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Download a model's weights into the Hugging Face cache (or into --dir)."""
    from tqdm import tqdm

    from . import weights

    spec = weights.get_model(args.name)
    where = args.dir if args.dir is not None else f"the Hugging Face cache ({weights.hub_cache_dir()})"
    print(f"Downloading model {spec.name!r} into {where}{'' if args.force else ' if needed'}...", flush=True)
    bars = []  # one, made when the first bytes come (nothing to show for files already here)

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="downloading"))
        bars[0].update(done - bars[0].n)

    try:
        resolved = weights.download(spec, dir=args.dir, force=args.force, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    width = max(len(weights.ROLE_LABELS[role]) for role, _ in spec.files)
    for role, _file in spec.files:
        source = resolved.sources.get(role, "")
        note = "downloaded" if source == weights.SOURCE_DOWNLOADED else f"already here ({source})"
        print(f"  {weights.ROLE_LABELS[role]:<{width}}  {resolved.path(role)}  {note}")
    if args.dir is not None and any(not file.embedded for _, file in spec.files):
        print(f"Use these files with: {weights.ENV_WEIGHTS_DIR}={args.dir}")
    print(f"Model {spec.name!r} is ready.")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check that the files of a model (or of every model) are intact; exit 1 if one is corrupt."""
    from . import weights
    from .weights import integrity

    specs = [weights.get_model(args.name)] if args.name else weights.list_models()
    corrupt = False
    for spec in specs:
        print(spec.name)
        checks = integrity.verify(spec)
        for check in checks:
            where = f"  {check.path}" if check.path is not None else ""
            print(f"  {check.label:<16} {check.state:<10} {check.detail}{where}")
        for repair in dict.fromkeys(check.repair for check in checks if check.state == "corrupt"):
            corrupt = True
            print(f"  repair: {repair}")
    return 1 if corrupt else 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train the small embedded models: stage daclip first, then irsde and direct."""
    from . import training

    return training.main_from_args(args)


def cmd_interpolate(args: argparse.Namespace) -> int:
    """Mix two fine-tunings of one restorer: (1 - alpha) FIRST + alpha SECOND, weight by weight."""
    import json

    from .training.interpolation import interpolate

    entry = interpolate(
        Path(args.first), Path(args.second), args.alpha, Path(args.out), stage=args.stage,
        daclip=None if args.daclip is None else Path(args.daclip), eval_per_class=args.eval_per_class,
        eval_size=args.eval_size, command=["daclip", *sys.argv[1:]],
    )
    summary = {"file": str(Path(args.out) / entry["file"]), "alpha": entry["alpha"]}
    if entry["eval"]:
        summary["eval"] = {k: entry["eval"][k] for k in ("psnr_in", "psnr_out", "n")}
    print(json.dumps(summary))
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    """List the bundled sample images, or copy them into a folder."""
    from .data import samples as sample_data

    if args.dir is None:
        for name, path in sample_data.sample_paths().items():
            print(f"{name:<14} {path}")
        print("Copy them with: daclip samples DIR")
        return 0
    for path in sample_data.copy_samples(args.dir, overwrite=args.overwrite):
        print(path)
    return 0


def cmd_make_benchmark(args: argparse.Namespace) -> int:
    """Write a benchmark (ROOT/<degradation>/LQ, GT) from the held-out photographs."""
    from tqdm import tqdm

    from . import evaluation

    with tqdm(desc="writing", unit="image", disable=args.quiet, delay=1) as bar:  # nothing shown if it fails at once
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        description = evaluation.make_benchmark(
            args.root, seed=args.seed, per_type=args.per_type, size=args.size, progress=progress, overwrite=args.overwrite
        )
    count = description["per_type"] * len(description["degradations"])
    print(
        f"wrote {count} pairs ({description['per_type']} per degradation, {description['size']} px, "
        f"seed {description['seed']}) into {args.root}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a restorer and a classifier on a benchmark: PSNR, SSIM, accuracy, confusion matrix."""
    from . import api, evaluation

    restorer = args.restorer or api.preferred_restorer(given(args).get("model"))
    classifier = None if (args.classifier or "").lower() == "none" else args.classifier or evaluation.AUTO
    if args.json:  # refused now rather than after the whole evaluation
        from .outputs import check_writable

        if Path(args.json).is_dir():
            raise OutputError(f"--json {args.json} is a folder: name a file for the report")
        check_writable(Path(args.json))
    report = evaluation.evaluate(
        args.root,
        restorer=restorer,
        classifier=classifier,
        options=given(args),
        limit=args.limit,
        progress=not args.quiet,
    )
    print(evaluation.format_report(report))
    if args.json:
        print(f"\nreport written to {evaluation.write_json(report, args.json)}")
    return 0


def _summary(command) -> str:
    """A command's one-line help: the first line of its docstring."""
    return command.__doc__.strip().splitlines()[0]


def _add_max_pixels(parser: argparse.ArgumentParser) -> None:
    from .imagefiles import DEFAULT_MAX_PIXELS, ENV_MAX_PIXELS

    parser.add_argument(
        "--max-pixels", type=int, metavar="N",
        help=f"refuse files declaring more pixels per frame (default {DEFAULT_MAX_PIXELS:,}, or {ENV_MAX_PIXELS})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser; the restore, classify and evaluate flags come from the components' declared options,
    the train flags from :class:`daclip_plugin.training.config.TrainConfig`."""
    from .training import config as training_config

    component_options = declared(plugins.restorers(), plugins.classifiers())
    classifier_options = declared(plugins.classifiers())
    parser = argparse.ArgumentParser(
        prog="daclip",
        description="DA-CLIP degradation classification and image restoration.",
    )
    parser.add_argument("--version", action="version", version=f"daclip-plugin {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("plugins", help=_summary(cmd_plugins)).set_defaults(run=cmd_plugins)
    commands.add_parser("models", help=_summary(cmd_models)).set_defaults(run=cmd_models)
    download = commands.add_parser("download", help=_summary(cmd_download))
    download.add_argument("name", metavar="NAME", help="model name (see `daclip models`)")
    download.add_argument("--dir", metavar="DIR", help="download into this folder instead of the Hugging Face cache")
    download.add_argument("--force", action="store_true", help="download again even if the files are here (repairs them)")
    download.set_defaults(run=cmd_download)
    verify = commands.add_parser("verify", help=_summary(cmd_verify))
    verify.add_argument("name", nargs="?", metavar="NAME", help="model name (default: every model)")
    verify.set_defaults(run=cmd_verify)
    train = commands.add_parser("train", help=_summary(cmd_train))
    training_config.add_flags(train)
    train.set_defaults(run=cmd_train)
    mix = commands.add_parser("interpolate", help=_summary(cmd_interpolate))
    mix.add_argument("first", metavar="FIRST", help="a saved UNet (e.g. the conservative restorer)")
    mix.add_argument("second", metavar="SECOND", help="a fine-tuning of the same UNet (e.g. the bolder one)")
    mix.add_argument("--alpha", type=float, required=True, help="weight of SECOND, 0..1")
    mix.add_argument("--out", required=True, metavar="DIR", help="folder for the model and provenance.json")
    mix.add_argument("--stage", choices=("irsde", "direct"), default="direct", help="what the UNets are (default: direct)")
    mix.add_argument("--daclip", metavar="FILE", help="their DA-CLIP: evaluates the result on held-out crops")
    mix.add_argument("--eval-per-class", type=int, default=4, metavar="N", help="held-out evaluation crops per degradation")
    mix.add_argument("--eval-size", type=int, default=128, metavar="PX", help="held-out evaluation crop size")
    mix.set_defaults(run=cmd_interpolate)
    classify = commands.add_parser("classify", help=_summary(cmd_classify))
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns ('*.png')")
    classify.add_argument("--classifier", default="daclip", help="classifier name (see `daclip plugins`)")
    classify.add_argument("--json", action="store_true", help="print all probabilities as JSON")
    _add_max_pixels(classify)
    classify.set_defaults(run=cmd_classify, option_names=add_option_flags(classify, classifier_options))
    restore = commands.add_parser("restore", help=_summary(cmd_restore))
    restore.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns ('*.png')")
    restore.add_argument("-o", "--output", metavar="PATH", help="output file, or folder for several images")
    restore.add_argument("--restorer", help="restorer name (default: the model's preferred one)")
    restore.add_argument(
        "--classifier",
        help="classifier for the printed probabilities of restorers without their own estimate "
        "(default: the restorer's namesake, else daclip for DA-CLIP restorers)",
    )
    restore.add_argument("--side-by-side", action="store_true", help="also write NAME_restored_compare.png (input | output)")
    restore.add_argument("--no-classify", action="store_true", help="do not print degradation probabilities")
    restore.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    existing = restore.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace output files that exist (never an input)")
    existing.add_argument("--skip-existing", action="store_true", help="leave inputs whose outputs exist (finish a run)")
    restore.add_argument("--workers", type=int, metavar="N", help="restore on N local Dask worker processes")
    restore.add_argument("--scheduler", metavar="ADDRESS", help="restore on the Dask cluster at ADDRESS (tcp://host:8786)")
    _add_max_pixels(restore)
    restore.set_defaults(run=cmd_restore, option_names=add_option_flags(restore, component_options))
    samples = commands.add_parser("samples", help=_summary(cmd_samples))
    samples.add_argument("dir", nargs="?", metavar="DIR", help="copy the sample PNGs into this folder")
    samples.add_argument("--overwrite", action="store_true", help="replace files of the same names that differ")
    samples.set_defaults(run=cmd_samples)
    bench = commands.add_parser("make-benchmark", help=_summary(cmd_make_benchmark))
    bench.add_argument("root", metavar="ROOT", help="folder to write ROOT/<degradation>/LQ/*.png and GT/*.png into")
    bench.add_argument("--seed", type=int, required=True, help="random seed: same seed, same files")
    bench.add_argument("--per-type", type=int, default=20, metavar="N", help="images per degradation (default 20)")
    bench.add_argument("--size", type=int, default=256, metavar="PX", help="crop size in pixels (default 256)")
    bench.add_argument("--overwrite", action="store_true", help="replace a benchmark already in ROOT")
    bench.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(run=cmd_make_benchmark)
    evaluate = commands.add_parser("evaluate", help=_summary(cmd_evaluate))
    evaluate.add_argument("root", metavar="ROOT", help="benchmark folder: ROOT/<degradation>/LQ/*.png and GT/*.png")
    evaluate.add_argument("--restorer", help="restorer name (default: the model's preferred one)")
    evaluate.add_argument(
        "--classifier", help="classifier name, or 'none' (default: the restorer's namesake, else daclip for DA-CLIP restorers)"
    )
    evaluate.add_argument("--limit", type=int, metavar="N", help="only the first N images of each degradation")
    evaluate.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(run=cmd_evaluate, option_names=add_option_flags(evaluate, component_options))
    return parser


USAGE_ERRORS = (InvalidImageError, InvalidOptionError, UnknownNameError, OutputError)


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so half-written files are removed."""


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"daclip: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--debug", action="store_true")
    debug = early.parse_known_args(argv)[0].debug
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _one_line_warning
            parser = build_parser()  # reads the plugins' declared options (discovering them warns)
            args = parser.parse_args(argv)
            if getattr(args, "run", None) is None:
                parser.print_help()
                return EXIT_USAGE
            return args.run(args)
    except DaclipError as exc:
        if debug:
            raise
        print(f"daclip: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else EXIT_FAILURE
    except KeyboardInterrupt:
        print("daclip: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("daclip: terminated", file=sys.stderr)
        return 143
    except Exception as exc:
        if debug:
            raise
        print(f"daclip: error: {type(exc).__name__}: {exc} (daclip --debug ... shows the traceback)", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
