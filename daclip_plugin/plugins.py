"""The plugin manager: built-in plugins plus those found through entry points.

Third-party packages declare an entry point in the ``daclip_plugin`` group::

    [project.entry-points.daclip_plugin]
    my_plugin = "my_package.daclip_hooks"

Set ``DACLIP_PLUGINS`` to a comma-separated list of entry-point names to load only
those; set it to an empty string to load no external plugin at all.

A broken plugin never takes the others down: one that fails to import (even by calling
``sys.exit``), whose hook does not fit its specification or raises, or that registers a
component without a name, gets one warning naming it and is skipped. When two plugins
register the same name, a built-in one wins, else the first found; the other is named in a
warning.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings
from dataclasses import dataclass

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "daclip_plugin"
ENV_ALLOWED_PLUGINS = "DACLIP_PLUGINS"
BUILTIN_PLUGINS = ("daclip_plugin.hooks.builtin", "daclip_plugin.hooks.models")

_manager: pluggy.PluginManager | None = None
_registries: dict[str, dict[str, "Registered"]] = {}


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
    _manager = None
    _registries.clear()
    return get_plugin_manager()


@dataclass(frozen=True)
class Registered:
    """A component together with the name of the plugin that registered it."""

    component: object
    plugin: str


def _collect(hook_name: str) -> dict[str, Registered]:
    """Call one registration hook of every plugin, once per plugin manager (built-ins first)."""
    if hook_name not in _registries:
        pm = get_plugin_manager()
        found: dict[str, Registered] = {}
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
            offered: list[object] = []
            try:
                impl.function(offered.append)
            except (Exception, SystemExit) as exc:
                _warn(f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}")
                continue
            for component in offered:
                _add(found, component, impl.plugin_name, hook_name)
        _registries[hook_name] = found
    return dict(_registries[hook_name])


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


def restorers() -> dict[str, Registered]:
    """Every registered restorer by name."""
    return _collect("register_restorers")


def classifiers() -> dict[str, Registered]:
    """Every registered classifier by name."""
    return _collect("register_classifiers")


def models() -> dict[str, Registered]:
    """Every registered model specification by name."""
    return _collect("register_models")
