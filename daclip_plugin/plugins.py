"""The plugin manager: built-in plugins plus those found through entry points.

Third-party packages declare an entry point in the ``daclip_plugin`` group::

    [project.entry-points.daclip_plugin]
    my_plugin = "my_package.daclip_hooks"

Set ``DACLIP_PLUGINS`` to a comma-separated list of entry-point names to load only
those; set it to an empty string to load no external plugin at all.

A broken plugin never takes the others down: one that fails to import (even by calling
``sys.exit``), whose hook does not fit its specification or raises, gets one warning naming
it and is skipped; so does each component it registers without a name, without the method
it must have, with a malformed ``options`` declaration, or (models) that is not a
:class:`~daclip_plugin.weights.ModelSpec` (see :func:`require`). When two plugins register the same name, a
built-in one wins, else the one loaded first; the other is named in a warning. Discovery is
thread-safe: the first use in any thread loads the plugins once.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

import pluggy

from . import hookspecs
from .options import RESERVED, Option

ENTRY_POINT_GROUP = "daclip_plugin"
ENV_ALLOWED_PLUGINS = "DACLIP_PLUGINS"
BUILTIN_PLUGINS = ("daclip_plugin.hooks.builtin", "daclip_plugin.hooks.models")

_manager: pluggy.PluginManager | None = None
_registries: dict[str, dict[str, "Registered"]] = {}
_lock = threading.RLock()  # one discovery, whichever threads ask at once


def _allowed_external_plugins() -> set[str] | None:
    """Names allowed by ``DACLIP_PLUGINS``; ``None`` means every installed plugin."""
    value = os.environ.get(ENV_ALLOWED_PLUGINS)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _load_external_plugins(pm: pluggy.PluginManager) -> None:
    allowed = _allowed_external_plugins()
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and entry_point.name not in allowed:
            continue
        if pm.get_plugin(entry_point.name) is not None or pm.is_blocked(entry_point.name):
            continue
        try:
            plugin = entry_point.load()
            pm.register(plugin, name=entry_point.name)
        except (Exception, SystemExit) as exc:  # a broken plugin must not break the tool
            _warn(f"could not load plugin {entry_point.name!r} ({entry_point.value}): {type(exc).__name__}: {exc}")


def _warn(message: str) -> None:
    warnings.warn(f"daclip-plugin: {' '.join(message.split())}; it is skipped", RuntimeWarning, stacklevel=3)


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the shared plugin manager, creating it on first use."""
    global _manager
    with _lock:
        if _manager is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
            pm.add_hookspecs(hookspecs)
            for module_name in BUILTIN_PLUGINS:
                pm.register(importlib.import_module(module_name), name=module_name)
            _load_external_plugins(pm)
            _manager = pm
        return _manager


def reload_plugins() -> pluggy.PluginManager:
    """Forget the current plugin manager and its components, and discover plugins again."""
    global _manager
    with _lock:
        _manager = None
        _registries.clear()
        return get_plugin_manager()


@dataclass(frozen=True)
class Registered:
    """A component together with the name of the plugin that registered it."""

    component: object
    plugin: str


def require(hook_name: str, problem: Callable[[object], Optional[str]]) -> None:
    """Check every component registered through ``hook_name`` with ``problem`` (what is wrong with it,
    or ``None``): those with a problem are skipped with a warning. How :mod:`daclip_plugin.weights`
    admits only its ``ModelSpec`` objects, without this module importing it."""
    with _lock:
        _checks[hook_name] = problem
        _registries.pop(hook_name, None)


def _collect(hook_name: str) -> dict[str, Registered]:
    """Call one registration hook of every plugin, once per plugin manager, in the order they were
    loaded (built-ins first); components with a problem (see :func:`require`) are skipped with a warning."""
    problem = _checks.get(hook_name, lambda component: None)
    with _lock:
        if hook_name not in _registries:
            found: dict[str, Registered] = {}
            for impl in getattr(get_plugin_manager().hook, hook_name).get_hookimpls():
                offered: list[object] = []
                try:
                    impl.function(offered.append)
                except (Exception, SystemExit) as exc:
                    _warn(f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}")
                    continue
                for component in offered:
                    trouble = problem(component)
                    if trouble is not None:
                        _warn(f"plugin {impl.plugin_name!r} ({hook_name}) registered {component!r}, which {trouble}")
                        continue
                    _add(found, component, impl.plugin_name, hook_name)
            _registries[hook_name] = found
        return dict(_registries[hook_name])


def _component_problem(method_names: tuple[str, ...]) -> Callable[[object], Optional[str]]:
    """What is wrong with a restorer or classifier that must have one of ``method_names`` (``None``: nothing)."""

    def problem(component: object) -> Optional[str]:
        if not any(callable(getattr(component, name, None)) for name in method_names):
            return f"has no {' or '.join(method_names)} method"
        declared = getattr(component, "options", None)
        if declared is None:
            return None
        if not isinstance(declared, Sequence) or isinstance(declared, str):
            return f"declares its options as {type(declared).__name__}, not a tuple of daclip_plugin.options.Option"
        names = [getattr(option, "name", None) for option in declared]
        if not all(isinstance(option, Option) for option in declared):
            return "declares options that are not daclip_plugin.options.Option objects"
        clashes = sorted({name for name in names if names.count(name) > 1 or name in RESERVED})
        if clashes or not all(isinstance(name, str) and name.isidentifier() for name in names):
            return f"declares option names that are repeated, reserved or not identifiers ({', '.join(clashes) or names})"
        return None

    return problem


def _add(found: dict[str, Registered], component: object, plugin: str, hook_name: str) -> None:
    name = getattr(component, "name", "")
    if not isinstance(name, str) or not name:
        _warn(f"plugin {plugin!r} ({hook_name}) registered {component!r} without a name")
        return
    if name in found:
        kept, dropped = found[name].plugin, plugin
        if plugin in BUILTIN_PLUGINS and kept not in BUILTIN_PLUGINS:
            kept, dropped = plugin, found[name].plugin
            found[name] = Registered(component, plugin)
        warnings.warn(
            f"daclip-plugin: {name!r} is registered twice, by plugin {kept!r} and by plugin {dropped!r}; "
            f"the one of {kept!r} is used (uninstall the other, or choose plugins with {ENV_ALLOWED_PLUGINS})",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    found[name] = Registered(component, plugin)


_checks: dict[str, Callable[[object], Optional[str]]] = {
    "register_restorers": _component_problem(("restore", "iter_restore")),
    "register_classifiers": _component_problem(("classify",)),
}


def restorers() -> dict[str, Registered]:
    """Every registered restorer by name."""
    return _collect("register_restorers")


def classifiers() -> dict[str, Registered]:
    """Every registered classifier by name."""
    return _collect("register_classifiers")


def models() -> dict[str, Registered]:
    """Every registered model specification by name."""
    return _collect("register_models")
