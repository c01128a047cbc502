"""One training data pipeline for every framework: decode (Pillow), augment and batch in numpy.

Nothing here keeps random state. The order of epoch ``e`` is a permutation drawn from the seed
sequence ``(seed, e)`` and the augmentation of image ``j`` in that epoch from ``(seed, e, j)``,
so the same seed gives the same batches in every framework, on every rank, and after a resume
from any step, with no generator state to save.

``augment="none"``: short side resized to the image size, center crop (the evaluation view).
``augment="standard"``: the Inception crop (a random area of 8-100% of the image, aspect ratio
3/4-4/3, resized to the image size) and a horizontal flip with probability 1/2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UnreadableImageError, UsageError
from .evaluate import IMAGE_SUFFIXES, center_crop, normalize
from .spec import Preprocessing

AUGMENTS = ("none", "standard")


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[Path, int], ...]

    def __len__(self) -> int:
        return len(self.samples)


def scan(root: str | Path, option: str = "--data") -> ImageFolder:
    """The class-per-folder tree at ``root``; every problem is one line naming what is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{option} {root}: no such directory (expected DIR/<class>/<image>)")
    try:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    except OSError as exc:
        raise UsageError(f"{option} {root}: cannot read it ({exc.strerror})") from None
    if not classes:
        raise UsageError(f"{option} {root}: no class folders (expected DIR/<class>/<image>)")
    samples = []
    for label, name in enumerate(classes):
        images = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise UsageError(f"{option} {root}: class folder {name!r} holds no images "
                             f"({', '.join(sorted(IMAGE_SUFFIXES))}); remove it or add images")
        samples += [(p, label) for p in images]
    return ImageFolder(root, tuple(classes), tuple(samples))


def check_images(folder: ImageFolder) -> None:
    """Every image opens and decodes; the first that does not is named (before any training)."""
    from PIL import Image

    for path, _ in folder.samples:
        try:
            with Image.open(path) as img:
                img.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise UnreadableImageError(f"{path}: not a readable image ({type(exc).__name__}); "
                                       "remove or replace it") from None


def _inception_crop(img, size: int, rng: np.random.Generator):
    from PIL import Image

    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            break
    else:  # no crop of that shape fits: the central square-ish crop, as torchvision falls back
        cw = ch = min(w, h)
        left, top = (w - cw) // 2, (h - ch) // 2
    out = img.resize((size, size), Image.BILINEAR, box=(left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(out, dtype=np.uint8)


def _augmented(path: Path, size: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return _inception_crop(img.convert("RGB"), size, rng)
    except (OSError, ValueError) as exc:
        raise UnreadableImageError(f"{path}: not a readable image ({type(exc).__name__}); remove or replace it") \
            from None


class Batches:
    """Batches of ``folder`` for epoch e, step i: float32 NCHW images and int64 labels. Training
    batches are full (the last, partial one of an epoch is dropped, as BatchNorm wants)."""

    def __init__(self, folder: ImageFolder, pre: Preprocessing, *, image_size: int, batch_size: int,
                 augment: str = "none", seed: int = 0, shuffle: bool = True, drop_last: bool = True):
        if augment not in AUGMENTS:
            raise UsageError(f"unknown --augment {augment!r}; choose one of: {', '.join(AUGMENTS)}")
        if drop_last and len(folder) < batch_size:
            raise UsageError(f"{folder.root}: {len(folder)} images, fewer than one batch of {batch_size}; "
                             "lower --batch-size")
        self.folder, self.batch_size, self.augment, self.seed = folder, batch_size, augment, seed
        self.shuffle, self.drop_last, self.image_size = shuffle, drop_last, image_size
        self.view = Preprocessing(input_size=image_size, crop_pct=1.0, interpolation=pre.interpolation,
                                  mean=pre.mean, std=pre.std)

    @property
    def steps_per_epoch(self) -> int:
        n, b = len(self.folder), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int) -> np.ndarray:
        n = len(self.folder)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.order(epoch)[step * self.batch_size:(step + 1) * self.batch_size]
        images = np.empty((len(chosen), 3, self.image_size, self.image_size), np.float32)
        labels = np.empty(len(chosen), np.int64)
        for row, j in enumerate(chosen):
            path, labels[row] = self.folder.samples[j]
            if self.augment == "standard":
                crop = _augmented(path, self.image_size, np.random.default_rng([self.seed, epoch, int(j)]))
            else:
                crop = center_crop(path, self.view)
            images[row] = normalize(crop, self.view)
        return images, labels
