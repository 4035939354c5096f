"""Time-to-quality benchmark: wall time until a training run reaches a LIVE1 PSNR (issue 9).

A run trains one model from a training recipe on an idle machine and keeps a copy of the weights at
wall-time marks (30 s, 1 min, 1.5 min, ... by default), counted from the moment the run starts
(building the input pipeline included: a user waits for it too). Once training ends, every snapshot
is scored on the evaluation set (LIVE1, ``idcn-rgb``, the recipe's first quality); scoring is not
timed. The curve is compared with the reference implementation's
(``compress/data/reference_ttq.csv``, quoted from issue 9).

Rows are tidy (one per snapshot) with the recipe, threads, load average and machine in columns; the
plot is made only from the CSV.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from compress.bench import load_avg, machine
from compress.errors import ConfigError
from compress.fsio import atomic_write_bytes
from compress.train import TrainConfig, Trainer

REFERENCE_CSV = "reference_ttq.csv"
REFERENCE_RECIPE = "reference-code"  # the ``recipe`` of the reference loop re-run here (compress.reference_train)
JPEG_PLUS_1DB = 1.0


@dataclass(frozen=True)
class Snapshot:
    seconds: float
    step: int
    load_avg: float
    state: dict[str, torch.Tensor]


def reference_curve() -> pd.DataFrame:
    """The reference implementation's LIVE1 PSNR / SSIM against minutes (issue 9's table)."""
    with files("compress.data").joinpath(REFERENCE_CSV).open() as fh:
        return pd.read_csv(fh, comment="#")


DEFAULT_MARKS_MIN = (0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 12.5, 15, 20, 25, 30, 40, 50, 60)
DEFAULT_MARKS_S = tuple(60.0 * m for m in DEFAULT_MARKS_MIN)


def train_with_snapshots(
    cfg: TrainConfig, *, marks_s: Sequence[float] = DEFAULT_MARKS_S, progress: bool = True,
) -> list[Snapshot]:
    """Train ``cfg`` from scratch (no validation); keep the weights at the first step past each wall-time mark
    (seconds since the start, building the input pipeline included) and at the end."""
    marks = sorted(marks_s)
    if not marks or marks[0] <= 0:
        raise ConfigError(f"wall-time marks must be > 0 seconds, got {list(marks_s)}")
    cfg = replace(cfg, val_every=10**9, ckpt_every=10**9)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, progress=progress)
    snaps: list[Snapshot] = []
    pending = list(marks)

    def keep(tr: Trainer) -> None:
        snaps.append(Snapshot(time.perf_counter() - t0, tr.state.step, load_avg(),
                              copy.deepcopy(tr.model.state_dict())))

    def on_step(tr: Trainer) -> None:
        elapsed = time.perf_counter() - t0
        if pending and elapsed >= pending[0]:
            keep(tr)
            while pending and pending[0] <= elapsed:
                pending.pop(0)

    trainer.on_step = on_step
    trainer.fit()
    if not snaps or snaps[-1].step != trainer.state.step:
        keep(trainer)
    return snaps


def score_snapshots(
    cfg: TrainConfig, snaps: Iterable[Snapshot], *, dataset: str = "live1", data_root: str | None = None,
    limit: int | None = None, threads: int = 2,
) -> list[dict[str, Any]]:
    """LIVE1 (or ``dataset``) PSNR / SSIM of every snapshot, at the recipe's first quality."""
    from compress.evaluate import evaluate_model
    from compress.nets import build_model

    torch.set_num_threads(threads)
    q = cfg.qualities[0]
    protocol = "idcn-rgb" if cfg.color == "rgb" else "arcnn-y"
    rows = []
    for s in snaps:
        model = build_model(cfg.arch, cfg.channels, **cfg.arch_kwargs)
        model.load_state_dict(s.state)
        res = evaluate_model(model.eval(), dataset, [q], protocol, data_root=data_root, limit=limit,
                             progress=False, model_name=cfg.arch)[0]
        rows.append({
            "model": cfg.arch, "seconds": round(s.seconds, 1), "minutes": round(s.seconds / 60, 3), "step": s.step,
            "dataset": dataset, "quality": q, "protocol": protocol, "n_images": res.n_images,
            "psnr": round(res.psnr, 4), "ssim": round(res.ssim, 4), "jpeg_psnr": round(res.jpeg_psnr, 4),
            "load_avg": s.load_avg,
        })
        print(f"{cfg.arch} {s.seconds / 60:6.2f} min step {s.step:5d}: {dataset} {res.psnr:.3f} dB "
              f"(JPEG {res.jpeg_psnr:.3f}), SSIM {res.ssim:.4f}", flush=True)
    return rows


def time_to_reach(rows: pd.DataFrame, psnr: float) -> float | None:
    """Minutes of the first snapshot at or above ``psnr`` (None if never reached)."""
    hit = rows[rows["psnr"] >= psnr].sort_values("minutes")
    return None if hit.empty else float(hit["minutes"].iloc[0])


RUN_INFO = "ttq_run.json"


def save_snapshots(run_dir: Path, snaps: Sequence[Snapshot]) -> None:
    """Write every snapshot to ``run_dir/snapshots/`` (safetensors; time, step and load in the metadata)."""
    from safetensors.torch import save_file

    d = run_dir / "snapshots"
    d.mkdir(parents=True, exist_ok=True)
    for s in snaps:
        meta = {"seconds": repr(s.seconds), "step": str(s.step), "load_avg": repr(s.load_avg)}
        save_file({k: v.contiguous() for k, v in s.state.items()}, str(d / f"step{s.step:07d}.safetensors"), meta)


def load_snapshots(run_dir: Path) -> list[Snapshot]:
    from safetensors import safe_open

    out = []
    for f in sorted((run_dir / "snapshots").glob("step*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            meta = fh.metadata()
            state = {k: fh.get_tensor(k) for k in fh.keys()}
        out.append(Snapshot(float(meta["seconds"]), int(meta["step"]), float(meta["load_avg"]), state))
    return out


def train_runs(
    recipes: Iterable[str | Path], runs_dir: Path, *, marks_s: Sequence[float] | None = None,
    data_root: str | None = None, threads: int = 2, progress: bool = True, reference_minutes: float = 30.0,
) -> list[Path]:
    """Train every recipe from scratch with snapshots (the timed part: run it on an idle machine).

    The name ``reference-code`` instead of a recipe file re-runs the brief's reference training loop on
    BSDS500 train for ``reference_minutes`` (:mod:`compress.reference_train`; its DataLoader gets ``threads``
    workers, as the brief's ``--threads``).

    Each run goes to ``runs_dir/<recipe file stem>/`` (replacing an earlier one): the Trainer's files,
    ``snapshots/`` and ``ttq_run.json``. Returns the run folders.
    """
    import json
    import shutil

    from compress.recipe.train_recipe import train_config
    dirs = []
    for recipe in recipes:
        run_dir = runs_dir / Path(recipe).stem
        if str(recipe) == REFERENCE_RECIPE:  # the brief's reference loop, re-run here (compress.reference_train)
            from compress.data.datasets import dataset_folder, get_spec
            from compress.reference_train import ReferenceConfig, train_reference_run

            ref = ReferenceConfig(images_dir=str(dataset_folder(get_spec("bsds500_train"), data_root)),
                                  threads=threads, minutes=reference_minutes)
            dirs.append(train_reference_run(ref, run_dir, marks_s=marks_s or DEFAULT_MARKS_S, progress=progress))
            continue
        if run_dir.exists():
            shutil.rmtree(run_dir)
        cfg = train_config(recipe, data_root=data_root, threads=threads, workers=0, outputs_dir=str(run_dir))
        la0 = load_avg()
        snaps = train_with_snapshots(cfg, marks_s=marks_s or DEFAULT_MARKS_S, progress=progress)
        save_snapshots(run_dir, snaps)
        info = {"recipe": str(recipe), "threads": threads, "load_avg_at_start": la0,
                "measured": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine()}
        atomic_write_bytes(run_dir / RUN_INFO, json.dumps(info, indent=1).encode())
        dirs.append(run_dir)
    return dirs


def score_runs(
    run_dirs: Iterable[Path], out: Path, *, dataset: str = "live1", data_root: str | None = None,
    limit: int | None = None, threads: int = 2,
) -> Path:
    """Score the snapshots of trained runs (not timed); write ``ttq.csv``, ``ttq_summary.csv`` and ``ttq.png``."""
    import json

    rows: list[dict[str, Any]] = []
    for run_dir in run_dirs:
        if not (run_dir / RUN_INFO).is_file():
            raise ConfigError(f"{run_dir}: no finished time-to-quality run to score (train it first: "
                              "compress bench ttq --ttq-phase train)")
        info = json.loads((run_dir / RUN_INFO).read_text())
        if "reference" in info:  # a re-run of the reference code (compress.reference_train)
            from compress.reference_train import ReferenceConfig

            cfg = ReferenceConfig(**info["reference"]).as_train_config(int(info["stats"]["steps"]))
        else:
            raw = json.loads((run_dir / "config.json").read_text())
            cfg = TrainConfig(**{**raw, "qualities": tuple(raw["qualities"])})
        for r in score_snapshots(cfg, load_snapshots(run_dir), dataset=dataset, data_root=data_root, limit=limit,
                                 threads=threads):
            rows.append({"recipe": info["recipe"], **r, "threads": info["threads"],
                         "load_avg_at_start": info["load_avg_at_start"], "patch_size": cfg.patch_size,
                         "batch_size": cfg.batch_size, "steps": cfg.steps, "lr": cfg.lr, "loss": cfg.loss,
                         "init": cfg.init, "precision": cfg.precision,
                         **{f"machine_{k}": v for k, v in info["machine"].items()}, "measured": info["measured"]})
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ttq.csv"
    table = pd.DataFrame(rows)
    if path.is_file() and not table.empty:  # keep the rows of other recipes and of other machines
        earlier = pd.read_csv(path)
        done = set(zip(table["recipe"], table["machine_cpu"], strict=True))
        keep = [(r, c) not in done for r, c in zip(earlier["recipe"], earlier["machine_cpu"], strict=True)]
        table = pd.concat([earlier[keep], table], ignore_index=True)
    atomic_write_bytes(path, table.to_csv(index=False).encode())
    write_summary(path)
    plot_ttq(path)
    return path


def run_ttq(
    recipes: Iterable[str | Path], out: Path, *, marks_s: Sequence[float] | None = None, data_root: str | None = None,
    threads: int = 2, dataset: str = "live1", limit: int | None = None, progress: bool = True,
    runs_dir: Path | None = None,
) -> Path:
    """Train every recipe with snapshots (timed), then score them all (not timed): :func:`train_runs` then
    :func:`score_runs`. Runs go to ``runs_dir`` (default ``out/ttq_runs``)."""
    dirs = train_runs(recipes, runs_dir or out / "ttq_runs", marks_s=marks_s, data_root=data_root, threads=threads,
                      progress=progress)
    return score_runs(dirs, out, dataset=dataset, data_root=data_root, limit=limit, threads=threads)


REFERENCE_MARK_MIN = 30.0  # "the reference's 30-minute PSNR": the target issue 9 sets for 3 minutes (10x)


def _recipe_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["recipe"] != REFERENCE_RECIPE]


def reference_for(df: pd.DataFrame, cpu: str | None) -> tuple[pd.DataFrame, str]:
    """The reference curve to compare ``cpu``'s runs with: the reference code re-run on that machine (rows of
    ``df`` with the recipe ``reference-code``) where there is one, else issue 9's quoted table. Returns the
    curve (``model, minutes, psnr, ssim``) and where it comes from."""
    if "machine_cpu" in df.columns:
        mine = df[(df["recipe"] == REFERENCE_RECIPE) & (df["machine_cpu"] == cpu)]
        if not mine.empty:
            return mine[["model", "minutes", "psnr", "ssim"]].sort_values("minutes"), "measured here"
    return reference_curve(), "issue 9, quoted"


def psnr_at(curve: pd.DataFrame, minutes: float) -> float | None:
    """PSNR of the curve's snapshot nearest ``minutes`` (within 5 %; snapshots land just after their mark)."""
    if curve.empty:
        return None
    i = (curve["minutes"] - minutes).abs().idxmin()
    return float(curve.loc[i, "psnr"]) if abs(float(curve.loc[i, "minutes"]) - minutes) <= 0.05 * minutes else None


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per machine and recipe: minutes to JPEG + 1 dB and to the reference's 30-minute PSNR, and the speed-up
    against the reference curve of the same machine (issue 9's quoted one where it was not re-run)."""
    if "machine_cpu" not in df.columns:
        df = df.assign(machine_cpu="")
    out = []
    for (cpu, recipe, model), g in _recipe_rows(df).groupby(["machine_cpu", "recipe", "model"], sort=False):
        ref, source = reference_for(df, cpu)
        ref_m = ref[ref["model"] == model]
        jpeg = float(g["jpeg_psnr"].iloc[0])
        row: dict[str, Any] = {"machine_cpu": cpu, "recipe": recipe, "model": model, "jpeg_psnr": jpeg,
                               "best_psnr": float(g["psnr"].max()), "run_minutes": float(g["minutes"].max()),
                               "reference": source}
        ref30 = psnr_at(ref_m, REFERENCE_MARK_MIN)
        for label, target in (("jpeg_plus_1db", jpeg + JPEG_PLUS_1DB), ("reference_30min", ref30)):
            ours = time_to_reach(g, target) if target is not None else None
            theirs = time_to_reach(ref_m, target) if target is not None and not ref_m.empty else None
            row[f"target_{label}_psnr"] = None if target is None else round(target, 4)
            row[f"minutes_to_{label}"] = ours
            row[f"reference_minutes_to_{label}"] = theirs
            row[f"speedup_{label}"] = (theirs / ours) if ours and theirs else None
        out.append(row)
    return pd.DataFrame(out)


def speedups(df: pd.DataFrame, cpu: str, model: str = "arcnn") -> pd.DataFrame:
    """For every snapshot of the reference curve of ``cpu`` (``model``): its minutes and PSNR, and the first
    snapshot of each of that machine's recipes that reaches the same PSNR (minutes, speed-up)."""
    ref, source = reference_for(df, cpu)
    ref = ref[ref["model"] == model].sort_values("minutes")
    ours = _recipe_rows(df)
    ours = ours[(ours["machine_cpu"] == cpu) & (ours["model"] == model)] if "machine_cpu" in ours else ours[:0]
    rows = []
    for _, r in ref.iterrows():
        t_ref = time_to_reach(ref, float(r["psnr"]))  # the reference's first time at this PSNR
        row: dict[str, Any] = {"reference": source, "reference_minutes": float(r["minutes"]),
                               "psnr": float(r["psnr"]), "reference_first_minutes": t_ref}
        for recipe, g in ours.groupby("recipe", sort=False):
            t = time_to_reach(g, float(r["psnr"]))
            row[f"{recipe}:minutes"] = t
            row[f"{recipe}:speedup"] = (t_ref / t) if t and t_ref else None
        rows.append(row)
    return pd.DataFrame(rows)


def write_summary(csv_path: Path) -> Path:
    summary = summarize(pd.read_csv(csv_path))
    path = csv_path.with_name("ttq_summary.csv")
    atomic_write_bytes(path, summary.to_csv(index=False).encode())
    return path


def latest_machine(df: pd.DataFrame) -> str | None:
    """The ``machine_cpu`` of the most recently measured rows (None for a table without the column)."""
    if "machine_cpu" not in df.columns or df.empty:
        return None
    rows = df.sort_values("measured") if "measured" in df.columns else df
    return str(rows["machine_cpu"].iloc[-1])


def plot_ttq(csv_path: Path, *, machine: str | None = None) -> Path:
    """PSNR against wall time for every recipe timed on one machine (default: the latest), with that machine's
    reference curve (measured, solid; issue 9's quoted table, dashed, where it was not re-run) and the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.read_csv(csv_path)
    cpu = machine or latest_machine(df)
    ref, source = reference_for(df, cpu)
    mine = _recipe_rows(df)
    if cpu is not None:
        mine = mine[mine["machine_cpu"] == cpu]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for recipe, g in mine.groupby("recipe", sort=False):
        g = g.sort_values("minutes")
        ax.plot(g["minutes"], g["psnr"], marker="o", ms=3, label=f"{g['model'].iloc[0]}: {Path(str(recipe)).stem}")
    measured = source == "measured here"
    for model, g in ref.groupby("model"):
        ax.plot(g["minutes"], g["psnr"], marker="s", ls="-" if measured else "--", color="gray",
                label=f"{model}: reference code ({source})")
    jpeg = float(df["jpeg_psnr"].iloc[0])
    ax.axhline(jpeg, color="black", lw=0.8, ls=":", label=f"JPEG {jpeg:.2f} dB")
    ax.axhline(jpeg + JPEG_PLUS_1DB, color="tab:red", lw=0.8, ls=":", label=f"JPEG + 1 dB ({jpeg + 1:.2f})")
    ax.set_xscale("log")
    threads = sorted({int(t) for t in mine["threads"]}) if "threads" in mine and len(mine) else [2]
    ax.set_xlabel(f"wall time (min, log scale; {'/'.join(map(str, threads))} CPU threads"
                  + (f", {cpu})" if cpu else ")"))
    ax.set_ylabel(f"{df['dataset'].iloc[0]} PSNR (dB), q{int(df['quality'].iloc[0])}, {df['protocol'].iloc[0]}")
    ax.set_ylim(max(24.0, ax.get_ylim()[0]), None)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Time to quality: training from scratch on BSDS500 train")
    fig.tight_layout()
    path = csv_path.with_suffix(".png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# equal-budget ablations


class AblationRun(BaseModel):
    """One ablation: a name and the training settings it changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="row name in ttq_ablation.csv")
    set: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields to change")


class AblationFile(BaseModel):
    """``recipes/ablations/*.yaml``: a base training recipe and the runs that change it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base: str = Field(..., description="training recipe the runs start from")
    dataset: str = Field("live1", description="evaluation set of the final weights")
    runs: tuple[AblationRun, ...] = Field(..., min_length=1)


def ablation_configs(
    path: str | Path, *, data_root: str | None = None, threads: int = 2,
) -> list[tuple[str, TrainConfig]]:
    """The named training configs of an ablation file; a key TrainConfig lacks is a RecipeError."""
    from compress.errors import CompressError, RecipeError
    from compress.recipe.loader import load_file
    from compress.recipe.train_recipe import train_config

    spec = load_file(AblationFile, path)
    known = set(TrainConfig.__dataclass_fields__) - {"images_dir", "outputs_dir", "data_root", "threads"}
    out = []
    for run in spec.runs:
        bad = sorted(set(run.set) - known)
        if bad:
            raise RecipeError(f"{path}: runs.{run.name}.set: unknown training setting(s) {', '.join(bad)}; "
                              f"valid: {', '.join(sorted(known))}")
        try:
            cfg = train_config(spec.base, data_root=data_root, threads=threads, workers=0, **run.set)
        except CompressError as exc:
            raise RecipeError(f"{path}: runs.{run.name}: {exc}") from None
        out.append((run.name, cfg))
    return out


def run_ablation(
    path: str | Path, out: Path, *, data_root: str | None = None, threads: int = 2, dataset: str | None = None,
    limit: int | None = None, progress: bool = True,
) -> Path:
    """Train every run of the ablation file, score its final weights, write its rows into ``ttq_ablation.csv``
    (rows of other ablation files are kept; this file's earlier rows are replaced)."""
    from compress.recipe.loader import load_file

    spec = load_file(AblationFile, path)
    rows: list[dict[str, Any]] = []
    m = machine()
    csv_path = out / "ttq_ablation.csv"
    for name, cfg in ablation_configs(path, data_root=data_root, threads=threads):
        with tempfile.TemporaryDirectory(prefix="compress-ablation-") as tmp:
            cfg = replace(cfg, outputs_dir=tmp)
            la0 = load_avg()
            snaps = train_with_snapshots(cfg, marks_s=[1e12], progress=progress)  # only the final weights
        (r,) = score_snapshots(cfg, snaps, dataset=dataset or spec.dataset, data_root=data_root, limit=limit,
                               threads=threads)
        rows.append({"ablation": str(path), "run": name, **r, "pixels_seen": cfg.steps * cfg.batch_size
                     * cfg.patch_size**2, "patch_size": cfg.patch_size, "batch_size": cfg.batch_size,
                     "steps": cfg.steps, "lr": cfg.lr, "warmup_steps": cfg.warmup_steps,
                     "min_lr_ratio": cfg.min_lr_ratio, "loss": cfg.loss, "init": cfg.init,
                     "precision": cfg.precision, "threads": threads, "load_avg_at_start": la0,
                     **{f"machine_{k}": v for k, v in m.items()}, "measured": time.strftime("%Y-%m-%dT%H:%M:%S")})
        _write_ablation_rows(csv_path, str(path), rows)  # kept after every run
    return csv_path


def _write_ablation_rows(csv_path: Path, ablation: str, rows: list[dict[str, Any]]) -> None:
    """Replace ``ablation``'s rows of ``csv_path`` by ``rows``, keeping every other file's rows.

    Read and written under a file lock: two ablation files run at once (one per core) both keep their rows.
    """
    from filelock import FileLock

    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(csv_path.with_suffix(".lock")), timeout=600):
        earlier = pd.read_csv(csv_path) if csv_path.is_file() else pd.DataFrame({"ablation": []})
        earlier = earlier[earlier["ablation"] != ablation]
        table = pd.concat([earlier, pd.DataFrame(rows)], ignore_index=True) if len(earlier) else pd.DataFrame(rows)
        atomic_write_bytes(csv_path, table.to_csv(index=False).encode())


def _speedup_markdown(t: pd.DataFrame, cpu: str) -> list[str]:
    """For each snapshot of the reference run measured on ``cpu``: when each ARCNN recipe first reached its
    PSNR, and the speed-up (the reference's first time at that PSNR / ours)."""
    sp = speedups(t, cpu)
    recipes = [c.removesuffix(":minutes") for c in sp.columns if c.endswith(":minutes")]
    if sp.empty or not recipes:
        return []

    def cell(row: pd.Series, recipe: str) -> str:
        m, x = row[f"{recipe}:minutes"], row[f"{recipe}:speedup"]
        return "not reached" if pd.isna(m) else f"{float(m):.1f} min ({float(x):.0f}x)" if not pd.isna(x) else (
            f"{float(m):.1f} min")

    lines = ["| reference snapshot | LIVE1 PSNR | reference first at | "
             + " | ".join(f"`{Path(r).stem}`" for r in recipes) + " |",
             "|---|---|---|" + "---|" * len(recipes)]
    for _, r in sp.iterrows():
        lines.append(f"| {r['reference_minutes']:.1f} min | {r['psnr']:.2f} | {r['reference_first_minutes']:.1f} min | "
                     + " | ".join(cell(r, rc) for rc in recipes) + " |")
    return [*lines, ""]


def report_markdown(out: Path) -> str:
    """Markdown tables of ``ttq_summary.csv`` and ``ttq_ablation.csv`` in ``out`` (for the README), from the CSVs."""
    parts: list[str] = []
    ttq, abl = out / "ttq.csv", out / "ttq_ablation.csv"

    def minutes(v: Any) -> str:
        return "not reached" if pd.isna(v) else f"{float(v):.1f} min"

    if ttq.is_file():
        t = pd.read_csv(ttq)
        s = summarize(t)  # from the snapshots (what ttq_summary.csv holds, recomputed)
        if "machine_cpu" not in t.columns:
            t = t.assign(machine_cpu="")
        for cpu, sc in s.groupby("machine_cpu", sort=False):
            tc = t[t["machine_cpu"] == cpu]
            ref, source = reference_for(t, str(cpu))
            target = sc["target_reference_30min_psnr"].dropna()
            ref30 = f"{float(target.iloc[0]):.2f} dB" if len(target) else "the reference's 30-min PSNR"
            ref1 = time_to_reach(ref, float(sc["target_jpeg_plus_1db_psnr"].iloc[0]))
            ref1_txt = minutes(ref1) if ref1 else f"not in {ref['minutes'].max():g} min"
            parts += [f"{cpu or 'unknown machine'}; reference curve: {source}.", "",
                      f"| recipe | model | steps x batch x patch | run | best LIVE1 PSNR | to {ref30} (reference: "
                      f"{REFERENCE_MARK_MIN:g} min) | speed-up | to JPEG + 1 dB (reference: "
                      f"{ref1_txt}) | load avg |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for _, r in sc.iterrows():
                g = tc[tc["recipe"] == r["recipe"]]
                g0 = g.iloc[0]
                sp = r["speedup_reference_30min"]
                parts.append(
                    f"| `{Path(str(r['recipe'])).name}` | {r['model']} | {int(g0['steps']):,} x "
                    f"{int(g0['batch_size'])} x {int(g0['patch_size'])}² | {r['run_minutes']:.1f} min "
                    f"| {r['best_psnr']:.2f} | {minutes(r['minutes_to_reference_30min'])} "
                    f"| {'' if pd.isna(sp) else f'{float(sp):.1f}x'} | {minutes(r['minutes_to_jpeg_plus_1db'])} "
                    f"| {g['load_avg'].min():.2f}-{g['load_avg'].max():.2f} |"
                )
            parts.append("")
            if source == "measured here":
                parts += _speedup_markdown(t, str(cpu))
    if abl.is_file():
        a = pd.read_csv(abl)
        parts += ["| ablation | run | patch | batch | steps | lr | schedule | loss | init | LIVE1 PSNR | vs JPEG |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in a.iterrows():
            sched = "constant" if float(r["min_lr_ratio"]) >= 1 and int(r["warmup_steps"]) == 0 else (
                f"warm-up {int(r['warmup_steps'])} + cosine")
            parts.append(
                f"| `{Path(str(r['ablation'])).stem}` | {r['run']} | {int(r['patch_size'])} | {int(r['batch_size'])} "
                f"| {int(r['steps']):,} | {r['lr']:g} | {sched} | {r['loss']} | {r['init']} | {r['psnr']:.2f} "
                f"| {r['psnr'] - r['jpeg_psnr']:+.2f} |"
            )
        parts.append("")
    return "\n".join(parts)
