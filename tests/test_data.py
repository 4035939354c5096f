"""Image loading (bad and unusual files built here) and the dataset registry (synthetic and real data)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compress.data.datasets import (
    DATASETS,
    ENV_DATA_ROOT,
    default_dataset,
    open_dataset,
    resolve_data_root,
)
from compress.data.images import load_image
from compress.data.jpeg import rgb_to_y_u8
from compress.errors import DataError, RegistryError


def _save(img: Image.Image, path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------- load_image


class TestLoadImage:
    @pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
    def test_truncated_file(self, tmp_path: Path, fmt: str) -> None:
        buf = io.BytesIO()
        Image.fromarray(_rgb(64, 64)).save(buf, format=fmt)
        p = tmp_path / f"cut.{fmt.lower()}"
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        with pytest.raises(DataError, match=r"cut\.(png|jpeg).*(truncated|cannot read)"):
            load_image(p)

    def test_not_an_image_missing_and_directory(self, tmp_path: Path) -> None:
        txt = tmp_path / "notes.png"
        txt.write_text("hello")
        with pytest.raises(DataError, match=r"notes\.png: cannot read image"):
            load_image(txt)
        with pytest.raises(DataError, match=r"nope\.png: no such image file"):
            load_image(tmp_path / "nope.png")
        with pytest.raises(DataError, match="not a file"):
            load_image(tmp_path)

    def test_gray(self, tmp_path: Path) -> None:
        g = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
        p = _save(Image.fromarray(g, mode="L"), tmp_path / "g.png")
        assert np.array_equal(load_image(p), g)
        assert np.array_equal(load_image(p, "gray"), g)
        rgb = load_image(p, "rgb")
        assert rgb.shape == (12, 10, 3) and all(np.array_equal(rgb[..., c], g) for c in range(3))

    def test_rgb_as_gray_uses_pillow_luma(self, tmp_path: Path) -> None:
        a = _rgb(8, 9)
        p = _save(Image.fromarray(a), tmp_path / "c.png")
        assert np.array_equal(load_image(p, "gray"), np.asarray(Image.fromarray(a).convert("L")))

    def test_rgba_is_composited_on_white(self, tmp_path: Path) -> None:
        a = np.zeros((2, 2, 4), dtype=np.uint8)
        a[0, 0] = (255, 0, 0, 0)  # fully transparent red -> white
        a[0, 1] = (0, 0, 255, 255)  # opaque blue stays blue
        a[1, 0] = (0, 0, 0, 128)  # half-transparent black -> mid gray
        a[1, 1] = (10, 20, 30, 255)
        p = _save(Image.fromarray(a, mode="RGBA"), tmp_path / "a.png")
        out = load_image(p, "rgb")
        assert out.shape == (2, 2, 3)
        assert tuple(out[0, 0]) == (255, 255, 255)
        assert tuple(out[0, 1]) == (0, 0, 255)
        assert all(abs(int(v) - 127) <= 1 for v in out[1, 0])
        assert tuple(out[1, 1]) == (10, 20, 30)

    def test_gray_alpha(self, tmp_path: Path) -> None:
        la = Image.fromarray(np.array([[[0, 0], [50, 255]]], dtype=np.uint8), mode="LA")
        out = load_image(_save(la, tmp_path / "la.png"))
        assert out.shape == (1, 2) and out.tolist() == [[255, 50]]

    def test_sixteen_bit_is_scaled(self, tmp_path: Path) -> None:
        a = np.array([[0, 257, 65535, 32896, 128]], dtype=np.uint16)
        p = _save(Image.fromarray(a), tmp_path / "g16.png")
        assert Image.open(p).mode.startswith("I")
        out = load_image(p)
        assert out.dtype == np.uint8 and out.tolist() == [[0, 1, 255, 128, 0]]

    def test_palette(self, tmp_path: Path) -> None:
        im = Image.new("P", (3, 1))
        pal = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12)
        im.putpalette(pal)
        im.putdata([1, 2, 3])
        out = load_image(_save(im, tmp_path / "p.png"), "rgb")
        assert out.tolist() == [[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]

    def test_palette_with_transparency(self, tmp_path: Path) -> None:
        im = Image.new("P", (2, 1))
        im.putpalette([9, 9, 9, 200, 10, 10] + [0] * (256 * 3 - 6))
        im.putdata([0, 1])
        out = load_image(_save(im, tmp_path / "pt.png", transparency=0), "rgb")
        assert out.tolist() == [[[255, 255, 255], [200, 10, 10]]]

    def test_cmyk(self, tmp_path: Path) -> None:
        im = Image.new("CMYK", (2, 1))
        im.putdata([(0, 0, 0, 0), (255, 0, 0, 0)])
        out = load_image(_save(im, tmp_path / "c.tif"))
        assert out.shape == (1, 2, 3)
        assert out.tolist() == [[[255, 255, 255], [0, 255, 255]]]
        jpg = load_image(_save(Image.new("CMYK", (16, 16), (0, 0, 0, 0)), tmp_path / "c.jpg"))
        assert jpg.shape == (16, 16, 3) and jpg.min() >= 250

    def test_exif_orientation_is_applied(self, tmp_path: Path) -> None:
        a = np.zeros((20, 40, 3), dtype=np.uint8)
        a[:, :20] = (255, 0, 0)  # left half red
        a[:, 20:] = (0, 0, 255)  # right half blue
        im = Image.fromarray(a)
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 CW to display"
        out = load_image(_save(im, tmp_path / "rot.jpg", exif=exif, quality=95))
        assert out.shape == (40, 20, 3)
        top, bottom = out[:15].mean(axis=(0, 1)), out[25:].mean(axis=(0, 1))
        assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
        assert bottom[2] > 200 and bottom[0] < 60

    def test_bilevel(self, tmp_path: Path) -> None:
        im = Image.new("1", (2, 1))
        im.putdata([0, 1])
        assert load_image(_save(im, tmp_path / "b.png")).tolist() == [[0, 255]]

    def test_unknown_mode(self, tmp_path: Path) -> None:
        p = _save(Image.fromarray(_rgb(4, 4)), tmp_path / "x.png")
        with pytest.raises(DataError, match="unknown image load mode 'rgba'; valid: rgb, gray, any"):
            load_image(p, "rgba")


# ----------------------------------------------------------------------------------------------- datasets


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A small data root with the registry's layout: bsds500 splits, live1 (RGB), classic5 (gray)."""
    root = tmp_path / "data"
    for split, n in (("train", 2), ("val", 1), ("test", 3)):
        for i in range(n):
            _save(Image.fromarray(_rgb(24, 32, i)), root / "bsds500" / split / f"{split}{i}.jpg")
    for name in ("b", "a", "c"):
        _save(Image.fromarray(_rgb(16, 24)), root / "live1" / f"{name}.png")
    for name in ("lena", "boats"):
        _save(Image.fromarray(_rgb(16, 16)[..., 0], mode="L"), root / "classic5" / f"{name}.png")
    return root


class TestDatasets:
    def test_registry_names(self) -> None:
        want = {"bsds500", "bsds500_train", "bsds500_val", "bsds500_test", "b200", "live1", "live1_gray",
                "classic5", "kodak24", "tid2008", "mcl_jci", "embedded", "embedded_gray"}  # fmt: skip
        assert want <= set(DATASETS.names())
        assert DATASETS.get("b200").folder == DATASETS.get("bsds500_test").folder == "bsds500/test"

    def test_unknown_name(self) -> None:
        with pytest.raises(RegistryError, match=r"unknown dataset 'live2'.*did you mean 'live1'"):
            open_dataset("live2")

    def test_splits_and_sorting(self, fake_root: Path, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING):
            b200 = open_dataset("b200", data_root=fake_root)
        assert [it.name for it in b200] == ["test0", "test1", "test2"]
        assert "found 3 images, the full set has 200" in caplog.text
        assert len(open_dataset("bsds500_train", data_root=fake_root)) == 2
        assert len(open_dataset("bsds500_val", data_root=fake_root)) == 1
        everything = open_dataset("bsds500", data_root=fake_root)
        assert [it.name for it in everything][:2] == ["test/test0", "test/test1"] and len(everything) == 6
        live1 = open_dataset("live1", data_root=fake_root)
        assert [it.name for it in live1] == ["a", "b", "c"]
        assert live1.load(live1.items[0]).shape == (16, 24, 3)
        c5 = open_dataset("classic5", data_root=fake_root)
        assert c5.load(c5.items[0]).shape == (16, 16)

    def test_limit(self, fake_root: Path) -> None:
        assert len(open_dataset("live1", data_root=fake_root, limit=2)) == 2
        with pytest.raises(DataError, match="at least 1"):
            open_dataset("live1", data_root=fake_root, limit=0)

    def test_root_resolution(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(ENV_DATA_ROOT, str(tmp_path / "env"))
        assert resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"
        assert resolve_data_root() == tmp_path / "env"
        monkeypatch.delenv(ENV_DATA_ROOT)
        from platformdirs import user_cache_dir

        assert resolve_data_root() == Path(user_cache_dir("compress"))

    def test_missing_root(self, tmp_path: Path) -> None:
        missing = tmp_path / "nowhere"
        with pytest.raises(DataError) as err:
            open_dataset("live1", data_root=missing)
        msg = str(err.value)
        assert str(missing) in msg and "compress data fetch live1" in msg and "embedded" in msg

    def test_missing_folder_and_empty_folder(self, fake_root: Path) -> None:
        with pytest.raises(DataError, match=r"kodak24.*not found \(expected 24 images matching '\*\.png'"):
            open_dataset("kodak24", data_root=fake_root)
        (fake_root / "kodak24").mkdir()
        with pytest.raises(DataError, match=r"no images matching '\*\.png'"):
            open_dataset("kodak24", data_root=fake_root)

    def test_folder_dataset(self, tmp_path: Path) -> None:
        folder = tmp_path / "mine"
        _save(Image.fromarray(_rgb(10, 12)), folder / "colour.png")
        _save(Image.fromarray(_rgb(10, 12)[..., 1], mode="L"), folder / "gray.bmp")
        (folder / "readme.txt").write_text("not an image")
        ds = open_dataset(f"folder:{folder}")
        assert [it.name for it in ds] == ["colour", "gray"]
        assert ds.load(ds.items[0]).shape == (10, 12, 3) and ds.load(ds.items[1]).shape == (10, 12)
        with pytest.raises(DataError, match="not found"):
            open_dataset(f"folder:{tmp_path / 'absent'}")
        with pytest.raises(DataError, match="needs a path"):
            open_dataset("folder:")

    def test_embedded_is_not_comparable(self) -> None:
        ds = open_dataset("embedded", data_root="/definitely/not/here")
        assert not ds.comparable and len(ds) == 6 and "astronaut" in [it.name for it in ds]
        assert ds.load(ds.items[0]).shape == (512, 512, 3)
        gray = open_dataset("embedded_gray")
        assert gray.load(gray.items[0]).ndim == 2 and not gray.comparable

    def test_default_dataset_falls_back_to_embedded(
        self, tmp_path: Path, fake_root: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        assert default_dataset(fake_root) == "live1"
        with caplog.at_level(logging.WARNING):
            assert default_dataset(tmp_path / "nothing") == "embedded"
        assert "not comparable to published numbers" in caplog.text


class TestPairedDatasets:
    def test_tid2008(self, tmp_path: Path) -> None:
        root = tmp_path / "data"
        for i in (1, 2):
            _save(Image.fromarray(_rgb(16, 16, i)), root / "tid2008" / "reference_images" / f"I0{i}.BMP")
            for lvl in (1, 2, 3, 4):
                _save(
                    Image.fromarray(_rgb(16, 16, 10 * i + lvl)), root / "tid2008" / "distorted" / f"i0{i}_10_{lvl}.bmp"
                )
        _save(Image.fromarray(_rgb(16, 16)), root / "tid2008" / "distorted" / "I01_09_1.bmp")  # another distortion
        ds = open_dataset("tid2008", data_root=root)
        assert ds.paired and [it.name for it in ds] == ["I01", "I02"]
        assert ds.items[0].levels() == [1, 2, 3, 4]
        assert np.array_equal(ds.load_distorted(ds.items[1], 3), _rgb(16, 16, 23))
        with pytest.raises(DataError, match="no degraded version at level 5"):
            ds.load_distorted(ds.items[0], 5)

    def test_tid2008_orphans_and_no_refs(self, tmp_path: Path) -> None:
        root = tmp_path / "data"
        _save(Image.fromarray(_rgb(8, 8)), root / "tid2008" / "I03_10_1.bmp")
        with pytest.raises(DataError, match="no TID2008 reference images"):
            open_dataset("tid2008", data_root=root)
        _save(Image.fromarray(_rgb(8, 8)), root / "tid2008" / "I01.bmp")
        with pytest.raises(DataError, match=r"without a reference for source\(s\) 03"):
            open_dataset("tid2008", data_root=root)

    def test_mcl_jci(self, tmp_path: Path) -> None:
        root = tmp_path / "data"
        _save(Image.fromarray(_rgb(16, 24)), root / "mcl_jci" / "REF" / "ImageJND_SRC01.bmp")
        for lvl in (1, 50, 100):
            _save(Image.fromarray(_rgb(16, 24)), root / "mcl_jci" / "SRC01" / f"ImageJND_SRC01_{lvl:03d}.jpg")
        ds = open_dataset("mcl_jci", data_root=root)
        assert [it.name for it in ds] == ["ImageJND_SRC01"] and ds.items[0].levels() == [1, 50, 100]
        _save(Image.fromarray(_rgb(16, 24)), root / "mcl_jci" / "REF" / "ImageJND_SRC02.bmp")
        with pytest.raises(DataError, match=r"ImageJND_SRC02\.bmp: no degraded versions"):
            open_dataset("mcl_jci", data_root=root)


@pytest.mark.data
class TestRealData:
    @pytest.mark.parametrize(
        ("name", "n", "shape_ndim"),
        [("live1", 29, 3), ("live1_gray", 29, 2), ("classic5", 5, 2), ("kodak24", 24, 3), ("b200", 200, 3),
         ("bsds500", 500, 3), ("bsds500_train", 200, 3), ("bsds500_val", 100, 3)],
    )  # fmt: skip
    def test_counts(self, data_root: Path, name: str, n: int, shape_ndim: int) -> None:
        ds = open_dataset(name, data_root=data_root)
        assert len(ds) == n and ds.comparable
        assert ds.load(ds.items[0]).ndim == shape_ndim

    def test_live1_gray_is_matlab_y_of_live1(self, data_root: Path) -> None:
        rgb, gray = open_dataset("live1", data_root=data_root), open_dataset("live1_gray", data_root=data_root)
        assert [it.name for it in rgb] == [it.name for it in gray]
        for a, b in zip(rgb, gray, strict=True):
            diff = rgb_to_y_u8(rgb.load(a)).astype(int) - gray.load(b).astype(int)
            assert np.abs(diff).max() <= 1, a.name
