"""Train the small embedded DA-CLIP models: a DA-CLIP, an IR-SDE UNet and a direct restorer.

Imports the engine, the networks, weights, data and evaluation; only the CLI imports it.

Three stages, run in this order (``daclip train STAGE ...``, or :func:`train`):

``daclip``
    A tiny DA-CLIP from scratch (text tower, image tower and controller). Each sample is a
    random crop of a clean training image (random size, scale, flip/rotation and colours), a
    random degradation type with random parameters (:mod:`daclip_plugin.data.degradations`),
    and the CLIP preprocessing of inference (:func:`~daclip_plugin.nn.daclip.preprocess`
    on the uint8 crops). Loss: cross-entropy of the controller's degradation features against
    the text features of the ten degradation names (learned logit scale), plus a cosine loss
    pulling the content features of the degraded crop (with control) to the stop-gradient
    features of the clean crop (plain image tower), plus a symmetric InfoNCE term between
    the two across the batch so that content features do not collapse.
``irsde``
    The conditional UNet with the official IR-SDE objective (max_sigma 50, T 100, cosine,
    eps 0.005): ``t`` uniform in 1..T, ``x_t`` drawn from the forward process around
    ``(gt, mu=lq)``, the UNet predicts the noise, and the L1 distance between the mean of
    the reverse-SDE step it implies and the optimal reverse step (``posterior_mean``) is
    minimised. Conditioned on the frozen DA-CLIP's contexts of the low-quality image.
``direct``
    The same UNet architecture and contexts, trained as a one-call restorer with an L1 loss
    on the restored image (convention in :mod:`daclip_plugin.engine.direct`).

The UNet stages degrade a *context crop* (the same random sizes as the DA-CLIP stage),
compute the DA-CLIP contexts from all of it (as inference does from the whole image) and
train on a random ``patch`` x ``patch`` window of it; the official code computes them
from the training patch itself.

Every sample is a pure function of ``(seed, stage, sample index)``, drawn in DataLoader
workers: the data stream does not depend on the number of workers and resumes exactly.
A stage stops after ``steps`` steps or ``max_minutes`` of training (counted across resumes,
like ``steps``), whichever comes first; the learning rate follows a linear warm-up and a
cosine decay over that horizon. ``init`` starts a stage from saved weights instead of
from scratch (:func:`initialise_from`; fine-tuning, recorded in the provenance). It
checkpoints every ``checkpoint_every`` steps (and at the end) to ``<out>/<stage>_state.pt``
(``resume=True`` continues from it), appends loss lines to ``<out>/train_log.jsonl``,
writes the model in the official layout with
:func:`checkpoints.save_daclip` / :func:`checkpoints.save_unet` (float16 by default: the
three files fit in 25 MB), evaluates it on held-out images and records everything in
``<out>/provenance.json``.

The package: :mod:`.config` (what a stage is told), :mod:`.stages` (each stage's model, loss,
evaluation and provenance, one class each), :mod:`.data` (samples), :mod:`.objectives`
(losses), :mod:`.models` (building and initialising), :mod:`.evaluate` (held-out scores),
:mod:`.records` (files, log, provenance) and :mod:`.loop` (:func:`train`, the same for every
stage).
"""

from ..models.tiny import TINY_CLIP_CFG, TINY_UNET_CFG
from .config import FILE_NAMES, LOG_NAME, PRESETS, PROVENANCE_NAME, STAGES, TrainConfig
from .data import SYNTHETIC_IMAGES, DegradationSamples, batches, jitter_colours, parse_weights, random_crop, train_images
from .evaluate import batch_contexts, eval_pairs, evaluate_daclip, evaluate_restorer, evaluate_saved_unet
from .loop import main_from_args, train
from .models import autocast_factory, build_daclip, initialise_from, reloaded_daclip, resample_patch_kernel
from .objectives import DIRECT_LOSSES, daclip_losses, direct_loss, irsde_loss
from .records import save_model, weights_record, write_provenance
from .stages import DaclipStage, DirectStage, IRSDEStage, Stage, stage_for

__all__ = [
    "DIRECT_LOSSES", "FILE_NAMES", "LOG_NAME", "PRESETS", "PROVENANCE_NAME", "STAGES", "SYNTHETIC_IMAGES",
    "TINY_CLIP_CFG", "TINY_UNET_CFG", "DaclipStage", "DegradationSamples", "DirectStage", "IRSDEStage", "Stage",
    "TrainConfig", "autocast_factory", "batch_contexts", "batches", "build_daclip", "daclip_losses", "direct_loss",
    "eval_pairs", "evaluate_daclip", "evaluate_restorer", "evaluate_saved_unet", "initialise_from", "irsde_loss",
    "jitter_colours", "main_from_args", "parse_weights", "random_crop", "reloaded_daclip", "resample_patch_kernel",
    "save_model", "stage_for", "train", "train_images", "weights_record", "write_provenance",
]
