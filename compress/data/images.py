"""Safe image loading: every file Pillow can decode becomes a ``uint8`` array; anything else a :class:`DataError`.

Contract of :func:`load_image`:

* The whole file is decoded up front, so a truncated file fails here (not later, half-way through an
  evaluation) with a message naming the file.
* EXIF orientation is applied (:func:`PIL.ImageOps.exif_transpose`), so a photo that a viewer shows
  upright is returned upright.
* Transparency (RGBA, LA, palette with a transparent index) is **composited over white**, which is how
  a viewer shows it; the alpha channel is not simply dropped (that would expose whatever colour the
  transparent pixels happen to store).
* 16-bit samples are scaled to 8 bits with ``round(v / 257)`` (65535 -> 255 exactly).
* Palette images are expanded through their palette; CMYK, YCbCr, LAB and HSV are converted to RGB
  with Pillow's conversions (ICC profiles are not applied).
* The result is ``(H, W, 3)`` for colour and ``(H, W)`` for gray; see ``mode``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from compress.errors import DataError

U8 = NDArray[np.uint8]

_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


class LoadMode(StrEnum):
    """What :func:`load_image` returns."""

    RGB = "rgb"
    """Always ``(H, W, 3)``; gray images are replicated into three channels."""
    GRAY = "gray"
    """Always ``(H, W)``; colour images go through Pillow's ``convert('L')`` (full-range BT.601 luma).

    This is *not* MATLAB ``rgb2ycbcr`` luma: the Y-channel protocols load colour images as RGB and
    convert them themselves (:func:`compress.data.jpeg.rgb_to_y_u8`)."""
    ANY = "any"
    """The file's own colour: ``(H, W)`` for gray files, ``(H, W, 3)`` for everything else."""


def _parse_mode(mode: str | LoadMode) -> LoadMode:
    try:
        return LoadMode(mode)
    except ValueError:
        valid = ", ".join(m.value for m in LoadMode)
        raise DataError(f"unknown image load mode {mode!r}; valid: {valid}") from None


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite an image with transparency over white; return RGB or L."""
    gray = img.mode in ("LA", "La")
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba).convert("RGB")
    return flat.convert("L") if gray else flat


def _sixteen_to_u8(arr: NDArray[np.generic]) -> U8:
    """Scale 16-bit samples to 8 bits: ``round(v / 257)``, clipped to 0..255."""
    x = np.asarray(arr, dtype=np.float64)
    return np.clip(np.round(x / 257.0), 0, 255).astype(np.uint8)


def _to_array(img: Image.Image) -> U8:
    """Decoded Pillow image -> ``(H, W)`` or ``(H, W, 3)`` uint8, colour preserved."""
    mode = img.mode
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA") if has_alpha else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "RGBa", "LA", "La"):
        img = _flatten_alpha(img)
        mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _sixteen_to_u8(np.asarray(img))
    if mode == "I":
        # 32-bit integer mode holds 16-bit PNG/TIFF data (0..65535); 8-bit content stays as it is.
        arr = np.asarray(img, dtype=np.int64)
        return _sixteen_to_u8(arr) if arr.max(initial=0) > 255 else np.clip(arr, 0, 255).astype(np.uint8)
    if mode == "F":
        # Float images: [0, 1] data is scaled to 0..255; anything else is taken to be 0..255 already.
        arr_f = np.asarray(img, dtype=np.float64)
        if arr_f.size and np.nanmax(arr_f) <= 1.0:
            arr_f = arr_f * 255.0
        return np.clip(np.round(np.nan_to_num(arr_f)), 0, 255).astype(np.uint8)
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if mode != "RGB":  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def load_image(path: str | Path, mode: str | LoadMode = LoadMode.ANY) -> U8:
    """Read an image file into a ``uint8`` array, whatever Pillow can decode, never a traceback.

    Args:
        path: the image file.
        mode: ``'rgb'`` -> ``(H, W, 3)``, ``'gray'`` -> ``(H, W)`` (Pillow ``L`` luma for colour
            files), ``'any'`` -> the file's own colour (see :class:`LoadMode`).

    Returns:
        A C-contiguous ``uint8`` array. Transparency is composited over white; 16-bit data is scaled
        to 8 bits; EXIF orientation is applied.

    Raises:
        DataError: the file is missing, truncated, corrupt, not an image, or too large for Pillow's
            decompression-bomb guard. The message names the file.
    """
    p = Path(path)
    load_mode = _parse_mode(mode)
    if not p.exists():
        raise DataError(f"{p}: no such image file")
    if not p.is_file():
        raise DataError(f"{p}: not a file")
    try:
        with Image.open(p) as im:
            im.load()  # decode everything now: a truncated file raises here
            img = ImageOps.exif_transpose(im)
            if img is None:  # only when in_place=True; keeps the type checker honest
                img = im
            arr = _to_array(img)
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"{p}: image too large to decode safely ({exc})") from None
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            raise DataError(f"{p}: truncated image file ({msg})") from None
        raise DataError(f"{p}: cannot read image: {msg or type(exc).__name__}") from None
    except Exception as exc:  # Pillow plugins raise many kinds (SyntaxError, ValueError, struct.error...)
        raise DataError(f"{p}: cannot read image: {type(exc).__name__}: {exc}") from None
    if arr.ndim == 3 and load_mode is LoadMode.GRAY:
        arr = np.asarray(Image.fromarray(arr, mode="RGB").convert("L"), dtype=np.uint8)
    elif arr.ndim == 2 and load_mode is LoadMode.RGB:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.size == 0:
        raise DataError(f"{p}: image has no pixels")
    return np.ascontiguousarray(arr)
