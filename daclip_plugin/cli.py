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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="daclip",
        description="DA-CLIP degradation classification and image restoration.",
    )
    parser.add_argument("--version", action="version", version=f"daclip-plugin {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("plugins", help=cmd_plugins.__doc__).set_defaults(run=cmd_plugins)
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
