"""Model cards for the zoo in ``models/``: what a checkpoint is, how it was made, what it scores.

A card is measured, never typed in: :func:`measure_card` evaluates ``best.safetensors`` with
:func:`compress.evaluate.evaluate_model` on the sets that fit the model's colour, and
:func:`write_card` renders ``card.json`` (the numbers, for tests and tables) and ``README.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compress.checkpoint import load_model
from compress.errors import CheckpointError
from compress.fsio import atomic_write_bytes

# RGB models are scored on RGB sets under idcn-rgb; Y models on the gray / Y sets under the Y protocols.
RGB_SETS = ("live1", "b200", "kodak24")
Y_SETS = ("live1", "classic5", "b200", "kodak24")


@dataclass(frozen=True)
class ModelCard:
    name: str
    arch: str
    channels: int
    color: str
    qualities: list[int]
    params: int
    steps: int
    wall_s: float
    init: str
    recipe: str
    train_config: dict[str, Any]
    weights_file: str
    weights_bytes: int
    scores: list[dict[str, Any]] = field(default_factory=list)  # EvalResult.to_dict() rows
    measured: str = ""
    notes: str = ""  # how the run was made, when it differs from a plain `compress train --recipe`
    eval_precision: str = "fp32"  # how the scores were computed: fp32, or bf16 autocast (large models on a CPU)


def measure_card(
    model_dir: str | Path, *, data_root: str | None = None, limit: int | None = None, progress: bool = True,
    recipe: str | None = None, notes: str = "", precision: str = "fp32", sets: Sequence[str] | None = None,
) -> ModelCard:
    """Evaluate ``model_dir/best.safetensors`` and collect its provenance.

    ``precision``: ``fp32``, or ``bf16`` autocast (:func:`compress.inference.with_precision`) for models too
    large to score in fp32 on a CPU in reasonable time; the card says which. ``sets``: score only these of
    the colour's sets (default all; the card lists what was scored).

    Raises:
        CheckpointError: no ``best.safetensors``, or a set that is not one of the colour's.
    """
    from compress.evaluate import evaluate_model
    from compress.inference import with_precision

    d = Path(model_dir)
    weights = d / "best.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{weights}: no trained weights to describe")
    model, meta = load_model(weights)
    cfg = json.loads(meta.get("train_config", "{}"))
    state = json.loads((d / "state.json").read_text()) if (d / "state.json").exists() else {}
    color = meta.get("color", cfg.get("color", "rgb"))
    qualities = json.loads(meta["qualities"]) if "qualities" in meta else list(cfg.get("qualities", [10]))
    all_sets = RGB_SETS if color == "rgb" else Y_SETS
    bad = [x for x in (sets or ()) if x not in all_sets]
    if bad:
        raise CheckpointError(f"{d}: a {color} model's card scores {', '.join(all_sets)}, not {', '.join(bad)}")
    sets = [x for x in all_sets if sets is None or x in sets]
    protocols = ("idcn-rgb",) if color == "rgb" else ("arcnn-y", "fbcnn-y")
    scores: list[dict[str, Any]] = []
    run = with_precision(model, precision)
    for ds in sets:
        for proto in protocols:
            for r in evaluate_model(run, ds, qualities, proto, data_root=data_root, limit=limit, progress=progress,
                                    model_name=d.name):
                scores.append(r.to_dict())
    return ModelCard(
        name=d.name,
        arch=meta.get("arch", "?"),
        channels=int(meta.get("channels", 3)),
        color=color,
        qualities=[int(q) for q in qualities],
        params=sum(p.numel() for p in model.parameters()),
        steps=int(json.loads(meta.get("step", "0"))),
        wall_s=float(state.get("wall_s", json.loads(meta.get("wall_s", "0")))),
        init=meta.get("init", "?"),
        recipe=recipe or f"recipes/train-{d.name}.yaml",
        train_config=cfg,
        weights_file=weights.name,
        weights_bytes=weights.stat().st_size,
        scores=scores,
        measured=time.strftime("%Y-%m-%d"),
        notes=notes,
        eval_precision=precision,
    )


def render_card(card: ModelCard) -> str:
    c = card.train_config
    validated = c.get("val_dataset") and int(c.get("val_every") or 0) <= int(c.get("steps") or 0)
    which = "the best validation step" if validated else "the final step (no validation during training)"
    val = (f", validation `{c.get('val_dataset', '?')}` (first {c.get('val_limit')})" if validated else "")
    opts = c.get("arch_kwargs") or {}
    arch = f"`{card.arch}` with `{json.dumps(opts, separators=(', ', ': '))}`" if opts else f"`{card.arch}`"
    bf16 = ", bf16 autocast" if card.eval_precision == "bf16" else ""
    lines = [
        f"# {card.name}",
        "",
        f"{arch} ({card.params:,} parameters, {card.channels} channel{'s' if card.channels > 1 else ''}, "
        f"colour `{card.color}`), trained here for JPEG quality {', '.join(map(str, card.qualities))}.",
        "",
        "| | |",
        "|---|---|",
        f"| weights | `{card.weights_file}` ({card.weights_bytes / 1024:.0f} KiB, safetensors) — {which} |",
        f"| recipe | `{card.recipe}` — reproduce with `compress train --recipe {card.recipe}` |",
        f"| data | `{_short_path(c.get('images_dir', '?'))}` (BSDS500 train: 200 images){val} |",
        f"| steps | {card.steps:,} of batch {c.get('batch_size')} x "
        f"{c.get('patch_size')}x{c.get('patch_size')} patches |",
        f"| optimiser | Adam, lr {c.get('lr')} warm-up {c.get('warmup_steps')} + cosine, loss {c.get('loss')}, "
        f"init {card.init}, {c.get('precision')} |",
        f"| wall time | {card.wall_s / 60:.1f} min of training on {c.get('threads')} CPU thread(s) "
        "(validation excluded) |",
        "",
        *([card.notes, ""] if card.notes else []),
        f"## Scores (measured {card.measured} with `compress evaluate`{bf16})",
        "",
        "| dataset | protocol | q | images | PSNR | SSIM | PSNR-B | JPEG PSNR | JPEG SSIM | JPEG PSNR-B | gain (dB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in card.scores:
        lines.append(
            f"| {r['dataset']} | {r['protocol']} | {r['quality']} | {r['n_images']} | {r['psnr']:.2f} "
            f"| {r['ssim']:.4f} | {r['psnrb']:.2f} | {r['jpeg_psnr']:.2f} | {r['jpeg_ssim']:.4f} "
            f"| {r['jpeg_psnrb']:.2f} | {r['psnr'] - r['jpeg_psnr']:+.2f} |"
        )
    lines += [
        "",
        "Reproduce a row: `compress evaluate --model "
        f"{card.arch} --weights models/{card.name}/{card.weights_file} --dataset DATASET --quality Q --protocol P"
        f"{' --precision bf16' if bf16 else ''}`.",
        "RGB models are scored on RGB sets under `idcn-rgb` (the brief's table protocol); Y models under `arcnn-y` "
        "and `fbcnn-y`. Kodak24 stands in for TID2008, whose images are not available here.",
        "",
    ]
    return "\n".join(lines)


def _short_path(path: str) -> str:
    """The last two parts of a data path (``bsds500/train``): the data root differs between machines."""
    return "/".join(Path(path).parts[-2:])


def write_card(card: ModelCard, model_dir: str | Path) -> Path:
    d = Path(model_dir)
    atomic_write_bytes(d / "card.json", json.dumps(asdict(card), indent=1).encode())
    atomic_write_bytes(d / "README.md", render_card(card).encode())
    return d / "README.md"


def read_card(model_dir: str | Path) -> ModelCard:
    return ModelCard(**json.loads((Path(model_dir) / "card.json").read_text()))
