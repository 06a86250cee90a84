"""Command-line flags made from the options that restorers and classifiers declare."""

from __future__ import annotations

import argparse

from . import plugins
from .options import Option

#: Where argparse keeps a declared option's value: a name apart from the command's own.
DEST_PREFIX = "option:"


def declared(*registries: dict[str, plugins.Registered]) -> list[list[Option]]:
    """Every option the components of these registries declare: all declarations of each name,
    the built-in components' first (their declaration makes the flag)."""
    from . import options

    found: dict[str, list[Option]] = {}
    for registry in registries:
        for name in sorted(registry, key=lambda name: (registry[name].plugin not in plugins.BUILTIN_PLUGINS, name)):
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


def _number(text: str):
    """An integer if ``text`` is one, else a float (a name declared as an integer and as a number)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def add_option_flags(parser: argparse.ArgumentParser, declared: list[list[Option]]) -> list[str]:
    """A ``--flag`` for each declared option (skipping flags the command has itself); returns their names.

    The first declaration of a name gives its help and type (a name declared both as an
    integer and as a number takes either); its choices are enforced when every declaration
    of that name has the same. Each component checks the value against its own declaration.
    """
    names = []
    for declarations in declared:
        option = declarations[0]
        help_text = option.help
        if option.default is not None:
            help_text += f" [default: {option.default}]"
        for other, allowed in option.when.items():
            help_text += f" [with --{other.replace('_', '-')} {' or '.join(map(str, allowed))}]"
        kwargs: dict = {"dest": DEST_PREFIX + option.name, "default": argparse.SUPPRESS, "help": help_text.replace("%", "%%")}
        types = {other.type for other in declarations}
        if option.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            convert = {int: int, float: float, list: _comma_list}.get(option.type, str)
            convert = _number if types == {int, float} else convert
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


def given(args: argparse.Namespace) -> dict:
    """The declared options the user set on the command line (the rest keep their defaults; ``none``
    given to an option that takes None is given as None)."""
    return {name: getattr(args, DEST_PREFIX + name) for name in args.option_names if hasattr(args, DEST_PREFIX + name)}
