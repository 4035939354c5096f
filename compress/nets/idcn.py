"""Implicit Dual-domain Convolutional Network (Zheng et al., IEEE TCSVT 2019), the brief's ``IDCN`` teacher.

Structure, following the paper and the authors' released Keras code (``zhenngbolun/IDCN``, ``model.py``)::

    f = ReLU(conv3x3(ReLU(conv5x5(x))))                      head, F channels
    f = DCU_k(f), k = 1..K                                   dual-domain correction units
    y = x + conv5x5(ReLU(conv3x3(f)))                        tail; global image residual

A dual-domain correction unit (DCU) on features ``f``:

* pyramid cell: ``t = ReLU(conv3x3(f))`` with 2P channels, then dense layers (3x3 conv + ReLU, growth P,
  dilation rates ``dilations``, each fed the concatenation of everything before it), then a 1x1 conv + ReLU
  back to P channels;
* implicit dual-domain branch: ``conv3x3(t)`` gives 64 channels read as the 64 DCT coefficients of the
  8x8 block around each pixel, in units of the quantization step. The luminance branch clamps them to
  [-0.5, 0.5] (the rounding-error range of JPEG quantization), multiplies coefficient ``u`` by
  ``Q[u] / 255`` and applies the inverse 8x8 DCT across channels: a fixed 1x1 convolution with weight
  ``D^T diag(Q / 255)``, ``D`` the orthonormal 64x64 DCT-II basis (buffer ``dct_basis``, not trained).
  With 3 channels a chrominance branch does the same with the chrominance table and a dilation-2 conv
  (4:2:0 chroma blocks cover 16x16 pixels). A 3x3 conv maps the pixel-domain result back to F channels;
* pixel branch: ``conv3x3(t)`` to F channels;
* ``out = f + 0.1 * (dual + pixel)``.

"Implicit": the network never applies a spatial (stride-8) DCT; each pixel's feature vector is treated
as a block spectrum, so the model is translation-equivariant, needs no block-aligned input and works for
any H, W without padding (no pad-to-8 and crop is needed). ``dct_basis.view(64, 1, 8, 8)`` is the
stride-8 blockwise DCT kernel; the tests check it against scipy's orthonormal DCT-II, which is JPEG's.

Quantization tables are the standard IJG (libjpeg) tables scaled to ``quality`` (:func:`ijg_quant_table`,
libjpeg's ``jpeg_quality_scaling`` with baseline clamping), held in the persistent buffer ``qtables``
``(2, 64)`` (luminance, chrominance; natural row-major order, 1..255), so a checkpoint carries the tables
it was trained with. :meth:`IDCN.set_quality` and :meth:`IDCN.set_qtables` change them; ``forward(x)``
keeps the one-argument signature of every model.

Deviations from the paper / released code:

* No position-labelling input. The authors append a fourth input channel, a per-position map of JPEG
  error statistics measured on their training set (``get_sigma_c1``); it is data, not architecture, and
  cannot be reproduced, so the input is the image only (3 or 1 channels).
* Global image residual (``y = x + net``) with a linear last conv. The released code ends in a
  5x5 conv + ReLU that predicts the image directly; the parameter count is the same.
* ``channels=1`` follows the authors' ``IDCN_Y``: luminance branch only.
* The chrominance branch is not clamped, as in the released code (``Restriction='hard'``).
* Default PyTorch initialisation (Keras uses Glorot uniform).

Configurations (parameters at 3 channels; layers = learned convolutions, i.e. ``nn.Conv2d`` modules,
``2 + K * (len(dilations) + 6) + 2`` at 3 channels; the fixed implicit transforms are not counted):

* ``idcn``: F=64, K=8, P=64, dilations (3, 2, 1, 1, 1, 1): the authors' training script
  (``IDCN(64, 8, ((3,2,1,1,1,1),), 64, ...)``). 100 layers, 10,379,331 parameters = 9.90 Mi (units of 2^20);
  the brief's "9.9M" looks 2^20-based (the authors' 4-channel input gives 10,380,931 = 9.9000 Mi);
  in units of 10^6 it is 10.38M, +4.8%. 10,372,480 MACs per pixel in learned convolutions plus 65,536
  in the fixed transforms.
* ``idcn_s``: F=32, K=4, P=16, dilations (3, 2, 1): 40 layers, 389,027 parameters; 387,776 MACs per
  pixel in learned convolutions plus 32,768 in the fixed transforms (420,544 in all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from compress.nets.registry import ModelSpec, register_model

#: IJG (libjpeg ``jcparam.c``) luminance table, quality 50, natural (row-major) order.
IJG_LUMINANCE: tuple[int, ...] = (
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip

#: IJG chrominance table, quality 50, natural order.
IJG_CHROMINANCE: tuple[int, ...] = (
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
)  # fmt: skip

_DCT_COEFFS = 64  # an 8x8 block has 64 DCT coefficients: the width of the implicit branch is fixed


def ijg_scale_factor(quality: int) -> int:
    """libjpeg's ``jpeg_quality_scaling``: quality 1..100 to a percentage scale of the base tables.

    Raises:
        ValueError: quality outside 1..100 (libjpeg would clamp it silently).
    """
    if not 1 <= quality <= 100 or int(quality) != quality:
        raise ValueError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    return 5000 // quality if quality < 50 else 200 - 2 * quality


def ijg_quant_table(quality: int, *, chroma: bool = False) -> torch.Tensor:
    """The quantization table libjpeg (and Pillow) writes at ``quality``, as an ``(8, 8)`` int64 tensor.

    libjpeg's ``jpeg_add_quant_table`` with ``force_baseline=TRUE``: ``(base * scale + 50) // 100``
    clamped to 1..255; quality 50 gives the base table.

    Args:
        quality: IJG quality 1..100.
        chroma: the chrominance table instead of the luminance one.
    """
    scale = ijg_scale_factor(quality)
    base = IJG_CHROMINANCE if chroma else IJG_LUMINANCE
    values = [min(max((b * scale + 50) // 100, 1), 255) for b in base]
    return torch.tensor(values, dtype=torch.int64, device="cpu").view(8, 8)


def dct_basis_8x8() -> torch.Tensor:
    """The orthonormal 8x8 DCT-II basis as a ``(64, 64)`` matrix ``D``.

    Row ``8u + v`` is basis function (u, v) over the block pixels ``8i + j``:
    ``c(u) c(v) cos((2i+1) u pi / 16) cos((2j+1) v pi / 16)``, ``c(0) = sqrt(1/8)``, else ``sqrt(2/8)``.
    ``D @ block.flatten()`` is exactly JPEG's forward DCT of the block (JPEG's ``C(u) C(v) / 4`` equals
    ``c(u) c(v)``) and ``D D^T = I``.
    """
    k = torch.arange(8, dtype=torch.float64)
    c = torch.full((8,), math.sqrt(2.0 / 8.0), dtype=torch.float64)
    c[0] = math.sqrt(1.0 / 8.0)
    # basis_1d[u, i] = c(u) cos((2i+1) u pi / 16)
    basis_1d = c[:, None] * torch.cos((2.0 * k[None, :] + 1.0) * k[:, None] * math.pi / 16.0)
    return torch.kron(basis_1d, basis_1d).to(torch.float32)


def implicit_idct_kernel(dct_basis: torch.Tensor, qtable: torch.Tensor) -> torch.Tensor:
    """The fixed 1x1 conv weight ``(64, 64, 1, 1)`` that dequantizes and inverse-transforms a spectrum.

    Input channel ``u`` is DCT coefficient ``u`` in quantization steps; output channel ``p`` is block
    pixel ``p`` in [0, 1] intensity units: ``W[p, u] = D[u, p] * Q[u] / 255``.
    """
    return (dct_basis.t() * (qtable.to(dct_basis.dtype) / 255.0)[None, :]).reshape(_DCT_COEFFS, _DCT_COEFFS, 1, 1)


class PyramidCell(nn.Module):
    """The DCU's feature extractor: entry conv, dilated dense layers, 1x1 fusion (all with ReLU).

    Args:
        features: input channels.
        pyramid_features: growth of each dense layer and output channels (P); the entry conv has 2P.
        dilations: one dense layer per dilation rate.
    """

    def __init__(self, features: int, pyramid_features: int, dilations: Sequence[int]) -> None:
        super().__init__()
        width = 2 * pyramid_features
        self.entry = nn.Conv2d(features, width, kernel_size=3, padding=1)
        layers = []
        for d in dilations:
            layers.append(nn.Conv2d(width, pyramid_features, kernel_size=3, padding=d, dilation=d))
            width += pyramid_features
        self.layers = nn.ModuleList(layers)
        self.fusion = nn.Conv2d(width, pyramid_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = F.relu(self.entry(x))
        for layer in self.layers:
            t = torch.cat([t, F.relu(layer(t))], dim=1)
        return F.relu(self.fusion(t))


class DualDomainCorrectionUnit(nn.Module):
    """A DCU: pyramid cell, implicit DCT-domain correction and pixel-domain correction, scaled residual.

    Args:
        features: unit input/output channels (F).
        pyramid_features: pyramid cell output channels (P).
        dilations: dilation rates of the pyramid cell's dense layers.
        chroma: add the chrominance branch (3-channel models).
        clamp: luminance coefficients are clamped to ``[-clamp, clamp]`` quantization steps.
        res_scale: weight of the correction added to the input.
    """

    def __init__(
        self,
        features: int,
        pyramid_features: int,
        dilations: Sequence[int],
        *,
        chroma: bool,
        clamp: float,
        res_scale: float,
    ) -> None:
        super().__init__()
        self.clamp = clamp
        self.res_scale = res_scale
        self.pyramid = PyramidCell(features, pyramid_features, dilations)
        self.to_dct_y = nn.Conv2d(pyramid_features, _DCT_COEFFS, kernel_size=3, padding=1)
        self.to_dct_c: nn.Conv2d | None = (
            nn.Conv2d(pyramid_features, _DCT_COEFFS, kernel_size=3, padding=2, dilation=2) if chroma else None
        )
        self.from_dct = nn.Conv2d(_DCT_COEFFS * (2 if chroma else 1), features, kernel_size=3, padding=1)
        self.pixel = nn.Conv2d(pyramid_features, features, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, kernel_y: torch.Tensor, kernel_c: torch.Tensor) -> torch.Tensor:
        t = self.pyramid(x)
        dual = F.conv2d(torch.clamp(self.to_dct_y(t), -self.clamp, self.clamp), kernel_y)
        if self.to_dct_c is not None:
            dual = torch.cat([dual, F.conv2d(self.to_dct_c(t), kernel_c)], dim=1)
        return x + self.res_scale * (self.from_dct(dual) + self.pixel(t))


class IDCN(nn.Module):
    """Implicit Dual-domain CNN; output = input + predicted residual, same size as the input.

    Args:
        channels: image channels, 3 (RGB, luminance and chrominance branches) or 1 (luminance only).
        features: channels between units (F).
        num_units: dual-domain correction units (K).
        pyramid_features: pyramid cell width (P).
        dilations: dilation rates of each pyramid cell's dense layers.
        quality: JPEG quality whose IJG tables the implicit transforms use.
        clamp: luminance coefficient range in quantization steps (0.5: rounding error).
        res_scale: weight of each unit's correction.
    """

    dct_basis: torch.Tensor
    qtables: torch.Tensor

    def __init__(
        self,
        channels: int = 3,
        *,
        features: int = 64,
        num_units: int = 8,
        pyramid_features: int = 64,
        dilations: Sequence[int] = (3, 2, 1, 1, 1, 1),
        quality: int = 10,
        clamp: float = 0.5,
        res_scale: float = 0.1,
    ) -> None:
        super().__init__()
        if min(features, num_units, pyramid_features) < 1 or any(d < 1 for d in dilations):
            raise ValueError(
                f"IDCN sizes must be positive, got F={features} K={num_units} P={pyramid_features} "
                f"dilations={tuple(dilations)}"
            )
        self.channels = channels
        self.head = nn.Sequential(
            nn.Conv2d(channels, features, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.units = nn.ModuleList(
            DualDomainCorrectionUnit(
                features, pyramid_features, tuple(dilations), chroma=channels == 3, clamp=clamp, res_scale=res_scale
            )
            for _ in range(num_units)
        )
        self.tail = nn.Sequential(nn.Conv2d(features, features, kernel_size=3, padding=1), nn.ReLU(inplace=True))
        self.reconstruct = nn.Conv2d(features, channels, kernel_size=5, padding=2)
        # A constant of the architecture, so not saved; the tables are saved because weights are tied to them.
        self.register_buffer("dct_basis", dct_basis_8x8(), persistent=False)
        self.register_buffer("qtables", torch.empty(2, _DCT_COEFFS))
        self.set_quality(quality)

    @torch.no_grad()
    def set_quality(self, quality: int) -> None:
        """Use the IJG luminance and chrominance tables of ``quality`` (1..100)."""
        self.set_qtables(ijg_quant_table(quality), ijg_quant_table(quality, chroma=True))

    @torch.no_grad()
    def set_qtables(self, luma: torch.Tensor | Sequence[int], chroma: torch.Tensor | Sequence[int]) -> None:
        """Use explicit quantization tables (64 values each, natural row-major order, 1..255).

        Pillow's ``Image.quantization`` gives a decoded JPEG's tables in this order (tables 0 and 1).
        """
        # validated on the CPU so that a model built on the meta device still gets checked tables
        tables = torch.stack([torch.as_tensor(t, device="cpu").reshape(-1) for t in (luma, chroma)]).float()
        if tables.shape != (2, _DCT_COEFFS) or bool((tables < 1).any()) or bool((tables > 255).any()):
            raise ValueError(f"quantization tables must hold 64 values in 1..255 each, got shape {tuple(tables.shape)}")
        self.qtables.copy_(tables)

    def fixed_width_layers(self) -> list[nn.Module]:
        """Convolutions whose output width the architecture fixes: a channel pruner must ignore them.

        The image reconstruction (``channels`` outputs) and every DCT projection (64 outputs, one per
        coefficient of the fixed transform that follows).
        """
        units = cast(list[DualDomainCorrectionUnit], list(self.units))
        dct = [conv for unit in units for conv in (unit.to_dct_y, unit.to_dct_c) if conv is not None]
        return [self.reconstruct, *dct]

    def implicit_kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed luminance and chrominance 1x1 kernels of the implicit transforms, from the buffers."""
        return (
            implicit_idct_kernel(self.dct_basis, self.qtables[0]),
            implicit_idct_kernel(self.dct_basis, self.qtables[1]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel_y, kernel_c = self.implicit_kernels()
        f = self.head(x)
        for unit in self.units:
            f = unit(f, kernel_y, kernel_c)
        return x + self.reconstruct(self.tail(f))


register_model(
    ModelSpec(
        "idcn",
        IDCN,
        "teacher",
        3,
        "IDCN (Zheng et al. 2019), 8 DCUs, F=P=64, q10 tables: the brief's teacher",
        published=(100, "9.9M"),
        reference_params=10_379_331,
    )
)
register_model(
    ModelSpec(
        "idcn_s",
        IDCN,
        "teacher",
        3,
        "small IDCN (F=32, K=4, P=16, dilations 3,2,1) trainable on a CPU",
        reference_params=389_027,
        kwargs={"features": 32, "num_units": 4, "pyramid_features": 16, "dilations": (3, 2, 1)},
    )
)
