"""Score finished variants on another data set (or protocol) without running their recipe again.

A results folder keeps, per variant, the resolved ``recipe.yaml``, ``plan.json`` and (for front members)
``weights.safetensors``. :func:`rescore_results` rebuilds each variant with
:func:`compress.stages.replay.load_variant`, evaluates it with :func:`compress.run.quality_rows` under the
variant's own recipe with only ``data.eval`` (and, when asked, ``data.protocol``) replaced, so the JPEG
qualities, colour, limit, fallback and tiling are the recipe's, and upserts the rows into the folder's
``quality.csv`` / ``.parquet`` with the columns and provenance ``compress run`` writes
(:func:`compress.run.provenance`). The variant's ids and input hashes are those it was run with; the
code, package versions and time are the rescoring's, and ``notes`` says the row was rescored.

Variants whose weights are not in the folder (only front members' are committed) are skipped and reported,
except where the recipe only exported its student (a baseline): then the student checkpoint named in
``plan.json`` is the variant's weights, used when its SHA-256 is the one the run recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.errors import CompressError

RESCORED_NOTE = "rescored from weights.safetensors (compress rescore)"
"""In ``notes`` of every row this module writes: the row was not made by the variant's run."""


@dataclass(frozen=True)
class RescoreOutcome:
    """What happened to one variant.

    Attributes:
        recipe: recipe name (the results folder's).
        variant: variant id (its folder's name).
        status: ``scored``, ``done`` (``skip_done`` and every row already there) or ``no-weights``.
        rows: quality rows written.
        seconds: wall time of the evaluation.
    """

    recipe: str
    variant: str
    status: str
    rows: int = 0
    seconds: float = 0.0


def variant_folders(results_folder: str | Path) -> list[Path]:
    """The variant folders of ``results/<recipe>/``: sub-folders holding a ``recipe.yaml`` and a ``plan.json``."""
    root = Path(results_folder)
    if not root.is_dir():
        raise CompressError(f"{root}: no such results folder")
    return sorted(p for p in root.iterdir() if (p / "recipe.yaml").is_file() and (p / "plan.json").is_file())


def _pick(folders: Sequence[Path], only: Sequence[str] | None) -> list[Path]:
    """Folders whose variant id, readable name (id less its hash) or id prefix is in ``only``."""
    if not only:
        return list(folders)
    picked: list[Path] = []
    for name in only:
        hits = [f for f in folders if name in (f.name, f.name.rsplit("-", 1)[0])] or \
            [f for f in folders if f.name.startswith(name)]
        picked += [f for f in hits if f not in picked]
    return picked


def _recorded(quality: Any, variant: str) -> dict[str, Any]:
    """The ids and input hashes the variant's existing quality rows were written with (empty when none)."""
    if quality is None or quality.empty:
        return {}
    rows = quality[quality["variant"].astype(str) == variant]
    if rows.empty:
        return {}
    last = rows.iloc[-1]
    return {k: last[k] for k in ("variant_name", "recipe_hash", "run_key", "student_checkpoint") if k in rows}


WEIGHT_PRESERVING_STAGES = frozenset({"export"})
"""Stage types that leave the weights as they are: a variant made only of these is its student checkpoint."""


def weights_file(folder: Path, student_sha256: str) -> tuple[Path | None, str]:
    """Where a finished variant's weights are, and how they were found (for the rows' ``notes``).

    ``weights.safetensors`` in the folder; else, for a variant whose plan has only
    :data:`WEIGHT_PRESERVING_STAGES`, the student checkpoint its plan names, if that file's SHA-256 is
    ``student_sha256`` (the run's); else ``(None, "")``.
    """
    from compress.recipe.expand import resolve_checkpoint
    from compress.run import file_sha256

    own = folder / "weights.safetensors"
    if own.is_file():
        return own, RESCORED_NOTE
    try:
        plan = json.loads((folder / "plan.json").read_text())
    except (OSError, ValueError):
        return None, ""
    source = str(plan.get("base", {}).get("source", "fresh"))
    if source == "fresh" or not {str(s.get("type")) for s in plan.get("stages", [])} <= WEIGHT_PRESERVING_STAGES:
        return None, ""
    path = resolve_checkpoint(source)
    if not path.is_file() or not student_sha256 or file_sha256(path) != student_sha256:
        return None, ""
    return path, f"rescored from {source}, the student checkpoint of this export-only variant (compress rescore)"


def variant_of(folder: Path, quality: Any = None) -> tuple[Any, str, str]:
    """The :class:`~compress.recipe.expand.Variant` of a finished variant folder, its run key and student hash.

    The recipe is the folder's resolved ``recipe.yaml``; the readable name, recipe hash, run key and student
    checkpoint hash are those its rows in ``quality`` were written with (else ``done.json`` and the hash of
    the resolved recipe), so the new rows join the old ones.

    Raises:
        CompressError: the folder's name is not the id its recipe gives (the recipe changed since).
    """
    from compress.recipe.expand import Variant, load_recipe

    rf = load_recipe(folder / "recipe.yaml", check_files=False)
    (v,) = rf.variants
    rec = _recorded(quality, folder.name)
    done: dict[str, Any] = {}
    try:
        done = json.loads((folder / "done.json").read_text())
    except (OSError, ValueError):
        pass
    digest = str(rec.get("recipe_hash") or v.recipe_hash)
    name = str(rec.get("variant_name") or folder.name.rsplit("-", 1)[0])
    variant = Variant(v.recipe, {}, name, digest, str(folder / "recipe.yaml"))
    if variant.id != folder.name:
        raise CompressError(f"{folder}: its recipe.yaml resolves to variant {variant.id}, not {folder.name}; "
                            "the recipe or the engine changed since it ran: run it again with compress run")
    run_key = str(rec.get("run_key") or done.get("run_key") or "")
    student = str(rec.get("student_checkpoint") or done.get("inputs", {}).get("student") or "")
    return variant, run_key, student


def rescore_results(
    results_folder: str | Path,
    *,
    dataset: str,
    protocol: str | None = None,
    only: Sequence[str] | None = None,
    skip_done: bool = False,
    data_root: str | None = None,
    threads: int | None = None,
    progress: bool = True,
    out: Callable[[str], None] = print,
) -> list[RescoreOutcome]:
    """Score every finished variant of ``results/<recipe>/`` on ``dataset`` and upsert its quality rows.

    Args:
        results_folder: ``results/<recipe>``.
        dataset: the data set to score on (replaces the recipe's ``data.eval``).
        protocol: a protocol to score under instead of the recipe's (e.g. ``fbcnn-y`` beside ``arcnn-y``
            for Y models); None = the recipe's.
        only: variant ids, readable names or id prefixes (default: every variant).
        skip_done: leave a variant alone when the table already has a row for each of its qualities on
            ``dataset`` under that protocol with the variant's run key.
        data_root: the data root (default ``$COMPRESS_DATA``).
        threads: torch threads (default: torch's setting).
        progress: progress bars.
        out: where the per-variant lines go.

    Returns:
        One outcome per selected variant folder.

    Raises:
        CompressError: a missing folder, a name in ``only`` that matches nothing, a variant that cannot be
            rebuilt, data or a protocol that does not fit the model.
    """
    import torch

    from compress import results
    from compress.run import RunOptions, provenance, quality_rows
    from compress.stages.replay import load_variant

    folder = Path(results_folder)
    folders = variant_folders(folder)
    picked = _pick(folders, only)
    if only and not picked:
        from compress.registry import unknown_message

        raise CompressError(unknown_message("variant", only[0], [f.name for f in folders]))
    if threads:
        torch.set_num_threads(threads)
    opts = RunOptions(results_dir=folder.parent, data_root=data_root, progress=progress, threads=threads)
    table = folder / results.QUALITY_FILE
    outcomes: list[RescoreOutcome] = []
    for vdir in picked:
        quality = results.read_table(table)  # re-read per variant: other writers may have added rows
        variant, run_key, student = variant_of(vdir, quality)
        recipe = variant.recipe
        data = recipe.data.model_copy(update={"eval": (dataset,), **({"protocol": protocol} if protocol else {})})
        recipe = recipe.model_copy(update={"data": data})
        if skip_done and quality is not None and not quality.empty:
            have = quality[(quality["variant"].astype(str) == variant.id) & (quality["dataset"] == dataset)
                           & (quality["protocol"] == data.protocol_name)
                           & (quality["run_key"].astype(str) == run_key)]
            if set(data.qualities) <= {int(q) for q in have["quality"]}:
                out(f"  {recipe.name}/{variant.id}: done, {dataset} {data.protocol_name} already scored")
                outcomes.append(RescoreOutcome(recipe.name, variant.id, "done"))
                continue
        weights, how = weights_file(vdir, student)
        if weights is None:
            out(f"  {recipe.name}/{variant.id}: skipped, no weights.safetensors (only front variants' are committed)")
            outcomes.append(RescoreOutcome(recipe.name, variant.id, "no-weights"))
            continue
        t0 = time.perf_counter()
        model, _ = load_variant(vdir, weights)
        notes: list[str] = []
        scored = quality_rows(model, recipe, variant, opts, notes.append)
        prov = provenance(variant, run_key, student, [*notes, how])
        rows = [{**row, **prov} for row in scored]
        results.write_tables(folder, rows, [])  # quality rows only: cost.csv stays as it is
        seconds = time.perf_counter() - t0
        scores = ", ".join(f"q{r['quality']} {r['psnr']:.2f} dB (JPEG {r['jpeg_psnr']:.2f})" for r in rows)
        out(f"  {recipe.name}/{variant.id}: {rows[0]['dataset']} {data.protocol_name} {scores} [{seconds:.0f} s]")
        outcomes.append(RescoreOutcome(recipe.name, variant.id, "scored", len(rows), seconds))
    return outcomes
