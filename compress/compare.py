"""Before/after figures: original, JPEG and each model side by side, with crops where JPEG hurts most.

The figure has one column per panel (original, JPEG at the chosen quality, then each model) and
one row for the full images plus one row per crop. Crops are the windows with the largest mean
absolute JPEG error (non-overlapping, greedy), outlined on the full images. Each panel is titled with
its PSNR against the original under the chosen protocol (full image) or over the crop. Rendering uses
matplotlib's Agg canvas directly (no pyplot, no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from torch import nn

from compress.data.images import LoadMode, load_image
from compress.errors import CheckpointError, DataError
from compress.inference import model_channels, restore
from compress.metrics import psnr
from compress.protocols import Color, Protocol, get_protocol

if TYPE_CHECKING:
    from matplotlib.figure import Figure

U8 = NDArray[np.uint8]
F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Panel:
    """One column of the figure: a label, the image shown (uint8, protocol colour) and what was scored.

    ``scored`` is the protocol-finalized output (raw floats under ``arcnn-y``); PSNRs are computed on it.
    """

    label: str
    image: U8
    psnr: float | None
    scored: NDArray[np.float64] | None = None


@dataclass(frozen=True)
class Crop:
    """A crop window, top-left corner and size in pixels."""

    y: int
    x: int
    size: int


def worst_regions(ref: U8, degraded: U8, *, size: int, count: int) -> list[Crop]:
    """The ``count`` non-overlapping ``size`` x ``size`` windows with the largest mean |degraded - ref|.

    Greedy: take the worst window, rule out every window that overlaps it, repeat. Windows are
    clamped to the image; an image smaller than ``size`` gives one crop of the whole image.
    """
    err = np.abs(ref.astype(np.float64) - degraded.astype(np.float64))
    if err.ndim == 3:
        err = err.mean(axis=2)
    h, w = err.shape
    s = min(size, h, w)
    c = np.pad(np.cumsum(np.cumsum(err, axis=0), axis=1), ((1, 0), (1, 0)))
    sums = c[s:, s:] - c[:-s, s:] - c[s:, :-s] + c[:-s, :-s]  # sums[y, x] = window at (y, x)
    crops: list[Crop] = []
    for _ in range(count):
        if not np.isfinite(sums).any():
            break
        y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
        crops.append(Crop(int(y), int(x), s))
        sums[max(0, y - s + 1) : y + s, max(0, x - s + 1) : x + s] = -np.inf
    return crops


def _to_u8(x: F64) -> U8:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def build_panels(
    image: U8, quality: int, models: Sequence[tuple[str, nn.Module]], protocol: Protocol, *, tile: int | None = None
) -> tuple[list[Panel], U8, U8]:
    """Original, JPEG and one panel per model; returns ``(panels, reference, jpeg)``.

    Raises:
        CheckpointError: a model whose channels do not fit the protocol's colour.
    """
    ref, jpeg = protocol.degrade(image, quality)
    jpeg_psnr = protocol.score(ref, jpeg, which=("psnr",)).psnr
    panels = [Panel("original", ref, None), Panel(f"JPEG q{quality}", jpeg, jpeg_psnr, jpeg.astype(np.float64))]
    for name, model in models:
        ch = model_channels(model)
        if ch is not None and ch != protocol.color.channels:
            raise CheckpointError(
                f"model {name!r} takes {ch} channel(s); protocol {protocol.name!r} gives {protocol.color.channels}"
            )
        out = protocol.finalize(restore(model, jpeg, tile=tile))
        panels.append(Panel(name, _to_u8(out), protocol.score(ref, out, which=("psnr",)).psnr, out))
    return panels, ref, jpeg


def compare_figure(
    image: U8,
    quality: int,
    models: Sequence[tuple[str, nn.Module]],
    *,
    protocol: str | Protocol = "idcn-rgb",
    crop: int = 96,
    crops: int = 2,
    tile: int | None = None,
    title: str | None = None,
) -> Figure:
    """A matplotlib ``Figure`` with the panels and crops (see the module docstring)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    proto = get_protocol(protocol)
    panels, ref, jpeg = build_panels(image, quality, models, proto, tile=tile)
    regions = worst_regions(ref, jpeg, size=crop, count=crops)
    ncols, nrows = len(panels), 1 + len(regions)
    h, w = ref.shape[:2]
    col_w = 3.2
    full_h = col_w * h / w
    fig = Figure(figsize=(col_w * ncols, full_h + col_w * len(regions) + 0.6), dpi=110)
    grid = fig.add_gridspec(nrows, ncols, height_ratios=[full_h] + [col_w] * len(regions))
    gray = proto.color is Color.Y
    colors = ["#ff3b30", "#34c759", "#0a84ff", "#ffcc00"]
    for j, panel in enumerate(panels):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(panel.image, cmap="gray" if gray else None, vmin=0, vmax=255, interpolation="nearest")
        label = panel.label if panel.psnr is None else f"{panel.label}\n{panel.psnr:.2f} dB"
        ax.set_title(label, fontsize=9)
        ax.set_axis_off()
        for k, r in enumerate(regions):
            ax.add_patch(Rectangle((r.x, r.y), r.size, r.size, fill=False, lw=1.2, ec=colors[k % len(colors)]))
        for i, r in enumerate(regions, start=1):
            cax = fig.add_subplot(grid[i, j])
            patch = panel.image[r.y : r.y + r.size, r.x : r.x + r.size]
            cax.imshow(patch, cmap="gray" if gray else None, vmin=0, vmax=255, interpolation="nearest")
            if panel.scored is not None:
                win = (slice(r.y, r.y + r.size), slice(r.x, r.x + r.size))
                cax.set_title(f"{psnr(ref[win], panel.scored[win]):.2f} dB", fontsize=8)
            for side in cax.spines.values():
                side.set_edgecolor(colors[(i - 1) % len(colors)])
                side.set_linewidth(2)
            cax.set_xticks([])
            cax.set_yticks([])
    fig.suptitle(
        title or f"JPEG q{quality}, protocol {proto.name} (PSNR vs original; crops: largest JPEG error)", fontsize=10
    )
    fig.tight_layout()
    return fig


def save_comparison(
    image_path: str | Path,
    quality: int,
    models: Sequence[tuple[str, nn.Module]],
    out: str | Path,
    *,
    protocol: str | Protocol | None = None,
    crop: int = 96,
    crops: int = 2,
    tile: int | None = None,
) -> Path:
    """Load ``image_path``, build the comparison figure and save it as PNG at ``out``.

    ``protocol`` defaults to ``fbcnn-y`` when the models take one channel, else ``idcn-rgb``.

    Raises:
        DataError: unreadable image, or models of mixed channel counts.
        CheckpointError: a model that does not fit the protocol.
    """
    p = Path(out)
    if p.suffix.lower() != ".png":
        raise DataError(f"{p}: the comparison is written as PNG; use a .png file name")
    chans = {model_channels(m) for _, m in models} - {None}
    if len(chans) > 1:
        raise DataError(
            f"models take different channel counts ({sorted(c for c in chans if c)}); compare them separately"
        )
    if protocol is None:
        protocol = "fbcnn-y" if chans == {1} else "idcn-rgb"
    proto = get_protocol(protocol)
    img = load_image(image_path, LoadMode.RGB if proto.color is Color.RGB else LoadMode.ANY)
    fig = compare_figure(
        img,
        quality,
        models,
        protocol=proto,
        crop=crop,
        crops=crops,
        tile=tile,
        title=f"{Path(image_path).name}: JPEG q{quality}, protocol {proto.name}",
    )
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, format="png")
    return p
