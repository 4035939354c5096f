"""Downloads and SHA-256 verification, on local archives built here (no network), and the packaged manifests."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compress import cli
from compress.data.fetch import (
    SOURCES,
    FetchReport,
    _png_bytes,
    fetch_dataset,
    load_manifest,
    parse_manifest,
    verify_dataset,
)
from compress.errors import DataError

MY_COMMANDS = ["compress.commands.data", "compress.commands.evaluate", "compress.commands.compare"]
PREFIX = "BSR/BSDS500/data/images"


def run_cli(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setattr(cli, "COMMAND_MODULES", MY_COMMANDS)
    return cli.main(list(argv))


def _jpeg_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


FILES = {"train/1.jpg": _jpeg_bytes(1), "val/2.jpg": _jpeg_bytes(2), "test/3.jpg": _jpeg_bytes(3)}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest(path: Path, files: dict[str, bytes]) -> Path:
    path.write_text("".join(f"{_sha(b)}  {rel}\n" for rel, b in sorted(files.items())))
    return path


def _tgz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _bsr_archive(tmp_path: Path, files: dict[str, bytes] = FILES, name: str = "BSR_bsds500.tgz") -> Path:
    members = {f"{PREFIX}/{rel}": data for rel, data in files.items()}
    members[f"{PREFIX}/test/Thumbs.db"] = b"windows thumbnail cache"
    members["BSR/BSDS500/data/groundTruth/test/3.mat"] = b"not needed"
    return _tgz(tmp_path / name, members)


class TestFetchArchive:
    def test_local_archive(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        archive = _bsr_archive(tmp_path)
        manifest = _manifest(tmp_path / "m.txt", FILES)
        root = tmp_path / "root"
        with caplog.at_level(logging.INFO, logger="compress.data.fetch"):
            rep = fetch_dataset("bsds500", data_root=root, url=str(archive), manifest=manifest, progress=False)
        assert sorted(rep.written) == sorted(FILES) and not rep.already_present
        assert not rep.archive_checked and "archive SHA-256 is not pinned" in caplog.text
        for rel, data in FILES.items():
            assert (root / "bsds500" / rel).read_bytes() == data
        assert not (root / "bsds500" / "test" / "Thumbs.db").exists()
        assert verify_dataset("bsds500", data_root=root, manifest=manifest).passed
        again = fetch_dataset("bsds500", data_root=root, url=str(archive), manifest=manifest, progress=False)
        assert again.already_present and again.written == ()

    def test_file_url_downloads_into_the_root(self, tmp_path: Path) -> None:
        archive = _bsr_archive(tmp_path)
        root = tmp_path / "root"
        rep = fetch_dataset(
            "bsds500", data_root=root, url=archive.as_uri(), manifest=_manifest(tmp_path / "m.txt", FILES),
            progress=False,
        )  # fmt: skip
        assert len(rep.written) == 3
        assert (root / ".downloads" / archive.name).read_bytes() == archive.read_bytes()

    def test_zip_archive(self, tmp_path: Path) -> None:
        zpath = tmp_path / "bsr.zip"
        with zipfile.ZipFile(zpath, "w") as zf:
            for rel, data in FILES.items():
                zf.writestr(f"{PREFIX}/{rel}", data)
        rep = fetch_dataset("bsds500", data_root=tmp_path / "r", url=str(zpath), manifest=dict(
            (rel, _sha(b)) for rel, b in FILES.items()), progress=False)  # fmt: skip
        assert len(rep.written) == 3

    def test_corrupted_file_fails_and_is_not_written(self, tmp_path: Path) -> None:
        corrupted = dict(FILES)
        corrupted["val/2.jpg"] = FILES["val/2.jpg"][:-20] + b"\x00" * 20
        archive = _bsr_archive(tmp_path, corrupted)
        root = tmp_path / "root"
        with pytest.raises(
            DataError, match=r"bsds500: 1 file\(s\) failed verification.*val/2\.jpg \(SHA-256 mismatch\)"
        ):
            fetch_dataset("bsds500", data_root=root, url=str(archive), manifest=_manifest(tmp_path / "m.txt", FILES),
                          progress=False)  # fmt: skip
        assert not (root / "bsds500" / "val" / "2.jpg").exists()
        assert (root / "bsds500" / "test" / "3.jpg").read_bytes() == FILES["test/3.jpg"]
        rep = verify_dataset("bsds500", data_root=root, manifest=_manifest(tmp_path / "m.txt", FILES))
        assert not rep.passed and rep.missing == ("val/2.jpg",) and "missing: val/2.jpg" in rep.summary()

    def test_corrupted_file_on_disk_is_detected(self, tmp_path: Path) -> None:
        manifest = _manifest(tmp_path / "m.txt", FILES)
        root = tmp_path / "root"
        fetch_dataset("bsds500", data_root=root, url=str(_bsr_archive(tmp_path)), manifest=manifest, progress=False)
        (root / "bsds500" / "test" / "3.jpg").write_bytes(b"bit rot")
        rep = verify_dataset("bsds500", data_root=root, manifest=manifest)
        assert rep.mismatched == ("test/3.jpg",) and not rep.passed
        fixed = fetch_dataset("bsds500", data_root=root, url=str(_bsr_archive(tmp_path)), manifest=manifest,
                              progress=False)  # fmt: skip
        assert not fixed.already_present and verify_dataset("bsds500", data_root=root, manifest=manifest).passed

    def test_missing_member_and_unlisted_member(self, tmp_path: Path) -> None:
        listed = {"train/1.jpg": FILES["train/1.jpg"], "test/9.jpg": b"expected but absent"}
        with pytest.raises(DataError, match=r"test/9\.jpg \(not in archive\)"):
            fetch_dataset("bsds500", data_root=tmp_path / "r", url=str(_bsr_archive(tmp_path)),
                          manifest=_manifest(tmp_path / "m.txt", listed), progress=False)  # fmt: skip
        assert not (tmp_path / "r" / "bsds500" / "val" / "2.jpg").exists()  # in the archive, not in the manifest

    def test_bad_archive_and_bad_url(self, tmp_path: Path) -> None:
        junk = tmp_path / "junk.tgz"
        junk.write_bytes(b"this is not a tar file")
        manifest = _manifest(tmp_path / "m.txt", FILES)
        with pytest.raises(DataError, match="not a readable tar/zip archive"):
            fetch_dataset("bsds500", data_root=tmp_path / "r", url=str(junk), manifest=manifest, progress=False)
        with pytest.raises(DataError, match="cannot download file:///"):
            fetch_dataset("bsds500", data_root=tmp_path / "r", url=(tmp_path / "absent.tgz").as_uri(),
                          manifest=manifest, progress=False)  # fmt: skip
        with pytest.raises(DataError, match="archive not found"):
            fetch_dataset("bsds500", data_root=tmp_path / "r", url=str(tmp_path / "absent.tgz"), manifest=manifest,
                          progress=False)  # fmt: skip

    def test_path_traversal_in_manifest_is_refused(self) -> None:
        with pytest.raises(DataError, match="unsafe path"):
            parse_manifest(f"{'0' * 64}  ../../etc/passwd\n")
        with pytest.raises(DataError, match="not a '<sha256>  <path>' line"):
            parse_manifest("abc  x.jpg\n")


class TestFetchFiles:
    def test_individual_files_from_a_local_folder(self, tmp_path: Path) -> None:
        src = tmp_path / "mirror"
        src.mkdir()
        files = {"kodim01.png": b"png one", "kodim02.png": b"png two"}
        for name, data in files.items():
            (src / name).write_bytes(data)
        manifest = {name: _sha(data) for name, data in files.items()}
        rep = fetch_dataset("kodak24", data_root=tmp_path / "r", url=str(src), manifest=manifest, progress=False)
        assert sorted(rep.written) == sorted(files)
        (src / "kodim02.png").write_bytes(b"tampered")
        with pytest.raises(DataError, match=r"kodim02\.png \(SHA-256 mismatch\)"):
            fetch_dataset("kodak24", data_root=tmp_path / "r2", url=src.as_uri() + "/", manifest=manifest,
                          progress=False)  # fmt: skip

    def test_bmp_to_png_is_lossless(self) -> None:
        gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
        buf = io.BytesIO()
        Image.fromarray(gray, mode="L").save(buf, format="BMP")  # Pillow writes 8-bit BMPs with a gray palette
        png = Image.open(io.BytesIO(_png_bytes(buf.getvalue(), "x.bmp")))
        assert png.mode == "L" and np.array_equal(np.asarray(png), gray)
        rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="BMP")
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(_png_bytes(buf.getvalue(), "y.bmp")))), rgb)


    @staticmethod
    def _bmp_mirror(tmp_path: Path) -> tuple[Path, dict[str, bytes], dict[str, bytes]]:
        """A local folder of Classic5-named BMPs (8-bit gray, as the real ones) and the PNGs they convert to."""
        src = tmp_path / "bmp-mirror"
        src.mkdir()
        rng = np.random.default_rng(1)
        bmps: dict[str, bytes] = {}
        pngs: dict[str, bytes] = {}
        for name in ("baby", "boats"):
            gray = rng.integers(0, 256, size=(9, 11), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(gray, mode="L").save(buf, format="BMP")
            bmps[f"{name}.bmp"] = buf.getvalue()
            (src / f"{name}.bmp").write_bytes(buf.getvalue())
            out = io.BytesIO()
            Image.fromarray(gray, mode="L").save(out, format="PNG", optimize=True)
            pngs[f"{name}.png"] = out.getvalue()
        return src, bmps, pngs

    def test_converted_set_end_to_end(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        src, bmps, pngs = self._bmp_mirror(tmp_path)
        source = {k: _sha(v) for k, v in bmps.items()}
        files = {k: _sha(v) for k, v in pngs.items()}
        rep = fetch_dataset("classic5", data_root=tmp_path / "r", url=str(src), manifest=files,
                            source_manifest=source, progress=False)  # fmt: skip
        assert sorted(rep.written) == ["baby.png", "boats.png"] and rep.pixel_verified == ()
        assert verify_dataset("classic5", data_root=tmp_path / "r", manifest=files).passed
        # other PNG bytes (as another zlib would make) with the BMP verified: written, reported, warned
        other = {**files, "boats.png": _sha(b"another zlib")}
        with caplog.at_level(logging.WARNING):
            rep = fetch_dataset("classic5", data_root=tmp_path / "r2", url=str(src), manifest=other,
                                source_manifest=source, progress=False)  # fmt: skip
        assert rep.pixel_verified == ("boats.png",) and "PNG bytes differ" in caplog.text
        written = np.asarray(Image.open(tmp_path / "r2" / "classic5" / "boats.png"))
        assert np.array_equal(written, np.asarray(Image.open(io.BytesIO(bmps["boats.bmp"]))))
        # a BMP that fails its SHA-256 is never converted nor written
        (src / "baby.bmp").write_bytes(bmps["baby.bmp"][:-1] + bytes([bmps["baby.bmp"][-1] ^ 0xFF]))
        with pytest.raises(DataError, match=r"baby\.bmp \(SHA-256 mismatch\)"):
            fetch_dataset("classic5", data_root=tmp_path / "r3", url=str(src), manifest=files,
                          source_manifest=source, progress=False)  # fmt: skip
        assert not (tmp_path / "r3" / "classic5" / "baby.png").exists()
        with pytest.raises(DataError, match="only for converted sets"):
            fetch_dataset("kodak24", data_root=tmp_path / "r4", url=str(src), source_manifest=source, progress=False)

    def test_fetch_command_names_pixel_verified_files(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        src, bmps, pngs = self._bmp_mirror(tmp_path)
        import compress.data.fetch as fetch_mod

        real = fetch_mod.fetch_dataset

        def fake(name: str, **kw: object) -> FetchReport:
            return real(name, **{**kw, "manifest": {**{k: _sha(v) for k, v in pngs.items()}, "boats.png": "0" * 64},
                                 "source_manifest": {k: _sha(v) for k, v in bmps.items()}})  # type: ignore[arg-type]

        monkeypatch.setattr(fetch_mod, "fetch_dataset", fake)
        assert run_cli(monkeypatch, "data", "fetch", "classic5", "--url", str(src), "--data-root",
                       str(tmp_path / "r"), "--no-progress") == 0  # fmt: skip
        out = capsys.readouterr().out
        assert "1 match the manifest's SHA-256" in out and "1 converted PNG(s)" in out and "boats.png" in out


class TestPackagedManifests:
    def test_contents(self) -> None:
        bsds = load_manifest("bsds500")
        assert len(bsds) == 500
        assert {s: sum(k.startswith(f"{s}/") for k in bsds) for s in ("train", "val", "test")} == {
            "train": 200, "val": 100, "test": 200,
        }  # fmt: skip
        counts = {n: len(load_manifest(n)) for n in ("live1", "live1_gray", "classic5", "kodak24")}
        assert counts == {"live1": 29, "live1_gray": 29, "classic5": 5, "kodak24": 24}
        assert len(load_manifest("live1_source_bmp")) == 29 and len(load_manifest("classic5_source_bmp")) == 5
        with pytest.raises(DataError, match="no packaged SHA-256 manifest"):
            load_manifest("div2k")

    def test_sources_never_invent_archive_hashes(self) -> None:
        assert set(SOURCES.names()) == {"bsds500", "live1", "classic5", "live1_gray", "kodak24"}
        for name in SOURCES.names():
            h = SOURCES.get(name).archive_sha256
            assert h is None or len(h) == 64

    @pytest.mark.data
    @pytest.mark.parametrize("name", ["bsds500", "live1", "live1_gray", "classic5", "kodak24"])
    def test_real_data_verifies_and_manifests_are_copies(self, data_root: Path, name: str) -> None:
        assert parse_manifest((data_root / name / "SHA256SUMS").read_text()) == load_manifest(name)
        if (data_root / name / "SOURCE_BMP_SHA256SUMS").is_file():
            assert SOURCES.get(name).source_manifest == f"{name}_source_bmp"
            shipped = (data_root / name / "SOURCE_BMP_SHA256SUMS").read_text()
            assert parse_manifest(shipped) == load_manifest(f"{name}_source_bmp")
        rep = verify_dataset(name, data_root=data_root)
        assert rep.passed, rep.summary()


class TestDataCommand:
    def test_list(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        root = tmp_path / "root"
        (root / "classic5").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "classic5" / "lena.png")
        assert run_cli(monkeypatch, "data", "list", "--data-root", str(root)) == 0
        out = capsys.readouterr().out
        lines = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}
        assert lines["classic5"][1:3] == ["1", "5"] and lines["live1"][1] == "-"
        assert "embedded" in lines and "folder:<path>" in out

    def test_fetch_reports_a_failed_check_in_one_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        archive = _bsr_archive(tmp_path)  # our tiny images are not the real BSDS500
        rc = run_cli(monkeypatch, "data", "fetch", "bsds500", "--data-root", str(tmp_path / "r"), "--url", str(archive),
                     "--no-progress")  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("compress: error: bsds500: 500 file(s) failed verification")
        assert err.count("\n") == 1

    def test_unknown_source(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        assert run_cli(monkeypatch, "data", "fetch", "live", "--data-root", "unused-root") == 2
        assert "did you mean 'live1'" in capsys.readouterr().err

    @pytest.mark.data
    def test_verify(self, data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        assert run_cli(monkeypatch, "data", "verify", "classic5", "--data-root", str(data_root)) == 0
        assert "5/5 files verified" in capsys.readouterr().out
