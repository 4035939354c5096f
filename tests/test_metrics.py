"""Metrics: golden tests against scikit-image and against direct (slow, obvious) reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from compress import metrics
from compress.errors import RegistryError
from compress.metrics import METRICS, blocking_effect_factor, psnr, psnrb, ssim_gaussian, ssim_uniform8


def _pair(shape: tuple[int, ...], seed: int, noise: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 256, size=shape).astype(np.uint8)
    out = np.clip(ref + rng.normal(0, noise, size=shape), 0, 255).astype(np.uint8)
    return ref, out


def _ssim_uniform8_bruteforce(a: np.ndarray, b: np.ndarray, L: float = 255.0) -> float:
    """Wang's ssim_index with ones(8)/64, 'valid', written out window by window."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    vals = []
    for i in range(a.shape[0] - 7):
        for j in range(a.shape[1] - 7):
            x, y = a[i : i + 8, j : j + 8], b[i : i + 8, j : j + 8]
            mx, my = x.mean(), y.mean()
            vx, vy, cxy = ((x - mx) ** 2).mean(), ((y - my) ** 2).mean(), ((x - mx) * (y - my)).mean()
            vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def _bef_bruteforce(y: np.ndarray, B: int = 8) -> float:
    """Yim & Bovik's BEF with explicit loops over neighbouring pairs; N_HB = H (W/B - 1) as in the paper."""
    y = y.astype(np.float64)
    h, w = y.shape
    db = dbc = 0.0
    for j in range(w - 1):
        s = float(((y[:, j] - y[:, j + 1]) ** 2).sum())
        if (j + 1) % B == 0:
            db += s
        else:
            dbc += s
    for i in range(h - 1):
        s = float(((y[i, :] - y[i + 1, :]) ** 2).sum())
        if (i + 1) % B == 0:
            db += s
        else:
            dbc += s
    n_hb, n_vb = h * (w / B - 1), w * (h / B - 1)
    n_hbc, n_vbc = h * (w - 1) - n_hb, w * (h - 1) - n_vb
    d_b, d_bc = db / (n_hb + n_vb), dbc / (n_hbc + n_vbc)
    eta = math.log2(B) / math.log2(min(h, w)) if d_b > d_bc else 0.0
    return eta * (d_b - d_bc)


def _blocky(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth image and a copy with a constant offset per 8x8 block (pure blocking)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    ref = 128 + 60 * np.sin(yy / 9.0) * np.cos(xx / 13.0)
    offsets = rng.normal(0, 6, size=(shape[0] // 8 + 1, shape[1] // 8 + 1))
    out = ref + offsets[yy // 8, xx // 8]
    return ref, out


class TestPSNR:
    @pytest.mark.parametrize("shape", [(33, 47), (64, 64, 3)])
    def test_matches_skimage(self, shape: tuple[int, ...]) -> None:
        ref, out = _pair(shape, 1)
        assert psnr(ref, out) == pytest.approx(peak_signal_noise_ratio(ref, out, data_range=255), abs=1e-10)

    def test_known_value_and_identity(self) -> None:
        ref = np.zeros((10, 10))
        assert psnr(ref, ref + 1.0) == pytest.approx(20 * math.log10(255.0), abs=1e-12)
        assert psnr(ref, ref) == math.inf

    def test_unclipped_float_output_is_scored_as_is(self) -> None:
        ref = np.full((16, 16), 255.0)
        assert psnr(ref, ref + 2.0) == pytest.approx(10 * math.log10(255.0**2 / 4.0))

    def test_shape_mismatch(self) -> None:
        with pytest.raises(ValueError, match="shape"):
            psnr(np.zeros((4, 4)), np.zeros((4, 5)))


class TestSSIMGaussian:
    @pytest.mark.parametrize(("shape", "seed"), [((48, 64), 0), ((37, 53), 1), ((11, 11), 2), ((120, 90), 3)])
    def test_matches_skimage_gray(self, shape: tuple[int, int], seed: int) -> None:
        ref, out = _pair(shape, seed)
        want = structural_similarity(
            ref, out, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
        assert ssim_gaussian(ref, out) == pytest.approx(want, abs=1e-6)

    def test_matches_skimage_unclipped_float(self) -> None:
        ref, out = _pair((40, 44), 7)
        out_f = out.astype(np.float64) * 1.03 - 4.5  # leaves 0..255
        want = structural_similarity(
            ref.astype(np.float64), out_f, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
        assert ssim_gaussian(ref, out_f) == pytest.approx(want, abs=1e-6)

    def test_matches_skimage_rgb_mean_over_channels(self) -> None:
        ref, out = _pair((40, 52, 3), 4)
        want = structural_similarity(
            ref, out, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
        )
        assert ssim_gaussian(ref, out) == pytest.approx(want, abs=1e-6)

    def test_too_small(self) -> None:
        with pytest.raises(ValueError, match="11x11"):
            ssim_gaussian(np.zeros((10, 30)), np.zeros((10, 30)))


class TestSSIMUniform8:
    @pytest.mark.parametrize(("shape", "seed"), [((8, 8), 0), ((19, 23), 1), ((32, 41), 2)])
    def test_matches_window_by_window_reference(self, shape: tuple[int, int], seed: int) -> None:
        ref, out = _pair(shape, seed)
        assert ssim_uniform8(ref, out) == pytest.approx(_ssim_uniform8_bruteforce(ref, out), abs=1e-10)

    def test_rgb_is_mean_of_channels(self) -> None:
        ref, out = _pair((20, 24, 3), 5)
        want = np.mean([_ssim_uniform8_bruteforce(ref[..., c], out[..., c]) for c in range(3)])
        assert ssim_uniform8(ref, out) == pytest.approx(want, abs=1e-10)

    def test_identity_is_one(self) -> None:
        ref, _ = _pair((30, 30), 6)
        assert ssim_uniform8(ref, ref) == pytest.approx(1.0, abs=1e-12)

    def test_too_small(self) -> None:
        with pytest.raises(ValueError, match="8x8"):
            ssim_uniform8(np.zeros((7, 30)), np.zeros((7, 30)))


class TestPSNRB:
    @pytest.mark.parametrize("shape", [(64, 64), (45, 61), (100, 37)])
    def test_bef_matches_loop_reference(self, shape: tuple[int, int]) -> None:
        _, out = _blocky(shape, 1)
        assert blocking_effect_factor(out) == pytest.approx(_bef_bruteforce(out), rel=1e-12)

    def test_psnrb_definition(self) -> None:
        ref, out = _blocky((64, 80), 2)
        mse = float(np.mean((ref - out) ** 2))
        bef = _bef_bruteforce(out)
        assert bef > 0
        assert psnrb(ref, out) == pytest.approx(10 * math.log10(255.0**2 / (mse + bef)), abs=1e-10)
        assert psnrb(ref, out) < psnr(ref, out)

    def test_no_blocking_means_psnrb_equals_psnr(self) -> None:
        yy, xx = np.mgrid[0:48, 0:56]
        ref = 3.0 * yy + 3.0 * xx  # a ramp: every neighbour difference is the same, on and off block edges
        out = ref + 3.0
        assert blocking_effect_factor(out) == pytest.approx(0.0, abs=1e-12)
        assert psnrb(ref, out) == pytest.approx(psnr(ref, out), abs=1e-12)

    def test_rgb_is_mean_of_channel_psnrb(self) -> None:
        chans = [_blocky((40, 48), s) for s in (4, 5, 6)]
        ref = np.stack([c[0] for c in chans], axis=2)
        out = np.stack([c[1] for c in chans], axis=2)
        want = np.mean([psnrb(r, o) for r, o in chans])
        assert psnrb(ref, out) == pytest.approx(want, abs=1e-12)

    def test_too_small(self) -> None:
        with pytest.raises(ValueError, match="block"):
            psnrb(np.zeros((8, 40)), np.ones((8, 40)))


class TestRegistry:
    def test_names(self) -> None:
        assert set(METRICS.names()) == {"psnr", "ssim_gaussian", "ssim_uniform8", "psnrb"}
        assert METRICS.get("psnr") is metrics.psnr

    def test_unknown_name_lists_valid_and_closest(self) -> None:
        with pytest.raises(RegistryError, match=r"unknown metric 'ssim_gauss'.*did you mean 'ssim_gaussian'"):
            METRICS.get("ssim_gauss")


@settings(max_examples=25, deadline=None, database=None)  # no example database in the repo
@given(
    h=st.integers(11, 24),
    w=st.integers(11, 24),
    seed=st.integers(0, 2**16),
)
def test_properties(h: int, w: int, seed: int) -> None:
    """Symmetry of PSNR/SSIM, SSIM(x, x) = 1, SSIM bounded; PSNR-B never above PSNR."""
    ref, out = _pair((h, w), seed, noise=30.0)
    assert psnr(ref, out) == pytest.approx(psnr(out, ref))
    for f in (ssim_gaussian, ssim_uniform8):
        assert f(ref, out) == pytest.approx(f(out, ref), abs=1e-12)
        assert f(ref, ref) == pytest.approx(1.0, abs=1e-12)
        assert -1.0 <= f(ref, out) <= 1.0
    assert psnrb(ref, out) <= psnr(ref, out) + 1e-12
