"""The napari dock widget and the console functions (see :mod:`daclip_plugin.gui`).

    from daclip_plugin.widget import restore_layer, start_restore, classify_layer
"""

from .gui.console import classify_layer, restore_layer, start_restore
from .gui.layers import RESULT_SUFFIX, current_index, layer_source, result_metadata, result_name, write_result
from .gui.widget import DaclipWidget

__all__ = [
    "DaclipWidget",
    "RESULT_SUFFIX",
    "classify_layer",
    "current_index",
    "layer_source",
    "restore_layer",
    "result_metadata",
    "result_name",
    "start_restore",
    "write_result",
]
