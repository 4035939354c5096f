"""Training patches: decode each image once, compress once, sample many aligned crops.

Two pipelines:

* :class:`PatchBatches` (the fast one, default). Every training image is decoded once and, for each
  augmentation scale, JPEG-compressed once as a whole image (as evaluation does). A batch is a set of
  crops whose origin is aligned to the JPEG grid (16 px for 4:2:0 colour, 8 for gray), plus a random
  dihedral transform (rot90 / flip) applied to both clean and compressed crop. Batch ``i`` is a pure
  function of ``(seed, i)``, so a run resumed at step ``i`` sees exactly the batches an uninterrupted
  run would, with any number of worker processes.
* :class:`ReferenceLoader`: the reference implementation's way (decode a whole image, rescale,
  rotate, crop one patch, JPEG-compress the patch), kept for the benchmark that measures the ratio.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from compress.data.jpeg import jpeg_roundtrip, rgb_to_y_u8
from compress.errors import DataError

SCALES = (1.0, 0.9, 0.8, 0.7, 0.6)  # the reference implementation's rescale augmentation
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files in ``folder`` (not recursive); DataError if none."""
    p = Path(folder)
    if not p.is_dir():
        raise DataError(f"{p}: image folder not found")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise DataError(f"{p}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    return files


def read_rgb(path: Path) -> NDArray[np.uint8]:
    """Decode an image to uint8 RGB (EXIF orientation applied); DataError on a bad file."""
    from compress.data.images import load_image

    return load_image(path, mode="rgb")


@dataclass(frozen=True)
class PatchConfig:
    """How training pairs are made."""

    patch_size: int = 48
    batch_size: int = 16
    qualities: tuple[int, ...] = (10,)
    color: str = "rgb"
    augment: bool = True
    seed: int = 123


class PatchBatches(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Map-style dataset whose item ``i`` is the whole batch for training step ``i``.

    Use with ``DataLoader(ds, batch_size=None, sampler=range(start, stop), num_workers=k)``.
    """

    def __init__(self, images: Sequence[NDArray[np.uint8]], cfg: PatchConfig) -> None:
        if not images:
            raise DataError("no training images")
        self.cfg = cfg
        self.align = 16 if cfg.color == "rgb" else 8
        scales = SCALES if cfg.augment else (1.0,)
        self.pairs: list[tuple[NDArray[np.uint8], dict[int, NDArray[np.uint8]]]] = []
        for img in images:
            base = rgb_to_y_u8(img) if cfg.color == "y" else img
            for s in scales:
                scaled = base if s == 1.0 else _rescale(base, s)
                h, w = scaled.shape[:2]
                if min(h, w) < cfg.patch_size:
                    continue
                jp = {q: jpeg_roundtrip(scaled, q) for q in cfg.qualities}
                self.pairs.append((scaled, jp))
        if not self.pairs:
            raise DataError(f"every training image is smaller than the patch size {cfg.patch_size}")

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, int(step)])
        p = cfg.patch_size
        c = 3 if cfg.color == "rgb" else 1
        xs = np.empty((cfg.batch_size, p, p, c), np.uint8)
        ys = np.empty_like(xs)
        for b in range(cfg.batch_size):
            clean, jps = self.pairs[int(rng.integers(len(self.pairs)))]
            q = cfg.qualities[int(rng.integers(len(cfg.qualities)))]
            comp = jps[q]
            h, w = clean.shape[:2]
            # origin on the JPEG grid, so every patch sees blocks where the evaluation sees them
            oy = int(rng.integers((h - p) // self.align + 1)) * self.align
            ox = int(rng.integers((w - p) // self.align + 1)) * self.align
            cy = clean[oy : oy + p, ox : ox + p].reshape(p, p, c)
            cx = comp[oy : oy + p, ox : ox + p].reshape(p, p, c)
            if cfg.augment:
                k = int(rng.integers(4))
                flip = bool(rng.integers(2))
                cy, cx = np.rot90(cy, k), np.rot90(cx, k)
                if flip:
                    cy, cx = cy[:, ::-1], cx[:, ::-1]
            ys[b], xs[b] = cy, cx
        x = torch.from_numpy(xs).permute(0, 3, 1, 2).float().div_(255.0)
        y = torch.from_numpy(ys).permute(0, 3, 1, 2).float().div_(255.0)
        return x.contiguous(), y.contiguous()


def _rescale(img: NDArray[np.uint8], s: float) -> NDArray[np.uint8]:
    h, w = img.shape[:2]
    pil = Image.fromarray(img)
    return np.asarray(pil.resize((int(w * s), int(h * s)), resample=Image.Resampling.BICUBIC))


def load_training_images(folder: str | Path, *, limit: int | None = None) -> list[NDArray[np.uint8]]:
    """Decode every image in ``folder`` once (RGB uint8)."""
    files = list_images(folder)
    if limit is not None:
        files = files[:limit]
    return [read_rgb(f) for f in files]


class ReferenceLoader(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """One patch per image decode, as the brief's reference ``dataset.py`` does (for benchmarks)."""

    def __init__(self, files: Sequence[Path], patch_size: int, quality: int, augment: bool = True) -> None:
        self.files = list(files)
        self.patch_size = patch_size
        self.quality = quality
        self.augment = augment

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        label = Image.open(self.files[idx]).convert("RGB")
        if self.augment:
            if random.random() <= 0.5:
                s = random.choice([0.9, 0.8, 0.7, 0.6])
                label = label.resize((int(label.width * s), int(label.height * s)), resample=Image.Resampling.BICUBIC)
            if random.random() <= 0.5:
                label = label.rotate(random.choice([90, 180, 270]), expand=True)
        p = self.patch_size
        x0 = random.randint(0, label.width - p)
        y0 = random.randint(0, label.height - p)
        label = label.crop((x0, y0, x0 + p, y0 + p))
        buf = io.BytesIO()
        label.save(buf, format="jpeg", quality=self.quality)
        inp = np.asarray(Image.open(buf), dtype=np.float32).transpose(2, 0, 1) / 255.0
        lab = np.asarray(label, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy(inp.copy()), torch.from_numpy(lab.copy())
