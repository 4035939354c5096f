"""Evaluation protocols: everything besides the model that decides a published number.

A protocol fixes the colour space the model sees, how the JPEG input is made, what happens to the
model output before scoring (rounding, clipping), the crop applied before every metric, and which
PSNR / SSIM / PSNR-B implementation is used. The named protocols reproduce published tables (see
``/work/shared/data/README.md``, section "Evaluation protocols"):

``arcnn-y``
    ARCNN paper (Dong et al. 2015). Y = MATLAB ``rgb2ycbcr`` luma rounded to uint8, JPEG-compressed
    as a one-component grayscale image. The model output is scored raw: **not clipped, not rounded**.
    PSNR over the whole image, SSIM with the 8x8 uniform 'valid' window, PSNR-B (block 8).
``fbcnn-y``
    DnCNN / FBCNN tables. Same Y input; the output is rounded and clipped to uint8; SSIM with the
    11x11 Gaussian window (sigma 1.5); PSNR-B (block 8).
``idcn-rgb``
    IDCN Table IV (RGB). Pillow JPEG of the full RGB image (default 4:2:0); reference and output are
    then cropped to a multiple of 8 (top-left kept) before every metric. PSNR over all three channels;
    SSIM = mean over R, G, B of the 8x8 uniform SSIM. The output is rounded and clipped to uint8, as
    published tables that save their results as image files do (for the JPEG baseline this changes
    nothing). PSNR-B: our convention is the mean over R, G, B of the per-channel PSNR-B; IDCN's RGB
    PSNR-B column (25.49 dB at q10, 27.82 at q20 on LIVE1) could not be reproduced by per-channel,
    joint or Y-channel PSNR-B, so that column is **not** comparable to ours.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from compress.data.jpeg import jpeg_roundtrip, rgb_to_y_u8
from compress.errors import DataError
from compress.metrics import METRICS, Metric
from compress.registry import Registry

U8 = NDArray[np.uint8]
F64 = NDArray[np.float64]


SCORE_NAMES = ("psnr", "ssim", "psnrb")


class Color(StrEnum):
    """The colour space a protocol feeds to the model and scores in."""

    Y = "y"
    """MATLAB ``rgb2ycbcr`` luma (BT.601 studio range), one channel."""
    RGB = "rgb"
    """Three channels, R, G, B."""

    @property
    def channels(self) -> int:
        """Channels of the model input under this colour."""
        return 1 if self is Color.Y else 3


@dataclass(frozen=True)
class Scores:
    """The three numbers of one image under one protocol."""

    psnr: float
    ssim: float
    psnrb: float


@dataclass(frozen=True)
class Protocol:
    """A named evaluation protocol.

    Attributes:
        name: registry name.
        color: what the model sees and what is scored.
        round_output: round and clip the model output to uint8 before scoring; otherwise it is scored
            raw (unclipped float).
        crop_multiple: crop reference and output to a multiple of this (top-left kept) before every
            metric; 1 = no crop. The JPEG is always made from the full image.
        psnr_metric: name in :data:`compress.metrics.METRICS`.
        ssim_metric: name in :data:`compress.metrics.METRICS`.
        psnrb_metric: name in :data:`compress.metrics.METRICS`.
        description: one line for listings.
        reference: where the protocol comes from.
    """

    name: str
    color: Color
    round_output: bool
    crop_multiple: int
    psnr_metric: str
    ssim_metric: str
    psnrb_metric: str
    description: str
    reference: str

    def reference_image(self, img: U8) -> U8:
        """The ground truth in this protocol's colour space (full size, not cropped).

        Raises:
            DataError: an RGB protocol given a gray image.
        """
        if self.color is Color.Y:
            return rgb_to_y_u8(img) if img.ndim == 3 else img
        if img.ndim != 3 or img.shape[2] != 3:
            kind = "a gray image" if img.ndim == 2 else f"an image of shape {img.shape}"
            raise DataError(
                f"protocol {self.name!r} needs RGB images, got {kind}; score gray images with a Y protocol "
                "(arcnn-y, fbcnn-y)"
            )
        return img

    def degrade(self, img: U8, quality: int) -> tuple[U8, U8]:
        """``(reference, jpeg)`` for an image as loaded: colour conversion, then JPEG of the full image."""
        ref = self.reference_image(img)
        return ref, jpeg_roundtrip(ref, quality)

    def finalize(self, out: NDArray[np.floating] | U8) -> F64:
        """What gets scored from a model output on the 0..255 scale (rounded+clipped or raw)."""
        x = np.asarray(out, dtype=np.float64)
        return np.clip(np.round(x), 0.0, 255.0) if self.round_output else x

    def crop(self, img: NDArray[np.generic]) -> NDArray[np.generic]:
        """Crop to a multiple of :attr:`crop_multiple` (top-left kept)."""
        m = self.crop_multiple
        if m <= 1:
            return img
        h, w = img.shape[0] - img.shape[0] % m, img.shape[1] - img.shape[1] % m
        return img[:h, :w]

    def metric(self, which: str) -> Metric:
        """The metric function for ``'psnr'``, ``'ssim'`` or ``'psnrb'``."""
        names = {"psnr": self.psnr_metric, "ssim": self.ssim_metric, "psnrb": self.psnrb_metric}
        return METRICS.get(names[which])

    def score(self, ref: U8, out: NDArray[np.generic], *, which: Collection[str] = SCORE_NAMES) -> Scores:
        """PSNR / SSIM / PSNR-B of ``out`` against ``ref`` (both full size; ``out`` already finalized).

        Args:
            ref: the reference from :meth:`degrade`.
            out: the finalized output (or the JPEG input itself).
            which: the scores to compute; the others are NaN (PSNR alone is much cheaper than SSIM).
        """
        unknown = set(which) - set(SCORE_NAMES)
        if unknown:
            raise ValueError(f"unknown score(s) {sorted(unknown)}; valid: {', '.join(SCORE_NAMES)}")
        r = self.crop(np.asarray(ref, dtype=np.float64))
        o = self.crop(np.asarray(out, dtype=np.float64))
        vals = {k: self.metric(k)(r, o, data_range=255.0) if k in which else math.nan for k in SCORE_NAMES}
        return Scores(**vals)


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def _add(p: Protocol) -> Protocol:
    PROTOCOLS.add(p.name, p)
    return p


ARCNN_Y = _add(
    Protocol(
        name="arcnn-y",
        color=Color.Y,
        round_output=False,
        crop_multiple=1,
        psnr_metric="psnr",
        ssim_metric="ssim_uniform8",
        psnrb_metric="psnrb",
        description="Y (MATLAB rgb2ycbcr), gray JPEG, raw output, PSNR / SSIM 8x8 uniform / PSNR-B",
        reference="Dong et al., ICCV 2015 (ARCNN), Tables on LIVE1",
    )
)
FBCNN_Y = _add(
    Protocol(
        name="fbcnn-y",
        color=Color.Y,
        round_output=True,
        crop_multiple=1,
        psnr_metric="psnr",
        ssim_metric="ssim_gaussian",
        psnrb_metric="psnrb",
        description="Y (MATLAB rgb2ycbcr), gray JPEG, uint8 output, PSNR / SSIM Gaussian 11x11 / PSNR-B",
        reference="Zhang et al. 2017 (DnCNN); Jiang et al., ICCV 2021 (FBCNN) grayscale table",
    )
)
IDCN_RGB = _add(
    Protocol(
        name="idcn-rgb",
        color=Color.RGB,
        round_output=True,
        crop_multiple=8,
        psnr_metric="psnr",
        ssim_metric="ssim_uniform8",
        psnrb_metric="psnrb",
        description="RGB, Pillow JPEG 4:2:0, crop to x8, uint8 output, PSNR / mean-RGB SSIM 8x8 / mean-RGB PSNR-B",
        reference="Zheng et al. 2019 (IDCN), Table IV; PSNR-B column convention not reproduced",
    )
)


def get_protocol(protocol: str | Protocol) -> Protocol:
    """A protocol by name (unknown names list the valid ones), or the protocol itself."""
    return protocol if isinstance(protocol, Protocol) else PROTOCOLS.get(protocol)
