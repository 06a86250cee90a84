"""Benchmarks in the official layout, and evaluating any restorer and classifier on them.

Imports the public API and its options, ``data`` and the core image modules; never the engine directly.

The official DA-CLIP test sets are folders ``ROOT/<degradation>/LQ/*.png`` (degraded inputs)
and ``ROOT/<degradation>/GT/*.png`` (the clean images, same file names). :func:`make_benchmark`
writes one from the held-out clean photographs (:func:`daclip_plugin.data.sources.clean_images`
``("eval")``, never used for training) with the seeded degradation generators;
:func:`evaluate` runs a restorer and a classifier through the public API
(:func:`daclip_plugin.restore` / :func:`daclip_plugin.classify`), so any plugin's restorer
can be evaluated, and reports per degradation and on average:

* PSNR and SSIM (scikit-image ``peak_signal_noise_ratio`` and ``structural_similarity``,
  ``data_range=1``, ``channel_axis=-1``, on RGB in ``[0, 1]``) of the input and of the output
  against the clean image;
* the classification accuracy (top class == folder name) and a confusion matrix
  (rows: true degradation, columns: predicted class).

The averages are the means of the per-degradation values (each type weighs the same).
"""

from .benchmark import (
    IMAGE_SUFFIXES,
    MANIFEST,
    METRICS,
    BenchmarkLayoutError,
    find_pairs,
    make_benchmark,
)
from .metrics import psnr, ssim
from .report import AUTO, evaluate, format_report, write_json

__all__ = [
    "AUTO",
    "IMAGE_SUFFIXES",
    "MANIFEST",
    "METRICS",
    "BenchmarkLayoutError",
    "evaluate",
    "find_pairs",
    "format_report",
    "make_benchmark",
    "psnr",
    "ssim",
    "write_json",
]
