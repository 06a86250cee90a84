"""The napari side: layers in and out, the console functions, the dock widget.

The only subpackage that imports napari, magicgui or Qt; nothing in the engine imports it.
"""
