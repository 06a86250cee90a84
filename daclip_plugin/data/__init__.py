"""Image sources: the synthetic degradation generators (by name), clean photographs, bundled samples.

Imports :mod:`daclip_plugin.nn` (the prompt vocabulary), ``errors`` and ``imagefiles`` of the package.
"""
