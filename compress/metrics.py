"""Full-reference image metrics: pure numpy functions, float64, one implementation each.

Contract shared by every metric here:

* ``ref`` and ``out`` have the same shape, ``(H, W)`` or ``(H, W, C)`` (channels last), any real dtype.
  Values are on the ``0..data_range`` scale (255 for 8-bit images); ``out`` may be unclipped floats.
* Nothing is converted, cropped or rounded here: colour conversion (e.g. MATLAB ``rgb2ycbcr`` Y),
  border crops and rounding belong to the evaluation protocol (:mod:`compress.protocols`).
* Multi-channel inputs: PSNR pools the squared error over all channels; SSIM and PSNR-B are computed
  per channel and averaged over channels.

A metric is any callable ``(ref, out, *, data_range) -> float``; :data:`METRICS` names them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from compress.registry import Registry

F64 = NDArray[np.float64]

K1, K2 = 0.01, 0.03
"""SSIM stabilising constants of Wang et al. 2004."""


class Metric(Protocol):
    """A full-reference metric: two images on the same scale -> one number (higher is better)."""

    def __call__(self, ref: ArrayLike, out: ArrayLike, *, data_range: float = 255.0) -> float: ...


METRICS: Registry[Metric] = Registry("metric")


def _pair(ref: ArrayLike, out: ArrayLike) -> tuple[F64, F64]:
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(out, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"metric inputs differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"metric inputs must be (H, W) or (H, W, C), got shape {a.shape}")
    return a, b


def _channels(x: F64) -> list[F64]:
    return [x] if x.ndim == 2 else [x[:, :, c] for c in range(x.shape[2])]


def _mse_to_db(mse: float, data_range: float) -> float:
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


@METRICS.register("psnr")
def psnr(ref: ArrayLike, out: ArrayLike, *, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over every sample (all channels pooled).

    Args:
        ref: reference image.
        out: image under test, same shape.
        data_range: peak value (255 for 8-bit data).

    Returns:
        ``10 log10(data_range^2 / MSE)``; ``inf`` for identical images.
    """
    a, b = _pair(ref, out)
    return _mse_to_db(float(np.mean((a - b) ** 2)), data_range)


def _ssim_from_moments(mu_a: F64, mu_b: F64, e_aa: F64, e_bb: F64, e_ab: F64, data_range: float) -> F64:
    """The SSIM map from local means and local second moments (population covariance)."""
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    var_a = e_aa - mu_a * mu_a
    var_b = e_bb - mu_b * mu_b
    cov = e_ab - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + c1) * (2.0 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return num / den


_GAUSS_SIGMA = 1.5
_GAUSS_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: the 11x11 window of Wang et al.
_GAUSS_RADIUS = int(_GAUSS_TRUNCATE * _GAUSS_SIGMA + 0.5)


def _ssim_gaussian_2d(a: F64, b: F64, data_range: float) -> float:
    def blur(x: F64) -> F64:
        return ndimage.gaussian_filter(x, sigma=_GAUSS_SIGMA, truncate=_GAUSS_TRUNCATE, mode="reflect")

    s = _ssim_from_moments(blur(a), blur(b), blur(a * a), blur(b * b), blur(a * b), data_range)
    r = _GAUSS_RADIUS
    return float(s[r:-r, r:-r].mean(dtype=np.float64))


@METRICS.register("ssim_gaussian")
def ssim_gaussian(ref: ArrayLike, out: ArrayLike, *, data_range: float = 255.0) -> float:
    """SSIM with the 11x11 Gaussian window (sigma 1.5), as the DnCNN/FBCNN tables use it.

    Identical to scikit-image ``structural_similarity(ref, out, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range)``: separable Gaussian truncated at 3.5 sigma,
    'reflect' borders, population covariance, the SSIM map averaged after dropping a 5-pixel border.
    Multi-channel images: the mean over channels.

    Raises:
        ValueError: an image side shorter than 11 pixels.
    """
    a, b = _pair(ref, out)
    if min(a.shape[:2]) < 2 * _GAUSS_RADIUS + 1:
        raise ValueError(f"ssim_gaussian needs images of at least 11x11, got {a.shape[:2]}")
    vals = [_ssim_gaussian_2d(x, y, data_range) for x, y in zip(_channels(a), _channels(b), strict=True)]
    return float(np.mean(vals))


def _box_valid(x: F64, k: int) -> F64:
    """Mean over every k x k window fully inside ``x`` (MATLAB ``filter2(ones(k)/k^2, x, 'valid')``).

    ``uniform_filter`` centres an even window at offsets ``-k//2 .. k-1-k//2``; the slice keeps the
    positions whose window lies inside the image, so the border mode never matters.
    """
    lo, hi = k // 2, k - 1 - k // 2
    full = ndimage.uniform_filter(x, size=k, mode="reflect")
    return full[lo : x.shape[0] - hi, lo : x.shape[1] - hi]


_UNIFORM_WIN = 8


def _ssim_uniform8_2d(a: F64, b: F64, data_range: float) -> float:
    k = _UNIFORM_WIN
    s = _ssim_from_moments(
        _box_valid(a, k), _box_valid(b, k), _box_valid(a * a, k), _box_valid(b * b, k), _box_valid(a * b, k), data_range
    )
    return float(s.mean(dtype=np.float64))


@METRICS.register("ssim_uniform8")
def ssim_uniform8(ref: ArrayLike, out: ArrayLike, *, data_range: float = 255.0) -> float:
    """SSIM with an 8x8 uniform window, 'valid' positions only: Wang's ``ssim_index.m`` with ``ones(8)/64``.

    This is the SSIM of the ARCNN paper tables (and of IDCN's RGB table, per channel): every 8x8
    window fully inside the image, K = (0.01, 0.03), L = ``data_range``, population statistics, the
    plain mean of the SSIM map. Multi-channel images: the mean over channels.

    Raises:
        ValueError: an image side shorter than 8 pixels.
    """
    a, b = _pair(ref, out)
    if min(a.shape[:2]) < _UNIFORM_WIN:
        raise ValueError(f"ssim_uniform8 needs images of at least 8x8, got {a.shape[:2]}")
    vals = [_ssim_uniform8_2d(x, y, data_range) for x, y in zip(_channels(a), _channels(b), strict=True)]
    return float(np.mean(vals))


def blocking_effect_factor(img: ArrayLike, *, block: int = 8) -> float:
    """Yim & Bovik's blocking effect factor (BEF) of one 2-D image.

    ``BEF = eta * (D_B - D_Bc)`` when ``D_B > D_Bc`` else 0, with ``eta = log2(B) / log2(min(H, W))``.
    ``D_B`` is the mean squared difference of neighbouring pixels across block boundaries (columns and
    rows ``B-1 | B``, ``2B-1 | 2B`` ... up to the last pair in the image), ``D_Bc`` the same over all
    other neighbouring pairs. The pair counts are the paper's closed forms ``N_HB = H (W/B - 1)`` and
    ``N_VB = W (H/B - 1)`` with true division, also for sizes that are not multiples of B: that is the
    convention that reproduces the ARCNN paper's LIVE1 PSNR-B (25.33 / 27.57 / 28.92 / 29.96 dB for
    JPEG q10-40); integer pair counts give 25.34 / 27.57 / 28.93 / 29.97 and ``W // B - 1`` gives
    25.33 / 27.56 / 28.92 / 29.95.
    """
    x = np.asarray(img, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"blocking_effect_factor needs a 2-D image, got shape {x.shape}")
    h, w = x.shape
    if min(h, w) <= block:
        raise ValueError(f"blocking_effect_factor needs both sides longer than the block ({block}), got {h}x{w}")
    dh = (x[:, :-1] - x[:, 1:]) ** 2  # pair (j, j+1) along each row
    dv = (x[:-1, :] - x[1:, :]) ** 2
    hb = np.arange(block - 1, w - 1, block)
    vb = np.arange(block - 1, h - 1, block)
    boundary = dh[:, hb].sum() + dv[vb, :].sum()
    other = dh.sum() + dv.sum() - boundary
    n_hb = h * (w / block - 1.0)
    n_vb = w * (h / block - 1.0)
    n_hbc = h * (w - 1) - n_hb
    n_vbc = w * (h - 1) - n_vb
    d_b = boundary / (n_hb + n_vb)
    d_bc = other / (n_hbc + n_vbc)
    if d_b <= d_bc:
        return 0.0
    eta = np.log2(block) / np.log2(min(h, w))
    return float(eta * (d_b - d_bc))


@METRICS.register("psnrb")
def psnrb(ref: ArrayLike, out: ArrayLike, *, data_range: float = 255.0) -> float:
    """PSNR-B (Yim & Bovik 2011), block 8: ``10 log10(data_range^2 / (MSE + BEF(out)))``.

    The BEF is measured on the image under test (:func:`blocking_effect_factor`). Multi-channel
    images: PSNR-B per channel, then the mean of those dB values (the convention of FBCNN's colour
    PSNR-B code).
    """
    a, b = _pair(ref, out)
    vals = []
    for x, y in zip(_channels(a), _channels(b), strict=True):
        mse = float(np.mean((x - y) ** 2))
        vals.append(_mse_to_db(mse + blocking_effect_factor(y), data_range))
    return float(np.mean(vals))
