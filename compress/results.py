"""The results tables and variant artifacts: the only module that writes under ``results/``.

Per recipe, ``results/<recipe>/`` holds:

* ``quality.csv`` / ``.parquet``: one row per variant x dataset x JPEG quality x protocol;
* ``cost.csv`` / ``.parquet``: one row per variant x resolution (480p30, 720p30, 1080p30);
* ``variants.csv`` / ``.parquet``: quality rows joined with the 720p30 cost row of their variant;
* ``<variant>/``: the variant's artifacts (resolved recipe, plan, weights, quant config, ONNX, done marker).

Tables are long-format with provenance in columns (recipe hash, git SHA, package versions, seed,
time). Appending is atomic and idempotent: under a file lock the table is read, the new rows
replace any row with the same key (a re-run never duplicates), and the result is written to a
temporary file that replaces the table with ``os.replace``. :func:`results_readme` documents every
file and column; ``results/README.md`` is its output.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from compress.fsio import atomic_write, atomic_write_bytes

QUALITY_FILE = "quality.csv"
COST_FILE = "cost.csv"
VARIANTS_FILE = "variants.csv"
DONE_FILE = "done.json"
JOIN_RESOLUTION = "720p30"

PROVENANCE_COLUMNS: dict[str, str] = {
    "recipe_hash": "SHA-256 of the variant's resolved recipe (canonical JSON)",
    "run_key": "SHA-256 of the resolved recipe plus the hashes of its input checkpoints: the cache key",
    "student_checkpoint": "SHA-256 of the student checkpoint file, or 'fresh' for initialised weights",
    "git_sha": "commit of the code that produced the row (+dirty when the tree had changes)",
    "torch_version": "torch version",
    "torch_pruning_version": "torch-pruning version (distribution metadata)",
    "brevitas_version": "brevitas version",
    "nncf_version": "nncf version",
    "onnxruntime_version": "onnxruntime version",
    "seed": "the recipe's global seed",
    "created": "UTC time the variant finished (ISO 8601)",
    "notes": "warnings of the run (e.g. a fallback dataset, a freshly initialised student), '; '-joined",
}

QUALITY_COLUMNS: dict[str, str] = {
    "recipe": "recipe name",
    "variant": "variant id: readable sweep values + first 8 hex digits of the recipe hash",
    "variant_name": "readable part of the variant id",
    "dataset": "dataset actually evaluated (the fallback's name when the requested set was missing)",
    "quality": "JPEG quality of the input",
    "protocol": "evaluation protocol (see compress.protocols)",
    "n_images": "images averaged",
    "comparable": "False when the numbers cannot be set beside published tables (embedded sample images)",
    "psnr": "mean PSNR (dB) of the variant's output",
    "ssim": "mean SSIM of the variant's output",
    "psnrb": "mean PSNR-B (dB) of the variant's output",
    "jpeg_psnr": "mean PSNR (dB) of the JPEG input (the baseline)",
    "jpeg_ssim": "mean SSIM of the JPEG input",
    "jpeg_psnrb": "mean PSNR-B (dB) of the JPEG input",
    **PROVENANCE_COLUMNS,
}

COST_COLUMNS: dict[str, str] = {
    "recipe": "recipe name",
    "variant": "variant id",
    "variant_name": "readable part of the variant id",
    "resolution": "480p30 (720x480), 720p30 (1280x720) or 1080p30 (1920x1080)",
    "width": "frame width (px)",
    "height": "frame height (px)",
    "params": "parameters of the compressed model",
    "layers": "convolution / linear layers",
    "macs": "MACs per frame, thop's count (ConvTranspose2d per output pixel: the published convention)",
    "macs_true": "MACs per frame of convolutions and linear layers, ConvTranspose2d per input pixel",
    "tflops": "published convention: macs x 30 fps / 1e12 (1 MAC counted as 1 FLOP)",
    "tflops_true": "macs_true x 30 fps / 1e12",
    "memory_mb": "torchsummary-style estimated total size (MiB, fp32): input + 2 x outputs + params",
    "peak_activation_mb": "peak live tensor bytes of one fp32 batch-1 inference (MiB)",
    "weight_bits": "weight bit width (32 = float)",
    "act_bits": "activation bit width (32 = float)",
    "quant_backend": "brevitas, nncf, or none",
    "model_bytes": "size of the deployable file, model.onnx (bytes)",
    "weights_bytes": "size of weights.safetensors (bytes; fake-quantized weights are stored as float)",
    "onnx_bytes": "size of model.onnx (bytes)",
    "onnx_path": "the variant's model.onnx, relative to results/<recipe>/ (what the latency targets run)",
    "train_wall_s": "seconds spent in training loops (finetune, distill, QAT) for this variant (a stage "
    "copied from another variant counts the seconds it was trained in)",
    **PROVENANCE_COLUMNS,
    "graph_signature": "SHA-256 of model.onnx's structure without names or weight values (compress.deploy."
    "graph_signature): a latency measured on one variant of a graph holds for the others (fronts use it)",
}

LATENCY_COLUMNS: dict[str, str] = {  # written by compress.deploy (LatencyRecord), documented here with the rest
    "variant": "variant id (joins quality.csv and cost.csv)",
    "target": "hardware target name (recipes/targets/<target>.yaml)",
    "runtime": "onnxruntime or openvino",
    "resolution": "480p30, 720p30 or 1080p30",
    "width": "frame width (px)",
    "height": "frame height (px)",
    "precision": "precision the target was asked to run (fp32, bf16, int8)",
    "precision_effective": "precision the runtime really used (OpenVINO falls back to f32 without bf16 hardware)",
    "quantized_by": "what made the INT8 graph: the variant's own QDQ export, or nncf post-training on the fp32 ONNX",
    "fusion": "onnxruntime Q/DQ fusion check: full, partial (e.g. ConvTranspose kept float) or none; '-' otherwise",
    "threads": "inference threads (fixed)",
    "n": "timed runs after warm-up",
    "warmup": "untimed warm-up runs",
    "ms_median": "median milliseconds per frame",
    "ms_p90": "90th percentile milliseconds per frame",
    "ms_min": "fastest run (ms)",
    "ms_max": "slowest run (ms)",
    "load_avg": "1-minute load average when timing started (a busy machine makes slow numbers)",
    "load_avg_end": "1-minute load average when timing ended",
    "peak_rss_mb": "peak RSS rise of a fresh subprocess running one inference (MiB)",
    "rss_hwm_mb": "that subprocess's RSS high-water mark (MiB)",
    "analytic_peak_mb": "peak_activation_mb of cost.csv at this resolution, for comparison",
    "onnx_path": "the ONNX file timed",
    "onnx_sha256": "its SHA-256",
    "runtime_version": "onnxruntime / openvino version",
    "cpu": "the machine: processor model and its vector extensions in brackets (compress.deploy.cpu_isa, e.g. "
    "`AMD EPYC [avx512+vnni+bf16]`); part of the key, so timings of two machines never mix",
    "timestamp": "when it was measured (UTC)",
    "graph_signature": "SHA-256 of the graph's structure without names or weight values (compress.deploy."
    "graph_signature): variants sharing it cost the same, and fronts use the median of their latencies",
    "probe_gflops": "fp32 matmul GFLOP/s of the CPU probe around the accepted timing (the lower of before / after; "
    "compress.deploy.QuietGuard): how much of the CPU the timing got; empty before the guard existed",
    "probe_ref_gflops": "the guard's reference then: the 90th percentile of its probes in that process",
    "attempts": "timings taken until one was quiet (probe >= 0.75 x reference) or the wait ran out",
}

DEPLOYED_COLUMNS: dict[str, str] = {  # written by compress.deployed
    "recipe": "recipe name",
    "variant": "variant id (joins quality.csv, cost.csv and latency.csv)",
    "variant_name": "readable part of the variant id",
    "target": "hardware target whose runtime scored the graph (recipes/targets/<target>.yaml)",
    "runtime": "onnxruntime or openvino",
    "precision": "precision the graph ran in (int8 for QDQ graphs; fp32 / bf16 hint for float graphs)",
    "dataset": "dataset evaluated",
    "quality": "JPEG quality of the input",
    "protocol": "evaluation protocol",
    "n_images": "images averaged",
    "psnr": "mean PSNR (dB) of the deployed graph's output",
    "ssim": "mean SSIM of the deployed graph's output",
    "psnrb": "mean PSNR-B (dB) of the deployed graph's output",
    "jpeg_psnr": "mean PSNR (dB) of the JPEG input",
    "torch_psnr": "the variant's torch PSNR on the same selection (quality.csv)",
    "delta_psnr": "psnr - torch_psnr (dB): what deployment costs",
    "threads": "runtime threads",
    "onnx_path": "the ONNX file scored, relative to results/<recipe>/",
    "onnx_sha256": "its SHA-256",
    "runtime_version": "onnxruntime / openvino version",
    "cpu": "the machine, as in latency.csv (INT8 kernels differ between CPUs: VNNI or not); part of the key",
    "timestamp": "when it was scored (UTC)",
}

QUALITY_KEY = ("variant", "dataset", "quality", "protocol")
DEPLOYED_KEY = ("variant", "target", "dataset", "quality", "protocol", "cpu")  # one row per machine
DEPLOYED_FILE = "deployed.csv"
COST_KEY = ("variant", "resolution")

ARTIFACTS: dict[str, str] = {
    "recipe.yaml": "the resolved recipe of the variant (no sweep): run alone, it makes the same model",
    "plan.json": "every stage's plan in order (pruning history, distillation and training records, "
    "quant config, export check; reused_from: the variant whose identical finished stage was copied); "
    "with the base model it rebuilds the variant (compress.stages.replay)",
    "weights.safetensors": "the compressed model's state dict (no pickle)",
    "quant.json": "quantization config (backend, bits, per-layer schemes; NNCF's own config) or backend null",
    "model.onnx": "the deployable ONNX graph (fp32, or QDQ for quantized variants), checked in onnxruntime",
    "done.json": "run key, time and outcome: a variant whose run key matches is skipped unless --force",
    "stages/": "per-stage training logs and checkpoints (start.json: the stage key and its start model)",
}


# ---------------------------------------------------------------------------------------------
# provenance


def git_sha(repo: Path | None = None) -> str:
    """The checked-out commit (read-only git calls), ``+dirty`` with uncommitted changes; ``unknown`` without git."""
    cwd = repo or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    """Versions of the libraries that decide the numbers (from installed distribution metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist, col in (
        ("torch", "torch_version"), ("torch-pruning", "torch_pruning_version"), ("brevitas", "brevitas_version"),
        ("nncf", "nncf_version"), ("onnxruntime", "onnxruntime_version"),
    ):
        try:
            out[col] = version(dist)
        except PackageNotFoundError:
            out[col] = "absent"
    return out


def now_iso() -> str:
    """UTC now, ISO 8601, seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# tables


def _read(path: Path) -> Any:
    """A table, from its parquet twin when present (it keeps dtypes), else the CSV, else None."""
    import pandas as pd

    pq = path.with_suffix(".parquet")
    if pq.is_file():
        return pd.read_parquet(pq)
    if path.is_file():
        return pd.read_csv(path)
    return None


def _write(df: Any, path: Path) -> None:
    atomic_write(path, lambda p: df.to_csv(p, index=False))
    atomic_write(path.with_suffix(".parquet"), lambda p: df.to_parquet(p, index=False))


def _lock(folder: Path) -> Any:
    from filelock import FileLock

    return FileLock(str(folder / ".tables.lock"), timeout=600)


def _remove_stale_temps(tables: Sequence[Path]) -> None:
    """Delete temporary files a killed writer left beside ``tables`` (call under the lock: no writer is live)."""
    for table in tables:
        for t in (table, table.with_suffix(".parquet")):
            for tmp in t.parent.glob(f".{t.name}.*.tmp"):
                tmp.unlink(missing_ok=True)


def _merge(old: Any, rows: Sequence[dict[str, Any]], key: Sequence[str], columns: Sequence[str]) -> Any:
    import pandas as pd

    new = pd.DataFrame(list(rows), columns=list(columns))
    if old is None or old.empty:
        df = new
    else:
        for col in columns:
            if col not in old.columns:
                old[col] = pd.NA
        df = pd.concat([old[list(columns)], new], ignore_index=True)
        for k in key:  # a CSV read back may type a key column differently from fresh rows
            df[k] = df[k].astype(new[k].dtype) if len(new) else df[k]
    df = df.drop_duplicates(subset=list(key), keep="last")
    return df.sort_values(list(key), kind="stable", key=_sort_key).reset_index(drop=True)


def _sort_key(col: Any) -> Any:
    """Resolutions sort by size (480p, 720p, 1080p), everything else as it is."""
    from compress.cost import RESOLUTIONS

    order = {name: i for i, name in enumerate(RESOLUTIONS)}
    return col.map(lambda v: order.get(v, len(order))) if col.name == "resolution" else col


def append_rows(path: Path, rows: Sequence[dict[str, Any]], key: Sequence[str], columns: Sequence[str]) -> Any:
    """Add ``rows`` to the table at ``path`` (CSV + parquet), replacing rows with the same key; returns the table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock(path.parent):
        _remove_stale_temps([path])
        df = _merge(_read(path), rows, key, columns)
        _write(df, path)
    return df


def _refresh_variants(folder: Path) -> Any:
    """``variants.csv``: quality rows + the 720p30 cost columns of their variant (call under the lock)."""
    import pandas as pd

    quality = _read(folder / QUALITY_FILE)
    cost = _read(folder / COST_FILE)
    if quality is None:
        return None
    if cost is not None:
        keep = [c for c in COST_COLUMNS if c not in PROVENANCE_COLUMNS and c not in ("recipe", "variant_name")
                and c in cost.columns]  # a table from before a column existed lacks it
        c720 = cost[cost["resolution"] == JOIN_RESOLUTION][keep]
        df = quality.merge(c720, on="variant", how="left")
    else:
        df = quality.copy()
        df["resolution"] = pd.NA
    _write(df, folder / VARIANTS_FILE)
    return df


def write_tables(
    folder: Path, quality_rows: Sequence[dict[str, Any]], cost_rows: Sequence[dict[str, Any]]
) -> tuple[Any, Any]:
    """Append a variant's quality and cost rows to ``folder``'s tables and refresh ``variants.csv``, atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    with _lock(folder):
        _remove_stale_temps([folder / QUALITY_FILE, folder / COST_FILE, folder / VARIANTS_FILE])
        q = _merge(_read(folder / QUALITY_FILE), quality_rows, QUALITY_KEY, list(QUALITY_COLUMNS))
        _write(q, folder / QUALITY_FILE)
        c = _merge(_read(folder / COST_FILE), cost_rows, COST_KEY, list(COST_COLUMNS))
        _write(c, folder / COST_FILE)
        _refresh_variants(folder)
    return q, c


def drop_variants(folder: Path, variants: Sequence[str]) -> int:
    """Remove every row of these variant ids from ``folder``'s tables (atomically, under the lock).

    For rows whose recipe has changed since they were made (a new key, a fixed stage): the variant's
    artifacts folder is left alone. Returns the number of quality + cost rows removed.
    """
    gone = set(variants)
    removed = 0
    with _lock(folder):
        for name in (QUALITY_FILE, COST_FILE):
            df = _read(folder / name)
            if df is None:
                continue
            keep = ~df["variant"].astype(str).isin(gone)
            removed += int((~keep).sum())
            _write(df[keep].reset_index(drop=True), folder / name)
        _refresh_variants(folder)
    return removed


def fill_cost_signatures(folder: str | Path, signature: Callable[[Path], str], *, recompute: bool = False) -> int:
    """Add ``graph_signature`` to ``folder``'s cost rows written before the column existed.

    A variant gets the signature of its ``model.onnx`` when the file is still here (``signature`` is
    :func:`compress.deploy.graph_signature`), else the one its ``latency.csv`` rows recorded for the
    file that was timed; otherwise it stays empty. Returns the number of variants filled.
    ``recompute``: every variant, not only those without one (recompute ``latency.csv`` first).
    """
    import pandas as pd

    folder = Path(folder)
    with _lock(folder):
        cost = _read(folder / COST_FILE)
        if cost is None or cost.empty:
            return 0
        if "graph_signature" not in cost.columns:
            cost["graph_signature"] = pd.NA
        cost["graph_signature"] = cost["graph_signature"].astype(object)
        timed: dict[str, str] = {}
        lat_path = folder / "latency.csv"
        if lat_path.is_file():
            lat = pd.read_csv(lat_path)
            if "graph_signature" in lat.columns:
                for v, g in zip(lat["variant"].astype(str), lat["graph_signature"], strict=True):
                    if isinstance(g, str) and g:
                        timed.setdefault(v, g)
        if recompute:
            cost["graph_signature"] = ""
        empty = cost["graph_signature"].isna() | (cost["graph_signature"].astype(str) == "")
        filled: set[str] = set()
        for variant in sorted(set(cost.loc[empty, "variant"].astype(str))):
            rows = empty & (cost["variant"].astype(str) == variant)
            onnx = folder / str(cost.loc[rows, "onnx_path"].iloc[0]) if "onnx_path" in cost.columns else None
            sig = signature(onnx) if onnx is not None and onnx.is_file() else timed.get(variant, "")
            if sig:
                cost.loc[rows, "graph_signature"] = sig
                filled.add(variant)
        if filled or recompute:
            _write(cost, folder / COST_FILE)
            _refresh_variants(folder)
    return len(filled)


def read_table(path: str | Path) -> Any:
    """A results table as a DataFrame (parquet twin preferred), or None when absent."""
    return _read(Path(path))


# ---------------------------------------------------------------------------------------------
# variant artifacts


def write_json(path: Path, data: Any) -> Path:
    """Pretty JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=False, default=str) + "\n").encode())
    return path


def write_yaml(path: Path, data: Any, header: str = "") -> Path:
    """Safe-dumped YAML (keys in order), with an optional comment header, atomically."""
    import yaml

    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    atomic_write_bytes(path, (header + body).encode())
    return path


def write_weights(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """A state dict as safetensors (no pickle), atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))
    return path


def read_done(folder: Path) -> dict[str, Any] | None:
    """The done marker of a variant folder, or None."""
    p = folder / DONE_FILE
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_done(folder: Path, record: dict[str, Any]) -> Path:
    """Mark a variant done (written last: a crashed run leaves no marker and re-runs)."""
    return write_json(folder / DONE_FILE, record)


# ---------------------------------------------------------------------------------------------
# documentation


def _column_table(columns: dict[str, str]) -> list[str]:
    lines = ["| column | meaning |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in columns.items()]
    return lines


def results_readme() -> str:
    """The text of ``results/README.md``: every file and every column of the results tables."""
    lines = [
        "# results/",
        "",
        "Written only by `compress run` (module `compress.results`); generated by "
        "`compress.results.write_results_readme`, do not edit by hand.",
        "",
        "Each recipe writes `results/<recipe>/`:",
        "",
        f"- `{QUALITY_FILE}` (+ `.parquet`): one row per variant x dataset x JPEG quality x protocol; key "
        f"`{', '.join(QUALITY_KEY)}`.",
        f"- `{COST_FILE}` (+ `.parquet`): one row per variant x resolution; key `{', '.join(COST_KEY)}`.",
        f"- `{VARIANTS_FILE}` (+ `.parquet`): `{QUALITY_FILE}` joined with the {JOIN_RESOLUTION} row of "
        f"`{COST_FILE}` (for plots and fronts).",
        "- `<variant>/`: the variant's artifacts (below).",
        "",
        "Rows are appended atomically under a file lock; a re-run replaces its rows (same key), never "
        "duplicates them. The parquet twin keeps column types; the CSV is for reading.",
        "",
        "## Variant folder",
        "",
        "| file | content |",
        "|---|---|",
        *[f"| `{k}` | {v} |" for k, v in ARTIFACTS.items()],
        "",
        f"## {QUALITY_FILE}",
        "",
        *_column_table(QUALITY_COLUMNS),
        "",
        f"## {COST_FILE}",
        "",
        *_column_table(COST_COLUMNS),
        "",
        f"## {VARIANTS_FILE}",
        "",
        f"The columns of `{QUALITY_FILE}`, then the cost columns of `{COST_FILE}` at {JOIN_RESOLUTION} "
        "(without repeating the provenance).",
        "",
        "## latency.csv",
        "",
        "Written by `compress latency` / `compress main` (module `compress.deploy`): one row per variant x target "
        "x resolution x machine, measured one at a time with fixed threads; key `variant, target, resolution, cpu`. "
        "Rows of another machine are kept beside this one's (timing again on a new CPU adds rows); fronts and the "
        "speed goal use one machine's rows (`--machine`, default the one that timed most recently).",
        "",
        *_column_table(LATENCY_COLUMNS),
        "",
        f"## {DEPLOYED_FILE}",
        "",
        "Written by `compress deployed` (module `compress.deployed`): each variant's `model.onnx` scored in the "
        "runtime of every measured target that runs it, one row per variant x target x dataset x quality x "
        f"protocol; key `{', '.join(DEPLOYED_KEY)}`. Fronts and the speed goal take a target's quality from here "
        "when it has a row (else from the torch score of quality.csv).",
        "",
        *_column_table(DEPLOYED_COLUMNS),
        "",
        "## fronts/<dataset>-q<quality>-<protocol>/ (and any `compress pareto --out` folder)",
        "",
        "`fronts/` is drawn from the AMX Xeon's latency and deployed rows (`--machine 'Intel(R) Xeon(R) Processor "
        "[avx512+vnni+bf16+amx]' --machine 'Intel(R) Xeon(R) Processor (family 6 model 167) "
        "[avx512+vnni+bf16+amx]'`: the second key is session 16's AMX Xeon, pooled for the INT8 scores of the "
        "variants run there, which equal the first key's to 1e-6 dB where both scored a graph; the first key's "
        "rows win, so the latencies are sessions 9-14's), `fronts-avx2/` from session 15's AVX2 EPYC's "
        "(`--machine 'AMD EPYC "
        "(family 23 model 1) [avx2]'`, live1 q10, the five targets timed there), whose fronts hold only the "
        "variants it timed (those whose ONNX is committed, and their graphs' other variants).",
        "",
        "Written by `compress pareto` / `compress main` (module `compress.pareto`) from the tables above only:",
        "",
        "- `points.csv`: every variant per target with its cost `x` and quality `y`, `machine` (whose latency and "
        "deployed rows, on a latency axis), `eligible` (fits the target's "
        "precisions and budgets), the `reason` when not, and `on_front`; `y_from` says whether `y` is the torch "
        "score or the target runtime's (deployed.csv); on a latency axis `x_n` counts the measured variants whose "
        "median `x` is (variants of one graph structure share it) and `x_timed` is false for a variant that was "
        "not timed itself and takes its graph's median. By default (`--seeds mean`) the seed replicates of a "
        "condition (variant names that differ only in `seedN`) are one row: `y` the mean of their scores, `x` the "
        "median of their costs, `seeds` how many scores, `y_sd` their standard deviation, `members` their keys "
        "(`;`-separated), and `key` / `variant` the replicate whose score is nearest the mean (the one to ship; among "
        "the replicates whose `model.onnx` is in the folder, where any is, since only front members' are committed).",
        "- `front.csv`: the non-dominated eligible variants per target (quality up, cost down).",
        "- `front-<target>.png` / `.svg`: the front (log cost axis, every variant labelled up to 15 points, else "
        "the front members only, published reference "
        "points drawn apart as 'published, not re-measured'; when a few points lie far below the rest, the y axis "
        "keeps the top 2 dB and marks those at its lower edge with their value).",
        "- `fronts.html`: one self-contained interactive page (plotly.js inline); a selector switches targets.",
        "",
        "## bench/",
        "",
        "Written by `nox -s bench` (`compress bench`), each with the machine and load average in columns:",
        "",
        "| file | content |",
        "|---|---|",
        "| `loader.csv` | input pipeline: patches/s of the reference loader (decode per patch) and of ours, ratio |",
        "| `train_speed.csv` | training step (forward + backward + Adam) per model x setting (fp32, channels_last, "
        "bf16 autocast, torch.compile) x patch size: ms/step, pixels/s, GMAC/s (3x forward true MACs), fraction "
        "of the matmul peak measured in the same run; `note` says why a row was not measured |",
        "| `eval_time.csv` | wall time of a whole LIVE1 evaluation per model |",
        "| `avx512-bf16/` | the same files measured on a second machine (`compress bench ... --out "
        "results/bench/avx512-bf16`: AVX-512 with VNNI and BF16), and that machine's `speed_goal.md` / `.csv` "
        "(`compress bench speedgoal --machine 'AMD EPYC [avx512+vnni+bf16]' --out results/bench/avx512-bf16`); "
        "the top-level files are the first AVX2 machine's, except `speed_goal.*`, which are the AMX Xeon's |",
        "| `avx2/speed_goal.*` | the speed goal on the AVX2 EPYC of session 15 (`compress bench speedgoal --machine "
        "'AMD EPYC (family 23 model 1) [avx2]' --out results/bench/avx2`) |",
        "| `xeon-f6m167/speed_goal.*` | the speed goal on session 16's AMX Xeon (`compress bench speedgoal --machine "
        "'Intel(R) Xeon(R) Processor (family 6 model 167) [avx512+vnni+bf16+amx]' --out results/bench/xeon-f6m167`): "
        "the stride-4 graphs timed there on the OpenVINO INT8 targets only |",
        "| `avx512-amx/latency.csv` | `compress bench latency` on the third machine (Xeon with AMX, shared with busy "
        "neighbours: see `probe_gflops`) |",
        "| `latency.csv` | per-target ms/frame at 720p and the fraction of the matmul peak reached |",
        "| `paired_latency.csv` | `compress latency A.onnx B.onnx ... --paired ROUNDS`: graphs timed in turn, one "
        "row per graph x target x round (`run` = when the comparison started, `round`, `ms_median` / `ms_min` / "
        "`ms_max` of `n` runs, `probe_gflops` after the round, `load_avg`, `onnx_sha256`, `graph_signature`, "
        "`cpu`); compare a run's graphs by the ratio of their medians over rounds, not across runs |",
        "| `speed_goal.csv` / `.md` | `compress bench speedgoal`, from the results folders' `quality.csv` + "
        "`latency.csv` only: per target x resolution, the fastest timed variant with LIVE1 q10 `idcn-rgb` PSNR >= "
        "JPEG + 1 dB (`variant`, `psnr`, `ms`, `met` = within 33.3 ms; with `--seeds mean`, the default, the seed "
        "replicates of a condition are one candidate at their mean PSNR and median ms, `seeds` / `psnr_sd` say how "
        "many and how far apart, `seed_mode` which way), the fastest variant of all and the best one "
        "(`fastest_*`, `best_*`), `short_db` (how far the best timed variant is below the floor when none reaches "
        "it), `fastest_gmac_per_s` / `gmac_in_budget` (true GMAC/s the runtime sustains on the fastest variant, and "
        "the GMACs per frame that fit the budget at that rate), `n_timed` (variants timed themselves), "
        "`n_with_latency` (plus untimed variants of a timed graph), `n_deployed` (variants scored in "
        "the target's runtime: deployed.csv, used instead of the torch PSNR), and the goal's settings (`goal_*`); "
        "ms are per-graph medians as on the fronts |",
        "| `ttq.csv` | time to quality: one row per snapshot of a training run (recipe, `seconds` of wall time "
        "since the run started, `step`, LIVE1 `psnr` / `ssim` / `jpeg_psnr` under `protocol`, the recipe's "
        "patch / batch / lr / loss / init / precision, `load_avg` when the snapshot was taken, `machine_cpu`); "
        "the recipe `reference-code` is the brief's reference training loop re-run on that machine |",
        "| `ttq_summary.csv` | per machine and recipe: minutes to JPEG + 1 dB and to the reference's 30-minute PSNR "
        "(`target_*_psnr`), the reference's minutes to the same and the speed-up; `reference` says whether the "
        "reference curve was measured on that machine or is issue 9's quoted table |",
        "| `ttq.png` | PSNR against wall time of the latest machine's runs, with that machine's reference curve |",
        "| `ttq_ablation.csv` | equal-budget ablations of the training recipe's choices, one row per run of a "
        "`recipes/ablations/*.yaml` file (`ablation`, `run`): the settings, `pixels_seen`, LIVE1 `psnr` / `ssim` / "
        "`jpeg_psnr` of the final weights, load average and machine |",
        "",
    ]
    return "\n".join(lines)


def write_results_readme(folder: str | Path = "results") -> Path:
    """Write :func:`results_readme` to ``<folder>/README.md``."""
    p = Path(folder) / "README.md"
    atomic_write_bytes(p, results_readme().encode())
    return p
