"""Protocols: their contract on synthetic images, and the published JPEG baselines on the real data."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from compress.data.jpeg import jpeg_roundtrip, rgb_to_y_u8
from compress.errors import DataError, RegistryError
from compress.evaluate import EvalResult, evaluate_model
from compress.metrics import psnr, psnrb, ssim_gaussian, ssim_uniform8
from compress.protocols import PROTOCOLS, Color, get_protocol


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 70 * np.sin(yy / 7.0) * np.cos(xx / 5.0)
    img = base[..., None] + rng.normal(0, 12, size=(h, w, 3)) + np.array([20, -10, 0])
    return np.clip(img, 0, 255).astype(np.uint8)


class TestContract:
    def test_registry(self) -> None:
        assert set(PROTOCOLS.names()) == {"arcnn-y", "fbcnn-y", "idcn-rgb"}
        with pytest.raises(RegistryError, match=r"unknown protocol 'arcnn_y'.*did you mean 'arcnn-y'"):
            get_protocol("arcnn_y")

    def test_y_protocols_use_matlab_luma_and_gray_jpeg(self) -> None:
        img = _rgb(40, 48)
        for name in ("arcnn-y", "fbcnn-y"):
            p = get_protocol(name)
            assert p.color is Color.Y and p.color.channels == 1
            ref, jpeg = p.degrade(img, 10)
            assert np.array_equal(ref, rgb_to_y_u8(img))
            assert np.array_equal(jpeg, jpeg_roundtrip(rgb_to_y_u8(img), 10))
            gray = img[..., 0]
            assert np.array_equal(p.reference_image(gray), gray)  # gray data sets are used as they are

    def test_output_treatment(self) -> None:
        out = np.array([[-3.4, 12.6, 260.2]])
        assert np.array_equal(get_protocol("arcnn-y").finalize(out), out)  # raw: not clipped, not rounded
        assert get_protocol("fbcnn-y").finalize(out).tolist() == [[0.0, 13.0, 255.0]]
        assert get_protocol("idcn-rgb").finalize(out).tolist() == [[0.0, 13.0, 255.0]]

    def test_metric_choice(self) -> None:
        img = _rgb(40, 48)
        for name, ssim in (("arcnn-y", ssim_uniform8), ("fbcnn-y", ssim_gaussian)):
            p = get_protocol(name)
            ref, jpeg = p.degrade(img, 20)
            s = p.score(ref, jpeg)
            assert s.psnr == psnr(ref, jpeg) and s.ssim == ssim(ref, jpeg) and s.psnrb == psnrb(ref, jpeg)

    def test_idcn_rgb_jpeg_of_full_image_then_crop_to_multiple_of_8(self) -> None:
        img = _rgb(45, 61)
        p = get_protocol("idcn-rgb")
        ref, jpeg = p.degrade(img, 10)
        assert ref.shape == jpeg.shape == (45, 61, 3)  # the JPEG is made from the full image
        assert np.array_equal(jpeg, jpeg_roundtrip(img, 10))
        s = p.score(ref, jpeg)
        r, j = ref[:40, :56], jpeg[:40, :56]
        assert s.psnr == psnr(r, j)
        assert s.ssim == pytest.approx(np.mean([ssim_uniform8(r[..., c], j[..., c]) for c in range(3)]), abs=1e-12)
        assert s.psnrb == pytest.approx(np.mean([psnrb(r[..., c], j[..., c]) for c in range(3)]), abs=1e-12)
        assert s.psnr != psnr(ref, jpeg)

    def test_idcn_rgb_refuses_gray(self) -> None:
        with pytest.raises(DataError, match=r"idcn-rgb.*needs RGB"):
            get_protocol("idcn-rgb").degrade(_rgb(16, 16)[..., 0], 10)

    def test_score_subset(self) -> None:
        p = get_protocol("fbcnn-y")
        ref, jpeg = p.degrade(_rgb(32, 32), 10)
        s = p.score(ref, jpeg, which=("psnr",))
        assert s.psnr == psnr(ref, jpeg) and np.isnan(s.ssim) and np.isnan(s.psnrb)
        with pytest.raises(ValueError, match="unknown score"):
            p.score(ref, jpeg, which=("lpips",))


# --------------------------------------------------------------------------- published JPEG baselines (real data)

QUALITIES = (10, 20, 30, 40)

# ARCNN paper (LIVE1, Y, JPEG row): PSNR / SSIM (8x8 uniform) / PSNR-B, reproduced in /work/shared/data/README.md.
ARCNN_Y_LIVE1_JPEG = {10: (27.77, 0.7905, 25.33), 20: (30.07, 0.8683, 27.57),
                      30: (31.41, 0.9000, 28.92), 40: (32.35, 0.9173, 29.96)}  # fmt: skip
# FBCNN README table, grayscale JPEG rows: PSNR / SSIM (Gaussian, 3 decimals) / PSNR-B.
FBCNN_JPEG = {
    "classic5": {10: (27.82, 0.760, 25.21), 20: (30.12, 0.834, 27.50), 30: (31.48, 0.867, 28.94),
                 40: (32.43, 0.885, 29.92)},
    "live1": {10: (27.77, 0.773, 25.33), 20: (30.07, 0.851, 27.57), 30: (31.41, 0.885, 28.92),
              40: (32.35, 0.904, 29.96)},
    "b200": {10: (27.80, 0.768, 25.10), 20: (30.05, 0.849, 27.22), 30: (31.37, 0.884, 28.53),
             40: (32.30, 0.903, 29.49)},
}  # fmt: skip
# IDCN Table IV (LIVE1, RGB, JPEG row): PSNR / SSIM.
IDCN_RGB_LIVE1_JPEG = {10: (25.69, 0.7592), 20: (28.06, 0.8409)}


@functools.cache
def _jpeg(
    protocol: str, dataset: str, root: str, metrics: tuple[str, ...], qualities: tuple[int, ...]
) -> dict[int, EvalResult]:
    res = evaluate_model(None, dataset, qualities, protocol, data_root=root, progress=False, metrics=metrics)
    return {r.quality: r for r in res}


def assert_rounds_to(value: float, want: float, decimals: int, what: str) -> None:
    """The published table's rounding: the measured value must round to the published digit string."""
    assert round(value, decimals) == pytest.approx(want, abs=10 ** -(decimals + 3)), f"{what}: {value:.6f} vs {want}"


@pytest.mark.data
class TestPublishedJPEGBaselines:
    @pytest.mark.parametrize("q", QUALITIES)
    def test_arcnn_y_live1(self, data_root: Path, q: int) -> None:
        r = _jpeg("arcnn-y", "live1", str(data_root), ("psnr", "ssim", "psnrb"), QUALITIES)[q]
        p, s, b = ARCNN_Y_LIVE1_JPEG[q]
        assert r.n_images == 29 and r.model == "jpeg"
        assert_rounds_to(r.jpeg_psnr, p, 2, "PSNR")
        assert_rounds_to(r.jpeg_ssim, s, 4, "SSIM")
        assert_rounds_to(r.jpeg_psnrb, b, 2, "PSNR-B")
        assert (r.psnr, r.ssim, r.psnrb) == (r.jpeg_psnr, r.jpeg_ssim, r.jpeg_psnrb)

    @pytest.mark.parametrize("dataset", ["classic5", "live1", "b200"])
    @pytest.mark.parametrize("q", QUALITIES)
    def test_fbcnn_y_psnr(self, data_root: Path, dataset: str, q: int) -> None:
        r = _jpeg("fbcnn-y", dataset, str(data_root), ("psnr",), QUALITIES)[q]
        assert r.n_images == {"classic5": 5, "live1": 29, "b200": 200}[dataset]
        assert_rounds_to(r.jpeg_psnr, FBCNN_JPEG[dataset][q][0], 2, f"{dataset} PSNR")

    @pytest.mark.parametrize("q", QUALITIES)
    def test_fbcnn_y_classic5_ssim_psnrb(self, data_root: Path, q: int) -> None:
        r = _jpeg("fbcnn-y", "classic5", str(data_root), ("psnr", "ssim", "psnrb"), QUALITIES)[q]
        _, s, b = FBCNN_JPEG["classic5"][q]
        assert_rounds_to(r.jpeg_ssim, s, 3, "SSIM")
        assert_rounds_to(r.jpeg_psnrb, b, 2, "PSNR-B")

    @pytest.mark.parametrize("q", [10, 20])
    def test_idcn_rgb_live1(self, data_root: Path, q: int) -> None:
        r = _jpeg("idcn-rgb", "live1", str(data_root), ("psnr", "ssim"), (10, 20))[q]
        p, s = IDCN_RGB_LIVE1_JPEG[q]
        assert_rounds_to(r.jpeg_psnr, p, 2, "PSNR")
        assert_rounds_to(r.jpeg_ssim, s, 4, "SSIM")

    @pytest.mark.slow
    @pytest.mark.parametrize("dataset", ["live1", "b200"])
    @pytest.mark.parametrize("q", QUALITIES)
    def test_fbcnn_y_ssim_psnrb(self, data_root: Path, dataset: str, q: int) -> None:
        r = _jpeg("fbcnn-y", dataset, str(data_root), ("psnr", "ssim", "psnrb"), QUALITIES)[q]
        _, s, b = FBCNN_JPEG[dataset][q]
        assert_rounds_to(r.jpeg_ssim, s, 3, f"{dataset} SSIM")
        assert_rounds_to(r.jpeg_psnrb, b, 2, f"{dataset} PSNR-B")
