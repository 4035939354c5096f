"""Pareto fronts on hand-made results tables: dominance and ties, precision and budget filtering, plots."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from compress.cli import main
from compress.errors import DataError
from compress.pareto import (
    Axis,
    CostAxis,
    QualityAxis,
    Selection,
    coverage_note,
    export_fronts,
    load_tables,
    pareto_mask,
    published_points,
    reference_points,
    resolve_selection,
    target_points,
    write_fronts,
)
from compress.targets import get_target, load_target

# variant: (psnr at q10, true TFLOPS at 720p30, weight bits, act bits, model bytes, peak activations MB at 1080p30)
VARIANTS = {
    "arcnn": (27.10, 3.25, 32, 32, 471_000, 1300.0),
    "arcnn-p50": (26.95, 0.93, 32, 32, 135_000, 900.0),
    "arcnn-p50-int8": (26.90, 0.93, 8, 8, 34_000, 900.0),
    "fast": (26.80, 0.40, 32, 32, 342_000, 300.0),
    "fast-int8": (26.70, 0.40, 8, 8, 86_000, 300.0),
    "fast-int8-twin": (26.70, 0.40, 8, 8, 86_000, 300.0),  # a tie with fast-int8
    "tiny-w4": (26.30, 0.10, 4, 8, 20_000, 150.0),
    "slow": (26.00, 5.00, 32, 32, 2_000_000, 4000.0),  # dominated everywhere
}
SCALE = {"480p30": 0.375, "720p30": 1.0, "1080p30": 2.25}


def make_results(root: Path, variants: dict[str, tuple[float, float, int, int, int, float]] = VARIANTS,
                 latency: dict[tuple[str, str], float] | None = None) -> Path:
    """Hand-made quality.csv / cost.csv (/ latency.csv) as the recipe engine writes them."""
    root.mkdir(parents=True, exist_ok=True)
    q, c = [], []
    for v, (psnr, tf, wb, ab, mb, peak) in variants.items():
        for quality, gain in ((10, 0.0), (20, 2.3)):
            q.append({"variant": v, "recipe": root.name, "dataset": "live1", "quality": quality, "protocol": "idcn-rgb",
                      "psnr": psnr + gain, "ssim": 0.79 + gain / 30, "psnrb": psnr + gain - 0.1,
                      "jpeg_psnr": 25.69 + gain, "jpeg_ssim": 0.7592, "jpeg_psnrb": 25.49, "git_sha": "abc123"})
        for res, s in SCALE.items():
            c.append({"variant": v, "resolution": res, "params": mb // (4 if wb == 32 else 1),
                      "macs": int(tf * 1e12 / 30 * s * 1.2), "macs_true": int(tf * 1e12 / 30 * s),
                      "tflops": tf * s * 1.2, "tflops_true": tf * s, "memory_mb": peak * s / 2.25 * 1.5,
                      "peak_activation_mb": peak * s / 2.25, "weight_bits": wb, "act_bits": ab, "model_bytes": mb,
                      "prune_ratio": 0.5 if "p50" in v else 0.0, "git_sha": "abc123"})
    pd.DataFrame(q).to_csv(root / "quality.csv", index=False)
    pd.DataFrame(c).to_csv(root / "cost.csv", index=False)
    if latency:
        rows = [{"variant": v, "target": t, "resolution": "720p30", "ms_median": ms, "ms_p90": ms * 1.1, "n": 5,
                 "threads": 2, "load_avg": 1.0, "runtime": "onnxruntime", "precision": "fp32"}
                for (v, t), ms in latency.items()]
        pd.DataFrame(rows).to_csv(root / "latency.csv", index=False)
    return root


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return make_results(tmp_path / "demo")


SEL = Selection("live1", 10, "idcn-rgb")


# ---------------------------------------------------------------------------------------------
# dominance


def test_pareto_mask_dominated_and_ties() -> None:
    x = [1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 0.5]
    y = [20.0, 25.0, 25.0, 24.0, 25.0, 30.0, 10.0]
    # (2, 24) is dominated by (2, 25); (3, 25) by (2, 25); the twin (2, 25) points are both kept
    assert pareto_mask(x, y).tolist() == [True, True, True, False, False, True, True]


def test_pareto_mask_nan_and_empty() -> None:
    assert pareto_mask([1.0, np.nan, 2.0], [1.0, 5.0, np.nan]).tolist() == [True, False, False]
    assert pareto_mask([], []).tolist() == []


def test_pareto_mask_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        x, y = rng.integers(0, 6, n).astype(float), rng.integers(0, 6, n).astype(float)  # many ties
        mask = pareto_mask(x, y)
        for j in range(n):
            dominated = any(x[i] <= x[j] and y[i] >= y[j] and (x[i] < x[j] or y[i] > y[j]) for i in range(n))
            assert mask[j] == (not dominated)


# ---------------------------------------------------------------------------------------------
# filtering by precision and budgets


def _points(results: Path, target: str, **kw: object) -> pd.DataFrame:
    pts, _ = target_points(load_tables([results]), get_target(target), SEL, **kw)  # type: ignore[arg-type]
    return pts.set_index("key")


def test_fp32_target_keeps_float_variants_only(results: Path) -> None:
    pts = _points(results, "cpu-ort-fp32", x="tflops_true")
    assert set(pts.index[pts["eligible"]]) == {"arcnn", "arcnn-p50", "fast", "slow"}
    assert "needs a precision the target lacks (fp32)" in pts.loc["fast-int8", "reason"]
    assert set(pts.index[pts["on_front"]]) == {"fast", "arcnn-p50", "arcnn"}
    assert not pts.loc["slow", "on_front"]


def test_int8_target_keeps_integer_variants_and_ties(results: Path) -> None:
    pts = _points(results, "cpu-ov-int8", x="tflops_true")
    assert set(pts.index[pts["eligible"]]) == {"arcnn-p50-int8", "fast-int8", "fast-int8-twin", "tiny-w4"}
    assert set(pts.index[pts["on_front"]]) == {"arcnn-p50-int8", "fast-int8", "fast-int8-twin", "tiny-w4"}
    assert (pts.loc[pts["eligible"], "precision"] == "int8").all()


def test_edge_npu_compute_and_weight_budgets(results: Path) -> None:
    pts = _points(results, "edge-npu")
    assert set(pts.index[pts["eligible"]]) == {"fast-int8", "fast-int8-twin", "tiny-w4"}
    assert "tflops_true 0.93 > 0.5 at 720p30" in pts.loc["arcnn-p50-int8", "reason"]
    # a float variant the NPU cannot run is charged as profiled (fp32): 500,000 params x 4 B
    assert "weights 1.91 MB at fp32 > 1 MB" in pts.loc["slow", "reason"]
    assert pts.loc["tiny-w4", "weights_mb_at_precision"] == pytest.approx(20_000 / 2**20)


def test_tv_chip_activation_budget_at_1080p(results: Path) -> None:
    pts = _points(results, "tv-chip")
    # float students run at FP16 (halved activations), INT8 ones at int8 (quartered)
    assert set(pts.index[pts["eligible"]]) == {"fast", "fast-int8", "fast-int8-twin", "tiny-w4"}
    assert "activations 650 MB at fp16 > 512 MB at 1080p30" in pts.loc["arcnn", "reason"]
    assert "activations" not in pts.loc["arcnn-p50-int8", "reason"]  # 900 MB in fp32 = 225 MB at int8
    assert "tflops_true 2.09 > 1 at 1080p30" in pts.loc["arcnn-p50-int8", "reason"]
    assert pts.loc["arcnn-p50-int8", "activations_mb_at_precision"] == pytest.approx(225.0)
    assert pts.loc["fast", "activations_mb_at_precision"] == pytest.approx(150.0)
    assert pts.loc["tiny-w4", "x"] == pytest.approx(0.1 * 2.25)  # auto axis: budget resolution 1080p30
    # which precision each point runs at: a column, the plot label (two precisions here), and the score's origin
    assert pts.loc["fast", "precision"] == "fp16" and pts.loc["fast-int8", "precision"] == "int8"
    assert pts.loc["fast", "label"] == "fast @fp16" and pts.loc["tiny-w4", "label"] == "tiny-w4 @int8"
    assert pts.loc["fast", "y_from"] == "torch fp32 (runs at fp16; no fp16 score)"
    assert pts.loc["fast-int8", "y_from"] == "torch"
    # one-precision targets keep plain labels
    assert _points(results, "cpu-ort-fp32").loc["fast", "label"] == "fast"


def test_byte_budgets_charge_the_precision_run_not_the_onnx_file(tmp_path: Path) -> None:
    """The audit's cases by hand: an INT8 variant whose QDQ ONNX (fp32 initializers, 4x) is over the edge NPU's
    1 MB, and one whose fp32-profiled activations are over the TV chip's 512 MB, both fit once charged at int8."""
    res = make_results(tmp_path / "r", {"fast-int8": VARIANTS["fast-int8"], "big-int8": (26.8, 0.2, 8, 8, 400_000,
                                                                                         530.0)})
    cost = pd.read_csv(res / "cost.csv")
    cost.loc[cost["variant"] == "big-int8", "model_bytes"] = 1_600_000  # the QDQ file: 4 B per weight
    cost.to_csv(res / "cost.csv", index=False)
    npu = _points(res, "edge-npu")
    # 400,000 params x 1 B = 400,000 / 1,048,576 = 0.3815 MiB <= 1 (the file: 1.53 MiB)
    assert npu.loc["big-int8", "weights_mb_at_precision"] == pytest.approx(0.3815, abs=1e-4)
    assert npu.loc["big-int8", "model_bytes"] == 1_600_000 and npu.loc["big-int8", "params"] == 400_000  # raw kept
    assert npu.loc["big-int8", "eligible"], npu.loc["big-int8", "reason"]
    tv = _points(res, "tv-chip")
    # 530 MB of fp32 activations at 1080p30 = 530 / 4 = 132.5 MB at int8 <= 512
    assert tv.loc["big-int8", "activations_mb_at_precision"] == pytest.approx(132.5)
    assert tv.loc["big-int8", "eligible"], tv.loc["big-int8", "reason"]
    assert np.isnan(npu.loc["big-int8", "activations_mb_at_precision"])  # the NPU has no activation budget


def test_latency_budget_and_auto_axis(tmp_path: Path) -> None:
    res = make_results(tmp_path / "r", latency={("arcnn", "fast-cpu"): 900.0, ("fast", "fast-cpu"): 25.0,
                                               ("arcnn-p50", "fast-cpu"): 40.0})
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "fast-cpu.yaml").write_text(
        "name: fast-cpu\ndescription: x\nruntime: onnxruntime\nprecisions: [fp32]\n"
        "budgets:\n  latency: {max_ms: 33.3, resolution: 720p30}\n"
    )
    target = load_target(tmp_path / "t" / "fast-cpu.yaml")
    pts, axis = target_points(load_tables([res]), target, SEL)
    assert axis == Axis(CostAxis.latency_ms, "720p30")
    pts = pts.set_index("key")
    assert set(pts.index[pts["eligible"]]) == {"fast"}
    assert "latency 40 ms > 33.3 ms at 720p30" in pts.loc["arcnn-p50", "reason"]
    assert "latency not measured on fast-cpu at 720p30" in pts.loc["slow", "reason"]
    # without latency rows the auto axis falls back to true TFLOPS
    _, axis2 = target_points(load_tables([make_results(tmp_path / "r2")]), get_target("cpu-ort-fp32"), SEL)
    assert axis2 == Axis(CostAxis.tflops_true, "720p30")


def test_quality_gain_axis(results: Path) -> None:
    pts = _points(results, "cpu-ort-fp32", x="params", y=QualityAxis.psnr_gain)
    assert pts.loc["arcnn", "y"] == pytest.approx(27.10 - 25.69)


def test_selection_must_be_unambiguous(results: Path) -> None:
    tables = load_tables([results])
    with pytest.raises(DataError, match=r"several quality values .*10, 20.*--quality"):
        resolve_selection(tables, None, None, None)
    assert resolve_selection(tables, None, 20, None) == Selection("live1", 20, "idcn-rgb")
    with pytest.raises(DataError, match="no quality rows with dataset 'kodak24'; present: live1"):
        resolve_selection(tables, "kodak24", 10, None)


def test_missing_tables_and_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no quality\.csv"):
        load_tables([tmp_path])
    res = make_results(tmp_path / "r")
    pd.read_csv(res / "cost.csv").drop(columns=["act_bits"]).to_csv(res / "cost.csv", index=False)
    with pytest.raises(DataError, match=r"cost\.csv: missing columns act_bits"):
        load_tables([res])


def test_same_variant_in_two_folders_gets_a_prefix(tmp_path: Path) -> None:
    a = make_results(tmp_path / "a", {"arcnn": VARIANTS["arcnn"]})
    b = make_results(tmp_path / "b", {"arcnn": VARIANTS["arcnn"], "fast": VARIANTS["fast"]})
    pts, _ = target_points(load_tables([a, b]), get_target("cpu-ort-fp32"), SEL, x="params")
    assert set(pts["key"]) == {"a/arcnn", "b/arcnn", "fast"}
    assert set(pts.loc[pts["on_front"], "key"]) == {"a/arcnn", "b/arcnn", "fast"}  # a tie: both arcnn kept


def test_deployed_quality_replaces_torch_for_its_own_target(results: Path) -> None:
    pd.DataFrame([
        {"variant": "fast-int8", "target": "cpu-ov-int8", "runtime": "openvino", "precision": "int8",
         "dataset": "live1", "quality": 10, "protocol": "idcn-rgb", "psnr": 26.60},
        {"variant": "arcnn-p50-int8", "target": "cpu-ort-int8", "runtime": "onnxruntime", "precision": "int8",
         "dataset": "live1", "quality": 10, "protocol": "idcn-rgb", "psnr": 20.0},
    ]).to_csv(results / "deployed.csv", index=False)
    pts = _points(results, "cpu-ov-int8", x="tflops_true")
    assert pts.loc["fast-int8", "y"] == pytest.approx(26.60) and pts.loc["fast-int8", "y_from"] == "openvino int8"
    # its twin keeps the torch score and now dominates it; the other target's row does not leak in
    assert pts.loc["fast-int8-twin", "y_from"] == "torch" and pts.loc["fast-int8-twin", "on_front"]
    assert not pts.loc["fast-int8", "on_front"]
    assert pts.loc["arcnn-p50-int8", "y"] == pytest.approx(26.90)
    gain = _points(results, "cpu-ov-int8", x="tflops_true", y="psnr_gain")
    assert gain.loc["fast-int8", "y"] == pytest.approx(26.60 - 25.69)
    torch_only = _points(results, "cpu-ov-int8", x="tflops_true", quality_from="torch")
    assert torch_only.loc["fast-int8", "y"] == pytest.approx(26.70) and set(torch_only["y_from"]) == {"torch"}


def test_latency_is_the_median_over_variants_with_one_graph(tmp_path: Path) -> None:
    res = make_results(tmp_path / "r", latency={("arcnn", "cpu-ort-fp32"): 900.0, ("arcnn-p50", "cpu-ort-fp32"): 400.0,
                                               ("fast", "cpu-ort-fp32"): 100.0, ("slow", "cpu-ort-fp32"): 2000.0})
    lat = pd.read_csv(res / "latency.csv")
    # arcnn and arcnn-p50 stand for two seeds of one architecture; slow has no signature (an older row)
    lat["graph_signature"] = lat["variant"].map({"arcnn": "g1", "arcnn-p50": "g1", "fast": "g2"})
    lat.to_csv(res / "latency.csv", index=False)
    pts = _points(res, "cpu-ort-fp32")
    assert pts.loc["arcnn", "x"] == pts.loc["arcnn-p50", "x"] == pytest.approx(650.0)
    assert pts.loc["arcnn", "x_n"] == 2 and pts.loc["fast", "x_n"] == 1
    assert (pts.loc["fast", "x"], pts.loc["slow", "x"]) == (100.0, 2000.0)
    # at one latency the better of the two wins; by their own (noisy) measurements both would be on the front
    assert set(pts.index[pts["on_front"]]) == {"fast", "arcnn"}
    own = _points(res, "cpu-ort-fp32", latency_per="variant")
    assert (own.loc["arcnn", "x"], own.loc["arcnn-p50", "x"]) == (900.0, 400.0)
    assert set(own.index[own["on_front"]]) == {"fast", "arcnn-p50", "arcnn"}


def test_an_untimed_variant_takes_the_latency_of_its_graph(tmp_path: Path) -> None:
    """cost.csv's graph_signature: a variant that was not timed itself gets the median of timed variants with
    the same graph (per architecture), marked x_timed False; per variant it has no latency."""
    res = make_results(tmp_path / "r", latency={("arcnn", "cpu-ort-fp32"): 900.0, ("arcnn-p50", "cpu-ort-fp32"): 400.0,
                                               ("fast", "cpu-ort-fp32"): 100.0})
    lat = pd.read_csv(res / "latency.csv")
    lat["graph_signature"] = lat["variant"].map({"arcnn": "g1", "arcnn-p50": "g2", "fast": "g3"})
    lat.to_csv(res / "latency.csv", index=False)
    cost = pd.read_csv(res / "cost.csv")
    # slow shares arcnn-p50's graph (another seed, or the same prune ranked by another criterion), never timed
    cost["graph_signature"] = cost["variant"].map({"arcnn": "g1", "arcnn-p50": "g2", "slow": "g2", "fast": "g3"})
    cost.to_csv(res / "cost.csv", index=False)
    pts = _points(res, "cpu-ort-fp32")
    assert pts.loc["slow", "x"] == pytest.approx(400.0) and pts.loc["slow", "x_n"] == 1
    assert not pts.loc["slow", "x_timed"] and pts.loc["arcnn-p50", "x_timed"]
    assert pts.loc["slow", "eligible"] and not pts.loc["slow", "on_front"]  # same cost, lower quality
    assert not np.isfinite(pts.loc["tiny-w4", "x"])  # no signature, no measurement
    own = _points(res, "cpu-ort-fp32", latency_per="variant")
    assert not np.isfinite(own.loc["slow", "x"])
    # a tracked signature on the timed row wins over cost.csv's (it names the file that was timed)
    from compress.pareto import latency_at

    lk = latency_at(load_tables([res]), "cpu-ort-fp32", "720p30")
    assert lk.ms["arcnn"] == 900.0 and bool(lk.measured["arcnn"]) and not bool(lk.measured["slow"])


def test_labels_name_the_recipe_when_points_come_from_several(tmp_path: Path) -> None:
    a = make_results(tmp_path / "study-a", {"seed0-1234abcd": VARIANTS["arcnn"]})
    b = make_results(tmp_path / "study-b", {"seed0-9876fedc": VARIANTS["fast"]})
    for root in (a, b):
        q = pd.read_csv(root / "quality.csv")
        q["variant_name"] = "seed0"
        q.to_csv(root / "quality.csv", index=False)
    pts, _ = target_points(load_tables([a, b]), get_target("cpu-ort-fp32"), SEL, x="params")
    assert sorted(pts["label"]) == ["study-a/seed0", "study-b/seed0"]
    one, _ = target_points(load_tables([a]), get_target("cpu-ort-fp32"), SEL, x="params")
    assert list(one["label"]) == ["seed0"]


def test_a_set_scored_for_some_replicates_counts_the_others(tmp_path: Path) -> None:
    """On a set rescored for 2 of a condition's 3 seeds the point says "mean of 2 of 3 seeds"; with 1 scored,
    "(1 of 3 seeds)"; LIVE1, where all three are scored, "mean of 3 seeds"."""
    fast = VARIANTS["fast"]
    res = make_results(tmp_path / "r", {
        "p-seed1": (26.90, *fast[1:]), "p-seed2": (26.95, *fast[1:]), "p-seed3": (26.97, *fast[1:]),
        "arcnn": VARIANTS["arcnn"],
    })
    q = pd.read_csv(res / "quality.csv")
    at10 = q[q["quality"] == 10]
    extra = [at10[at10["variant"].isin(["p-seed1", "p-seed2", "arcnn"])].assign(dataset="b200"),
             at10[at10["variant"].isin(["p-seed3", "arcnn"])].assign(dataset="kodak24")]
    pd.concat([q, *extra]).to_csv(res / "quality.csv", index=False)
    tables = load_tables([res])
    t = get_target("cpu-ort-fp32")
    labels = {sel: set(target_points(tables, t, Selection(sel, 10, "idcn-rgb"), x="params")[0]["label"])
              for sel in ("live1", "b200", "kodak24")}
    assert labels["live1"] == {"p (mean of 3 seeds)", "arcnn"}
    assert labels["b200"] == {"p (mean of 2 of 3 seeds)", "arcnn"}
    assert labels["kodak24"] == {"p-seed3 (1 of 3 seeds)", "arcnn"}


def test_seed_replicates_are_one_point_at_their_mean(tmp_path: Path) -> None:
    """seeds=mean (the default): p-seed1..3 (one condition, same cost) are one point at their mean PSNR, shipped as
    the replicate nearest the mean; q, at the same cost, beats p's best seed's rival only by luck of the draw."""
    fast = VARIANTS["fast"]
    res = make_results(tmp_path / "r", {
        "p-seed1": (26.90, *fast[1:]), "p-seed2": (26.95, *fast[1:]), "p-seed3": (26.97, *fast[1:]),
        "q": (26.93, *fast[1:]), "arcnn": VARIANTS["arcnn"],
    })
    pts = _points(res, "cpu-ort-fp32", x="tflops_true")
    assert set(pts.index) == {"p-seed2", "q", "arcnn"}
    p = pts.loc["p-seed2"]
    assert p["y"] == pytest.approx(26.94) and p["seeds"] == 3 and p["y_sd"] == pytest.approx(0.0361, abs=1e-4)
    assert p["members"] == "p-seed1;p-seed2;p-seed3" and p["label"] == "p (mean of 3 seeds)"
    assert p["on_front"] and not pts.loc["q", "on_front"]  # 26.94 (mean) beats 26.93 at the same cost
    assert pts.loc["q", "seeds"] == 1 and pts.loc["q", "members"] == "q"
    each = _points(res, "cpu-ort-fp32", x="tflops_true", seeds="each")
    assert len(each) == 5 and set(each.index[each["on_front"]]) == {"p-seed3", "arcnn"}
    # a runtime's scores are never averaged with torch's: p-seed1 scored in onnxruntime, the others not
    dep = pd.DataFrame([{"variant": "p-seed1", "target": "cpu-ort-fp32", "dataset": "live1", "quality": 10,
                         "protocol": "idcn-rgb", "psnr": 26.5, "ssim": 0.79, "psnrb": 26.4, "runtime": "onnxruntime",
                         "precision": "fp32"}])
    dep.to_csv(res / "deployed.csv", index=False)
    mixed = _points(res, "cpu-ort-fp32", x="tflops_true")
    row = mixed[mixed["label"].str.startswith("p ")].iloc[0]
    assert row["y"] == pytest.approx(26.96) and row["seeds"] == 2 and row["y_from"] == "torch"



def test_a_seed_mean_is_shipped_as_a_replicate_whose_onnx_is_there(tmp_path: Path) -> None:
    """Weights and graphs are committed for front members only, so the replicate nearest the mean may have none
    in a checkout: the point is then shipped as the nearest replicate that has its model.onnx."""
    fast = VARIANTS["fast"]
    res = make_results(tmp_path / "r", {"p-seed1": (26.90, *fast[1:]), "p-seed2": (26.95, *fast[1:]),
                                        "p-seed3": (26.97, *fast[1:]), "arcnn": VARIANTS["arcnn"]})
    assert "p-seed2" in _points(res, "cpu-ort-fp32", x="tflops_true").index  # no ONNX anywhere: the nearest
    for v in ("p-seed1", "p-seed3"):
        (res / v).mkdir()
        (res / v / "model.onnx").write_bytes(b"")
    assert load_tables([res]).shippable == {"p-seed1", "p-seed3"}
    pts = _points(res, "cpu-ort-fp32", x="tflops_true")
    assert "p-seed3" in pts.index and "p-seed2" not in pts.index  # 0.03 from the mean, p-seed1 0.04
    assert pts.loc["p-seed3", "y"] == pytest.approx(26.94) and pts.loc["p-seed3", "seeds"] == 3


def test_seed_replicates_in_another_folder_join_their_condition(tmp_path: Path) -> None:
    """A recipe that only adds seeds to another recipe's cell (same condition_key and student checkpoint) is one
    point with it, named by the cell; two settings whose variant names were cut to one stay two points."""
    fast = VARIANTS["fast"]
    sweep = make_results(tmp_path / "sweep", {"ratio0.25": (26.90, *fast[1:]), "cut-a": (26.50, *fast[1:]),
                                              "cut-b": (26.60, *fast[1:])})
    more = make_results(tmp_path / "more", {"seed0": (26.96, *fast[1:]), "seed1": (26.99, *fast[1:])})
    keys = {"ratio0.25": "K", "cut-a": "A", "cut-b": "B", "seed0": "K", "seed1": "K"}
    for root in (sweep, more):
        q, c = pd.read_csv(root / "quality.csv"), pd.read_csv(root / "cost.csv")
        q["student_checkpoint"] = "abc"
        q["variant_name"] = q["variant"].replace({"cut-a": "cut", "cut-b": "cut"})
        c["condition_key"] = c["variant"].map(keys)
        q.to_csv(root / "quality.csv", index=False)
        c.to_csv(root / "cost.csv", index=False)
    pts, _ = target_points(load_tables([sweep, more]), get_target("cpu-ort-fp32"), SEL, x="tflops_true")
    pooled = pts[pts["seeds"] == 3].iloc[0]
    assert pooled["y"] == pytest.approx(26.95) and pooled["label"] == "sweep/ratio0.25 (mean of 3 seeds)"
    assert set(pooled["members"].split(";")) == {"ratio0.25", "seed0", "seed1"}
    assert sorted(pts.loc[pts["seeds"] == 1, "y"]) == pytest.approx([26.50, 26.60])  # cut-a / cut-b not averaged
    assert len(pts) == 3


def test_an_untimed_replicate_takes_its_conditions_latency(tmp_path: Path) -> None:
    """seed1 was exported after the graph changed in a way that costs nothing (another signature, never timed):
    the condition is still a point, at the latency of its timed replicate; alone, seed1 would have none."""
    fast = VARIANTS["fast"]
    res = make_results(tmp_path / "r", {"p-seed0": (26.90, *fast[1:]), "p-seed1": (26.96, *fast[1:]),
                                        "arcnn": VARIANTS["arcnn"]},
                       latency={("p-seed0", "cpu-ort-fp32"): 40.0, ("arcnn", "cpu-ort-fp32"): 90.0})
    c = pd.read_csv(res / "cost.csv")
    c["graph_signature"] = c["variant"].map({"p-seed0": "g0", "p-seed1": "g1", "arcnn": "ga"})
    c.to_csv(res / "cost.csv", index=False)
    pts = _points(res, "cpu-ort-fp32")
    p = pts[pts["seeds"] == 2].iloc[0]
    assert p["eligible"] and p["x"] == pytest.approx(40.0) and p["y"] == pytest.approx(26.93)
    each = _points(res, "cpu-ort-fp32", seeds="each")
    assert not each.loc["p-seed1", "eligible"] and "latency" in each.loc["p-seed1", "reason"]


def test_a_crowded_static_plot_labels_its_front_only(tmp_path: Path) -> None:
    """Up to MAX_STATIC_LABELS points every one is labelled; beyond, the front members only (the rest overlap into a
    blot; the HTML hover names them), and the axis note says so."""
    from compress.pareto import MAX_STATIC_LABELS, plot_front

    target = get_target("cpu-ort-fp32")
    few = make_results(tmp_path / "few")
    pts, axis = target_points(load_tables([few]), target, SEL, x="tflops_true")
    fig = plot_front(pts, pts.iloc[:0], target=target, axis=axis, y="psnr", selection=SEL)
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert {"arcnn", "slow", "fast"} <= labels and "labels: the front only" not in fig.axes[0].get_xlabel()

    fast = VARIANTS["fast"]
    many = {f"v{i:02d}": (26.0 + 0.01 * i, 0.5 + 0.1 * i, *fast[2:]) for i in range(MAX_STATIC_LABELS)}
    many["dominated"] = (25.5, 9.0, *fast[2:])
    crowd = make_results(tmp_path / "many", many)
    pts, axis = target_points(load_tables([crowd]), target, SEL, x="tflops_true")
    fig = plot_front(pts, pts.iloc[:0], target=target, axis=axis, y="psnr", selection=SEL)
    labels = {t.get_text() for t in fig.axes[0].texts}
    front = set(pts.loc[pts["on_front"], "label"])
    assert front and labels == front and "dominated" not in labels
    assert f"fronts.html names all {len(many)} points" in fig.axes[0].get_xlabel()


def test_static_plot_labels_never_overlap(tmp_path: Path) -> None:
    """Six points almost on top of each other: every label is drawn, none over another (moved ones get a leader)."""
    from compress.pareto import plot_front, text_box

    fast = VARIANTS["fast"]
    close = {f"variant-with-a-long-name-{i}": (26.5 + 0.001 * i, 0.40 + 0.001 * i, *fast[2:]) for i in range(6)}
    crowd = make_results(tmp_path / "r", {**close, "far": (25.5, 5.0, *fast[2:])})  # sets the axes' scale
    target = get_target("cpu-ort-fp32")
    pts, axis = target_points(load_tables([crowd]), target, SEL, x="tflops_true")
    fig = plot_front(pts, pts.iloc[:0], target=target, axis=axis, y="psnr", selection=SEL)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    texts = fig.axes[0].texts
    assert len(texts) == 7
    boxes = [text_box(t, renderer) for t in texts]
    assert not [(i, j) for i in range(7) for j in range(i) if boxes[i].overlaps(boxes[j])]
    assert sum(t.arrow_patch.get_visible() for t in texts) >= 4  # the moved ones point back to their point

def test_labels_of_points_close_together_are_stacked() -> None:
    from compress.pareto import _label_offsets

    pts = pd.DataFrame({"x": [100.0, 101.0, 102.0, 3000.0], "y": [26.40, 26.39, 26.41, 21.0]})
    assert _label_offsets(pts) == [-6.0, -15.0, 3.0, 3.0]  # the highest keeps the top label
    assert _label_offsets(pts.iloc[:0]) == []


# ---------------------------------------------------------------------------------------------
# published reference points


def test_published_table_has_the_brief_numbers() -> None:
    pub = published_points()
    assert "source" in pub.columns and pub["source"].notna().all()
    arcnn = pub[(pub["method"] == "ARCNN") & (pub["dataset"] == "live1")].set_index("quality")
    assert arcnn.loc[10, "psnr"] == 26.91 and arcnn.loc[20, "psnr"] == 29.23
    assert arcnn.loc[10, "params"] == 117_734 and arcnn.loc[10, "tflops_720p30"] == 3.25
    idcn = pub[(pub["method"] == "IDCN") & (pub["dataset"] == "live1") & (pub["quality"] == 10)]
    assert idcn["psnr"].item() == 27.63 and idcn["params"].item() == 9_900_000
    y = pub[(pub["method"] == "ARCNN* (Y)") & (pub["dataset"] == "live1") & (pub["quality"] == 10)]
    assert y["psnr"].item() == 28.96 and y["protocol"].item() == "fbcnn-y"
    assert {"DPW-SDNet", "MemNet-M6R6", "MWCNN", "RDN (8 RDBs)", "S-Net", "Fast ARCNN"} <= set(pub["method"])


def test_reference_points_only_where_the_axis_means_the_same() -> None:
    by_params = reference_points(SEL, Axis(CostAxis.params, None), "psnr")
    assert {"ARCNN", "IDCN", "MWCNN"} <= set(by_params["method"]) and "JPEG" not in set(by_params["method"])
    by_tflops = reference_points(SEL, Axis(CostAxis.tflops, "720p30"), "psnr").set_index("method")
    assert list(by_tflops.index) == ["ARCNN"] and by_tflops.loc["ARCNN", "x"] == 3.25
    assert reference_points(SEL, Axis(CostAxis.tflops_true, "720p30"), "psnr").empty
    assert reference_points(SEL, Axis(CostAxis.latency_ms, "720p30"), "psnr").empty
    gain = reference_points(SEL, Axis(CostAxis.params, None), "psnr_gain").set_index("method")
    assert gain.loc["ARCNN", "y"] == pytest.approx(26.91 - 25.69)


# ---------------------------------------------------------------------------------------------
# files


def test_write_fronts_files(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    targets = [get_target("cpu-ort-fp32"), get_target("edge-npu")]
    files = write_fronts(load_tables([results]), targets, SEL, out, x="params")
    for name in ("front.csv", "points.csv", "fronts.html", "front-cpu-ort-fp32.png", "front-cpu-ort-fp32.svg",
                 "front-edge-npu.png", "front-edge-npu.svg"):
        assert (out / name) in files and (out / name).stat().st_size > 0, name
    assert (out / "front-edge-npu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "front-edge-npu.svg").read_bytes()[:2000]
    front = pd.read_csv(out / "front.csv")
    assert set(front.loc[front["target"] == "edge-npu", "key"]) == {"fast-int8", "fast-int8-twin", "tiny-w4"}
    assert not front["key"].isin(published_points()["method"]).any()  # references never on a front
    pts = pd.read_csv(out / "points.csv")
    assert len(pts) == 2 * len(VARIANTS) and {"eligible", "reason", "on_front", "settings"} <= set(pts.columns)
    again = tmp_path / "again"
    write_fronts(load_tables([results]), targets, SEL, again, x="params")
    for name in ("fronts.html", "front-edge-npu.svg", "front-edge-npu.png", "points.csv"):  # reproducible bytes
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_a_set_scored_for_some_variants_only_says_so(results: Path, tmp_path: Path) -> None:
    """A data set rescored for a few variants (B200 here) gets a front among those, and its titles and
    tables say how many of the quality's variants it covers; a fully scored set says nothing."""
    q = pd.read_csv(results / "quality.csv")
    b200 = q[(q["quality"] == 10) & q["variant"].isin(["arcnn", "fast", "tiny-w4"])].assign(dataset="b200")
    pd.concat([q, b200]).to_csv(results / "quality.csv", index=False)
    tables = load_tables([results])
    sub = Selection("b200", 10, "idcn-rgb")
    assert tables.coverage(sub) == (3, len(VARIANTS)) and tables.coverage(SEL) == (len(VARIANTS), len(VARIANTS))
    assert coverage_note(tables, SEL) == ""
    note = f" (scored for 3 of the {len(VARIANTS)} variants at q10)"
    assert coverage_note(tables, sub) == note
    out = tmp_path / "b200"
    write_fronts(tables, [get_target("cpu-ort-fp32")], sub, out, x="params")
    pts = pd.read_csv(out / "points.csv")
    assert set(pts["key"]) == {"arcnn", "fast", "tiny-w4"}
    assert (pts["variants_scored"] == 3).all() and (pts["variants_at_quality"] == len(VARIANTS)).all()
    assert f"b200, q10, idcn-rgb{note}" in (out / "fronts.html").read_text(encoding="utf-8")
    assert "scored for 3 of the" in (out / "front-cpu-ort-fp32.svg").read_text(encoding="utf-8")
    full = tmp_path / "live1"
    write_fronts(tables, [get_target("cpu-ort-fp32")], SEL, full, x="params")
    assert "scored for" not in (full / "fronts.html").read_text(encoding="utf-8")


def test_html_is_one_self_contained_file(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_fronts(load_tables([results]), [get_target("cpu-ort-int8"), get_target("tv-chip")], SEL, out, x="params")
    html = (out / "fronts.html").read_text(encoding="utf-8")
    assert re.search(r"plotly\.js v\d", html)  # the library itself, inline (its license header)
    assert len(html) > 1_000_000
    assert not re.search(r"<script[^>]*\bsrc=", html)  # nothing loaded from elsewhere (no CDN)
    assert html.count("<html") == 1
    for name in ("arcnn-p50-int8", "tiny-w4", "cpu-ort-int8", "tv-chip (illustrative)", "IDCN",
                 "published, not re-measured", "prune_ratio=0.5"):
        assert name in html, name


def test_one_page_holds_every_selection_with_one_copy_of_plotly(results: Path, tmp_path: Path) -> None:
    """export_fronts writes one self-contained fronts.html for all its selections: a data-set selector and a
    target selector over every (selection, target) panel, plotly.js inline once."""
    q = pd.read_csv(results / "quality.csv")
    b200 = q[(q["quality"] == 10) & q["variant"].isin(["arcnn", "fast", "tiny-w4", "slow"])].assign(dataset="b200")
    pd.concat([q, b200]).to_csv(results / "quality.csv", index=False)
    targets = ["cpu-ort-fp32", "edge-npu"]
    export_fronts(results, targets, tmp_path / "fronts")
    html = (tmp_path / "fronts" / "fronts.html").read_text(encoding="utf-8")
    assert html.count("<html") == 1 and not re.search(r"<script[^>]*\bsrc=", html)
    assert len(re.findall(r"plotly\.js v\d", html)) == 1  # the library once, not once per selection
    view = json.loads(re.search(r"V = (\{.*?\});\n", html).group(1))
    # LIVE1 first, then the other sets; b200 is scored for 4 of the 8 variants and says so
    assert view["slugs"] == ["live1-q10-idcn-rgb", "live1-q20-idcn-rgb", "b200-q10-idcn-rgb"]
    assert view["selections"][2] == f"b200, q10, idcn-rgb (scored for 4 of the {len(VARIANTS)} variants at q10)"
    assert view["names"] == targets and view["targets"][1] == "edge-npu (illustrative)"
    spans = [span for per_sel in view["spans"] for span in per_sel]
    assert len(spans) == 6 and spans[0][0] == 0 and spans[-1][1] == view["n"]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # every trace in exactly one panel
    assert view["titles"][1][1] == "edge-npu (illustrative): live1, q20, idcn-rgb"
    # the page's panels are the per-selection folders' tables
    pts = pd.read_csv(tmp_path / "fronts" / "b200-q10-idcn-rgb" / "points.csv")
    assert set(pts["key"]) == {"arcnn", "fast", "tiny-w4", "slow"}


def test_export_fronts_every_selection(results: Path, tmp_path: Path) -> None:
    files = export_fronts(results, ["edge-npu"], tmp_path / "fronts")
    assert {f.parent.name for f in files} == {"live1-q10-idcn-rgb", "live1-q20-idcn-rgb", "fronts"}
    assert (tmp_path / "fronts" / "fronts.html") in files  # one page for all selections
    assert not (tmp_path / "fronts" / "live1-q20-idcn-rgb" / "fronts.html").exists()
    export_fronts(results, ["edge-npu"], tmp_path / "by-params", x="params")  # one cost axis for every selection
    assert set(pd.read_csv(tmp_path / "by-params" / "live1-q20-idcn-rgb" / "points.csv")["cost_axis"]) == {"params"}
    some = export_fronts(results, ["edge-npu"], tmp_path / "q20", quality=20, dataset="live1")  # a filter
    assert {f.parent.name for f in some} == {"live1-q20-idcn-rgb", "q20"}
    q = load_tables([results]).quality
    most = int(q.groupby(["quality"])["key"].nunique().max())
    said: list[str] = []
    assert export_fronts(results, ["edge-npu"], tmp_path / "few", min_variants=most + 1, log=said.append) == []
    assert sorted(said) == [f"skipped live1-q{k}-idcn-rgb: {q[q['quality'] == k]['key'].nunique()} variant(s) "
                            f"scored, fewer than {most + 1}" for k in (10, 20)]


def test_cli(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["pareto", str(results), "--quality", "10", "--target", "tv-chip", "--x", "params",
                 "--out", str(out)]) == 0
    assert (out / "front-tv-chip.svg").is_file() and "front.csv" in capsys.readouterr().out
    assert main(["pareto", str(results), "--target", "tv-chp", "--out", str(out)]) == 2
    assert "did you mean 'tv-chip'" in capsys.readouterr().err
    assert main(["pareto", str(results), "--out", str(out)]) == 2  # two JPEG qualities: choose one
    assert "--quality" in capsys.readouterr().err


def test_selector_buttons_partition_the_traces_and_hover_names_the_settings(results: Path) -> None:
    """Each button of the target selector shows exactly its target's traces (the masks partition the traces, the
    first is the initial view), those traces hold that target's points, and a hover names the variant, the
    precision it runs at there, and its settings."""
    from compress.pareto import plotly_figure, reference_points

    tables = load_tables([results])
    panels = []
    for name in ("cpu-ort-fp32", "edge-npu", "tv-chip"):
        t = get_target(name)
        pts, axis = target_points(tables, t, SEL, x="params")
        panels.append((t, axis, pts, reference_points(SEL, axis, QualityAxis.psnr)))
    fig = plotly_figure(panels, y="psnr", selection=SEL)
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == [t.label() for t, *_ in panels]
    masks = np.array([b.args[0]["visible"] for b in buttons], dtype=bool)
    assert masks.shape == (len(panels), len(fig.data))
    assert (masks.sum(axis=0) == 1).all()  # every trace belongs to exactly one target
    assert [bool(tr.visible) for tr in fig.data] == list(masks[0])  # the page opens on the first target
    for k, (t, _axis, pts, _refs) in enumerate(panels):
        assert buttons[k].args[1]["title.text"].startswith(t.label())
        shown = [fig.data[i] for i in np.flatnonzero(masks[k])]
        hovers = [cd for tr in shown if tr.hovertemplate and "settings" in tr.hovertemplate
                  for cd in (tr.customdata if tr.customdata is not None else [])]
        names = {str(cd[0]).split(" (")[0] for cd in hovers}
        assert names == set(pts["label"]), t.name  # this target's points and no other's
        for cd in hovers:
            row = pts[pts["label"] == str(cd[0]).split(" (")[0]].iloc[0]
            assert str(cd[1]).startswith(str(row["precision"] or "-"))
            assert cd[2] == (row["settings"] or "-")
    tv_hover = {str(cd[0]): cd for tr in (fig.data[i] for i in np.flatnonzero(masks[2])) if tr.customdata is not None
                and tr.hovertemplate and "settings" in tr.hovertemplate for cd in tr.customdata}
    p50 = tv_hover["arcnn-p50-int8 @int8 (arcnn-p50-int8)"]
    assert p50[2] == "prune_ratio=0.5"  # the settings that vary between variants
    assert p50[1] == "int8 (weights 0.03242 MB, activations 225 MB at int8)"  # 34,000 B; 900 MB / 4
    assert "runs at fp16" in tv_hover["fast @fp16 (fast)"][4]  # a float student's fp32 score, said so


@pytest.mark.slow
def test_html_renders_in_headless_chromium(results: Path, tmp_path: Path) -> None:
    """The self-contained page draws in a real browser: plotly ran, every variant is a point, the selector works."""
    browser = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if browser is None:
        pytest.skip("no chromium binary (apt install chromium): the browser check needs one")
    out = tmp_path / "out"
    targets = [get_target("cpu-ort-fp32"), get_target("edge-npu")]
    write_fronts(load_tables([results]), targets, SEL, out, x="params")
    page = (out / "fronts.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,700", "--virtual-time-budget=5000"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    html = (out / "fronts.html").read_text(encoding="utf-8")
    assert "<script src=" not in html  # self-contained: plotly.js is inline, no CDN
    drawn = re.sub(r"<script.*?</script>", "", dom, flags=re.S)  # what the browser built, not the source
    assert 'class="main-svg"' in drawn  # plotly.js ran and drew the figure
    # the first target's panel: one marker per variant with a finite cost, each labelled
    assert len(re.findall(r'<path class="point', drawn)) >= len(VARIANTS)
    labels = re.findall(r'class="textpoint".*?white-space: pre;">([^<]*)<', drawn)
    for name in ("arcnn-p50", "fast-int8", "tiny-w4"):
        assert any(name in label.split(", ") for label in labels), (name, labels)  # ties share one label
    assert "IDCN" in labels  # the published reference points are drawn too
    # the target selector is drawn, showing the first target; the others are its buttons
    menu = re.findall(r'class="updatemenu-item-text"[^>]*>([^<]*)<', drawn)
    assert menu and menu[0] == targets[0].label()
    assert all(t.label() in html for t in targets)
    titles = re.findall(r'class="gtitle"[^>]*>([^<]*)<', drawn)
    assert titles and titles[0].startswith(targets[0].label())
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", page], check=True, capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
    # press the selector's second button (what a click runs: Plotly.update with the button's args) in the browser
    press = "".join([
        "<script>window.addEventListener('load', function () {",
        " var gd = document.getElementById('compress-fronts'); var b = gd.layout.updatemenus[0].buttons[1];",
        " Plotly.update(gd, b.args[0], b.args[1]).then(function () {",
        " document.body.setAttribute('data-shown', gd.data.filter(function (t) { return t.visible === true; })",
        ".map(function (t) { return t.name; }).join('|')); }); });</script></body>",
    ])
    switched = out / "switched.html"
    switched.write_text(html.replace("</body>", press, 1), encoding="utf-8")
    dom2 = subprocess.run([browser, *flags, "--dump-dom", switched.as_uri()], check=True, capture_output=True,
                          text=True, timeout=120).stdout
    shown = re.search(r'data-shown="([^"]*)"', dom2)
    assert shown is not None, "the button's update did not finish in the browser"
    n_panel = 5  # traces per target: outside / measured / front markers, the front line, the published points
    assert len(shown.group(1).split("|")) == n_panel  # only the second target's traces are visible
    drawn2 = re.sub(r"<script.*?</script>", "", dom2, flags=re.S)
    titles2 = re.findall(r'class="gtitle"[^>]*>([^<]*)<', drawn2)
    assert titles2 and titles2[0].startswith(targets[1].label()), titles2
    labels2 = re.findall(r'class="textpoint".*?white-space: pre;">([^<]*)<', drawn2)
    assert any("tiny-w4" in label.split(", ") for label in labels2), labels2


# ---------------------------------------------------------------------------------------------
# one machine's measurements at a time


def test_fronts_use_one_machines_latency_and_deployed_rows(tmp_path: Path) -> None:
    res = make_results(tmp_path / "demo")
    old, new = "AMD EPYC [avx2]", "AMD EPYC [avx512+vnni+bf16]"
    rows = []
    for v, ms_old, ms_new in (("arcnn", 900.0, 300.0), ("fast", 250.0, 60.0), ("arcnn-p50", 400.0, np.nan)):
        common = {"variant": v, "target": "cpu-ort-fp32", "resolution": "720p30", "runtime": "onnxruntime",
                  "precision": "fp32", "n": 5, "threads": 2, "load_avg": 1.0}
        rows.append({**common, "ms_median": ms_old, "cpu": old, "timestamp": "2026-12-01T19:00:00+0000"})
        if np.isfinite(ms_new):
            rows.append({**common, "ms_median": ms_new, "cpu": new, "timestamp": "2026-12-02T09:00:00+0000"})
    pd.DataFrame(rows).to_csv(res / "latency.csv", index=False)
    pd.DataFrame([
        {"variant": "fast", "target": "cpu-ort-fp32", "dataset": "live1", "quality": 10, "protocol": "idcn-rgb",
         "psnr": 26.5, "runtime": "onnxruntime", "precision": "fp32", "cpu": old},
        {"variant": "fast", "target": "cpu-ort-fp32", "dataset": "live1", "quality": 10, "protocol": "idcn-rgb",
         "psnr": 26.79, "runtime": "onnxruntime", "precision": "fp32", "cpu": new},
    ]).to_csv(res / "deployed.csv", index=False)

    latest = load_tables([res])  # default: the machine that timed most recently
    assert latest.machine == new
    pts, axis = target_points(latest, get_target("cpu-ort-fp32"), SEL)
    pts = pts.set_index("variant")
    assert axis.cost is CostAxis.latency_ms
    assert pts.loc["arcnn", "x"] == 300.0 and pts.loc["fast", "x"] == 60.0
    assert not np.isfinite(pts.loc["arcnn-p50", "x"])  # timed on the old machine only: not on this one's front
    assert pts.loc["fast", "y"] == pytest.approx(26.79)  # the deployed score of the same machine

    before = load_tables([res], machine=old)
    p_old, _ = target_points(before, get_target("cpu-ort-fp32"), SEL)
    p_old = p_old.set_index("variant")
    assert p_old.loc["arcnn-p50", "x"] == 400.0 and p_old.loc["fast", "y"] == pytest.approx(26.5)
    assert len(load_tables([res], machine="all").latency) == 5
    with pytest.raises(DataError, match=r"nothing was measured on .Intel Xeon \[amx\].; machines: AMD EPYC \[avx2\]"):
        load_tables([res], machine="Intel Xeon [amx]")

    out = tmp_path / "fronts"
    write_fronts(latest, [get_target("cpu-ort-fp32")], SEL, out)
    front = pd.read_csv(out / "points.csv")
    assert set(front["machine"]) == {new}


def test_several_machines_pool_with_the_first_named_winning(tmp_path: Path) -> None:
    """A CPU whose key changed (an upgrade began to name its family and model): both keys, pooled; a variant
    measured under both keeps the first-named key's row, one measured under one only is kept from it."""
    res = make_results(tmp_path / "demo")
    legacy, named = "Intel Xeon [amx]", "Intel Xeon (family 6 model 167) [amx]"
    common = {"target": "cpu-ort-fp32", "resolution": "720p30", "runtime": "onnxruntime", "precision": "fp32", "n": 5,
              "threads": 2, "load_avg": 1.0}
    pd.DataFrame([
        {**common, "variant": "arcnn", "ms_median": 300.0, "cpu": legacy, "timestamp": "2026-12-01T19:00:00+0000"},
        {**common, "variant": "fast", "ms_median": 60.0, "cpu": legacy, "timestamp": "2026-12-01T19:00:00+0000"},
        {**common, "variant": "fast", "ms_median": 50.0, "cpu": named, "timestamp": "2026-12-05T19:00:00+0000"},
    ]).to_csv(res / "latency.csv", index=False)
    dep = {"target": "cpu-ort-fp32", "dataset": "live1", "quality": 10, "protocol": "idcn-rgb",
           "runtime": "onnxruntime", "precision": "fp32"}
    pd.DataFrame([
        {**dep, "variant": "fast", "psnr": 26.79, "cpu": legacy},
        {**dep, "variant": "arcnn-p50", "psnr": 26.61, "cpu": named},  # scored on the new key only: no latency row
    ]).to_csv(res / "deployed.csv", index=False)

    pooled = load_tables([res], machine=[legacy, named])
    assert pooled.machine == f"{legacy} + {named}"
    lat = pooled.latency.set_index("variant")
    assert len(lat) == 2 and lat.loc["fast", "ms_median"] == 60.0  # the first-named key wins the tie
    assert set(pooled.deployed["variant"]) == {"fast", "arcnn-p50"}  # a key known from deployed.csv alone
    assert load_tables([res], machine=[named, legacy]).latency.set_index("variant").loc["fast", "ms_median"] == 50.0
    assert len(load_tables([res], machine=[legacy]).deployed) == 1  # a one-element list is one machine
    assert load_tables([res], machine=["latest"]).machine == named  # --machine latest: the last to time
    with pytest.raises(DataError, match="cannot be combined"):
        load_tables([res], machine=[legacy, "all"])
    with pytest.raises(DataError, match="nothing was measured on 'Intel Xeon'"):
        load_tables([res], machine=[legacy, "Intel Xeon"])

def test_cpu_isa_from_flags() -> None:
    from compress.deploy import cpu_isa

    assert cpu_isa({"fpu", "avx", "avx2", "fma"}) == "avx2"
    assert cpu_isa({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}) == "avx512+vnni+bf16"
    assert cpu_isa({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"}) == \
        "avx512+vnni+bf16+amx"
    assert cpu_isa({"avx2", "avx_vnni"}) == "avx2+vnni"
    assert cpu_isa(set()) == ""


def test_cpu_name_adds_family_and_model_to_a_generic_name() -> None:
    """A VM's generic "AMD EPYC" hid two generations 3x apart in speed: without a model number in the name the
    family and model follow it; a full name stays as it is."""
    from compress.deploy import cpu_name

    zen1 = {"model name": "AMD EPYC", "cpu family": "23", "model": "1", "flags": "fpu avx avx2 fma"}
    assert cpu_name(zen1) == "AMD EPYC (family 23 model 1) [avx2]"
    full = {**zen1, "model name": "AMD EPYC 7763 64-Core Processor"}
    assert cpu_name(full) == "AMD EPYC 7763 64-Core Processor [avx2]"
    xeon = {"model name": "Intel(R) Xeon(R) Processor", "flags": "avx2"}  # no family / model given
    assert cpu_name(xeon) == "Intel(R) Xeon(R) Processor [avx2]"


def test_front_plot_zooms_past_far_off_points(tmp_path: Path) -> None:
    """An untuned 4-bit point 5 dB down would flatten the rest: the y axis keeps the top 2 dB (front and
    published points always inside) and the far-off point is drawn at its lower edge with its value."""
    from compress.pareto import ZOOM_DB, _zoom_floor, plot_front

    pts = pd.DataFrame({"x": [10.0, 20.0, 30.0, 40.0], "y": [26.5, 26.7, 26.6, 21.0],
                        "on_front": [True, True, False, False], "eligible": [True] * 4,
                        "key": ["a", "b", "c", "w4a4"], "label": ["a", "b", "c", "w4a4"]})
    none = pd.DataFrame(columns=["x", "y", "method"])
    assert _zoom_floor(pts, none) == pytest.approx(26.7 - ZOOM_DB)
    assert _zoom_floor(pts.iloc[:3], none) == -np.inf  # a span under 1.5 x ZOOM_DB: everything shown
    on_front = pts.assign(on_front=[True, True, False, True])  # the cheap low point on the front stays in
    assert _zoom_floor(on_front, none) == 21.0
    refs = pd.DataFrame({"x": [5.0], "y": [24.0], "method": ["published"]})
    assert _zoom_floor(pts, refs) == 24.0
    fig = plot_front(pts, none, target=get_target("cpu-ort-fp32"), axis=Axis(CostAxis.latency_ms, "720p30"),
                     y="psnr", selection=SEL)
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert 24.0 < lo < 26.5 and hi > 26.7
    assert any(t.get_text() == "w4a4: 21.00" for t in ax.texts)


def test_seed_source_and_label() -> None:
    """A condition's mean uses one score source, the runtime's on a tie; the label counts what it averages."""
    from compress.pareto import seed_source, seeds_label

    assert seed_source(pd.Series(["torch", "openvino int8"])) == "openvino int8"
    assert seed_source(pd.Series(["torch", "torch", "openvino int8"])) == "torch"
    assert seeds_label("", 3, 3) == "base (mean of 3 seeds)"
    assert seeds_label("ratio0.5", 2, 3) == "ratio0.5 (mean of 2 of 3 seeds)"
    assert seeds_label("ratio0.5", 1, 2) == "ratio0.5 (1 of 2 seeds)"
    assert seeds_label("ratio0.5", 0, 2) == "ratio0.5 (0 of 2 seeds)"


def test_log_axis_ticks_are_plain_numbers() -> None:
    from compress.pareto import _short_number

    assert [_short_number(v) for v in (0.2, 0.5, 1.0, 30.0, 200_000.0, 1_500_000.0)] == [
        "0.2", "0.5", "1", "30", "200k", "1.5M"]


@pytest.mark.slow
def test_the_combined_page_switches_data_set_and_target_in_headless_chromium(results: Path, tmp_path: Path) -> None:
    """export_fronts' one page: the two selectors are drawn, a #selection/target link opens that panel, and a
    change of selection shows only that panel's traces under its title."""
    browser = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if browser is None:
        pytest.skip("no chromium binary (apt install chromium): the browser check needs one")
    export_fronts(results, ["cpu-ort-fp32", "edge-npu"], tmp_path / "fronts")
    page = tmp_path / "fronts" / "fronts.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,700", "--virtual-time-budget=5000"]

    def dom(url: str) -> str:
        out = subprocess.run([browser, *flags, "--dump-dom", url], check=True, capture_output=True, text=True,
                             timeout=120).stdout
        return re.sub(r"<script.*?</script>", "", out, flags=re.S)

    first = dom(page.as_uri())
    assert 'id="compress-selectors"' in first and first.count("<select") == 2
    titles = re.findall(r'class="gtitle"[^>]*>([^<]*)<', first)
    assert titles and titles[0] == "cpu-ort-fp32: live1, q10, idcn-rgb"
    linked = dom(page.as_uri() + "#live1-q20-idcn-rgb/edge-npu")  # a deep link opens that panel
    titles = re.findall(r'class="gtitle"[^>]*>([^<]*)<', linked)
    assert titles and titles[0] == "edge-npu (illustrative): live1, q20, idcn-rgb", titles
    # choose the second selection and the first target, as the selectors' change handler does
    press = ("<script>window.addEventListener('load', function () { window.compressShow(1, 0).then(function () {"
             " var gd = document.getElementById('compress-fronts');"
             " document.body.setAttribute('data-shown', gd.data.filter(function (t) { return t.visible === true; })"
             ".length + '|' + location.hash); }); });</script></body>")
    switched = tmp_path / "fronts" / "switched.html"
    switched.write_text(page.read_text(encoding="utf-8").replace("</body>", press, 1), encoding="utf-8")
    after = dom(switched.as_uri())
    shown = re.search(r'data-shown="([^"]*)"', after)
    assert shown is not None, "the selectors' update did not finish in the browser"
    assert shown.group(1) == "5|#live1-q20-idcn-rgb/cpu-ort-fp32"  # one panel's 5 traces; the link follows
    titles = re.findall(r'class="gtitle"[^>]*>([^<]*)<', after)
    assert titles and titles[0] == "cpu-ort-fp32: live1, q20, idcn-rgb", titles
