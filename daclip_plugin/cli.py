"""The ``daclip`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import __version__, plugins
from .errors import DaclipError
from .options import Option


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
            if file_status.found:
                where = f"{file_status.path}  ({file_status.source})"
                state = "embedded" if file_status.source == weights.SOURCE_PACKAGE else "cached"
            else:
                where, state = f"(daclip download {spec.name})", "missing"
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
    from . import weights

    spec = weights.get_model(args.name)
    where = args.dir if args.dir is not None else f"the Hugging Face cache ({weights.hub_cache_dir()})"
    print(f"Downloading model {spec.name!r} into {where}{'' if args.force else ' if needed'}...", flush=True)
    resolved = weights.download(spec, dir=args.dir, force=args.force)
    width = max(len(weights.ROLE_LABELS[role]) for role, _ in spec.files)
    for role, file in spec.files:
        source = resolved.sources.get(role, "")
        note = "downloaded" if source == weights.SOURCE_DOWNLOADED else f"already here ({source})"
        print(f"  {weights.ROLE_LABELS[role]:<{width}}  {resolved.path(role)}  {note}")
    if args.dir is not None:
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
        if any(check.state == "corrupt" for check in checks):
            corrupt = True
            print(f"  repair: daclip download {spec.name} --force")
    return 1 if corrupt else 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train the small embedded models: stage daclip first, then irsde and direct."""
    from . import training

    return training.main_from_args(args)


def cmd_interpolate(args: argparse.Namespace) -> int:
    """Mix two fine-tunings of one restorer: (1 - alpha) FIRST + alpha SECOND, weight by weight."""
    import json

    from .weight_interpolation import interpolate

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


def _declared(*registries: dict[str, plugins.Registered]) -> list[list[Option]]:
    """Every option the components of these registries declare: all declarations of each name."""
    from . import options

    found: dict[str, list[Option]] = {}
    for registry in registries:
        for name in sorted(registry):
            option_set = options.of(registry[name].component)
            if option_set.declared:
                for option in option_set:
                    found.setdefault(option.name, []).append(option)
    return list(found.values())


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")]


def _nullable(convert):
    def parse(text: str):
        return None if text.strip().lower() == "none" else convert(text)

    parse.__name__ = convert.__name__  # argparse names the type in its errors
    return parse


def _add_option_flags(parser: argparse.ArgumentParser, declared: list[list[Option]]) -> list[str]:
    """A ``--flag`` for each declared option (skipping names the command uses itself); returns their names.

    The first declaration of a name gives its help and type; its choices are enforced when
    every declaration of that name has the same.
    """
    names = []
    for declarations in declared:
        option = declarations[0]
        help_text = option.help
        if option.default is not None:
            help_text += f" [default: {option.default}]"
        for other, allowed in option.when.items():
            help_text += f" [with --{other.replace('_', '-')} {' or '.join(map(str, allowed))}]"
        kwargs: dict = {"dest": option.name, "default": None, "help": help_text.replace("%", "%%")}
        if option.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            convert = {int: int, float: float, list: _comma_list}.get(option.type, str)
            kwargs["type"] = _nullable(convert) if option.nullable else convert
            kwargs["metavar"] = "A,B,..." if option.type is list else option.name.upper()
            if option.choices and all(other.choices == option.choices for other in declarations):
                kwargs["choices"], kwargs["metavar"] = option.choices, "{" + ",".join(map(str, option.choices)) + "}"
        try:
            parser.add_argument("--" + option.name.replace("_", "-"), **kwargs)
        except argparse.ArgumentError:  # the command has a flag of that name itself
            continue
        names.append(option.name)
    return names


def _given(args: argparse.Namespace) -> dict:
    """The declared options the user set on the command line (the rest keep their defaults)."""
    return {name: getattr(args, name) for name in args.option_names if getattr(args, name) is not None}


def _print_scores(path, scores: dict[str, float]) -> None:
    top = ", ".join(f"{name} {probability:.1%}" for name, probability in list(scores.items())[:3])
    print(f"{path}: {top}")


def _output_path(source: Path, output: Optional[str], several: bool) -> Path:
    if output is None:
        return source.with_name(f"{source.stem}_restored.png")
    target = Path(output)
    if several or target.is_dir() or output.endswith(("/", "\\")):
        return target / f"{source.stem}_restored.png"
    return target


def cmd_classify(args: argparse.Namespace) -> int:
    """Print each image's degradation probabilities."""
    import json

    from . import api, imagefiles

    options = _given(args)
    results = {}
    for path in args.images:
        scores = api.classify(imagefiles.read_image(path), classifier=args.classifier, **options)
        results[path] = scores
        if not args.json:
            _print_scores(path, scores)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore images; print their degradation probabilities; write NAME_restored.png files."""
    from tqdm import tqdm

    from . import api, imagefiles

    restorer = args.restorer or api.preferred_restorer(getattr(args, "model", None))
    classifier = None if args.no_classify else args.classifier
    options, classify_options = api.split_options(_given(args), restorer, classifier)
    for path in args.images:
        source = Path(path)
        image = imagefiles.read_image(source)
        if classifier is not None:
            _print_scores(path, api.classify(image, classifier=classifier, **classify_options))
        with tqdm(desc=f"restoring {source.name}", unit="step", leave=False, disable=args.quiet) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            restored = api.restore(image, restorer=restorer, progress=progress, **options)
        target = imagefiles.write_image(_output_path(source, args.output, len(args.images) > 1), restored)
        print(f"  -> {target}")
        if args.side_by_side:
            compare = imagefiles.write_image(
                target.with_name(f"{target.stem}_compare.png"), imagefiles.side_by_side(image, restored)
            )
            print(f"  -> {compare} (input | restored)")
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    """List the bundled sample images, or copy them into a folder."""
    from . import sample_data

    if args.dir is None:
        for name, path in sample_data.sample_paths().items():
            print(f"{name:<14} {path}")
        print("Copy them with: daclip samples DIR")
        return 0
    for path in sample_data.copy_samples(args.dir):
        print(path)
    return 0


def cmd_make_benchmark(args: argparse.Namespace) -> int:
    """Write a benchmark (ROOT/<degradation>/LQ, GT) from the held-out photographs."""
    from tqdm import tqdm

    from . import evaluation

    with tqdm(desc="writing", unit="image", disable=args.quiet) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        description = evaluation.make_benchmark(
            args.root, seed=args.seed, per_type=args.per_type, size=args.size, progress=progress
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

    restorer = args.restorer or api.preferred_restorer(getattr(args, "model", None))
    classifier = None if args.classifier.lower() == "none" else args.classifier
    report = evaluation.evaluate(
        args.root,
        restorer=restorer,
        classifier=classifier,
        options=_given(args),
        limit=args.limit,
        progress=not args.quiet,
    )
    print(evaluation.format_report(report))
    if args.json:
        print(f"\nreport written to {evaluation.write_json(report, args.json)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser; the restore, classify and evaluate flags come from the components' declared options."""
    component_options = _declared(plugins.restorers(), plugins.classifiers())
    classifier_options = _declared(plugins.classifiers())
    parser = argparse.ArgumentParser(
        prog="daclip",
        description="DA-CLIP degradation classification and image restoration.",
    )
    parser.add_argument("--version", action="version", version=f"daclip-plugin {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("plugins", help=cmd_plugins.__doc__).set_defaults(run=cmd_plugins)
    commands.add_parser("models", help=cmd_models.__doc__).set_defaults(run=cmd_models)
    download = commands.add_parser("download", help=cmd_download.__doc__)
    download.add_argument("name", metavar="NAME", help="model name (see `daclip models`)")
    download.add_argument("--dir", metavar="DIR", help="download into this folder instead of the Hugging Face cache")
    download.add_argument("--force", action="store_true", help="download again even if the files are here (repairs them)")
    download.set_defaults(run=cmd_download)
    verify = commands.add_parser("verify", help=cmd_verify.__doc__)
    verify.add_argument("name", nargs="?", metavar="NAME", help="model name (default: every model)")
    verify.set_defaults(run=cmd_verify)
    train = commands.add_parser("train", help=cmd_train.__doc__)
    train.add_argument("stage", choices=("daclip", "irsde", "direct"), help="what to train")
    train.add_argument("--out", required=True, metavar="DIR", help="folder for the models, state, log and provenance.json")
    train.add_argument("--preset", choices=("cpu", "gpu"), help="defaults of the options below (default: cpu)")
    train.add_argument("--steps", type=int, help="total training steps (counted across --resume)")
    train.add_argument("--max-minutes", type=float, help="total training time (counted across --resume)")
    train.add_argument("--batch", type=int, help="samples per step")
    train.add_argument("--patch", type=int, help="UNet training patch size (irsde, direct)")
    train.add_argument("--lr", type=float, help="peak learning rate")
    train.add_argument("--workers", type=int, help="data loader processes")
    train.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--resume", action="store_true", help="continue from DIR/STAGE_state.pt")
    train.add_argument("--daclip", metavar="FILE", help="the trained DA-CLIP (default: DIR/daclip_tiny.pt)")
    train.add_argument("--init", metavar="FILE", help="start from these weights (a saved model of the same stage)")
    train.add_argument("--crop-min", type=int, metavar="PX", help="smallest training crop (default: the DA-CLIP input size)")
    train.add_argument("--crop-max", type=int, metavar="PX", help="largest training crop (default: crop-min + 64)")
    train.add_argument(
        "--clip-view", choices=("resize", "tiles"),
        help="how the DA-CLIP sees an image: resize (official, default) or tiles (unresized tiles of its input size)",
    )
    train.add_argument(
        "--loss", choices=("l1", "log-l1"),
        help="direct stage only: l1 (default) or log-l1 (mean of log per-patch L1: weighs subtle degradations like strong ones)",
    )
    train.add_argument(
        "--degradation-weights", metavar="NAME=W,...",
        help="sample these degradations W times as often (others 1; 0 leaves one out), e.g. raindrop=4",
    )
    train.add_argument("--checkpoint-every", type=int, metavar="N", help="save the training state every N steps")
    train.add_argument("--eval-per-class", type=int, metavar="N", help="held-out evaluation crops per degradation")
    train.add_argument("--eval-size", type=int, metavar="PX", help="held-out evaluation crop size (irsde, direct)")
    train.set_defaults(run=cmd_train)
    mix = commands.add_parser("interpolate", help=cmd_interpolate.__doc__)
    mix.add_argument("first", metavar="FIRST", help="a saved UNet (e.g. the conservative restorer)")
    mix.add_argument("second", metavar="SECOND", help="a fine-tuning of the same UNet (e.g. the bolder one)")
    mix.add_argument("--alpha", type=float, required=True, help="weight of SECOND, 0..1")
    mix.add_argument("--out", required=True, metavar="DIR", help="folder for the model and provenance.json")
    mix.add_argument("--stage", choices=("irsde", "direct"), default="direct", help="what the UNets are (default: direct)")
    mix.add_argument("--daclip", metavar="FILE", help="their DA-CLIP: evaluates the result on held-out crops")
    mix.add_argument("--eval-per-class", type=int, default=4, metavar="N", help="held-out evaluation crops per degradation")
    mix.add_argument("--eval-size", type=int, default=128, metavar="PX", help="held-out evaluation crop size")
    mix.set_defaults(run=cmd_interpolate)
    classify = commands.add_parser("classify", help=cmd_classify.__doc__)
    classify.add_argument("images", nargs="+", metavar="IMAGE")
    classify.add_argument("--classifier", default="daclip", help="classifier name (see `daclip plugins`)")
    classify.add_argument("--json", action="store_true", help="print all probabilities as JSON")
    classify.set_defaults(run=cmd_classify, option_names=_add_option_flags(classify, classifier_options))
    restore = commands.add_parser("restore", help=cmd_restore.__doc__)
    restore.add_argument("images", nargs="+", metavar="IMAGE")
    restore.add_argument("-o", "--output", metavar="PATH", help="output file, or folder for several images")
    restore.add_argument("--restorer", help="restorer name (default: the model's preferred one)")
    restore.add_argument("--classifier", default="daclip", help="classifier for the printed probabilities")
    restore.add_argument("--side-by-side", action="store_true", help="also write NAME_compare.png (input | output)")
    restore.add_argument("--no-classify", action="store_true", help="do not print degradation probabilities")
    restore.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    restore.set_defaults(run=cmd_restore, option_names=_add_option_flags(restore, component_options))
    samples = commands.add_parser("samples", help=cmd_samples.__doc__)
    samples.add_argument("dir", nargs="?", metavar="DIR", help="copy the sample PNGs into this folder")
    samples.set_defaults(run=cmd_samples)
    bench = commands.add_parser("make-benchmark", help=cmd_make_benchmark.__doc__)
    bench.add_argument("root", metavar="ROOT", help="folder to write ROOT/<degradation>/LQ/*.png and GT/*.png into")
    bench.add_argument("--seed", type=int, required=True, help="random seed: same seed, same files")
    bench.add_argument("--per-type", type=int, default=20, metavar="N", help="images per degradation (default 20)")
    bench.add_argument("--size", type=int, default=256, metavar="PX", help="crop size in pixels (default 256)")
    bench.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(run=cmd_make_benchmark)
    evaluate = commands.add_parser("evaluate", help=cmd_evaluate.__doc__)
    evaluate.add_argument("root", metavar="ROOT", help="benchmark folder: ROOT/<degradation>/LQ/*.png and GT/*.png")
    evaluate.add_argument("--restorer", help="restorer name (default: the model's preferred one)")
    evaluate.add_argument("--classifier", default="daclip", help="classifier name, or 'none' (default: daclip)")
    evaluate.add_argument("--limit", type=int, metavar="N", help="only the first N images of each degradation")
    evaluate.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(run=cmd_evaluate, option_names=_add_option_flags(evaluate, component_options))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        parser = build_parser()  # reads the plugins' declared options
        args = parser.parse_args(argv)
        if getattr(args, "run", None) is None:
            parser.print_help()
            return 2
        return args.run(args)
    except DaclipError as exc:
        print(f"daclip: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("daclip: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
