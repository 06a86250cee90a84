"""The ``daclip`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from . import __version__, plugins
from .errors import DaclipError


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
    print(f"Downloading model {spec.name!r} into {where} if needed...", flush=True)
    resolved = weights.download(spec, dir=args.dir)
    for role, file in spec.files:
        source = resolved.sources.get(role, "")
        note = "downloaded" if source == weights.SOURCE_DOWNLOADED else f"already here ({source})"
        print(f"  {weights.ROLE_LABELS[role]:<7}  {resolved.path(role)}  {note}")
    if args.dir is not None:
        print(f"Use these files with: {weights.ENV_WEIGHTS_DIR}={args.dir}")
    print(f"Model {spec.name!r} is ready.")
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    download.set_defaults(run=cmd_download)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except DaclipError as exc:
        print(f"daclip: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
