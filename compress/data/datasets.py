"""The dataset registry: which images a name means, where they live, how to load them.

Data root (the folder holding ``bsds500/``, ``live1/`` ...), first that applies:

1. the explicit ``data_root`` argument (``--data-root``);
2. the environment variable ``COMPRESS_DATA``;
3. the user cache dir, ``platformdirs.user_cache_dir('compress')`` (where ``compress data fetch`` puts
   archives by default).

Names:

* registered sets: ``bsds500`` (all 500), ``bsds500_train`` / ``bsds500_val`` / ``bsds500_test``,
  ``b200`` (= ``bsds500_test``, the "BSDS500" row of the FBCNN table), ``live1`` (RGB), ``live1_gray``,
  ``classic5`` (gray), ``kodak24``;
* ``folder:<path>``: every image directly inside a folder (png, jpg, bmp, tif, webp, ppm/pgm);
* ``embedded`` / ``embedded_gray``: scikit-image's bundled sample images. They need no data root and
  are the fallback when none exists (:func:`default_dataset`), but they are **not comparable to
  published numbers** (``comparable=False``);
* paired sets, where the degraded images come with the data instead of being made by our JPEG:
  ``tid2008`` (``I01.bmp`` references, ``I01_10_1.bmp`` .. ``I25_10_4.bmp`` = distortion 10, JPEG,
  levels 1-4, 1 the mildest) and ``mcl_jci`` (``ImageJND_SRC01.bmp`` references,
  ``ImageJND_SRC01_001.jpg`` .. ``_100.jpg``: the 100 JPEG versions of each source, numbered as the
  release numbers them; we use that number as the level). Files are found anywhere below the
  dataset folder, case-insensitively.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from compress.data.images import LoadMode, load_image
from compress.errors import DataError
from compress.registry import Registry

log = logging.getLogger(__name__)

U8 = NDArray[np.uint8]

ENV_DATA_ROOT = "COMPRESS_DATA"
FOLDER_PREFIX = "folder:"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"})
NOT_COMPARABLE = "not comparable to published numbers"


class DatasetKind(StrEnum):
    """How a dataset yields its inputs."""

    IMAGES = "images"
    """Clean images; the protocol makes the JPEG input."""
    PAIRED = "paired"
    """Reference images plus pre-made degraded versions at numbered levels."""


class Layout(StrEnum):
    """How the files of a dataset are found."""

    GLOB = "glob"
    TID2008 = "tid2008"
    MCL_JCI = "mcl_jci"
    EMBEDDED = "embedded"


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    Attributes:
        name: registry name.
        folder: folder relative to the data root (empty for embedded sets).
        pattern: glob of the image files inside ``folder`` (``GLOB`` layout).
        color: load mode of the images (``rgb``, ``gray`` or ``any``).
        split: ``train``, ``val``, ``test`` or ``all``.
        description: one line for listings.
        expected: number of images of the complete set, when known.
        comparable: whether results can be compared with published tables.
        kind: clean images or reference/degraded pairs.
        layout: how files are found.
        files: explicit file names (embedded sets).
    """

    name: str
    folder: str
    pattern: str
    color: LoadMode
    split: str
    description: str
    expected: int | None = None
    comparable: bool = True
    kind: DatasetKind = DatasetKind.IMAGES
    layout: Layout = Layout.GLOB
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageItem:
    """One image of a dataset; for paired sets also its degraded versions ``(level, path)``."""

    name: str
    path: Path
    distorted: tuple[tuple[int, Path], ...] = ()

    def levels(self) -> list[int]:
        """The degradation levels available for this image (paired sets)."""
        return [lvl for lvl, _ in self.distorted]

    def distorted_path(self, level: int) -> Path:
        """The degraded file at ``level``.

        Raises:
            DataError: no file for that level.
        """
        for lvl, p in self.distorted:
            if lvl == level:
                return p
        have = ", ".join(str(v) for v in self.levels()) or "none"
        raise DataError(f"{self.path}: no degraded version at level {level} (have: {have})")


@dataclass(frozen=True)
class Dataset:
    """A resolved dataset: the spec plus the files actually found."""

    spec: DatasetSpec
    root: Path
    items: tuple[ImageItem, ...] = field(repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def comparable(self) -> bool:
        return self.spec.comparable

    @property
    def paired(self) -> bool:
        return self.spec.kind is DatasetKind.PAIRED

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ImageItem]:
        return iter(self.items)

    def load(self, item: ImageItem) -> U8:
        """The clean (reference) image of ``item`` as uint8, in the dataset's load mode."""
        return load_image(item.path, self.spec.color)

    def load_distorted(self, item: ImageItem, level: int) -> U8:
        """The degraded image of ``item`` at ``level`` (paired sets), in the dataset's load mode."""
        return load_image(item.distorted_path(level), self.spec.color)

    def limited(self, limit: int | None) -> Dataset:
        """The first ``limit`` images (all when None)."""
        if limit is None:
            return self
        if limit < 1:
            raise DataError(f"limit must be at least 1, got {limit}")
        return Dataset(self.spec, self.root, self.items[:limit])


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _add(spec: DatasetSpec) -> None:
    DATASETS.add(spec.name, spec)


_BSDS = "BSDS500 (Arbelaez et al.), 481x321 colour JPEGs"
_RGB, _GRAY = LoadMode.RGB, LoadMode.GRAY
# name, folder under the data root, glob, colour, split, expected count, description
_IMAGE_SETS: tuple[tuple[str, str, str, LoadMode, str, int, str], ...] = (
    ("bsds500", "bsds500", "*/*.jpg", _RGB, "all", 500, f"{_BSDS}, all splits"),
    ("bsds500_train", "bsds500/train", "*.jpg", _RGB, "train", 200, f"{_BSDS}, train split"),
    ("bsds500_val", "bsds500/val", "*.jpg", _RGB, "val", 100, f"{_BSDS}, val split"),
    ("bsds500_test", "bsds500/test", "*.jpg", _RGB, "test", 200, f"{_BSDS}, test split"),
    ("b200", "bsds500/test", "*.jpg", _RGB, "test", 200, "BSDS500 test split (200), 'BSDS500' of FBCNN"),
    ("live1", "live1", "*.png", _RGB, "test", 29, "LIVE1, 29 true-colour images"),
    ("live1_gray", "live1_gray", "*.png", _GRAY, "test", 29, "LIVE1 Y (FBCNN's gray copy)"),
    ("classic5", "classic5", "*.png", _GRAY, "test", 5, "Classic5, 5 gray 512x512"),
    ("kodak24", "kodak24", "*.png", _RGB, "test", 24, "Kodak24, 24 colour 768x512"),
)
for _name, _folder, _glob, _color, _split, _n, _desc in _IMAGE_SETS:
    _add(DatasetSpec(_name, _folder, _glob, _color, _split, _desc, _n))
_add(
    DatasetSpec(
        "tid2008", "tid2008", "", _RGB, "test", "TID2008 references + JPEG (distortion 10) levels 1-4", 25,
        kind=DatasetKind.PAIRED, layout=Layout.TID2008,
    )
)  # fmt: skip
_add(
    DatasetSpec(
        "mcl_jci", "mcl_jci", "", _RGB, "test", "MCL-JCI 50 sources + 100 JPEG versions each", 50,
        kind=DatasetKind.PAIRED, layout=Layout.MCL_JCI,
    )
)  # fmt: skip
_add(
    DatasetSpec(
        "embedded", "", "", _RGB, "test", f"scikit-image colour sample images ({NOT_COMPARABLE})", 6,
        comparable=False, layout=Layout.EMBEDDED,
        files=("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "ihc.png", "motorcycle_left.png"),
    )
)  # fmt: skip
_add(
    DatasetSpec(
        "embedded_gray", "", "", _GRAY, "test", f"scikit-image gray sample images ({NOT_COMPARABLE})", 6,
        comparable=False, layout=Layout.EMBEDDED,
        files=("camera.png", "coins.png", "moon.png", "page.png", "text.png", "brick.png"),
    )
)  # fmt: skip


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """The data root: ``data_root`` if given, else ``$COMPRESS_DATA``, else the user cache dir.

    The folder need not exist (``compress data fetch`` creates it).
    """
    if data_root is not None and str(data_root) != "":
        return Path(data_root).expanduser()
    env = os.environ.get(ENV_DATA_ROOT)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("compress"))


def _root_origin(data_root: str | Path | None) -> str:
    if data_root is not None and str(data_root) != "":
        return "--data-root"
    return f"${ENV_DATA_ROOT}" if os.environ.get(ENV_DATA_ROOT) else "the default cache dir"


def _skimage_data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def _images_in(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _item_name(path: Path, base: Path) -> str:
    rel = path.relative_to(base)
    return str(rel.with_suffix("")).replace(os.sep, "/")


_TID_REF = re.compile(r"^i(\d{2})\.bmp$", re.IGNORECASE)
_TID_JPEG = re.compile(r"^i(\d{2})_10_([1-4])\.bmp$", re.IGNORECASE)
_MCL_REF = re.compile(r"^imagejnd_src(\d{2})\.bmp$", re.IGNORECASE)
_MCL_JPEG = re.compile(r"^imagejnd_src(\d{2})_(\d{3})\.jpg$", re.IGNORECASE)


def _paired_items(folder: Path, ref_re: re.Pattern[str], dist_re: re.Pattern[str], what: str) -> list[ImageItem]:
    """Match references and degraded files by the number in their names, anywhere below ``folder``."""
    refs: dict[str, Path] = {}
    dists: dict[str, dict[int, Path]] = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        if m := ref_re.match(p.name):
            refs[m.group(1)] = p
        elif m := dist_re.match(p.name):
            dists.setdefault(m.group(1), {})[int(m.group(2))] = p
    if not refs:
        raise DataError(f"{folder}: no {what} reference images found (expected e.g. {ref_re.pattern})")
    orphans = sorted(set(dists) - set(refs))
    if orphans:
        raise DataError(f"{folder}: degraded images without a reference for source(s) {', '.join(orphans)}")
    items = []
    for key in sorted(refs):
        levels = dists.get(key, {})
        if not levels:
            raise DataError(f"{refs[key]}: no degraded versions found for this {what} reference")
        items.append(ImageItem(refs[key].stem, refs[key], tuple(sorted(levels.items()))))
    return items


def _find_items(spec: DatasetSpec, folder: Path) -> list[ImageItem]:
    if spec.layout is Layout.TID2008:
        return _paired_items(folder, _TID_REF, _TID_JPEG, "TID2008")
    if spec.layout is Layout.MCL_JCI:
        return _paired_items(folder, _MCL_REF, _MCL_JPEG, "MCL-JCI")
    if spec.layout is Layout.EMBEDDED:
        missing = [f for f in spec.files if not (folder / f).is_file()]
        if missing:
            raise DataError(f"{folder}: scikit-image sample image(s) missing: {', '.join(missing)}")
        return [ImageItem(Path(f).stem, folder / f) for f in spec.files]
    return [ImageItem(_item_name(p, folder), p) for p in _images_in(folder, spec.pattern)]


def folder_spec(path: str | Path) -> DatasetSpec:
    """The spec of ``folder:<path>``: every image directly inside ``path``, loaded in its own colour."""
    p = Path(path).expanduser()
    return DatasetSpec(f"{FOLDER_PREFIX}{path}", str(p), "*", LoadMode.ANY, "all", f"images in {p}")


def get_spec(name: str) -> DatasetSpec:
    """The spec of a registered name or of ``folder:<path>``."""
    if name.startswith(FOLDER_PREFIX):
        path = name[len(FOLDER_PREFIX) :]
        if not path:
            raise DataError("dataset 'folder:' needs a path, e.g. folder:/data/my_images")
        return folder_spec(path)
    return DATASETS.get(name)


def dataset_folder(spec: DatasetSpec, data_root: str | Path | None = None) -> Path:
    """Where the files of ``spec`` live (no existence check)."""
    if spec.layout is Layout.EMBEDDED:
        return _skimage_data_dir()
    if spec.name.startswith(FOLDER_PREFIX):
        return Path(spec.folder)
    return resolve_data_root(data_root) / spec.folder


def open_dataset(name: str | Dataset, *, data_root: str | Path | None = None, limit: int | None = None) -> Dataset:
    """Resolve a dataset name to its files.

    Args:
        name: a registered name, ``folder:<path>``, or an already opened :class:`Dataset`.
        data_root: the data root (see :func:`resolve_data_root`).
        limit: keep only the first ``limit`` images (sorted by name).

    Raises:
        RegistryError: unknown name (the message lists the valid ones).
        DataError: missing data root or folder, or no images.
    """
    if isinstance(name, Dataset):
        return name.limited(limit)
    spec = get_spec(name)
    folder = dataset_folder(spec, data_root)
    is_folder = spec.name.startswith(FOLDER_PREFIX)
    if spec.layout is not Layout.EMBEDDED and not is_folder:
        root = resolve_data_root(data_root)
        if not root.is_dir():
            raise DataError(
                f"data root {root} (from {_root_origin(data_root)}) does not exist; expected {spec.folder}/ "
                f"inside it. Run 'compress data fetch {spec.name}', set ${ENV_DATA_ROOT}, or use --dataset embedded"
            )
    if not folder.is_dir():
        what = f"{spec.expected} images" if spec.expected else "images"
        raise DataError(
            f"{folder}: dataset folder of {spec.name!r} not found (expected {what} matching "
            f"{spec.pattern or spec.layout.value!r} there)"
        )
    items = _find_items(spec, folder)
    if not items:
        pattern = spec.pattern if spec.layout is Layout.GLOB else spec.layout.value
        raise DataError(f"{folder}: no images matching {pattern!r} for dataset {spec.name!r}")
    if spec.expected is not None and len(items) != spec.expected and spec.comparable:
        log.warning(
            "%s: found %d images, the full set has %d: results are %s",
            spec.name,
            len(items),
            spec.expected,
            NOT_COMPARABLE,
        )
    return Dataset(spec, folder, tuple(items)).limited(limit)


def default_dataset(data_root: str | Path | None = None) -> str:
    """``live1`` when the data root holds it, else ``embedded`` (with a warning: not comparable)."""
    if (resolve_data_root(data_root) / "live1").is_dir():
        return "live1"
    log.warning("no data root with live1/ found; using the embedded scikit-image images (%s)", NOT_COMPARABLE)
    return "embedded"


def dataset_names() -> list[str]:
    """Registered names plus the ``folder:<path>`` form."""
    return [*DATASETS.names(), f"{FOLDER_PREFIX}<path>"]
