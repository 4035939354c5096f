"""The compression engine: validate recipes, expand variants, run stages, evaluate, profile, record.

:func:`run_recipes` validates every recipe first (nothing runs if any is invalid), then runs each
selected variant into ``results/<recipe>/<variant>/``:

1. load the student (checkpoint, or fresh with a warning when the recipe allows it);
2. apply the stages in order (:data:`compress.stages.STAGES`); a recipe without an export stage gets
   one at the end, so every variant has a ``model.onnx``;
3. save ``recipe.yaml``, ``plan.json``, ``weights.safetensors``, ``quant.json``;
4. evaluate it (:func:`compress.evaluate.evaluate_model`, every eval set x quality under the protocol)
   and profile it (:func:`compress.cost.profile_model` on the compressed module, float twin for
   quantized ones: same shapes);
5. append the rows to the recipe's tables (:mod:`compress.results`) and write ``done.json``.

A variant is skipped when its ``done.json`` holds the same run key (hash of the resolved recipe and
of the input checkpoint files), unless ``force``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import CompressError
from compress.recipe.expand import RecipeFile, Variant, canonical_json, load_recipes, resolve_checkpoint
from compress.recipe.schema import ExportStage, Importance, PruneLayersStage, PruneStage, Recipe, Student, Teacher

log = logging.getLogger(__name__)

ENGINE_VERSION = 1
"""Part of the run key: bump when the engine's outputs change for the same recipe."""


@dataclass(frozen=True)
class RunOptions:
    """How variants run.

    Attributes:
        results_dir: the results root (``results/``).
        data_root: the data root (default ``$COMPRESS_DATA``).
        force: re-run variants that are already done.
        progress: progress bars.
        threads: torch threads (default: torch's current setting; a fair share of the cores per worker).
        executor: how variants run: ``sequential``, ``local`` or ``ray`` (:mod:`compress.executors`).
        workers: concurrent variants of the ``local`` and ``ray`` executors.
        address: the Ray cluster to join (``auto``, ``ray://host:10001``); default: start a local one.
    """

    results_dir: Path = Path("results")
    data_root: str | None = None
    force: bool = False
    progress: bool = True
    threads: int | None = None
    executor: str = "sequential"
    workers: int | None = None
    address: str | None = None


@dataclass(frozen=True)
class VariantOutcome:
    """What happened to one variant."""

    recipe: str
    variant: str
    status: str
    folder: Path
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# selection and keys


def select_variants(files: Sequence[RecipeFile], only: Sequence[str] | None = None) -> list[Variant]:
    """Every variant, or those whose id, readable name or id prefix is in ``only``.

    An exact id or name picks only its variants: ``nncf-w8-a8`` does not also pick ``nncf-w8-a8-keep_float_last``;
    an id prefix is tried only when nothing matches exactly.

    Raises:
        CompressError: a name in ``only`` matches no variant (the message lists them).
    """
    variants = [v for f in files for v in f.variants]
    if not only:
        return variants
    picked: list[Variant] = []
    for name in only:
        hits = [v for v in variants if name in (v.id, v.name, f"{v.recipe.name}/{v.id}")] or \
            [v for v in variants if v.id.startswith(name)]
        if not hits:
            from compress.registry import unknown_message

            raise CompressError(unknown_message("variant", name, [v.id for v in variants]))
        picked += [v for v in hits if v not in picked]
    return picked


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _input_hash(spec: Student | Teacher) -> str:
    if spec.checkpoint is None:
        return "fresh"
    p = resolve_checkpoint(spec.checkpoint)
    return file_sha256(p) if p.is_file() else "fresh"


def run_key(variant: Variant) -> tuple[str, dict[str, Any]]:
    """The cache key of a variant: its recipe hash plus the hashes of the checkpoints it reads."""
    r = variant.recipe
    inputs = {
        "student": _input_hash(r.student),
        "teachers": {n: _input_hash(t) for n, t in r.teachers.items()},
    }
    doc = {"engine": ENGINE_VERSION, "recipe_hash": variant.recipe_hash, "inputs": inputs}
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest(), inputs


def variant_dir(results_dir: Path, variant: Variant) -> Path:
    """``results/<recipe>/<variant id>``."""
    return results_dir / variant.recipe.name / variant.id


# ---------------------------------------------------------------------------------------------
# dry run


def estimate_cost(variant: Variant) -> dict[str, Any]:
    """Params and 720p30 TFLOPS after the recipe's prune stages, on a fresh student (no data, no checkpoint).

    Channel counts come from L1 importance on fresh weights: exact for per-layer ratios, an estimate
    for global pruning and MACs targets (they depend on the trained weights). A prune_layers stage with
    a count removes the largest removable layers (the loss criterion needs the trained weights and data,
    so this is the most the stage can save; exact when it removes the middle 3x3 layers it usually does).
    """
    from compress.cost import RESOLUTIONS, profile_model
    from compress.nets import build_model
    from compress.stages.base import StageContext
    from compress.stages.prune import prune_model
    from compress.stages.prune_layers import prune_layers, removable_layers

    r = variant.recipe
    model = build_model(r.student.arch, r.data.channels, **dict(r.student.arch_kwargs))
    ctx = StageContext(r, Path("."), threads=1)
    for st in r.stages:
        if isinstance(st, PruneStage):
            model, _ = prune_model(model, st.model_copy(update={"importance": Importance.l1}), ctx)
        elif isinstance(st, PruneLayersStage):
            cands = removable_layers(model)
            size = {n: sum(p.numel() for p in model.get_submodule(n).parameters()) for n in cands}
            names = st.layers or tuple(sorted(cands, key=lambda n: -size[n]))[: st.count or 0]
            model, _ = prune_layers(model, st.model_copy(update={"count": None, "layers": names}), ctx)
    cost = profile_model(variant.id, model=model, channels=r.data.channels,
                         resolutions={"720p30": RESOLUTIONS["720p30"]})
    frame = cost.frames["720p30"]
    return {"params": cost.params, "tflops_720p30": frame.tflops, "tflops_true_720p30": frame.tflops_true}


def describe(variant: Variant) -> str:
    """One line: the stages of a variant and its sweep values."""
    stages = " -> ".join(st.type for st in variant.recipe.stages) or "(evaluate, profile, export)"
    vals = ", ".join(f"{k}={v}" for k, v in variant.overrides.items())
    return f"{stages}" + (f"  [{vals}]" if vals else "")


def emulated_bf16_warning(variants: Sequence[Variant]) -> str:
    """A warning when some stage asks for ``precision: bf16`` on a host without native bf16, else ``""``.

    On AVX2-only CPUs autocast emulates bf16 and training runs ~10x slower than in fp32
    (results/bench/train_speed.csv). The recipe still runs as written (its results must stay those of the
    recipe); the warning says what it will cost and how to opt out.
    """
    from compress.train import native_bf16

    hits = [(v, i, st.type) for v in variants for i, st in enumerate(v.recipe.stages)
            if getattr(getattr(st, "precision", None), "value", None) == "bf16"]
    if not hits or native_bf16():
        return ""
    from compress.deploy import cpu_name

    kinds = sorted({f"stage {i} ({t})" for _, i, t in hits})
    n = len({v.id for v, _, _ in hits})
    return (f"{n} variant(s) train with precision: bf16 ({', '.join(kinds)}), but this CPU ({cpu_name()}) "
            "has no native bf16 (AVX-512 BF16 / AMX): autocast emulates it and trains about 10x "
            "slower than fp32 (results/bench/train_speed.csv). The recipe runs as written; precision: fp32 "
            "trains at full speed here but is another variant (another run key), not a replicate of this one.")


# ---------------------------------------------------------------------------------------------
# data check


def _trains(recipe: Recipe) -> bool:
    """Whether any stage reads training patches (training, calibration, taylor importance)."""
    for st in recipe.stages:
        if isinstance(st, PruneStage):
            if st.importance is Importance.taylor:
                return True
        elif isinstance(st, PruneLayersStage):
            if st.count is not None:
                return True
        elif not isinstance(st, ExportStage):
            return True
    return False


def check_data(variants: Sequence[Variant], data_root: str | None) -> None:
    """Open every data set the variants read (or its fallback) before anything runs or is written.

    Only the file lists are read, not the images: a missing data root, folder or empty set fails here,
    not after a variant has trained for an hour.

    Raises:
        DataError: a data set is missing or empty and the recipe has no fallback for it.
        RegistryError: an unknown data set name.
    """
    from compress.stages.base import open_dataset_or_fallback

    seen: set[tuple[str, int | None, str | None]] = set()
    for v in variants:
        d = v.recipe.data
        wanted = [(name, d.limit) for name in d.eval]
        if _trains(v.recipe):
            wanted.append((d.train, d.train_limit))
        for name, limit in wanted:
            if (name, limit, d.fallback) not in seen:
                seen.add((name, limit, d.fallback))
                open_dataset_or_fallback(name, data_root, limit, d.fallback, lambda _msg: None)


# ---------------------------------------------------------------------------------------------
# running one variant


def quality_rows(
    model: nn.Module, recipe: Recipe, variant: Variant, opts: RunOptions, note: Callable[[str], None]
) -> list[dict[str, Any]]:
    """The quality rows (no provenance yet) of ``model`` on every eval set x quality of ``recipe``'s data."""
    from compress.evaluate import evaluate_model
    from compress.stages.base import open_dataset_or_fallback

    d = recipe.data
    rows = []
    for name in d.eval:
        ds = open_dataset_or_fallback(name, opts.data_root, d.limit, d.fallback, note)
        results = evaluate_model(
            model, ds, list(d.qualities), d.protocol_name, progress=opts.progress, model_name=variant.id, tile=d.tile
        )
        for res in results:
            row = res.to_dict()
            row.pop("model", None)
            row["comparable"] = res.comparable
            rows.append(row)
    return rows


def provenance(variant: Variant, run_key: str, student_checkpoint: str, notes: Sequence[str]) -> dict[str, Any]:
    """The provenance columns of a variant's table rows (:data:`compress.results.PROVENANCE_COLUMNS` and its ids).

    ``git_sha``, the package versions and ``created`` describe the code and the time that make the row
    (for :mod:`compress.rescore` too, which scores a finished variant again); the rest names the variant.
    """
    from compress import results

    return {
        "recipe": variant.recipe.name, "variant": variant.id, "variant_name": variant.name,
        "recipe_hash": variant.recipe_hash, "run_key": run_key, "student_checkpoint": student_checkpoint,
        "git_sha": results.git_sha(), **results.package_versions(), "seed": variant.recipe.seed,
        "created": results.now_iso(), "notes": "; ".join(notes),
    }


def _cost_rows(model: nn.Module, recipe: Recipe, variant: Variant) -> list[dict[str, Any]]:
    from compress.cost import profile_model

    cost = profile_model(variant.id, model=model, channels=recipe.data.channels)
    return [
        {
            "resolution": res, "width": f.width, "height": f.height, "params": cost.params, "layers": cost.layers,
            "macs": f.macs_thop, "macs_true": f.macs_true, "tflops": f.tflops, "tflops_true": f.tflops_true,
            "memory_mb": f.memory_mb, "peak_activation_mb": f.peak_activation_mb,
        }
        for res, f in cost.frames.items()
    ]


ATTEMPT_FILE = "attempt.json"
"""In a variant folder while it runs: the run key of the attempt (removed once ``done.json`` is written)."""


def _clear_for_run(folder: Path, key: str, *, keep_stages: bool) -> bool:
    """Make ``folder`` ready for a run with ``key``; True when an interrupted attempt's stages are kept.

    An interrupted attempt with the same run key (same resolved recipe and inputs) keeps its ``stages/``
    folder, where training stages checkpoint every :data:`compress.stages.base.STAGE_CKPT_EVERY` steps and
    resume exactly (each stage also checks that it starts from the same model). Everything else, and any
    folder of another key or of a forced run, is removed: no mix of old and new artifacts.
    """
    previous = None
    try:
        previous = json.loads((folder / ATTEMPT_FILE).read_text()).get("run_key")
    except (OSError, ValueError, AttributeError):
        pass
    keep = keep_stages and previous == key and (folder / "stages").is_dir()
    if folder.exists():
        for child in folder.iterdir():
            if keep and child.name == "stages":
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ATTEMPT_FILE).write_text(json.dumps({"run_key": key}) + "\n")
    return keep


def run_variant(variant: Variant, opts: RunOptions, out: Callable[[str], None] = print) -> VariantOutcome:
    """Run one variant into its folder (or skip it when done with the same run key)."""
    from compress import results
    from compress.stages import STAGES
    from compress.stages.base import StageContext, load_student_or_teacher
    from compress.stages.export import ONNX_NAME

    r = variant.recipe
    folder = variant_dir(opts.results_dir, variant)
    key, inputs = run_key(variant)
    done = results.read_done(folder)
    if done is not None and done.get("run_key") == key and not opts.force:
        return VariantOutcome(r.name, variant.id, "skipped", folder)
    t0 = time.perf_counter()
    torch.manual_seed(r.seed)
    ctx = StageContext(
        r, folder, data_root=opts.data_root, threads=opts.threads or torch.get_num_threads(), progress=opts.progress,
        reuse_stages=not opts.force, input_hashes=inputs,
    )
    model, base = load_student_or_teacher(r.student, r.data.channels, "student", ctx.note)  # a bad file: no folder
    resumed = _clear_for_run(folder, key, keep_stages=not opts.force)
    if resumed:
        out(f"  resuming: the training stages continue from {folder / 'stages'}")
    header = f"# variant {variant.id} of {variant.source}; resolved (no sweep)\n"
    results.write_yaml(folder / "recipe.yaml", variant.resolved(), header)
    stages = list(r.stages)
    if not any(isinstance(st, ExportStage) for st in stages):
        stages.append(ExportStage.model_validate({"type": "export"}))  # every variant ships a checked ONNX graph
    plans: list[dict[str, Any]] = []
    for i, st in enumerate(stages):
        ctx.stage_index = i
        out(f"  stage {i} {st.type}")
        res = STAGES.get(st.type)(model, st, ctx)
        model = res.model
        plans.append({"index": i, "type": st.type, "label": st.label, "implicit": i >= len(r.stages), "plan": res.plan})
    model.eval()
    plan = {"format": "compress-plan/1", "recipe": r.name, "variant": variant.id, "base": base, "stages": plans}
    results.write_json(folder / "plan.json", plan)
    meta = {"format": "compress-variant/1", "recipe": r.name, "variant": variant.id, "arch": base["arch"],
            "channels": str(base["channels"]), "plan": "plan.json"}
    results.write_weights(folder / "weights.safetensors", model.state_dict(), meta)
    results.write_json(folder / "quant.json", ctx.quant or {"backend": None})
    out("  evaluate")
    q_rows = quality_rows(model, r, variant, opts, ctx.note)
    out("  profile")
    c_rows = _cost_rows(ctx.float_model if ctx.float_model is not None else model, r, variant)
    from compress import deploy

    quant = ctx.quant or {}
    onnx_bytes = (folder / ONNX_NAME).stat().st_size
    prov = provenance(variant, key, inputs["student"], ctx.notes)
    extra = {
        "weight_bits": int(quant.get("weight_bits", 32)), "act_bits": int(quant.get("act_bits", 32)),
        "quant_backend": quant.get("backend", "none"), "model_bytes": onnx_bytes,
        "weights_bytes": (folder / "weights.safetensors").stat().st_size, "onnx_bytes": onnx_bytes,
        "onnx_path": f"{variant.id}/{ONNX_NAME}",
        "train_wall_s": round(ctx.train_wall_s, 2),
        "graph_signature": deploy.graph_signature(folder / ONNX_NAME),
        **results.train_budget(r.stages), "train_cpu": deploy.cpu_name(), **results.condition_keys(r),
    }
    results.write_tables(
        opts.results_dir / r.name, [{**row, **prov} for row in q_rows], [{**row, **extra, **prov} for row in c_rows]
    )
    seconds = time.perf_counter() - t0
    results.write_done(folder, {"run_key": key, "variant": variant.id, "finished": prov["created"],
                                "seconds": round(seconds, 1), "inputs": inputs, "notes": ctx.notes})
    (folder / ATTEMPT_FILE).unlink(missing_ok=True)
    from compress.cards import write_variant_cards

    write_variant_cards(opts.results_dir / r.name, only=[variant.id])  # README.md, from the tables just written
    return VariantOutcome(r.name, variant.id, "ran", folder, seconds)


# ---------------------------------------------------------------------------------------------
# entry point


def run_recipes(
    paths: Sequence[str | Path],
    *,
    only: Sequence[str] | None = None,
    dry_run: bool = False,
    options: RunOptions | None = None,
    out: Callable[[str], None] = print,
) -> list[VariantOutcome]:
    """Validate every recipe, then run (or with ``dry_run`` only list, with estimated cost) the selected variants.

    Raises:
        RecipeError: any recipe is invalid (nothing has run).
        CompressError: a variant failed (the other variants still run and are recorded).
    """
    opts = options or RunOptions()
    files = load_recipes(paths, check_files=not dry_run)
    variants = select_variants(files, only)
    if dry_run:
        out(f"{'variant':<44} {'params':>9} {'TFLOPS@720p30':>13} {'(true)':>7}  stages")
        for v in variants:
            est = estimate_cost(v)
            out(
                f"{v.recipe.name + '/' + v.id:<44} {est['params']:>9,} {est['tflops_720p30']:>13.3f} "
                f"{est['tflops_true_720p30']:>7.3f}  {describe(v)}"
            )
        out(
            f"{len(variants)} variant(s); cost estimated from a fresh student with the prune stages' shapes; "
            "TFLOPS: the brief's convention (thop MACs x 30), (true): transposed convolutions charged per input "
            "pixel, the figure the fronts use"
        )
        if warning := emulated_bf16_warning(variants):
            out(f"warning: {warning}")
        return [VariantOutcome(v.recipe.name, v.id, "planned", variant_dir(opts.results_dir, v)) for v in variants]
    check_data(variants, opts.data_root)
    from compress.executors import run_variants, split_done

    if warning := emulated_bf16_warning(split_done(variants, opts)[1]):
        log.warning(warning)

    return run_variants(variants, opts, out)
