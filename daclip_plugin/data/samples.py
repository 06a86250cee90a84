"""Sample degraded images bundled with the package, and napari's sample-data commands.

The PNGs in ``daclip_plugin/samples/`` are held-out photographs of scikit-image
(:data:`daclip_plugin.data.sources.EVAL_IMAGES`, never used for training), centre-cropped,
resized and degraded with the seeded generators of :mod:`daclip_plugin.data.degradations`
(``scripts/make_samples.py`` writes them again from :data:`SAMPLES`).

>>> from daclip_plugin.data.samples import sample_paths, sample_images
>>> sorted(sample_paths())        # doctest: +SKIP
['hazy', 'low-light', 'motion-blurry', 'noisy', 'rainy']

No Qt or napari import here: napari calls the ``*_sample`` functions (see ``napari.yaml``),
which return ``[(data, {"name": ...})]`` layer data.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from ..errors import OutputError, UnknownNameError

SAMPLE_PACKAGE = "daclip_plugin"
SAMPLE_FOLDER = "samples"


@dataclass(frozen=True)
class Sample:
    """One bundled sample: its file and how it was made."""

    file: str
    degradation: str
    source: str
    """The clean scikit-image photograph (``skimage.data.<source>``)."""
    size: int
    seed: int


SAMPLES: dict[str, Sample] = {
    "noisy": Sample("noisy.png", "noisy", "coffee", 224, 11),
    "hazy": Sample("hazy.png", "hazy", "rocket", 256, 12),
    "rainy": Sample("rainy.png", "rainy", "camera", 256, 13),
    "low-light": Sample("low-light.png", "low-light", "rocket", 224, 14),
    "motion-blurry": Sample("motion-blurry.png", "motion-blurry", "coffee", 256, 15),
}
"""The bundled samples by name (the name is also the degradation type)."""


def sample_dir() -> Path:
    """The folder of the bundled sample PNGs inside the installed package."""
    import importlib.resources

    return Path(str(importlib.resources.files(SAMPLE_PACKAGE).joinpath(SAMPLE_FOLDER)))


def sample_paths() -> dict[str, Path]:
    """The path of each bundled sample image, by name (see :data:`SAMPLES`)."""
    folder = sample_dir()
    return {name: folder / sample.file for name, sample in SAMPLES.items()}


def sample_image(name: str) -> np.ndarray:
    """One bundled sample as a ``uint8`` ``(H, W, 3)`` RGB array."""
    from .. import imagefiles

    if name not in SAMPLES:
        raise UnknownNameError(f"unknown sample {name!r}; available: {', '.join(SAMPLES)}")
    return imagefiles.read_image(sample_paths()[name])


def sample_images() -> dict[str, np.ndarray]:
    """Every bundled sample as a ``uint8`` RGB array, by name."""
    return {name: sample_image(name) for name in SAMPLES}


def copy_samples(folder: Union[str, Path], *, overwrite: bool = False) -> list[Path]:
    """Copy the bundled sample PNGs into ``folder`` (created if needed); return the new paths.

    A file of the same name that differs from the sample is refused (nothing is copied)
    unless ``overwrite``; an identical one is left as it is.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file: give a folder to copy the samples into")
    pairs = [(path, folder / path.name) for path in sample_paths().values()]
    here = {target for source, target in pairs if _same_bytes(source, target)}  # already copied: left as they are
    taken = [target for _, target in pairs if target.exists() and target not in here]
    if taken and not overwrite:
        raise OutputError(
            f"{', '.join(map(str, taken))} already exist(s) and differ from the samples: "
            "use --overwrite to replace them, or choose another folder"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return [target if target in here else Path(shutil.copyfile(source, target)) for source, target in pairs]
    except OSError as exc:
        raise OutputError(f"cannot copy the samples into {folder}: {exc.strerror or exc}") from exc


def _same_bytes(first: Path, second: Path) -> bool:
    return second.is_file() and first.read_bytes() == second.read_bytes()


# ------------------------------------------------------------------------ napari sample data


def napari_sample(name: str) -> list[tuple]:
    """napari layer data of one sample: ``[(rgb_uint8, {"name": ..., "rgb": True})]``."""
    return [(sample_image(name), {"name": f"{name} (DA-CLIP sample)", "rgb": True})]


def noisy_sample() -> list[tuple]:
    """napari sample: a noisy photograph."""
    return napari_sample("noisy")


def hazy_sample() -> list[tuple]:
    """napari sample: a hazy photograph."""
    return napari_sample("hazy")


def rainy_sample() -> list[tuple]:
    """napari sample: a rainy photograph."""
    return napari_sample("rainy")


def low_light_sample() -> list[tuple]:
    """napari sample: a low-light photograph."""
    return napari_sample("low-light")


def motion_blurry_sample() -> list[tuple]:
    """napari sample: a motion-blurred photograph."""
    return napari_sample("motion-blurry")


#: The napari command function of each sample (``napari.yaml`` names them).
NAPARI_COMMANDS = {
    "noisy": noisy_sample,
    "hazy": hazy_sample,
    "rainy": rainy_sample,
    "low-light": low_light_sample,
    "motion-blurry": motion_blurry_sample,
}
