"""Depth pruning (``prune_layers``): which layers are removable, the greedy loss criterion, replay, recipes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from compress.errors import CompressError, RecipeError
from compress.nets import build_model, count_params
from compress.recipe.expand import parse_recipe
from compress.recipe.schema import Recipe
from compress.stages import STAGES
from compress.stages.base import StageContext
from compress.stages.prune_layers import prune_layers, removable_layers, replay_plan
from compress.stages.replay import rebuild_model
from compress.train import init_model_

S4 = "{stride: 4, features: [64, 64, 64, 64], mid_kernel: 3, mid_layers: 4}"
S4_KW: dict[str, Any] = {"stride": 4, "features": [64, 64, 64, 64], "mid_kernel": 3, "mid_layers": 4}
TINY = "batch_size: 2, patch_size: 32"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def recipe_of(stages: str, *, kwargs: str = S4, extra: str = "") -> Recipe:
    text = (
        f"name: t\nstudent: {{arch: fast_arcnn, arch_kwargs: {kwargs}}}\n{extra}"
        "data: {train: embedded, train_limit: 1, eval: [embedded], limit: 1}\n"
        f"stages:\n{stages}\n"
    )
    return parse_recipe(text, "t.yaml").variants[0].recipe


def fresh(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = build_model("fast_arcnn", 3, **S4_KW)
    init_model_(m, "kaiming")
    return m


def run(model: nn.Module, recipe: Recipe, tmp_path: Path, images: list[Any]) -> tuple[nn.Module, list[dict[str, Any]]]:
    ctx = StageContext(recipe, tmp_path, threads=1)
    ctx._images = images
    plans = []
    for i, st in enumerate(recipe.stages):
        ctx.stage_index = i
        res = STAGES.get(st.type)(model, st, ctx)
        model = res.model
        plans.append({"type": st.type, "plan": res.plan})
    return model, plans


def test_removable_layers_keep_their_input_shape() -> None:
    s4 = removable_layers(fresh())
    # the 64 -> 64 1x1 shrink/expand and the four 3x3 middle layers; not the stride-4 encoder or the decoder
    assert list(s4) == ["base.2", "base.4", "base.6", "base.8", "base.10", "base.12"]
    assert s4["base.6"] == ("base.6", "base.7")  # with its PReLU
    assert list(removable_layers(build_model("fast_arcnn"))) == ["base.4"]  # the brief's 32 -> 32 7x7
    assert removable_layers(build_model("arcnn")) == {}  # every layer changes the width


def test_named_layers_go_and_the_plan_replays(tmp_path: Path, images: list[Any]) -> None:
    recipe = recipe_of("  - {type: prune_layers, layers: [base.6, base.8]}")
    model = fresh()
    base_state = copy.deepcopy(model.state_dict())
    pruned, plans = run(model, recipe, tmp_path, images)
    plan = plans[0]["plan"]
    assert plan["removed"] == [["base.6", "base.7"], ["base.8", "base.9"]]
    assert count_params(pruned) == plan["params_after"] == plan["params_before"] - 2 * (64 * 64 * 9 + 64 + 1)
    assert not any(k.startswith(("base.6.", "base.8.")) for k in pruned.state_dict())
    x = torch.rand(1, 3, 37, 29)
    assert pruned(x).shape == x.shape
    base = build_model("fast_arcnn", 3, **S4_KW)
    base.load_state_dict(base_state)
    rebuilt = rebuild_model(base, {"stages": plans}, pruned.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), pruned(x))


def test_count_removes_the_layer_whose_bypass_costs_least(tmp_path: Path, images: list[Any]) -> None:
    model = fresh()
    with torch.no_grad():  # make base.8 an exact identity (Dirac kernel, zero bias, PReLU slope 1)
        conv = model.get_submodule("base.8")
        assert isinstance(conv, nn.Conv2d)
        nn.init.dirac_(conv.weight)
        nn.init.zeros_(conv.bias)  # type: ignore[arg-type]
        model.get_submodule("base.9").weight.fill_(1.0)
    recipe = recipe_of(f"  - {{type: prune_layers, count: 2, calibration_batches: 1, {TINY}}}")
    before = copy.deepcopy(model)
    pruned, plans = run(model, recipe, tmp_path, images)
    rounds = plans[0]["plan"]["rounds"]
    assert rounds[0]["loss_without"]["base.8"] == pytest.approx(rounds[0]["loss_before"], rel=1e-5)  # an identity
    for r in rounds:  # each round removes the layer whose bypass leaves the lowest loss
        assert r["loss_without"][r["removed"]] == min(r["loss_without"].values())
    assert rounds[0]["removed"] not in rounds[1]["loss_without"]
    assert len(plans[0]["plan"]["removed"]) == 2
    replayed = replay_plan(before, plans[0]["plan"])
    assert list(replayed.state_dict()) == list(pruned.state_dict())


def test_replay_refuses_a_plan_of_another_model() -> None:
    plan = {"kind": "layer-removal/1", "removed": [["base.6", "base.7"]]}
    with pytest.raises(CompressError, match="not removable"):
        replay_plan(build_model("fast_arcnn"), plan)  # the brief's Fast ARCNN has no base.6 conv of equal widths
    with pytest.raises(CompressError, match="not a layer-removal plan"):
        replay_plan(fresh(), {"kind": "torch-pruning-history/1"})


def test_count_beyond_the_candidates_is_an_error(tmp_path: Path, images: list[Any]) -> None:
    recipe = recipe_of("  - {type: prune_layers, layers: [base.4]}", kwargs="{}")
    st = recipe.stages[0].model_copy(update={"layers": (), "count": 2})
    ctx = StageContext(recipe, tmp_path, threads=1)
    with pytest.raises(CompressError, match="1 removable layer"):
        prune_layers(build_model("fast_arcnn"), st, ctx)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ("  - {type: prune_layers}", "exactly one of count, layers"),
        ("  - {type: prune_layers, count: 1, layers: [base.4]}", "exactly one of count, layers"),
        ("  - {type: prune_layers, layers: [base.0]}", "unknown removable layer 'base.0'"),
        ("  - {type: prune_layers, count: 7}", "count 7 but the student has 6 removable layer"),
        ("  - {type: prune_layers, layers: [base.4]}\n  - {type: prune_layers, layers: [base.4]}",
         "removed by an earlier stage"),
        ("  - {type: quantize, backend: nncf}\n  - {type: prune_layers, layers: [base.4]}",
         "prune_layers after quantize"),
    ],
)
def test_recipe_errors_name_the_key(stages: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message) as err:
        recipe_of(stages)
    assert "t.yaml:" in str(err.value)


def test_a_hint_on_a_removed_layer_is_an_error() -> None:
    with pytest.raises(RecipeError, match="removed by a prune_layers stage"):
        recipe_of(
            "  - {type: prune_layers, layers: [base.6]}\n"
            "  - {type: distill, teacher: r, hints: [{student: base.6, teacher: sfe2}]}",
            extra="teachers: {r: {arch: rdn_s}}\n",
        )


def test_run_end_to_end_rebuilds_and_matches_its_onnx(tmp_path: Path) -> None:
    """prune_layers -> prune -> nncf QAT -> QDQ export through compress run; the variant rebuilds from its plan."""
    import numpy as np

    from compress.recipe.expand import load_recipe
    from compress.results import read_table
    from compress.run import RunOptions, estimate_cost, run_recipes
    from compress.stages.export import onnx_session
    from compress.stages.replay import load_variant

    recipe = tmp_path / "depth.yaml"
    recipe.write_text(
        f"name: depth\nstudent: {{arch: fast_arcnn, arch_kwargs: {S4}, checkpoint: models/absent/best.safetensors, "
        "if_missing: init}\n"
        "data: {train: embedded, train_limit: 1, eval: [embedded], limit: 1, qualities: [10]}\n"
        "stages:\n"
        f"  - {{type: prune_layers, count: 2, calibration_batches: 1, {TINY}}}\n"
        "  - {type: prune, ratio: 0.5, round_to: 8, ignored_layers: [base.0]}\n"
        f"  - {{type: quantize, backend: nncf, steps: 1, calibration_images: 2, {TINY}}}\n"
        "  - {type: export, format: qdq, atol: 0.01}\n"
    )
    est = estimate_cost(load_recipe(recipe).variants[0])  # the dry run's estimate (first removable layers)
    assert est["params"] < count_params(fresh())
    results = tmp_path / "results"
    run_recipes([recipe], options=RunOptions(results_dir=results, progress=False, threads=1), out=lambda s: None)
    folder = next(p for p in (results / "depth").iterdir() if p.is_dir())
    model, plan = load_variant(folder)
    assert [s["type"] for s in plan["stages"]] == ["prune_layers", "prune", "quantize", "export"]
    assert len(plan["stages"][0]["plan"]["removed"]) == 2
    cost = read_table(results / "depth" / "cost.csv")
    assert set(cost["params"]) == {plan["stages"][1]["plan"]["params_after"]}
    x = torch.rand(1, 3, 40, 24)
    with torch.no_grad():
        ours = model(x).numpy()
    theirs = onnx_session(folder / "model.onnx").run(None, {"input": x.numpy()})[0]
    assert float(np.abs(ours - theirs).mean()) < 0.01
