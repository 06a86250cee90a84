"""Options as data: what a restorer, classifier or sampler takes, declared once.

A component lists its options as :class:`Option` objects (``Restorer.options``). That one
declaration validates calls (:meth:`OptionSet.check`), and builds the command line's flags,
the napari widget's controls and the routing of settings in stacks and evaluation. A
third-party component that declares nothing is described from its method's signature
(names and defaults, values unchecked) and keeps working as before.

Nothing here imports torch, Qt or napari.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from .errors import InvalidOptionError, UnknownNameError
from .steps import yields_steps

#: Keyword arguments of ``restore`` / ``classify`` that are not options.
NOT_OPTIONS = ("progress", "should_stop", "estimate")
#: Names a component may not declare as options: the API's own arguments (``restore``,
#: ``classify``, the stacks functions), which would never reach it.
RESERVED = NOT_OPTIONS + ("image", "value_range", "restorer", "classifier", "rgb", "index", "conditioning",
                          "reference", "classifier_options")
_ANY = object()  # the type of an option read from a signature: any value is passed on


@dataclass(frozen=True)
class Option:
    """One option: its name, type, default, allowed values and help.

    ``type`` is ``int``, ``float``, ``str``, ``bool``, ``Path`` (a file path, given as text or
    a path object) or ``list`` (a list of non-empty, distinct strings). ``nullable`` accepts
    ``None`` too. ``choices`` lists the allowed values; ``minimum`` and ``maximum`` bound
    numbers (inclusive). ``when`` makes the option apply only while other options have one
    of the given values, e.g. ``{"sampler": ("mars",)}``.
    """

    name: str
    type: Any = str
    default: Any = None
    help: str = ""
    choices: tuple = ()
    nullable: bool = False
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    when: Mapping[str, tuple] = field(default_factory=dict)

    def describe_values(self) -> str:
        """The accepted values in words, for error messages and help texts."""
        if self.choices:
            text = "one of " + ", ".join(repr(choice) for choice in self.choices)
        elif self.type is _ANY:
            text = "any value"
        else:
            text = {
                int: "an integer", float: "a number", str: "text", bool: "True or False",
                Path: "a file path", list: "a list of distinct, non-empty strings",
            }.get(self.type, getattr(self.type, "__name__", str(self.type)))
            bounds = [f">= {self.minimum:g}"] if self.minimum is not None else []
            bounds += [f"<= {self.maximum:g}"] if self.maximum is not None else []
            text += f" ({', '.join(bounds)})" if bounds else ""
        return text + (" or None" if self.nullable else "")

    def check(self, value: Any, owner: str = "") -> Any:
        """``value`` as this option's type, or an :class:`InvalidOptionError` naming the option."""
        if value is None and (self.nullable or self.type is _ANY):
            return None
        converted = _convert(self.type, value)
        if converted is _INVALID or (self.choices and converted not in self.choices) or not self._in_range(converted):
            where = f" of {owner}" if owner else ""
            raise InvalidOptionError(
                f"option {self.name!r}{where} must be {self.describe_values()}; got {value!r}"
            )
        return converted

    def _in_range(self, value: Any) -> bool:
        if self.type not in (int, float):
            return True
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether the option takes effect with these values of the other options."""
        return all(values.get(name) in allowed for name, allowed in self.when.items())


_INVALID = object()


def _convert(kind: Any, value: Any) -> Any:
    """``value`` converted to ``kind``, or ``_INVALID``."""
    if kind is _ANY:
        return value
    if kind is bool:
        return bool(value) if isinstance(value, (bool, np.bool_)) else _INVALID
    if kind is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return int(value) if ok else _INVALID
    if kind is float:
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return _INVALID
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            return _INVALID
        return _INVALID if math.isnan(number) else number
    if kind is str:
        return value if isinstance(value, str) else _INVALID
    if kind is Path:
        ok = isinstance(value, (str, os.PathLike)) and str(os.fspath(value)).strip() != ""
        return Path(value) if ok else _INVALID
    if kind is list:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            return _INVALID
        items = list(value)
        ok = items and all(isinstance(item, str) and item.strip() for item in items)
        return items if ok and len(set(items)) == len(items) else _INVALID
    raise TypeError(f"unsupported option type {kind!r}")


@dataclass(frozen=True)
class OptionSet:
    """The options of one component. ``open``: it also takes options it does not name."""

    options: tuple[Option, ...]
    open: bool = False
    declared: bool = True

    def __iter__(self):
        return iter(self.options)

    def names(self) -> list[str]:
        return [option.name for option in self.options]

    def get(self, name: str) -> Optional[Option]:
        return next((option for option in self.options if option.name == name), None)

    def defaults(self) -> dict[str, Any]:
        return {option.name: option.default for option in self.options}

    def check(self, owner: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` validated: each value converted, unknown and inapplicable options refused.

        Returns the given options only (the component fills in its defaults). ``owner`` names
        the component in messages, e.g. ``"restorer 'daclip'"``.
        """
        unknown = sorted(name for name in given if self.get(name) is None)
        if unknown and not self.open:
            raise UnknownNameError(
                f"{owner} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(self.names()) or 'none'}"
            )
        checked = {
            name: (option.check(value, owner) if (option := self.get(name)) is not None else value)
            for name, value in given.items()
        }
        values = {**self.defaults(), **checked}
        for name in checked:
            option = self.get(name)
            if option is not None and not option.applies(values):
                needs = " and ".join(
                    f"{other}={' or '.join(map(repr, allowed))}" for other, allowed in option.when.items()
                )
                now = ", ".join(f"{other}={values.get(other)!r}" for other in option.when)
                raise InvalidOptionError(f"option {name!r} of {owner} applies only with {needs} (here {now})")
        return checked

    def resolve(self, owner: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared option's value: the given ones (checked) over the defaults."""
        return {**self.defaults(), **self.check(owner, given)}

    def applicable(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The ``settings`` this component names and that apply given the others.

        How the widget and stacks pass their settings on: a component that declares nothing
        and takes ``**options`` receives only the settings its signature names.
        """
        values = {**self.defaults(), **settings}
        return {
            name: value
            for name, value in settings.items()
            if (option := self.get(name)) is not None and option.applies(values)
        }


def from_signature(method) -> OptionSet:
    """The options a method's signature names (keyword parameters, their defaults), unchecked."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return OptionSet((), open=True, declared=False)
    named = tuple(
        Option(p.name, _ANY, None if p.default is inspect.Parameter.empty else p.default)
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p.name not in NOT_OPTIONS and p.name not in ("self", "image")
    )
    open_ = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    return OptionSet(named, open=open_, declared=False)


def of(component) -> OptionSet:
    """A restorer's or classifier's options: its declaration, or else its method's signature."""
    declared = getattr(component, "options", None)
    if declared is not None:
        return OptionSet(tuple(declared))
    names = ("iter_restore",) if yields_steps(component) else ("restore", "classify")
    method = next((getattr(component, name) for name in names if hasattr(component, name)), None)
    return from_signature(method)


def route(given: Mapping[str, Any], *targets: tuple[str, Optional[OptionSet]]) -> list[dict[str, Any]]:
    """Split ``given`` between components: each gets the options it names (an open one: all).

    ``targets`` are ``(owner, option_set)`` pairs (``None``: no such component). An option
    no target takes is an :class:`~daclip_plugin.errors.UnknownNameError` that lists what
    each takes.
    """
    shares = [
        {
            name: value
            for name, value in given.items()
            if options is not None and (options.open or options.get(name) is not None)
        }
        for _, options in targets
    ]
    taken = {name for share in shares for name in share}
    unused = sorted(set(given) - taken)
    if unused:
        takes = "; ".join(
            f"{owner} takes: {', '.join(options.names()) or 'none'}" for owner, options in targets if options is not None
        )
        raise UnknownNameError(f"no component takes option(s) {', '.join(unused)} ({takes})")
    return shares
