"""Hook specifications: what a daclip-plugin plugin can provide.

A plugin is any module or object with functions decorated by :data:`hookimpl`.
Each hook receives a ``register`` callback; call it once per component::

    from daclip_plugin import hookimpl

    @hookimpl
    def register_restorers(register):
        register(MyRestorer())

The built-in DA-CLIP components are registered exactly the same way.
"""

from pluggy import HookimplMarker, HookspecMarker

PROJECT_NAME = "daclip_plugin"

hookspec = HookspecMarker(PROJECT_NAME)
hookimpl = HookimplMarker(PROJECT_NAME)


@hookspec
def register_restorers(register):
    """Register image restorers: call ``register(restorer)`` with :class:`~daclip_plugin.interfaces.Restorer` instances."""


@hookspec
def register_classifiers(register):
    """Register degradation classifiers: call ``register(classifier)`` with
    :class:`~daclip_plugin.interfaces.Classifier` instances."""


@hookspec
def register_models(register):
    """Register named model weights: call ``register(model_spec)`` with model specifications."""
