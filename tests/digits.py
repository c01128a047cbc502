"""scikit-learn's handwritten digits (1797 images, 8x8, ten classes: real data no one here
wrote) as train/val ImageFolders of PNG files, upsampled to 32 px."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_digits(root: Path, size: int = 32, val_count: int = 300, seed: int = 0) -> tuple[Path, Path]:
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.images))
    for split, indices in (("train", order[val_count:]), ("val", order[:val_count])):
        for i in indices:
            folder = root / split / f"digit{data.target[i]}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (data.images[i] / 16.0 * 255).astype(np.uint8)
            Image.fromarray(pixels).convert("RGB").resize((size, size), Image.BILINEAR).save(folder / f"{i:04d}.png")
    return root / "train", root / "val"
