"""Write the bundled sample images (``daclip_plugin/samples/*.png``) from their recipes.

Each sample of :data:`daclip_plugin.data.samples.SAMPLES` is the centre square of a held-out
scikit-image photograph, resized (bicubic) to its size, quantised to 8 bits and degraded with
the seeded generator of its type. Same code, same files::

    python scripts/make_samples.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from daclip_plugin import imagefiles
from daclip_plugin.data import degradations, sources
from daclip_plugin.data.samples import SAMPLES, sample_dir


def clean(source: str, size: int) -> np.ndarray:
    if source not in sources.EVAL_IMAGES:
        raise SystemExit(f"{source!r} is not a held-out image ({', '.join(sources.EVAL_IMAGES)})")
    image = np.rint(sources.clean_images("eval")[source] * 255).astype(np.uint8)
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(image[top : top + side, left : left + side])
    return np.asarray(square.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else sample_dir()
    for sample in SAMPLES.values():
        degraded = degradations.degrade(clean(sample.source, sample.size), sample.degradation, sample.seed)
        path = imagefiles.write_image(out / sample.file, np.rint(degraded * 255).astype(np.uint8))
        print(
            f"{path}  {path.stat().st_size / 1000:.0f} kB  "
            f"({sample.degradation} {sample.source} {sample.size}px seed {sample.seed})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
