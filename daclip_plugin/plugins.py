"""The plugin manager: built-in plugins plus those found through entry points.

Third-party packages declare an entry point in the ``daclip_plugin`` group::

    [project.entry-points.daclip_plugin]
    my_plugin = "my_package.daclip_hooks"

Set ``DACLIP_PLUGINS`` to a comma-separated list of entry-point names to load only
those; set it to an empty string to load no external plugin at all.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings
from dataclasses import dataclass
from typing import Callable

import pluggy

from . import hookspecs
from .errors import DuplicateNameError

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
        except Exception as exc:  # a broken plugin must not break the tool
            warnings.warn(
                f"daclip-plugin: could not load plugin {entry_point.name!r} "
                f"({entry_point.value}): {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        pm.register(plugin, name=entry_point.name)


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
    """Call one registration hook of every plugin, once per plugin manager."""
    if hook_name not in _registries:
        pm = get_plugin_manager()
        found: dict[str, Registered] = {}
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
            impl.function(_registrar(found, impl.plugin_name, hook_name))
        _registries[hook_name] = found
    return dict(_registries[hook_name])


def _registrar(found: dict[str, Registered], plugin: str, hook_name: str) -> Callable[[object], None]:
    def register(component: object) -> None:
        name = getattr(component, "name", "")
        if not isinstance(name, str) or not name:
            raise TypeError(f"plugin {plugin!r} ({hook_name}) registered {component!r} without a name")
        if name in found:
            raise DuplicateNameError(
                f"{name!r} is registered twice: by plugin {found[name].plugin!r} and by "
                f"plugin {plugin!r}; uninstall one of them or block it with "
                f"{ENV_ALLOWED_PLUGINS}"
            )
        found[name] = Registered(component, plugin)

    return register


def restorers() -> dict[str, Registered]:
    """Every registered restorer by name."""
    return _collect("register_restorers")


def classifiers() -> dict[str, Registered]:
    """Every registered classifier by name."""
    return _collect("register_classifiers")


def models() -> dict[str, Registered]:
    """Every registered model specification by name."""
    return _collect("register_models")
