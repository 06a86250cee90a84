"""Restoration engine: IR-SDE and MaRS samplers, tiling, the pipelines, device and precision policy.

Imports :mod:`daclip_plugin.nn`, :mod:`daclip_plugin.weights` and the core modules; never
``training`` or ``gui``.
"""
