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


def test_run_records_the_training_budget_and_writes_cards(tiny_run: tuple[Path, Path, list[str]]) -> None:
    from compress.cards import VARIANT_CARD, write_variant_cards
    from compress.deploy import cpu_name

    _, results, _ = tiny_run
    folder = results / "tiny"
    cost = read_table(folder / "cost.csv")
    assert set(cost["train_budget"]) == {"distill 1x2x32 + qat 1x2x32"}  # prune calibrates: no optimizer step
    assert set(cost["train_steps"]) == {2} and set(cost["train_batch"]) == {2} and set(cost["train_patch"]) == {32}
    assert set(cost["train_pixels"]) == {2 * (1 * 2 * 32 * 32)} and set(cost["train_cpu"]) == {cpu_name()}
    assert "train_budget" in read_table(folder / "variants.csv").columns
    for v in sorted(set(cost["variant"])):
        card = (folder / v / VARIANT_CARD).read_text()
        assert f"compress run {folder.name}.yaml --only {v}" not in card  # the source recipe's path, not a guess
        assert f"--only {v}`" in card and "distill 1x2x32 + qat 1x2x32" in card
        assert "| embedded | 10 | idcn-rgb | 1 |" in card and "| 1080p30 |" in card
        assert "`prune` (stage 1): pruned widths" in card and "brevitas qat W4 A8" in card
    assert write_variant_cards(folder) == []  # idempotent: nothing changed, nothing written


def test_budget_backfill_restores_the_columns(tiny_run: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    import shutil

    from compress.results import BUDGET_COLUMNS, KEY_COLUMNS, fill_cost_budget

    _, results, _ = tiny_run
    folder = tmp_path / "tiny"
    shutil.copytree(results / "tiny", folder)
    new = read_table(folder / "cost.csv")
    old = new.drop(columns=[*BUDGET_COLUMNS, "train_cpu", *KEY_COLUMNS])  # a table from before the columns existed
    old.to_csv(folder / "cost.csv", index=False)
    old.to_parquet(folder / "cost.parquet", index=False)
    for v in set(old["variant"]):
        (folder / v / "README.md").unlink()
    assert main(["card", "--results", str(folder), "--backfill"]) == 0
    filled = read_table(folder / "cost.csv")
    assert list(filled.columns) == list(COST_COLUMNS)
    pd.testing.assert_frame_equal(filled[[*BUDGET_COLUMNS, *KEY_COLUMNS]], new[[*BUDGET_COLUMNS, *KEY_COLUMNS]])
    assert new["condition_key"].notna().all()  # compress run writes them
    assert filled["train_cpu"].isna().all()  # the machine was not recorded: left empty, never guessed
    assert pd.read_csv(folder / "cost.csv")["train_batch"].tolist() == [2] * 6  # integers, not 2.0
    assert all((folder / v / "README.md").is_file() for v in set(old["variant"]))
    assert fill_cost_budget(folder) == 0  # nothing left to fill


def test_train_budget_counts_only_optimizer_steps() -> None:
    from compress.recipe.schema import FinetuneStage, PruneStage, QuantizeStage
    from compress.results import train_budget

    ft = FinetuneStage.model_validate({"type": "finetune", "steps": 300, "batch_size": 16, "patch_size": 32})
    qat = QuantizeStage.model_validate({"type": "quantize", "steps": 40, "batch_size": 16, "patch_size": 48})
    ptq = QuantizeStage.model_validate({"type": "quantize", "mode": "ptq", "steps": 999})
    prune = PruneStage.model_validate({"type": "prune", "ratio": 0.5})
    got = train_budget([prune, ft, qat, ptq])
    assert got == {"train_steps": 340, "train_batch": 16, "train_patch": None,
                   "train_pixels": 300 * 16 * 32 * 32 + 40 * 16 * 48 * 48,
                   "train_budget": "finetune 300x16x32 + qat 40x16x48"}
    assert train_budget([ptq]) == {"train_steps": 0, "train_batch": None, "train_patch": None, "train_pixels": 0,
                                   "train_budget": "none"}


def _committed(pattern: str) -> list[str]:
    """Tracked files matching a git pathspec (``*`` crosses folders)."""
    import subprocess

    out = subprocess.run(["git", "ls-files", "--", pattern], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return out.stdout.split()


def test_every_committed_column_is_documented() -> None:
    import csv

    doc = (REPO / "results" / "README.md").read_text()
    missing = set()
    for path in _committed("results/*.csv"):
        with (REPO / path).open(newline="") as fh:
            header = next(csv.reader(fh), [])
        missing |= {f"{Path(path).name}: {c}" for c in header if f"`{c}`" not in doc}
    assert not missing, f"columns not in results/README.md (compress.results.results_readme): {sorted(missing)}"


def test_committed_variant_cards_are_up_to_date() -> None:
    from compress.cards import VARIANT_CARD, render_variant_card

    folders = sorted({Path(p).parent for p in _committed("results/*/cost.csv")})
    stale = [f"{folder}/{Path(card).parent.name}" for folder in folders
             for card in _committed(f"{folder}/*/{VARIANT_CARD}")
             if (REPO / card).read_text() != render_variant_card(REPO / folder, Path(card).parent.name)]
    assert not stale, f"regenerate: compress card --results {' '.join(sorted({str(Path(s).parent) for s in stale}))}"


def test_condition_keys_ignore_names_eval_sets_and_seeds() -> None:
    import copy

    from compress.recipe.schema import Recipe
    from compress.results import condition_keys

    doc = {
        "schema_version": 1, "kind": "compress", "name": "a", "description": "x", "seed": 0,
        "student": {"arch": "arcnn", "checkpoint": "models/arcnn-q10/best.safetensors"},
        "teachers": {"t": {"arch": "rdn_s", "checkpoint": "models/rdn-s-q10/best.safetensors"},
                     "unused": {"arch": "idcn_s", "checkpoint": "models/idcn-s-q10/best.safetensors"}},
        "data": {"train": "bsds500_train", "eval": ["live1"], "qualities": [10]},
        "stages": [{"type": "prune", "ratio": 0.25}, {"type": "distill", "teacher": "t", "steps": 10, "seed": 123},
                   {"type": "export"}],
    }
    base = condition_keys(Recipe.model_validate(doc))
    other = copy.deepcopy(doc)
    other.update(name="b", description="y", seed=7, teachers={"rdn": doc["teachers"]["t"]})
    other["data"]["eval"] = ["live1", "kodak24"]
    other["stages"][1].update(teacher="rdn", seed=0, label="kd")
    keys = condition_keys(Recipe.model_validate(other))
    assert keys["condition_key"] == base["condition_key"]  # a seed replicate of the same condition ...
    assert keys["replicate_key"] != base["replicate_key"]  # ... but another run
    same_run = copy.deepcopy(doc)
    same_run.update(name="c")
    same_run["stages"][2].update(atol=0.002)  # a looser export check exports the same model
    assert condition_keys(Recipe.model_validate(same_run)) == base
    pruned_more = copy.deepcopy(doc)
    pruned_more["stages"][0]["ratio"] = 0.5
    assert condition_keys(Recipe.model_validate(pruned_more))["condition_key"] != base["condition_key"]
    other_teacher = copy.deepcopy(doc)
    other_teacher["stages"][1]["teacher"] = "unused"
    assert condition_keys(Recipe.model_validate(other_teacher))["condition_key"] != base["condition_key"]


def test_committed_seed_studies_pool_with_their_sweep_cells() -> None:
    """study-arcnn-prune25 only adds seeds to prune-arcnn's 25 % Taylor cell: the keys must say so."""
    from compress.results import variant_budget

    root = Path(__file__).resolve().parents[1] / "results"
    cell_dir = next((root / "prune-arcnn").glob("ratio0.25-taylor-*"))
    cell = variant_budget(cell_dir)
    seeds = [variant_budget(d) for d in sorted((root / "study-arcnn-prune25").glob("seed*-*"))]
    assert cell is not None and len(seeds) == 3
    assert {s["condition_key"] for s in seeds if s} == {cell["condition_key"]}
    assert len({cell["replicate_key"], *(s["replicate_key"] for s in seeds if s)}) == 4
    committed = read_table(root / "prune-arcnn" / "cost.csv")
    assert set(committed.loc[committed["variant"] == cell_dir.name, "condition_key"]) == {cell["condition_key"]}
