"""Evaluate a model (or plain JPEG) on a dataset under a named protocol.

:func:`evaluate_model` is the one entry point; the ``compress evaluate`` command, the training loop
and the compression engine all call it. For every image it makes the protocol's JPEG input, runs the
model, and scores both the model output and the JPEG input against the reference, so each result
carries the JPEG baseline beside the model's numbers.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from torch import nn

from compress.data.datasets import Dataset, ImageItem, open_dataset
from compress.errors import CheckpointError, DataError, ShapeError
from compress.inference import DEFAULT_OVERLAP, model_channels, restore
from compress.protocols import SCORE_NAMES, Protocol, Scores, get_protocol

JPEG_MODEL = "jpeg"
"""Model name of the JPEG baseline (no restoration: the model metrics equal the JPEG ones)."""

RESULT_KEYS = (
    "dataset",
    "quality",
    "protocol",
    "model",
    "n_images",
    "psnr",
    "ssim",
    "psnrb",
    "jpeg_psnr",
    "jpeg_ssim",
    "jpeg_psnrb",
)


@dataclass(frozen=True)
class ImageResult:
    """Scores of one image at one quality."""

    image: str
    quality: int
    psnr: float
    ssim: float
    psnrb: float
    jpeg_psnr: float
    jpeg_ssim: float
    jpeg_psnrb: float

    @classmethod
    def of(cls, image: str, quality: int, scores: Scores, jpeg: Scores) -> ImageResult:
        """Build from the model's and the JPEG input's :class:`~compress.protocols.Scores`."""
        return cls(image, quality, scores.psnr, scores.ssim, scores.psnrb, jpeg.psnr, jpeg.ssim, jpeg.psnrb)


@dataclass(frozen=True)
class EvalResult:
    """Mean scores of one model on one dataset at one JPEG quality under one protocol.

    ``per_image`` holds the rows behind the means; it is left out of :meth:`to_dict` and comparisons.
    ``comparable`` is False for data sets whose numbers cannot be set beside published tables
    (the embedded sample images, incomplete sets are only warned about).
    """

    dataset: str
    quality: int
    protocol: str
    model: str
    n_images: int
    psnr: float
    ssim: float
    psnrb: float
    jpeg_psnr: float
    jpeg_ssim: float
    jpeg_psnrb: float
    comparable: bool = field(default=True, compare=False)
    per_image: tuple[ImageResult, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        """The JSON object of this result (exactly :data:`RESULT_KEYS`)."""
        return {k: getattr(self, k) for k in RESULT_KEYS}


ModelArg = nn.Module | Mapping[int, nn.Module] | None


def _model_for(model: ModelArg, quality: int) -> nn.Module | None:
    if model is None or isinstance(model, nn.Module):
        return model
    try:
        return model[quality]
    except KeyError:
        have = ", ".join(str(q) for q in sorted(model)) or "none"
        raise CheckpointError(f"no model for JPEG quality {quality} (have models for: {have})") from None


def _check_channels(model: nn.Module, protocol: Protocol) -> None:
    want = model_channels(model)
    if want is not None and want != protocol.color.channels:
        raise CheckpointError(
            f"the model takes {want} input channel(s) but protocol {protocol.name!r} feeds "
            f"{protocol.color.channels} ({protocol.color.value}); pick a protocol of the model's colour"
        )


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _qualities(qualities: int | Sequence[int]) -> list[int]:
    qs = [qualities] if isinstance(qualities, int) else list(qualities)
    if not qs:
        raise DataError("no JPEG quality given")
    for q in qs:
        if not 1 <= int(q) <= 100:
            raise DataError(f"JPEG quality must be in 1..100, got {q}")
    return [int(q) for q in qs]


def _pair_for(
    ds: Dataset, item: ImageItem, img: NDArray[np.uint8], quality: int, proto: Protocol
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """``(reference, degraded input)``: our JPEG of the image, or a paired set's own degraded file."""
    if not ds.paired:
        return proto.degrade(img, quality)
    ref = proto.reference_image(img)
    degraded = proto.reference_image(ds.load_distorted(item, quality))
    if degraded.shape != ref.shape:
        raise DataError(f"{item.distorted_path(quality)}: size {degraded.shape} differs from the reference {ref.shape}")
    return ref, degraded


def evaluate_model(
    model: ModelArg,
    dataset: str | Dataset,
    qualities: int | Sequence[int],
    protocol: str | Protocol,
    *,
    data_root: str | Path | None = None,
    limit: int | None = None,
    progress: bool = True,
    model_name: str | None = None,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    device: str = "cpu",
    metrics: Collection[str] = SCORE_NAMES,
) -> list[EvalResult]:
    """Mean PSNR / SSIM / PSNR-B of ``model`` and of the JPEG input, per quality.

    Args:
        model: an ``nn.Module`` used at every quality, a mapping quality -> module (one model per
            quality, as the ARCNN release), or None for the JPEG baseline.
        dataset: a dataset name (see :mod:`compress.data.datasets`) or an opened :class:`Dataset`.
        qualities: one or more JPEG qualities (for paired datasets: their degradation levels).
        protocol: a protocol name (``arcnn-y``, ``fbcnn-y``, ``idcn-rgb``) or :class:`Protocol`.
        data_root: the data root (default ``$COMPRESS_DATA``, then the user cache dir).
        limit: evaluate only the first ``limit`` images.
        progress: show a tqdm bar on stderr.
        model_name: the ``model`` field of the results (default: ``jpeg`` or the class name).
        tile: tile size for large images (see :func:`compress.inference.restore`); None = whole image.
        overlap: tile overlap.
        device: torch device.
        metrics: which of ``psnr``, ``ssim``, ``psnrb`` to compute; the others are NaN (PSNR alone
            is several times cheaper, e.g. for validation during training).

    Returns:
        One :class:`EvalResult` per quality, in the order given.

    Raises:
        DataError: missing or empty data, a bad quality, an image the protocol cannot use.
        CheckpointError: a model whose channels do not fit the protocol, or no model for a quality.
        RegistryError: an unknown dataset or protocol name.
    """
    proto = get_protocol(protocol)
    qs = _qualities(qualities)
    ds = open_dataset(dataset, data_root=data_root, limit=limit)
    models = {q: _model_for(model, q) for q in qs}
    for m in {id(m): m for m in models.values() if m is not None}.values():
        _check_channels(m, proto)
    if model_name is None:
        model_name = JPEG_MODEL if model is None else type(next(m for m in models.values() if m is not None)).__name__

    from tqdm.auto import tqdm

    rows: dict[int, list[ImageResult]] = {q: [] for q in qs}
    bar = tqdm(
        total=len(ds) * len(qs),
        desc=f"{model_name} {ds.name} {proto.name}",
        unit="img",
        disable=not progress,
        leave=False,
    )
    try:
        for item in ds:
            img = ds.load(item)
            for q in qs:
                try:
                    ref, jpeg = _pair_for(ds, item, img, q, proto)
                except DataError as exc:  # name the file: a folder may mix gray and colour images
                    msg = str(exc)
                    raise DataError(msg if msg.startswith(str(item.path)) else f"{item.path}: {msg}") from None
                jpeg_scores = proto.score(ref, jpeg, which=metrics)
                net = models[q]
                if net is None:
                    scores: Scores = jpeg_scores
                else:
                    try:
                        out = restore(net, jpeg, tile=tile, overlap=overlap, device=device)
                    except ShapeError as exc:  # shape or channel trouble: the model does not fit the data
                        raise CheckpointError(f"{item.path}: {exc}") from None
                    scores = proto.score(ref, proto.finalize(out), which=metrics)
                rows[q].append(ImageResult.of(item.name, q, scores, jpeg_scores))
                bar.update(1)
    finally:
        bar.close()
    results = []
    for q in qs:
        r = rows[q]
        results.append(
            EvalResult(
                dataset=ds.name,
                quality=q,
                protocol=proto.name,
                model=model_name,
                n_images=len(r),
                psnr=_mean([x.psnr for x in r]),
                ssim=_mean([x.ssim for x in r]),
                psnrb=_mean([x.psnrb for x in r]),
                jpeg_psnr=_mean([x.jpeg_psnr for x in r]),
                jpeg_ssim=_mean([x.jpeg_ssim for x in r]),
                jpeg_psnrb=_mean([x.jpeg_psnrb for x in r]),
                comparable=ds.comparable,
                per_image=tuple(r),
            )
        )
    return results


def load_weights(arch: str, weights: str | Path) -> nn.Module:
    """Build ``arch`` with ``weights``: a safetensors checkpoint, or the authors' ARCNN ``.mat`` file.

    A ``.mat`` file is only accepted for ``arcnn_y`` (the ICCV 2015 release, read by
    :func:`compress.nets.arcnn.load_matlab_arcnn`).

    Raises:
        CheckpointError: missing, unreadable or mismatched weights.
    """
    from compress.checkpoint import load_model, normalize_arch

    p = Path(weights)
    if p.suffix.lower() == ".mat":
        name = normalize_arch(arch)
        if name != "arcnn_y":
            raise CheckpointError(
                f"{p}: Matlab weights are only supported for arcnn_y (the authors' ARCNN), not {name!r}"
            )
        from compress.nets import build_model
        from compress.nets.arcnn import load_matlab_arcnn

        model = build_model("arcnn_y")
        model.load_state_dict(load_matlab_arcnn(p), strict=True)
        return model.eval()
    model, _ = load_model(p, arch)
    return model


def weights_for_quality(template: str, quality: int) -> str:
    """Expand ``{q}`` in a weights path (``q{q}.mat`` -> ``q10.mat``); other paths are returned as they are."""
    return template.replace("{q}", str(quality)) if "{q}" in template else template


def write_per_image_csv(path: str | Path, results: Sequence[EvalResult]) -> Path:
    """One row per (image, quality): the identifying fields then the model and JPEG scores."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    cols = [
        "dataset",
        "quality",
        "protocol",
        "model",
        "image",
        "psnr",
        "ssim",
        "psnrb",
        "jpeg_psnr",
        "jpeg_ssim",
        "jpeg_psnrb",
    ]
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in results:
            for x in r.per_image:
                w.writerow(
                    [
                        r.dataset,
                        r.quality,
                        r.protocol,
                        r.model,
                        x.image,
                        *(f"{v:.6f}" for v in (x.psnr, x.ssim, x.psnrb, x.jpeg_psnr, x.jpeg_ssim, x.jpeg_psnrb)),
                    ]
                )
    return p


def format_table(results: Sequence[EvalResult]) -> str:
    """A plain-text table of results (PSNR 2 decimals, SSIM 4), JPEG baseline beside the model."""
    head = (
        f"{'dataset':<14} {'q':>3} {'protocol':<9} {'model':<14} {'n':>4}  "
        f"{'PSNR':>6} {'SSIM':>6} {'PSNR-B':>6}  |  {'JPEG':>6} {'SSIM':>6} {'PSNR-B':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.dataset:<14} {r.quality:>3} {r.protocol:<9} {r.model:<14} {r.n_images:>4}  "
            f"{r.psnr:6.2f} {r.ssim:6.4f} {r.psnrb:6.2f}  |  {r.jpeg_psnr:6.2f} {r.jpeg_ssim:6.4f} {r.jpeg_psnrb:6.2f}"
        )
    return "\n".join(lines)
