"""Download official data sets into the data root and verify every image against a SHA-256 manifest.

Each source lists where the bytes come from and how they map onto our layout
(``<root>/bsds500/{train,val,test}/*.jpg``, ``<root>/live1/*.png`` ...). Trust comes from the
per-image manifests shipped in ``compress/data/manifests/<name>.txt`` (copied from the project's
checked data, ``/work/shared/data/*/SHA256SUMS``): a file is written only after its bytes match its
manifest entry, so a corrupted or substituted download never lands in the data root.

Archive-level hashes are ``None`` where we could not check them here (no network when the sources
were written); we never invent one. For those, the per-image manifest is the check, and the log
says so.

Sources that are plain files (LIVE1, Classic5, LIVE1 gray, Kodak24) are fetched from the public
GitHub repositories named in ``/work/shared/data/README.md`` at pinned commits. LIVE1 and Classic5
come as BMP: the BMP bytes are checked against the source manifest (``<name>_source_bmp.txt``), then
converted losslessly to PNG (Pillow, ``optimize=True``, which reproduces our PNG bytes). The PNG is
decoded again and must hold exactly the BMP's pixels (else nothing is written). If a different zlib makes
other PNG bytes than the manifest's, the file is still written, since its pixels are verified through the
BMP's SHA-256 and the lossless round trip; the report lists it (:attr:`FetchReport.pixel_verified`) and
the log warns.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import IO

from compress.data.datasets import resolve_data_root
from compress.errors import DataError
from compress.fsio import atomic_write_bytes
from compress.registry import Registry

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 60


class SourceKind(StrEnum):
    """How a source is distributed."""

    ARCHIVE = "archive"
    """One tar/zip archive; members are mapped onto the layout by regular expressions."""
    FILES = "files"
    """One URL per file: ``url`` + the file name from the manifest."""


class Convert(StrEnum):
    """What happens to a verified file before it is written."""

    NONE = "none"
    BMP_TO_PNG = "bmp_to_png"


@dataclass(frozen=True)
class FetchSource:
    """Where a data set's bytes come from.

    Attributes:
        name: the dataset folder under the data root, also the manifest name.
        kind: archive or individual files.
        url: the archive URL, or the base URL the file names are appended to.
        archive_sha256: SHA-256 of the archive; None when it could not be checked here.
        members: ``(regex on the archive member path, destination template)`` pairs (archives).
        source_manifest: manifest of the files as downloaded, when they are converted before writing.
        convert: conversion applied after verification.
        origin: human-readable provenance.
        terms: licence / terms of use, in one line.
    """

    name: str
    kind: SourceKind
    url: str
    archive_sha256: str | None
    origin: str
    terms: str
    members: tuple[tuple[str, str], ...] = ()
    source_manifest: str | None = None
    convert: Convert = Convert.NONE


@dataclass(frozen=True)
class VerifyReport:
    """Result of checking a folder against a manifest."""

    folder: Path
    ok: tuple[str, ...]
    missing: tuple[str, ...]
    mismatched: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.missing and not self.mismatched

    def summary(self) -> str:
        """One line: counts, then the first few bad files."""
        total = len(self.ok) + len(self.missing) + len(self.mismatched)
        parts = [f"{self.folder}: {len(self.ok)}/{total} files verified"]
        if self.missing:
            parts.append(f"missing: {_first(self.missing)}")
        if self.mismatched:
            parts.append(f"SHA-256 mismatch: {_first(self.mismatched)}")
        return "; ".join(parts)


@dataclass(frozen=True)
class FetchReport:
    """What :func:`fetch_dataset` did."""

    name: str
    folder: Path
    written: tuple[str, ...]
    already_present: bool
    archive_checked: bool
    skipped_unlisted: tuple[str, ...] = field(default=())
    pixel_verified: tuple[str, ...] = field(default=())
    """Converted files whose bytes differ from the manifest (another zlib) but whose pixels equal the source
    file's, itself verified against its SHA-256."""


SOURCES: Registry[FetchSource] = Registry("fetchable dataset")

_DNCNN = "https://raw.githubusercontent.com/cszn/DnCNN/e93b27812d3ff523a3a79d19e5e50d233d7a8d0a/testsets"
_FBCNN = "https://raw.githubusercontent.com/jiaxi-jiang/FBCNN/54d1831927506b3247e2d4d245abb4f4dab1a1cd/testsets"
_ZELEX = "https://raw.githubusercontent.com/Zelex/images/0b8a89db599a384124fb991b85d40cfd63c73d58"

for _src in (
    FetchSource(
        name="bsds500",
        kind=SourceKind.ARCHIVE,
        url="http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz",
        archive_sha256=None,  # not checked here (no network); the 500 per-image hashes are the check
        members=((r"^(?:\./)?BSR/BSDS500/data/images/(train|val|test)/([^/]+\.jpg)$", r"\1/\2"),),
        origin="Berkeley BSR release (January 2013), BSDS500 images",
        terms="Berkeley Segmentation Data Set: research use",
    ),
    FetchSource(
        name="live1",
        kind=SourceKind.FILES,
        url=f"{_DNCNN}/LIVE1/",
        archive_sha256=None,
        source_manifest="live1_source_bmp",
        convert=Convert.BMP_TO_PNG,
        origin="LIVE IQA Release 2 references, as BMP in cszn/DnCNN@e93b2781 testsets/LIVE1",
        terms="LIVE IQA database: research use, cite Sheikh et al.",
    ),
    FetchSource(
        name="classic5",
        kind=SourceKind.FILES,
        url=f"{_DNCNN}/classic5/",
        archive_sha256=None,
        source_manifest="classic5_source_bmp",
        convert=Convert.BMP_TO_PNG,
        origin="Classic5 as BMP in cszn/DnCNN@e93b2781 testsets/classic5",
        terms="standard academic test images",
    ),
    FetchSource(
        name="live1_gray",
        kind=SourceKind.FILES,
        url=f"{_FBCNN}/LIVE1_gray/",
        archive_sha256=None,
        origin="FBCNN's gray LIVE1, jiaxi-jiang/FBCNN@54d18319 testsets/LIVE1_gray",
        terms="LIVE IQA database: research use, cite Sheikh et al.",
    ),
    FetchSource(
        name="kodak24",
        kind=SourceKind.FILES,
        url=f"{_ZELEX}/kodak/",
        archive_sha256=None,
        origin="Kodak Lossless True Color Image Suite, Zelex/images@0b8a89db kodak/",
        terms="Kodak: released for unrestricted use",
    ),
):
    SOURCES.add(_src.name, _src)


def _first(names: tuple[str, ...] | list[str], n: int = 5) -> str:
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_manifest(text: str, origin: str = "manifest") -> dict[str, str]:
    """``sha256sum`` format (``<hex>  <relative path>``, ``*`` binary marker allowed) -> path -> hash.

    Raises:
        DataError: a malformed line or an unsafe path (absolute, or with ``..``).
    """
    out: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.rstrip("\r\n"))
        if not m:
            raise DataError(f"{origin}:{i}: not a '<sha256>  <path>' line: {line[:80]!r}")
        rel = m.group(2)
        _check_relpath(rel, f"{origin}:{i}")
        out[rel] = m.group(1).lower()
    if not out:
        raise DataError(f"{origin}: empty manifest")
    return out


def _check_relpath(rel: str, origin: str) -> None:
    pp = PurePosixPath(rel)
    if pp.is_absolute() or ".." in pp.parts or "\\" in rel:
        raise DataError(f"{origin}: unsafe path {rel!r} (must be relative, without '..')")


def load_manifest(name: str) -> dict[str, str]:
    """The packaged manifest ``compress/data/manifests/<name>.txt``.

    Raises:
        DataError: no such manifest.
    """
    res = resources.files("compress.data").joinpath("manifests", f"{name}.txt")
    if not res.is_file():
        raise DataError(f"no packaged SHA-256 manifest named {name!r}")
    return parse_manifest(res.read_text(encoding="utf-8"), f"manifests/{name}.txt")


def _read_manifest_arg(manifest: str | Path | dict[str, str] | None, name: str) -> dict[str, str]:
    if manifest is None:
        return load_manifest(name)
    if isinstance(manifest, dict):
        return dict(manifest)
    p = Path(manifest)
    if not p.is_file():
        raise DataError(f"{p}: manifest not found")
    return parse_manifest(p.read_text(encoding="utf-8"), str(p))


def verify_folder(folder: Path, manifest: dict[str, str]) -> VerifyReport:
    """Check every manifest entry under ``folder`` (extra files are ignored)."""
    ok, missing, bad = [], [], []
    for rel, want in sorted(manifest.items()):
        p = folder / rel
        if not p.is_file():
            missing.append(rel)
        elif sha256_file(p) != want:
            bad.append(rel)
        else:
            ok.append(rel)
    return VerifyReport(folder, tuple(ok), tuple(missing), tuple(bad))


def verify_dataset(
    name: str, *, data_root: str | Path | None = None, manifest: str | Path | dict[str, str] | None = None
) -> VerifyReport:
    """Check ``<data root>/<name>`` against its packaged manifest (or ``manifest``)."""
    return verify_folder(resolve_data_root(data_root) / name, _read_manifest_arg(manifest, name))


def _is_url(s: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", s) is not None


def _open_url(url: str) -> tuple[IO[bytes], int | None]:
    """An open byte stream and its length when known; local paths are opened directly."""
    try:
        if not _is_url(url):
            p = Path(url).expanduser()
            return p.open("rb"), p.stat().st_size
        resp = urllib.request.urlopen(url, timeout=TIMEOUT_S)
        length = resp.headers.get("Content-Length")
        return resp, int(length) if length and length.isascii() and length.isdigit() else None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"cannot download {url}: {reason}") from None


def _copy_stream(src: IO[bytes], dst: IO[bytes], total: int | None, desc: str, progress: bool) -> str:
    """Copy with a tqdm byte counter on stderr; return the SHA-256 of what was copied."""
    from tqdm.auto import tqdm

    h = hashlib.sha256()
    with tqdm(
        total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress, leave=False
    ) as bar:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            h.update(chunk)
            dst.write(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def download(url: str, dest: Path, *, progress: bool = True) -> str:
    """Download ``url`` (http(s), file:// or a local path) to ``dest`` atomically; return its SHA-256.

    Raises:
        DataError: the URL cannot be read.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    src, total = _open_url(url)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with src, os.fdopen(fd, "wb") as out:
            digest = _copy_stream(src, out, total, dest.name, progress)
        os.replace(tmp, dest)
    except (OSError, urllib.error.URLError) as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(f"cannot download {url}: {exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def fetch_bytes(url: str) -> bytes:
    """The whole content of ``url`` (small files).

    Raises:
        DataError: the URL cannot be read.
    """
    src, _ = _open_url(url)
    try:
        with src:
            return src.read()
    except (OSError, urllib.error.URLError) as exc:
        raise DataError(f"cannot download {url}: {exc}") from None


def _archive_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(member path, bytes)`` for every regular file of a tar (any compression) or zip archive.

    Raises:
        DataError: not a readable archive.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        yield info.filename, zf.read(info)
            return
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                if member.isfile():
                    fh = tf.extractfile(member)
                    if fh is not None:
                        yield member.name, fh.read()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(f"{path}: not a readable tar/zip archive ({exc})") from None


def _png_bytes(bmp: bytes, origin: str) -> bytes:
    """Lossless BMP -> PNG; 8-bit gray palettes become mode L. The PNG is decoded again and must give the same
    pixels (mode, size, bytes), so a conversion that loses anything fails here rather than lands on disk."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(bmp)) as im:
            im.load()
            if im.mode == "P":
                gray = im.convert("L")
                img = gray if gray.convert("RGB").tobytes() == im.convert("RGB").tobytes() else im.convert("RGB")
            else:
                img = im.copy()
    except Exception as exc:
        raise DataError(f"{origin}: cannot decode BMP ({exc})") from None
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    with Image.open(io.BytesIO(buf.getvalue())) as back:
        back.load()
        same = back.mode == img.mode and back.size == img.size and back.tobytes() == img.tobytes()
    if not same:
        raise DataError(f"{origin}: the PNG made from this BMP does not decode to the same pixels")
    return buf.getvalue()


def _join_url(base: str, name: str) -> str:
    """``base`` (a URL or a local folder) joined with a manifest-relative file name."""
    return base.rstrip("/") + "/" + name if _is_url(base) else str(Path(base).expanduser() / name)


def _fetch_archive(
    src: FetchSource, url: str, target: Path, manifest: dict[str, str], downloads: Path, *, progress: bool
) -> tuple[list[str], list[str], list[str], bool]:
    """Download, then write every manifest-listed member whose bytes match.

    Returns:
        ``(written, failed, unlisted, archive_hash_checked)``: files written, failures with their reason,
        matching members that the manifest does not list (never written), and whether a pinned archive
        hash was checked.
    """
    if _is_url(url):
        archive = downloads / Path(urllib.request.url2pathname(url.rsplit("/", 1)[-1]) or f"{src.name}.archive").name
        digest = download(url, archive, progress=progress)
    else:
        archive = Path(url).expanduser()
        if not archive.is_file():
            raise DataError(f"{archive}: archive not found")
        digest = sha256_file(archive)
    checked = False
    if src.archive_sha256 is None:
        log.info(
            "%s: archive SHA-256 is not pinned (it could not be checked when this source was written); "
            "relying on the per-image manifest (%d files). Archive SHA-256 here: %s",
            src.name,
            len(manifest),
            digest,
        )
    elif digest != src.archive_sha256:
        raise DataError(f"{archive}: archive SHA-256 {digest} does not match the pinned {src.archive_sha256}")
    else:
        checked = True
    patterns = [(re.compile(rx), tmpl) for rx, tmpl in src.members]
    written: list[str] = []
    failed: list[str] = []
    unlisted: list[str] = []
    seen: set[str] = set()
    from tqdm.auto import tqdm

    with tqdm(total=len(manifest), desc=f"extract {src.name}", unit="file", disable=not progress, leave=False) as bar:
        for member, data in _archive_members(archive):
            for rx, tmpl in patterns:
                m = rx.match(member)
                if not m:
                    continue
                rel = m.expand(tmpl)
                _check_relpath(rel, f"{archive}:{member}")
                if rel not in manifest:
                    unlisted.append(rel)  # no hash to check it against: never written
                elif sha256_bytes(data) != manifest[rel]:
                    failed.append(f"{rel} (SHA-256 mismatch)")
                    seen.add(rel)
                else:
                    atomic_write_bytes(target / rel, data)
                    written.append(rel)
                    seen.add(rel)
                    bar.update(1)
                break
    failed += [f"{rel} (not in archive)" for rel in sorted(set(manifest) - seen)]
    return written, failed, unlisted, checked


def _fetch_files(
    src: FetchSource, url: str, target: Path, manifest: dict[str, str], source: dict[str, str] | None, *,
    progress: bool,
) -> tuple[list[str], list[str], list[str]]:
    """Fetch each listed file, verify, convert if asked, write. Returns written, failed, pixel-verified."""
    from tqdm.auto import tqdm

    listing = source if source is not None else manifest
    written: list[str] = []
    failed: list[str] = []
    pixel_verified: list[str] = []
    for rel, want in tqdm(
        sorted(listing.items()), desc=f"fetch {src.name}", unit="file", disable=not progress, leave=False
    ):
        file_url = _join_url(url, rel)
        try:
            data = fetch_bytes(file_url)
        except DataError as exc:
            failed.append(f"{rel} ({exc})")
            continue
        if sha256_bytes(data) != want:
            failed.append(f"{rel} (SHA-256 mismatch)")
            continue
        out_rel = rel
        if src.convert is Convert.BMP_TO_PNG:
            out_rel = str(PurePosixPath(rel).with_suffix(".png"))
            try:
                data = _png_bytes(data, file_url)
            except DataError as exc:
                failed.append(f"{rel} ({exc})")
                continue
            if out_rel not in manifest:
                failed.append(f"{out_rel} (not in the manifest)")
                continue
            if manifest[out_rel] != sha256_bytes(data):
                log.warning(
                    "%s: PNG bytes differ from the manifest (another zlib?); its pixels are those of the source "
                    "BMP, verified against its SHA-256",
                    out_rel,
                )
                pixel_verified.append(out_rel)
        atomic_write_bytes(target / out_rel, data)
        written.append(out_rel)
    return written, failed, pixel_verified


def fetch_dataset(
    name: str,
    *,
    data_root: str | Path | None = None,
    url: str | None = None,
    manifest: str | Path | dict[str, str] | None = None,
    source_manifest: str | Path | dict[str, str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> FetchReport:
    """Download ``name`` into ``<data root>/<name>`` and verify every file.

    Args:
        name: a source in :data:`SOURCES` (``bsds500``, ``live1``, ``classic5``, ``live1_gray``, ``kodak24``).
        data_root: the data root (see :func:`compress.data.datasets.resolve_data_root`); created if needed.
        url: another location of the same bytes: an archive URL / local archive path, or the base URL /
            folder of the individual files.
        manifest: another per-image manifest (path or dict); default the packaged one.
        source_manifest: for a converted set (LIVE1, Classic5): another manifest of the files as downloaded,
            before conversion (path or dict); default the packaged ``<name>_source_bmp`` one.
        force: fetch even when the folder already verifies.
        progress: tqdm bars on stderr.

    Returns:
        A :class:`FetchReport`.

    Raises:
        DataError: download failure, unreadable archive, or any file missing or failing its SHA-256
            (failing files are never written; the message lists them).
        RegistryError: no source of that name.
    """
    src = SOURCES.get(name)
    root = resolve_data_root(data_root)
    target = root / src.name
    files_manifest = _read_manifest_arg(manifest, src.name)
    if source_manifest is not None and src.convert is Convert.NONE:
        raise DataError(f"{src.name}: source_manifest is only for converted sets; this one is written as fetched")
    source = (
        _read_manifest_arg(source_manifest, src.source_manifest or src.name)
        if source_manifest is not None or src.source_manifest
        else None
    )
    if not force and target.is_dir() and verify_folder(target, files_manifest).passed:
        log.info("%s: already present and verified in %s", src.name, target)
        return FetchReport(src.name, target, (), already_present=True, archive_checked=False)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {target}: {exc}") from None
    location = url or src.url
    unlisted: list[str] = []
    pixel_verified: list[str] = []
    checked = False
    if src.kind is SourceKind.ARCHIVE:
        written, failed, unlisted, checked = _fetch_archive(
            src, location, target, files_manifest, root / ".downloads", progress=progress
        )
    else:
        written, failed, pixel_verified = _fetch_files(
            src, location, target, files_manifest, source, progress=progress
        )
    if unlisted:
        log.warning(
            "%s: %d archive file(s) not in the manifest were skipped: %s", src.name, len(unlisted), _first(unlisted)
        )
    if failed:
        raise DataError(f"{src.name}: {len(failed)} file(s) failed verification and were not written: {_first(failed)}")
    report = verify_folder(target, files_manifest)
    if not report.passed and src.convert is Convert.NONE:
        raise DataError(report.summary())
    if not report.passed and src.convert is not Convert.NONE:
        # the only files allowed to differ from the manifest are the ones whose pixels were verified above
        allowed = set(pixel_verified)
        bad = [*(f"{r} (missing)" for r in report.missing),
               *(f"{r} (SHA-256 mismatch)" for r in report.mismatched if r not in allowed)]  # fmt: skip
        if bad:
            raise DataError(f"{src.name}: {len(bad)} file(s) failed verification: {_first(bad)}")
    return FetchReport(src.name, target, tuple(written), False, checked, tuple(unlisted), tuple(pixel_verified))
