"""Write a labelled contact sheet: one clean image and its 10 synthetic degradations.

Usage: python scripts/show_degradations.py OUT.png [--image coffee] [--size 256] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

from daclip_plugin.data.degradations import DEGRADATIONS, degrade
from daclip_plugin.data.sources import EVAL_IMAGES, TRAIN_IMAGES, clean_images

LABEL = 18  # pixels of caption under each tile
COLUMNS = 4


def contact_sheet(image: np.ndarray, seed: int) -> Image.Image:
    """Tile the clean ``image`` and each degradation of it, captioned, in a grid."""
    tiles = [("clean", image)] + [(name, degrade(image, name, seed)) for name in DEGRADATIONS]
    h, w = image.shape[:2]
    rows = -(-len(tiles) // COLUMNS)
    sheet = Image.new("RGB", (COLUMNS * w, rows * (h + LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (name, tile) in enumerate(tiles):
        x, y = (k % COLUMNS) * w, (k // COLUMNS) * (h + LABEL)
        sheet.paste(Image.fromarray(np.round(tile * 255).astype(np.uint8)), (x, y))
        draw.text((x + 4, y + h + 3), name, fill="black")
    return sheet


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG path to write")
    parser.add_argument("--image", default="coffee", choices=TRAIN_IMAGES + EVAL_IMAGES)
    parser.add_argument("--size", type=int, default=256, help="resize the longer side to this (0: keep)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    split = "eval" if args.image in EVAL_IMAGES else "train"
    image = clean_images(split)[args.image]
    if args.size:
        scale = args.size / max(image.shape[:2])
        shape = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        pixels = Image.fromarray(np.round(image * 255).astype(np.uint8)).resize(shape, Image.Resampling.LANCZOS)
        image = np.asarray(pixels, dtype=np.float32) / 255.0
    contact_sheet(image, args.seed).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
