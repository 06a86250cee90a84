"""DA-CLIP image restoration for Python, the command line and napari.

    >>> import daclip_plugin
    >>> daclip_plugin.classify(image)                # degradation probabilities
    >>> daclip_plugin.restore(image, restorer="daclip")

Restorers and classifiers come from plugins (see :mod:`daclip_plugin.hookspecs`).
"""

__version__ = "0.1.0"

from .api import classify, get_classifier, get_restorer, iter_restore, list_classifiers, list_restorers, restore
from .errors import Cancelled, DaclipError
from .hookspecs import hookimpl
from .interfaces import Classifier, Restorer
from .steps import Step


def __getattr__(name: str):
    """``prepare_unet`` on first use, so that ``import daclip_plugin`` stays free of torch."""
    if name == "prepare_unet":
        from .engine.unet_call import prepare_unet

        return prepare_unet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Cancelled",
    "Classifier",
    "DaclipError",
    "Restorer",
    "Step",
    "__version__",
    "classify",
    "get_classifier",
    "get_restorer",
    "hookimpl",
    "iter_restore",
    "list_classifiers",
    "list_restorers",
    "prepare_unet",
    "restore",
]
