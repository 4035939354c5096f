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


# ---------------------------------------------------------------------------------------------
# variant cards: results/<recipe>/<variant>/README.md, made only from the tables and the variant's files

VARIANT_CARD = "README.md"
"""The card of a compressed variant, in its folder (written by ``compress run`` and ``compress card --results``)."""
_RESOLUTIONS = ("480p30", "720p30", "1080p30")


@dataclass(frozen=True)
class _FolderTables:
    """One results folder's tables (DataFrames; empty when a table is absent)."""

    quality: Any
    cost: Any
    deployed: Any
    latency: Any


def _folder_tables(folder: Path) -> _FolderTables:
    import pandas as pd

    from compress.results import COST_FILE, DEPLOYED_FILE, QUALITY_FILE, read_table

    def table(name: str) -> Any:
        df = read_table(folder / name)
        return pd.DataFrame(columns=["variant"]) if df is None else df

    return _FolderTables(table(QUALITY_FILE), table(COST_FILE), table(DEPLOYED_FILE), table("latency.csv"))


def _num(value: Any, fmt: str) -> str:
    """``value`` formatted, or an empty cell when it is missing (NaN / NA / None)."""
    import pandas as pd

    return "" if value is None or pd.isna(value) else format(value, fmt)


def _setting(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_setting(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_setting(v)}" for k, v in value.items()) + "}"
    return "null" if value is None else str(value)


def _stage_line(i: int, stage: dict[str, Any], plan: dict[str, Any] | None) -> str:
    keys = ", ".join(f"{k}={_setting(v)}" for k, v in stage.items() if k not in ("type", "label"))
    label = f" ({stage['label']})" if stage.get("label") else ""
    line = f"{i + 1}. `{stage.get('type')}`{label}: {keys or 'defaults'}"
    record = (plan or {}).get("plan") or {}
    if record.get("wall_s"):
        line += f"; trained {float(record['wall_s']):,.0f} s"
    if record.get("reused_from"):
        line += f" (copied from variant `{record['reused_from']}`: same start model and stage)"
    if (plan or {}).get("implicit"):
        line += " (added by the engine: every variant ships a checked ONNX graph)"
    return line


def _plan_line(entry: dict[str, Any]) -> str | None:
    """One line summing up what a stage did to the model, from its plan.json record."""
    kind, p = entry.get("type"), entry.get("plan") or {}
    head = f"- `{kind}` (stage {int(entry.get('index', 0)) + 1}): "
    if kind == "prune":
        before, after = p.get("widths_before") or {}, p.get("widths_after") or {}
        widths = ", ".join(f"{k} {before[k]}→{after.get(k)}" for k in before if after.get(k) != before[k])
        ratio = f", MACs x{float(p['macs_ratio']):.3f}" if p.get("macs_ratio") is not None else ""
        return (head + f"pruned widths {widths or 'unchanged'}; params {int(p.get('params_before', 0)):,} → "
                f"{int(p.get('params_after', 0)):,}{ratio} (importance {p.get('importance', '?')})")
    if kind == "prune_layers":
        removed = "; ".join(" + ".join(map(str, group)) if isinstance(group, list) else str(group)
                            for group in p.get("removed") or [])
        return (head + f"removed layers {removed or 'none'}; params {int(p.get('params_before', 0)):,} → "
                f"{int(p.get('params_after', 0)):,}")
    if kind == "quantize":
        keep = ", ".join(p.get("keep_float") or []) or "none"
        layers = p.get("layers")
        n = f", {len(layers)} layers quantized" if isinstance(layers, dict | list) else ""
        act = f", activations {p['act_mode']}" if p.get("act_mode") else ""
        return (head + f"{p.get('backend')} {p.get('mode')} W{p.get('weight_bits')} A{p.get('act_bits')}, "
                f"{'per-channel' if p.get('per_channel') else 'per-tensor'} weights{act}, kept in float: {keep}{n}")
    if kind == "distill":
        weights = ", ".join(f"{k} {v}" for k, v in (p.get("weights") or {}).items() if v)
        return head + f"teacher `{p.get('teacher')}`, loss {weights}, {len(p.get('hints') or [])} feature hint(s)"
    if kind == "export":
        diff = p.get("max_abs_diff")
        check = f", max abs diff onnxruntime vs torch {float(diff):.2g}" if diff is not None else ""
        sub = f", subpixel rewrites: {_setting(p['subpixel_rewrites'])}" if p.get("subpixel_rewrites") else ""
        return head + f"{p.get('format')} ONNX, opset {p.get('opset')}{check}{sub}"
    return None


def render_variant_card(folder: str | Path, variant: str, tables: _FolderTables | None = None) -> str:
    """The card of ``folder/variant`` (``folder`` = ``results/<recipe>``), from the tables and its own files.

    Made only from ``quality.csv``, ``cost.csv``, ``deployed.csv``, ``latency.csv`` and the variant's
    ``recipe.yaml``, ``plan.json`` and ``done.json``: a pure function of those files (no clock), so
    rewriting it is idempotent.

    Raises:
        CheckpointError: the variant has no ``recipe.yaml``.
    """
    import re

    import yaml

    from compress.results import variant_budget

    root = Path(folder)
    d = root / variant
    if not (d / "recipe.yaml").is_file():
        raise CheckpointError(f"{d}: no recipe.yaml, not a variant folder")
    t = tables or _folder_tables(root)
    text = (d / "recipe.yaml").read_text()
    recipe = yaml.safe_load(text)
    source = m.group(1) if (m := re.match(r"# variant \S+ of (\S+);", text)) else f"recipes/{root.name}.yaml"
    plan = json.loads((d / "plan.json").read_text()) if (d / "plan.json").is_file() else {}
    plans = {int(e.get("index", -1)): e for e in plan.get("stages", [])}
    cost = t.cost[t.cost["variant"].astype(str) == variant]
    quality = t.quality[t.quality["variant"].astype(str) == variant]
    first = cost.iloc[0] if len(cost) else (quality.iloc[0] if len(quality) else None)

    def col(name: str, default: Any = None) -> Any:
        import pandas as pd

        if first is None or name not in first.index or pd.isna(first[name]):
            return default
        return first[name]

    student = recipe.get("student") or {}
    kwargs = student.get("arch_kwargs") or {}
    arch = f"`{student.get('arch')}`" + (f" with `{_setting(kwargs)}`" if kwargs else "")
    ckpt = student.get("checkpoint")
    sha = col("student_checkpoint")
    start = f"`{ckpt}`" + (f" (SHA-256 {str(sha)[:12]}…)" if sha and sha != "fresh" else "") if ckpt else \
        "fresh weights"
    teachers = "; ".join(
        f"`{n}`: `{s.get('arch')}` from `{s.get('checkpoint') or 'fresh weights'}`"
        for n, s in (recipe.get("teachers") or {}).items()
    ) or "none"
    data = recipe.get("data") or {}
    protocol = data.get("protocol") or ("idcn-rgb" if data.get("color", "rgb") == "rgb" else "arcnn-y")
    budget = {k: col(k) for k in ("train_steps", "train_pixels", "train_budget")}
    if budget["train_budget"] is None:  # a table from before the budget columns: the same numbers, from recipe.yaml
        budget = {k: v for k, v in (variant_budget(d) or {}).items() if k in budget}
    steps = int(budget.get("train_steps") or 0)
    wall = col("train_wall_s")
    cpu = col("train_cpu")
    if steps:
        spent = (f"{float(wall) / 60:,.1f} min in training loops (`train_wall_s` {float(wall):,.0f} s) on "
                 f"{'`' + str(cpu) + '`' if cpu else 'a machine the table did not record'}") if wall is not None \
            else "not recorded"
        budget_cell = (f"{budget.get('train_budget')} (`<stage> <steps>x<batch>x<patch>`): {steps:,} optimizer "
                       f"steps, {int(budget.get('train_pixels') or 0) / 1e9:.2f} G patch pixels")
    else:
        spent, budget_cell = "none (no stage trains)", "none: no stage takes an optimizer step"
    made = ", ".join(f"{k} `{col(k)}`" for k in ("created", "git_sha", "torch_version", "recipe_hash", "run_key")
                     if col(k) is not None)
    lines = [
        f"# {root.name} / {variant}",
        "",
        *([str(recipe["description"]).strip(), ""] if recipe.get("description") else []),
        f"Generated by `compress card --results results/{root.name}` from `../quality.csv`, `../cost.csv`, "
        "`../deployed.csv`, `../latency.csv` and this folder's `recipe.yaml` / `plan.json`; do not edit "
        "(re-run the command when rows change).",
        "",
        "| | |",
        "|---|---|",
        f"| student | {arch} from {start} |",
        f"| teachers | {teachers} |",
        f"| data | trains on `{data.get('train')}`; scored on {', '.join(data.get('eval') or [])} at JPEG quality "
        f"{', '.join(map(str, data.get('qualities') or []))} under `{protocol}` (colour {data.get('color')}) |",
        f"| seed | {recipe.get('seed')} |",
        f"| training budget | {budget_cell} |",
        f"| wall time | {spent} |",
        *([f"| made | {made} |"] if made else []),
        *([f"| notes | {col('notes')} |"] if col("notes") else []),
        "",
        "## Stages",
        "",
    ]
    stages = list(recipe.get("stages") or [])
    lines += [_stage_line(i, st, plans.get(i)) for i, st in enumerate(stages)]
    lines += [_stage_line(i, {"type": e.get("type")}, e) for i, e in sorted(plans.items()) if i >= len(stages)]
    summary = [line for e in plan.get("stages", []) if (line := _plan_line(e))]
    lines += ["", "## Plan", "", *(summary or ["No plan.json: the stages' records are not in this folder."])]
    lines += [
        "",
        "## Quality (torch, `../quality.csv`)",
        "",
        "| dataset | quality | protocol | images | PSNR (dB) | SSIM | PSNR-B (dB) | JPEG PSNR | gain over JPEG (dB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in quality.sort_values(["dataset", "quality", "protocol"]).itertuples(index=False):
        lines.append(f"| {r.dataset} | {r.quality} | {r.protocol} | {r.n_images} | {_num(r.psnr, '.3f')} | "
                     f"{_num(r.ssim, '.4f')} | {_num(r.psnrb, '.3f')} | {_num(r.jpeg_psnr, '.3f')} | "
                     f"{_num(r.psnr - r.jpeg_psnr, '+.3f')} |")
    lines += [
        "",
        "## Cost (`../cost.csv`)",
        "",
        "| resolution | params | true TFLOPS | TFLOPS (thop convention) | peak activations (MiB) | memory (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    order = {r: i for i, r in enumerate(_RESOLUTIONS)}
    for r in sorted(cost.itertuples(index=False), key=lambda r: order.get(str(r.resolution), len(order))):
        lines.append(f"| {r.resolution} | {int(r.params):,} | {_num(r.tflops_true, '.3f')} | {_num(r.tflops, '.3f')} "
                     f"| {_num(r.peak_activation_mb, '.1f')} | {_num(r.memory_mb, '.1f')} |")
    if first is not None and len(cost):
        lines += ["", f"Weights W{col('weight_bits')} / activations A{col('act_bits')} ({col('quant_backend')}); "
                  f"`model.onnx` {int(col('onnx_bytes', 0)):,} bytes, `weights.safetensors` "
                  f"{int(col('weights_bytes', 0)):,} bytes (committed only for variants on a front)."]
    dep = t.deployed[t.deployed["variant"].astype(str) == variant] if "variant" in t.deployed else t.deployed[:0]
    if len(dep):
        lines += [
            "",
            "## Deployed (`../deployed.csv`: the exported graph scored in each target's runtime)",
            "",
            "| machine | target | runtime | precision | dataset | quality | protocol | PSNR (dB) | SSIM | PSNR-B (dB) "
            "| vs torch (dB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        keys = ["cpu", "target", "dataset", "quality", "protocol"]
        for r in dep.sort_values(keys).itertuples(index=False):
            lines.append(f"| {r.cpu} | {r.target} | {r.runtime} | {r.precision} | {r.dataset} | {r.quality} | "
                         f"{r.protocol} | {_num(r.psnr, '.3f')} | {_num(r.ssim, '.4f')} | {_num(r.psnrb, '.3f')} | "
                         f"{_num(r.delta_psnr, '+.3f')} |")
    lat = t.latency[t.latency["variant"].astype(str) == variant] if "variant" in t.latency else t.latency[:0]
    if len(lat):
        lines += [
            "",
            "## Latency (`../latency.csv`: median ms per frame)",
            "",
            "| machine | target | precision | " + " | ".join(_RESOLUTIONS) + " |",
            "|---|---|---|" + "---|" * len(_RESOLUTIONS),
        ]
        for (cpu_, target, prec), g in lat.groupby(["cpu", "target", "precision"], sort=True):
            ms = dict(zip(g["resolution"].astype(str), g["ms_median"], strict=True))
            lines.append(f"| {cpu_} | {target} | {prec} | "
                         + " | ".join(_num(ms.get(res), ".1f") for res in _RESOLUTIONS) + " |")
    lines += [
        "",
        "## Reproduce",
        "",
        f"`compress run {source} --only {variant}` rewrites this folder and its table rows (skipped while "
        "`done.json` holds the same run key; `--force` runs it again). Should the recipe file have changed since, "
        f"`recipe.yaml` here is the resolved recipe: `compress run results/{root.name}/{variant}/recipe.yaml` makes "
        "the same model (under that recipe's own variant id).",
        "",
    ]
    return "\n".join(lines)


def write_variant_cards(results: str | Path, *, only: Sequence[str] | None = None) -> list[Path]:
    """(Re)write the card of every variant of a results folder that has table rows; returns the cards changed.

    Cheap and idempotent: the tables are read once, and a card is written only when its text changed
    (run it after anything adds rows: ``compress deployed``, ``compress latency``, new data sets).
    ``only``: these variant ids.
    """
    root = Path(results)
    tables = _folder_tables(root)
    variants = sorted(set(tables.cost["variant"].astype(str)) | set(tables.quality["variant"].astype(str)))
    changed: list[Path] = []
    for v in variants:
        if (only is not None and v not in only) or not (root / v / "recipe.yaml").is_file():
            continue
        path = root / v / VARIANT_CARD
        text = render_variant_card(root, v, tables)
        if not path.is_file() or path.read_text() != text:
            atomic_write_bytes(path, text.encode())
            changed.append(path)
    return changed
