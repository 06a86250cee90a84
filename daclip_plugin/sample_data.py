"""The bundled samples under their documented path (they live in :mod:`daclip_plugin.data.samples`)."""

from .data.samples import sample_image, sample_images, sample_paths

__all__ = ["sample_image", "sample_images", "sample_paths"]
