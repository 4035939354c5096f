"""Time-to-quality benchmark: snapshots by wall time, scoring, summary against the reference curve, plot."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from compress.errors import ConfigError, RecipeError
from compress.recipe.train_recipe import train_config
from compress.train import TrainConfig
from compress.ttq import (
    _write_ablation_rows,
    ablation_configs,
    plot_ttq,
    reference_curve,
    report_markdown,
    run_ablation,
    run_ttq,
    score_runs,
    score_snapshots,
    summarize,
    time_to_reach,
    train_with_snapshots,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((96, 64), Image.Resampling.BICUBIC).save(d / f"im{i}.png")
    return d


def test_reference_curve_is_issue_9s_table() -> None:
    ref = reference_curve()
    assert list(ref["minutes"]) == [5, 15, 20, 30, 40, 45, 50]
    assert time_to_reach(ref, 26.45) == 30  # the reference passes 26.45 dB at 30 minutes ...
    assert time_to_reach(ref, 26.69) is None  # ... and never reaches JPEG + 1 dB


def test_snapshots_follow_wall_time_and_end_with_the_last_step(image_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(arch="arcnn", images_dir=str(image_dir), outputs_dir=str(tmp_path / "o"), patch_size=32,
                      batch_size=2, steps=6, warmup_steps=1, threads=1)
    # every mark already passed after the first step gives one snapshot there; the end always gets one
    snaps = train_with_snapshots(cfg, marks_s=[1e-6, 2e-6, 1e5], progress=False)
    assert [s.step for s in snaps] == [1, 6]
    assert all(a.seconds < b.seconds for a, b in itertools.pairwise(snaps))
    assert not torch.equal(snaps[0].state["last.weight"], snaps[-1].state["last.weight"])  # copies, not views
    few = train_with_snapshots(replace(cfg, outputs_dir=str(tmp_path / "p")),
                               marks_s=[1e6], progress=False)
    assert [s.step for s in few] == [6]  # nothing due before the end: only the final weights
    with pytest.raises(ConfigError):
        train_with_snapshots(cfg, marks_s=[0.0])


def test_scores_and_summary(image_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(arch="arcnn", images_dir=str(image_dir), outputs_dir=str(tmp_path / "o"), patch_size=32,
                      batch_size=2, steps=2, warmup_steps=1, threads=1, lr=1e-7)
    snaps = train_with_snapshots(cfg, marks_s=[1e6], progress=False)
    rows = score_snapshots(cfg, snaps, dataset=f"folder:{image_dir}", limit=2, threads=1)
    assert len(rows) == 1 and rows[0]["step"] == 2 and rows[0]["n_images"] == 2
    assert abs(rows[0]["psnr"] - rows[0]["jpeg_psnr"]) < 0.05  # identity init, tiny lr: still the JPEG input
    df = pd.DataFrame([
        {"recipe": "r", "model": "arcnn", "minutes": m, "psnr": p, "jpeg_psnr": 25.69}
        for m, p in [(0.5, 25.9), (1.0, 26.3), (2.0, 26.5), (6.0, 26.7)]
    ])
    s = summarize(df).iloc[0]
    assert s["minutes_to_reference_30min"] == 2.0 and s["speedup_reference_30min"] == 15.0
    assert s["minutes_to_jpeg_plus_1db"] == 6.0 and pd.isna(s["speedup_jpeg_plus_1db"])  # reference never got there
    assert s["target_jpeg_plus_1db_psnr"] == 26.69


def _tiny_recipe(path: Path, image_dir: Path, *, steps: int) -> Path:
    """A training recipe of ``steps`` steps of 2 x 32x32 crops from ``image_dir`` (named after the file)."""
    path.write_text(
        f"schema_version: 1\nkind: train\nname: {path.stem}\narch: arcnn\n"
        f"data: {{train: 'folder:{image_dir}', val: 'folder:{image_dir}', val_limit: 1}}\n"
        f"patch_size: 32\nbatch_size: 2\nsteps: {steps}\nwarmup_steps: 1\n"
    )
    return path


def test_run_ttq_writes_csv_summary_and_plot(image_dir: Path, tmp_path: Path) -> None:
    recipe = _tiny_recipe(tmp_path / "ttq-tiny.yaml", image_dir, steps=3)
    cfg = train_config(recipe)
    assert cfg.images_dir == str(image_dir) and cfg.steps == 3
    out = tmp_path / "bench"
    path = run_ttq([recipe], out, marks_s=[1e6], threads=1, progress=False, dataset=f"folder:{image_dir}", limit=1)
    run = out / "ttq_runs" / "ttq-tiny"
    assert (run / "best.safetensors").is_file() and len(list((run / "snapshots").iterdir())) == 1
    assert score_runs([run], out, threads=1, dataset=f"folder:{image_dir}", limit=1) == path  # scoring alone
    with pytest.raises(ConfigError, match="no finished time-to-quality run"):
        score_runs([out / "ttq_runs" / "never-trained"], out, threads=1)
    df = pd.read_csv(path)
    assert list(df["step"]) == [3] and df["threads"].iloc[0] == 1
    assert {"machine_cpu", "load_avg", "recipe", "lr", "patch_size"} <= set(df.columns)
    assert (out / "ttq_summary.csv").is_file() and (out / "ttq.png").stat().st_size > 1000
    assert plot_ttq(path) == out / "ttq.png"


def test_ablation_file_runs_and_rejects_unknown_settings(image_dir: Path, tmp_path: Path) -> None:
    base = _tiny_recipe(tmp_path / "train-base.yaml", image_dir, steps=2)
    abl = tmp_path / "ablation.yaml"
    abl.write_text(f"base: {base}\ndataset: 'folder:{image_dir}'\nruns:\n  - name: a\n    set: {{}}\n"
                   "  - name: b\n    set: {batch_size: 1, steps: 4, init: reference}\n")
    cfgs = dict(ablation_configs(abl, threads=1))
    assert cfgs["a"].batch_size == 2 and cfgs["b"].batch_size == 1 and cfgs["b"].init == "reference"
    path = run_ablation(abl, tmp_path / "bench", threads=1, limit=1, progress=False)
    df = pd.read_csv(path)
    assert list(df["run"]) == ["a", "b"] and list(df["steps"]) == [2, 4]
    assert list(df["pixels_seen"]) == [2 * 2 * 32**2, 4 * 1 * 32**2] and df["psnr"].notna().all()
    other = tmp_path / "ablation-other.yaml"  # a second ablation file adds its rows; rerunning one replaces its own
    other.write_text(f"base: {base}\ndataset: 'folder:{image_dir}'\nruns:\n  - name: c\n    set: {{steps: 1}}\n")
    run_ablation(other, tmp_path / "bench", threads=1, limit=1, progress=False)
    run_ablation(other, tmp_path / "bench", threads=1, limit=1, progress=False)
    df = pd.read_csv(path)
    assert list(df["run"]) == ["a", "b", "c"]
    # a writer that started before another file's rows existed keeps them (the table is re-read under a lock)
    _write_ablation_rows(path, str(abl), [{"ablation": str(abl), "run": "a2"}])
    assert list(pd.read_csv(path)["run"]) == ["c", "a2"]
    run_ablation(abl, tmp_path / "bench", threads=1, limit=1, progress=False)
    md = report_markdown(tmp_path / "bench")
    assert "| `ablation` | b | 32 | 1 | 4 |" in md and "| `ablation-other` | c |" in md

    abl.write_text(f"base: {base}\nruns:\n  - name: a\n    set: {{patch: 3}}\n")
    with pytest.raises(RecipeError, match=r"runs\.a\.set: unknown training setting\(s\) patch"):
        ablation_configs(abl)
    abl.write_text(f"base: {base}\nruns:\n  - name: a\n    set: {{patch_size: 3}}\n")
    with pytest.raises(RecipeError, match=r"patch_size must be in 8\.\.512"):
        ablation_configs(abl)
    abl.write_text(f"base: {base}\nrunz: []\n")
    with pytest.raises(RecipeError, match="runz"):
        ablation_configs(abl)


SHIPPED_ABLATIONS = sorted((Path(__file__).resolve().parents[1] / "recipes" / "ablations").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_ABLATIONS, ids=[p.stem for p in SHIPPED_ABLATIONS])
def test_shipped_ablations_load_and_keep_one_budget(path: Path, tmp_path: Path) -> None:
    cfgs = ablation_configs(path, data_root=str(tmp_path))  # data folders are resolved, not read
    assert len(cfgs) >= 2 and len({name for name, _ in cfgs}) == len(cfgs)
    pixels = {c.steps * c.batch_size * c.patch_size**2 for _, c in cfgs}
    assert len(pixels) == 1, f"{path.name}: runs see different numbers of training pixels: {sorted(pixels)}"


def test_reference_code_rerun_is_scored_and_compared_on_its_own_machine(image_dir: Path, tmp_path: Path) -> None:
    from compress.reference_train import REFERENCE_RECIPE, ReferenceConfig, train_reference, train_reference_run

    cfg = ReferenceConfig(images_dir=str(image_dir), patch_size=24, batch_size=2, threads=0, minutes=0.02)
    snaps, stats = train_reference(cfg, marks_s=[1e-6, 1e5], progress=False)
    # the first step passes the first mark; the limit (1.2 s) ends it; one epoch = len(images) // batch steps
    assert snaps[0].step == 1 and snaps[-1].step == stats["steps"] >= 1
    assert stats["epochs"] == stats["steps"]  # 3 images, batch 2, drop_last: one step an epoch
    assert 0 <= stats["loader_wait_fraction"] < 1
    w0 = torch.nn.init.normal_(torch.empty(64, 3, 9, 9), std=0.001)  # the reference initialisation's scale
    assert abs(float(snaps[0].state["base.0.weight"].std()) - float(w0.std())) < 5e-4
    run = train_reference_run(cfg, tmp_path / "runs" / REFERENCE_RECIPE, marks_s=[1e5], progress=False)
    out = tmp_path / "bench"
    path = score_runs([run], out, threads=1, dataset=f"folder:{image_dir}", limit=1)
    df = pd.read_csv(path)
    assert list(df["recipe"]) == [REFERENCE_RECIPE] and df["init"].iloc[0] == "reference"
    assert df["lr"].iloc[0] == 5e-4 and df["batch_size"].iloc[0] == 2
    with pytest.raises(ConfigError, match="arcnn or fast_arcnn"):
        train_reference(ReferenceConfig(images_dir=str(image_dir), arch="rdn_s", batch_size=2), marks_s=[1.0],
                        progress=False)


def test_summary_uses_the_reference_measured_on_the_same_machine() -> None:
    from compress.ttq import reference_for, speedups

    def rows(recipe: str, cpu: str, pts: list[tuple[float, float]]) -> list[dict[str, object]]:
        return [{"recipe": recipe, "model": "arcnn", "minutes": m, "psnr": p, "ssim": 0.78, "jpeg_psnr": 25.69,
                 "machine_cpu": cpu, "measured": "2026-12-02T15:00:00"} for m, p in pts]

    df = pd.DataFrame(
        rows("reference-code", "fast", [(5.0, 26.0), (15.0, 26.4), (30.0, 26.55)])
        + rows("ours", "fast", [(1.0, 26.3), (3.0, 26.56), (20.0, 26.7)])
        + rows("ours", "slow", [(1.0, 26.3), (2.0, 26.5)])
    )
    assert reference_for(df, "fast")[1] == "measured here" and reference_for(df, "slow")[1] == "issue 9, quoted"
    s = summarize(df).set_index("machine_cpu")
    assert list(s.index) == ["fast", "slow"]  # the reference-code run is a curve to compare with, not a recipe
    fast, slow = s.loc["fast"], s.loc["slow"]
    assert fast["target_reference_30min_psnr"] == 26.55 and fast["minutes_to_reference_30min"] == 3.0
    assert fast["speedup_reference_30min"] == 10.0 and fast["reference"] == "measured here"
    assert fast["minutes_to_jpeg_plus_1db"] == 20.0 and pd.isna(fast["speedup_jpeg_plus_1db"])
    assert slow["target_reference_30min_psnr"] == 26.45 and slow["speedup_reference_30min"] == 15.0
    sp = speedups(df, "fast").set_index("reference_minutes")
    assert sp.loc[15.0, "ours:minutes"] == 3.0 and sp.loc[15.0, "ours:speedup"] == 5.0
    assert sp.loc[5.0, "ours:speedup"] == 5.0  # 26.0 dB: reference 5 min, ours 1 min
    md = report_markdown_from(df)
    assert "fast; reference curve: measured here." in md and "| 10.0x |" in md
    assert "| 15.0 min | 26.40 | 15.0 min | 3.0 min (5x) |" in md  # the speed-up at each reference snapshot
    assert "slow; reference curve: issue 9, quoted." in md


def report_markdown_from(df: pd.DataFrame) -> str:
    import tempfile

    from compress.ttq import write_summary

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "ttq.csv"
        df.assign(steps=1, batch_size=16, patch_size=24, load_avg=2.0).to_csv(p, index=False)
        write_summary(p)
        return report_markdown(Path(d))
