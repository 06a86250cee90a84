"""The MaRS sampler under its documented path (it lives in :mod:`daclip_plugin.engine.mars`)."""

from .engine.mars import sample_mars

__all__ = ["sample_mars"]
