"""JPEG degradation and colour conversion, as the published protocols do it.

Contract: images are ``uint8`` numpy arrays, ``(H, W, 3)`` RGB or ``(H, W)`` gray. The JPEG codec is
Pillow's (libjpeg-turbo, standard IJG tables). RGB uses Pillow's default 4:2:0 chroma subsampling.
The Y channel is MATLAB ``rgb2ycbcr`` luma (BT.601 studio range) rounded to uint8, compressed as a
one-component grayscale JPEG; this reproduces the ARCNN/DnCNN/FBCNN JPEG baselines exactly.
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from compress.errors import ConfigError, ShapeError

U8 = NDArray[np.uint8]


def rgb_to_y(rgb: NDArray[np.generic]) -> NDArray[np.float64]:
    """MATLAB ``rgb2ycbcr`` luma of a uint8-range RGB array, unrounded, in [16, 235]."""
    x = np.asarray(rgb, dtype=np.float64)
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def rgb_to_y_u8(rgb: U8) -> U8:
    """MATLAB ``rgb2ycbcr`` luma rounded to uint8 (what ``rgb2ycbcr`` returns for uint8 input)."""
    return np.clip(np.round(rgb_to_y(rgb)), 0, 255).astype(np.uint8)


def jpeg_roundtrip(img: U8, quality: int, *, subsampling: int | None = None) -> U8:
    """Encode ``img`` as JPEG at ``quality`` with Pillow and decode it again.

    Args:
        img: uint8 ``(H, W)`` gray or ``(H, W, 3)`` RGB.
        quality: IJG quality 1..100.
        subsampling: Pillow's chroma subsampling (0 = 4:4:4, 2 = 4:2:0); None keeps Pillow's default (4:2:0).
    """
    if img.dtype != np.uint8:
        raise TypeError(f"jpeg_roundtrip needs uint8, got {img.dtype}")
    if not 1 <= quality <= 100:
        raise ConfigError(f"JPEG quality must be in 1..100, got {quality}")
    mode = "L" if img.ndim == 2 else "RGB"
    buf = io.BytesIO()
    kwargs: dict[str, int] = {"quality": int(quality)}
    if subsampling is not None and mode == "RGB":
        kwargs["subsampling"] = subsampling
    Image.fromarray(img, mode=mode).save(buf, format="JPEG", **kwargs)
    buf.seek(0)
    with Image.open(buf) as out:
        return np.asarray(out.convert(mode), dtype=np.uint8).copy()


def degrade(img: U8, quality: int, color: str) -> tuple[U8, U8]:
    """Return ``(reference, compressed)`` for colour ``'rgb'`` or ``'y'``.

    For ``'y'`` an RGB input is first turned into MATLAB luma; a gray input is used as it is.
    For ``'rgb'`` a gray input is an error (the RGB protocols need colour images).
    """
    if color == "y":
        ref = rgb_to_y_u8(img) if img.ndim == 3 else img
    elif color == "rgb":
        if img.ndim != 3:
            raise ShapeError("colour 'rgb' needs an RGB image, got a gray one")
        ref = img
    else:
        raise ConfigError(f"unknown colour {color!r}; valid: rgb, y")
    return ref, jpeg_roundtrip(ref, quality)
