"""Whole-image inference, optionally in overlapping tiles with bounded memory and no seams.

Models take float tensors in [0, 1] of shape ``(N, C, H, W)`` and return the same shape. Images here
are ``uint8`` ``(H, W)`` (one channel) or ``(H, W, C)``; results are float64 on the 0..255 scale,
unclipped and unrounded (rounding is the protocol's business, :mod:`compress.protocols`).

Tiling: the output is cut into cores of ``step`` pixels; each core is computed from an input window
that extends ``overlap`` pixels beyond it on every side (clamped at the image border), and only the
core of each result is kept. For a fully convolutional model whose receptive-field radius is at most
``overlap`` (ARCNN: 9 px, Fast ARCNN: 14 px), every kept pixel sees exactly what it sees in
whole-image inference, so the tiled result equals the whole-image result up to float rounding;
padding only ever happens at the true image border, as in whole-image inference. ``overlap`` is
rounded up and ``step`` down to multiples of 8, so every window starts on the 8x8 JPEG grid and on
the sampling grid of strided models (Fast ARCNN's stride 2).
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from compress.errors import ConfigError, ShapeError

ALIGN = 8
DEFAULT_OVERLAP = 32


def model_channels(model: nn.Module) -> int | None:
    """Input channels of ``model``: those of its first convolution, or None when it has none."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            return int(m.in_channels)
    return None


class Bf16Autocast(nn.Module):
    """``model`` run under bf16 autocast, returning float32; the input is made channels-last when
    ``channels_last`` (the model itself is not touched: make it channels-last too for the fast path).

    For scoring large float models on a CPU with native bf16 (AMX, AVX-512 BF16) or a GPU, where it is
    several times faster than fp32 (the full-size IDCN on a 488x328 input, channels-last, 2 AMX threads:
    10.8 s against 34.7 s). The output differs from fp32 by the bf16 rounding of every layer: measure the
    difference before comparing such scores with fp32 ones (cards record which precision scored them).
    """

    def __init__(self, model: nn.Module, *, channels_last: bool = True) -> None:
        super().__init__()
        self.model = model
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            y = self.model(x)
        return y.float().contiguous()


class Fp16(nn.Module):
    """``model`` with its weights and arithmetic in float16 (``model.half()``, in place), float32 in and out.

    How a float-trained student runs on an accelerator that executes FP16 (the ``tv-chip`` target): every
    weight and activation rounded to fp16, accumulation as the backend does it (oneDNN on CPU: fp32). Torch
    2.13 runs fp16 convolutions on CPU (fast on AVX512-FP16 / AMX CPUs, correct but slow elsewhere).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def with_precision(model: nn.Module, precision: str) -> nn.Module:
    """``model`` as it scores in ``precision``: ``fp32`` unchanged, ``bf16`` made channels-last (in place)
    and wrapped in :class:`Bf16Autocast`, ``fp16`` cast to float16 (in place) and wrapped in :class:`Fp16`.

    Raises:
        ConfigError: another precision (INT8 is an exported graph's business: ``--onnx``).
    """
    if precision == "fp32":
        return model
    if precision == "bf16":
        return Bf16Autocast(model.to(memory_format=torch.channels_last))  # type: ignore[call-overload]
    if precision == "fp16":
        return Fp16(model)
    raise ConfigError(f"a torch model scores in fp32, bf16 or fp16, not {precision!r} (INT8: export it and use "
                      "--onnx)")


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _tiles(size: int, step: int) -> list[tuple[int, int]]:
    return [(s, min(s + step, size)) for s in range(0, size, step)]


def tile_geometry(tile: int, overlap: int) -> tuple[int, int]:
    """``(step, overlap)`` actually used for ``tile`` / ``overlap``: overlap rounded up, step down to x8.

    Raises:
        ConfigError: a negative overlap, or a tile too small to keep a core of at least 8 pixels.
    """
    if overlap < 0:
        raise ConfigError(f"overlap must be >= 0, got {overlap}")
    ov = _round_up(overlap, ALIGN)
    step = (tile - 2 * ov) // ALIGN * ALIGN
    if step < ALIGN:
        raise ConfigError(
            f"tile {tile} is too small for overlap {overlap} (rounded to {ov}): need tile >= {2 * ov + ALIGN}"
        )
    return step, ov


def _run_tiled(model: nn.Module, x: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """Core-only tiled inference of ``x`` ``(1, C, H, W)``; see the module docstring."""
    _, _, h, w = x.shape
    step, ov = tile_geometry(tile, overlap)
    out: torch.Tensor | None = None
    for y0, y1 in _tiles(h, step):
        for x0, x1 in _tiles(w, step):
            wy0, wy1 = max(0, y0 - ov), min(h, y1 + ov)
            wx0, wx1 = max(0, x0 - ov), min(w, x1 + ov)
            y = model(x[:, :, wy0:wy1, wx0:wx1])
            if out is None:
                out = torch.empty((1, y.shape[1], h, w), dtype=y.dtype, device=y.device)
            out[:, :, y0:y1, x0:x1] = y[:, :, y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]
    assert out is not None  # h, w >= 1
    return out


def restore(
    model: nn.Module,
    img: NDArray[np.uint8],
    *,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    device: str | torch.device = "cpu",
) -> NDArray[np.float64]:
    """Run ``model`` on one image and return its output on the 0..255 scale, unclipped.

    Args:
        model: maps ``(N, C, H, W)`` in [0, 1] to the same shape. Moved to ``device`` and put in eval
            mode.
        img: ``uint8`` ``(H, W)`` for one-channel models or ``(H, W, C)``.
        tile: None = the whole image at once; otherwise the largest window side. Images no larger
            than ``tile`` on both sides run whole.
        overlap: context on each side of a tile's kept core; must be at least the model's
            receptive-field radius for seamless results (rounded up to a multiple of 8).
        device: torch device.

    Returns:
        float64, same shape as ``img``, values ``255 * model(img / 255)``.

    Raises:
        ShapeError: wrong dtype or shape, or a channel mismatch with the model (a CompressError and a ValueError).
        ConfigError: a tile too small for the overlap.
    """
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ShapeError(f"restore needs a uint8 image, got {a.dtype}")
    if a.ndim not in (2, 3):
        raise ShapeError(f"restore needs an (H, W) or (H, W, C) image, got shape {a.shape}")
    chw = a[None, :, :] if a.ndim == 2 else np.transpose(a, (2, 0, 1))
    want = model_channels(model)
    if want is not None and want != chw.shape[0]:
        raise ShapeError(f"model expects {want} input channel(s), the image has {chw.shape[0]}")
    model = model.to(device).eval()
    x = torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32) / np.float32(255.0))[None].to(device)
    with torch.inference_mode():
        if tile is None or (x.shape[2] <= tile and x.shape[3] <= tile):
            y = model(x)
        else:
            y = _run_tiled(model, x, tile, overlap)
    if tuple(y.shape) != tuple(x.shape):
        raise ShapeError(f"model changed the image shape: {tuple(x.shape)} -> {tuple(y.shape)}")
    out = y[0].detach().to("cpu", torch.float64).numpy() * 255.0
    return out[0] if a.ndim == 2 else np.ascontiguousarray(np.transpose(out, (1, 2, 0)))
