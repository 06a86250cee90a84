"""The IR-SDE pipeline under its documented path (it lives in :mod:`daclip_plugin.engine.pipeline`)."""

from .engine.pipeline import DaclipPipeline, load_classifier, load_pipeline

__all__ = ["DaclipPipeline", "load_classifier", "load_pipeline"]
