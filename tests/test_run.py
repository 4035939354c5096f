"""``compress run`` end to end on a tiny recipe, the results tables and their atomic, idempotent append."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from compress.cli import main
from compress.errors import RecipeError
from compress.results import (
    COST_COLUMNS,
    QUALITY_COLUMNS,
    append_rows,
    read_table,
    results_readme,
)
from compress.run import RunOptions, run_recipes

REPO = Path(__file__).resolve().parents[1]

# Fast ARCNN (the cheaper student) through every kind of stage, two sweep points; one embedded image.
TINY = """\
name: tiny
student: {arch: fast_arcnn, checkpoint: models/absent/best.safetensors, if_missing: init}
teachers: {small: {arch: rdn_s}}
data: {train: embedded, train_limit: 1, eval: [embedded], limit: 1, qualities: [10]}
stages:
  - {type: prune, ratio: 0.5, round_to: 4}
  - {type: distill, teacher: small, steps: 1, batch_size: 2, patch_size: 32}
  - {type: quantize, backend: brevitas, weight_bits: 4, act_bits: 8, steps: 1, batch_size: 2, patch_size: 32,
     calibration_images: 2}
  - {type: export, atol: 0.005}
sweep:
  axes: {stages.0.ratio: [0.25, 0.5]}
"""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """Run the tiny recipe once for the module: (recipe file, results dir, log lines)."""
    root = tmp_path_factory.mktemp("run")
    recipe = root / "tiny.yaml"
    recipe.write_text(TINY)
    results = root / "results"
    log: list[str] = []
    torch.set_num_threads(1)
    run_recipes([recipe], options=RunOptions(results_dir=results, progress=False, threads=1), out=log.append)
    return recipe, results, log


def test_run_writes_artifacts_and_tables(tiny_run: tuple[Path, Path, list[str]]) -> None:
    _, results, _ = tiny_run
    folder = results / "tiny"
    variants = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert len(variants) == 2 and variants[0].startswith("ratio0.25-")
    for v in variants:
        for name in ("recipe.yaml", "plan.json", "weights.safetensors", "quant.json", "model.onnx", "done.json"):
            assert (folder / v / name).is_file(), name
    quality = read_table(folder / "quality.csv")
    cost = read_table(folder / "cost.csv")
    joined = read_table(folder / "variants.csv")
    assert list(quality.columns) == list(QUALITY_COLUMNS) and len(quality) == 2
    assert list(cost.columns) == list(COST_COLUMNS) and len(cost) == 6
    assert len(joined) == 2 and set(joined["resolution"]) == {"720p30"}
    assert set(cost["weight_bits"]) == {4} and set(cost["act_bits"]) == {8}
    assert (quality["comparable"] == False).all()  # noqa: E712 - embedded images
    assert quality["psnr"].notna().all() and quality["jpeg_psnr"].gt(20).all()
    assert cost.groupby("variant")["params"].first().is_monotonic_decreasing  # ratio 0.25 keeps more
    assert quality["notes"].str.contains("FRESHLY INITIALISED").all()
    assert pd.read_csv(folder / "quality.csv").shape == quality.shape


def test_rerun_skips_and_never_duplicates(tiny_run: tuple[Path, Path, list[str]]) -> None:
    recipe, results, _ = tiny_run
    log: list[str] = []
    outcomes = run_recipes([recipe], options=RunOptions(results_dir=results, progress=False, threads=1),
                           out=log.append)
    assert [o.status for o in outcomes] == ["skipped", "skipped"]
    first = outcomes[0].variant
    forced = run_recipes([recipe], only=[first], options=RunOptions(results_dir=results, progress=False, threads=1,
                                                                     force=True), out=log.append)
    assert [o.status for o in forced] == ["ran"]
    assert len(read_table(results / "tiny" / "quality.csv")) == 2
    assert len(read_table(results / "tiny" / "cost.csv")) == 6


def test_variant_rebuilds_from_plan_and_weights(tiny_run: tuple[Path, Path, list[str]]) -> None:
    from compress.stages.export import onnx_session
    from compress.stages.replay import load_variant

    _, results, _ = tiny_run
    folder = next(p for p in (results / "tiny").iterdir() if p.is_dir())
    model, plan = load_variant(folder)
    assert [s["type"] for s in plan["stages"]] == ["prune", "distill", "quantize", "export"]
    x = torch.rand(1, 3, 40, 24)
    with torch.no_grad():
        ours = model(x).numpy()
    theirs = onnx_session(folder / "model.onnx").run(None, {"input": x.numpy()})[0]
    assert float(np.abs(ours - theirs).mean()) < 0.005


def test_nothing_runs_if_any_recipe_is_invalid(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(TINY)
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("name: tiny", "name: bad").replace("ratio: 0.5,", "ratio: 1.5,"))
    with pytest.raises(RecipeError, match=r"bad\.yaml:6: stages\.0\.ratio"):
        run_recipes([good, bad], options=RunOptions(results_dir=tmp_path / "results"))
    assert not (tmp_path / "results").exists()


def test_dry_run_lists_variants_and_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    assert main(["run", str(recipe), "--dry-run", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "tiny/ratio0.25-" in out and "TFLOPS@720p30" in out and "2 variant(s)" in out
    # Fast ARCNN's transposed-conv decoder: the brief's convention charges it as if zero-inserted, the true
    # figure (the one the fronts use) per input pixel, so the second column is the smaller
    row = next(line for line in out.splitlines() if line.startswith("tiny/ratio0.25-")).split()
    assert float(row[3]) < float(row[2])
    assert not (tmp_path / "r").exists()
    assert main(["run", str(recipe), "--dry-run", "--only", "nope"]) == 2


@pytest.mark.parametrize("native", [False, True])
def test_bf16_stages_warn_where_bf16_is_emulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 native: bool) -> None:
    """A recipe that asks for bf16 autocast on an AVX2-only CPU (10x slower than fp32 there) says so before
    it runs; on a CPU with native bf16, and for fp32 recipes, nothing is said."""
    import compress.train

    monkeypatch.setattr(compress.train, "native_bf16", lambda: native)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY.replace("steps: 1, batch_size: 2, patch_size: 32}", "steps: 1, batch_size: 2, "
                                   "patch_size: 32, precision: bf16}", 1))
    lines: list[str] = []
    run_recipes([recipe], dry_run=True, out=lines.append)
    warned = [line for line in lines if line.startswith("warning: ")]
    if native:
        assert not warned
    else:
        assert len(warned) == 1 and "2 variant(s) train with precision: bf16 (stage 1 (distill))" in warned[0]
        assert "10x slower" in warned[0]
    fp32 = tmp_path / "fp32.yaml"
    fp32.write_text(TINY)
    lines.clear()
    run_recipes([fp32], dry_run=True, out=lines.append)
    assert not [line for line in lines if line.startswith("warning: ")]


def test_append_replaces_rows_with_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    cols = ["variant", "quality", "psnr"]
    append_rows(path, [{"variant": "a", "quality": 10, "psnr": 1.0}], ("variant", "quality"), cols)
    append_rows(path, [{"variant": "a", "quality": 10, "psnr": 2.0}, {"variant": "b", "quality": 10, "psnr": 3.0}],
                ("variant", "quality"), cols)
    df = read_table(path)
    assert df.to_dict("records") == [{"variant": "a", "quality": 10, "psnr": 2.0},
                                     {"variant": "b", "quality": 10, "psnr": 3.0}]
    assert len(pd.read_csv(path)) == 2 and path.with_suffix(".parquet").is_file()
    assert not list(tmp_path.glob(".*.tmp"))


def test_results_readme_is_up_to_date() -> None:
    assert (REPO / "results" / "README.md").read_text() == results_readme(), (
        "regenerate: python -c 'from compress.results import write_results_readme; write_results_readme()'"
    )


def test_latency_columns_are_documented() -> None:
    from compress.deploy import LatencyRecord
    from compress.results import LATENCY_COLUMNS

    assert list(LATENCY_COLUMNS) == LatencyRecord.columns()


def test_only_prefers_an_exact_name_to_id_prefixes() -> None:
    from compress.recipe.expand import parse_recipe
    from compress.run import select_variants

    text = (
        "name: t\nstudent: {arch: arcnn}\ndata: {train: embedded, eval: [embedded]}\n"
        "stages:\n  - {type: quantize, backend: nncf, mode: ptq}\n"
        "sweep:\n  points:\n    - {stages.0.weight_bits: 8}\n"
        "    - {stages.0.weight_bits: 8, stages.0.keep_float: [last]}\n"
        "    - {stages.0.weight_bits: 8, stages.0.keep_float: []}\n"
    )
    rf = parse_recipe(text, "t.yaml")
    names = [v.name for v in rf.variants]
    assert names == ["w8", "w8-keep_float_last", "w8-keep_float_none"]
    assert [v.name for v in select_variants([rf], ["w8"])] == ["w8"]  # not also w8-keep_float_last
    assert [v.name for v in select_variants([rf], ["w8-keep_float_l"])] == ["w8-keep_float_last"]  # an id prefix
    assert len(select_variants([rf], [rf.variants[0].id[:4]])) == 1
