"""compress.summary: seeds averaged per condition, the control difference, the CLI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from compress.cli import main
from compress.errors import DataError
from compress.summary import condition_of, summarize, summary_markdown


def _results(root: Path, recipe: str, psnrs: dict[str, float], params: int) -> Path:
    folder = root / recipe
    folder.mkdir(parents=True)
    q = [
        {"recipe": recipe, "variant": f"{name}-{i:08x}", "variant_name": name, "dataset": "live1", "quality": 10,
         "protocol": "idcn-rgb", "n_images": 29, "psnr": p, "ssim": 0.78, "psnrb": p - 0.2, "jpeg_psnr": 25.69}
        for i, (name, p) in enumerate(psnrs.items())
    ]
    c = [
        {"recipe": recipe, "variant": r["variant"], "resolution": res, "params": params, "macs_true": params * 1e6,
         "weight_bits": 32, "act_bits": 32}
        for r in q for res in ("480p30", "720p30")
    ]
    pd.DataFrame(q).to_csv(folder / "quality.csv", index=False)
    pd.DataFrame(c).to_csv(folder / "cost.csv", index=False)
    return folder


def test_condition_drops_only_the_seed_token() -> None:
    assert condition_of("seed0") == ""
    assert condition_of("ratio0.5-seed12") == "ratio0.5"
    assert condition_of("seed3-l1") == "l1"
    assert condition_of("seedless-ratio0.5") == "seedless-ratio0.5"


def test_mean_sd_and_control(tmp_path: Path) -> None:
    ctrl = _results(tmp_path, "ctrl", {"seed0": 26.70, "seed1": 26.72, "seed2": 26.74}, 117_734)
    kd = _results(tmp_path, "kd", {"ratio0.5-seed0": 26.60, "ratio0.5-seed1": 26.62, "ratio0.25-seed0": 26.68},
                  40_000)
    t = summarize([ctrl, kd], control="ctrl").set_index("condition")
    assert t.loc["ctrl", "seeds"] == 3
    assert t.loc["ctrl", "psnr"] == pytest.approx(26.72)
    assert t.loc["ctrl", "psnr_sd"] == pytest.approx(0.02)  # sample sd
    assert t.loc["kd/ratio0.5", "seeds"] == 2
    assert t.loc["kd/ratio0.5", "delta_psnr"] == pytest.approx(26.61 - 26.72)
    assert t.loc["kd/ratio0.25", "psnr_sd"] == 0.0
    assert t.loc["kd/ratio0.25", "macs_720p"] == pytest.approx(40_000e6)  # the 720p30 row
    assert t.loc["ctrl", "gain"] == pytest.approx(26.72 - 25.69)
    md = summary_markdown(summarize([ctrl, kd], control="ctrl"), control="ctrl")
    assert "| kd/ratio0.5 | 2 | 26.610 ± 0.014 |" in md and "-0.110 |" in md


def test_close_differences_from_few_seeds_are_flagged(tmp_path: Path) -> None:
    ctrl = _results(tmp_path, "ctrl", {"seed0": 26.70, "seed1": 26.72, "seed2": 26.74}, 117_734)
    kd = _results(tmp_path, "kd", {"a-seed0": 26.69, "b-seed0": 26.61, "c-seed0": 26.75, "c-seed1": 26.76,
                                   "c-seed2": 26.77}, 40_000)  # fmt: skip
    t = summarize([ctrl, kd], control="ctrl").set_index("condition")
    assert t.loc["kd/a", "below_noise"]  # -0.03 dB from one seed: not a finding
    assert not t.loc["kd/b", "below_noise"]  # -0.11 dB: beyond the rule
    assert not t.loc["kd/c", "below_noise"]  # +0.04 dB, but 3 seeds on both sides
    assert not t.loc["ctrl", "below_noise"] and t.loc["kd/a", "control_seeds"] == 3
    md = summary_markdown(summarize([ctrl, kd], control="ctrl"), control="ctrl")
    assert "-0.030 † |" in md and "-0.110 |" in md and "† closer than 0.05 dB" in md
    assert not summarize([ctrl, kd])["below_noise"].any()  # no control, no comparison


def test_unknown_control_names_the_conditions(tmp_path: Path) -> None:
    ctrl = _results(tmp_path, "ctrl", {"seed0": 26.7}, 10)
    with pytest.raises(DataError, match="not among the conditions: ctrl"):
        summarize([ctrl], control="ctl")


def test_cli_writes_markdown_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctrl = _results(tmp_path, "ctrl", {"seed0": 26.7, "seed1": 26.8}, 10)
    out, csv = tmp_path / "s.md", tmp_path / "s.csv"
    assert main(["summary", str(ctrl), "--control", "ctrl", "--out", str(out), "--csv", str(csv)]) == 0
    assert "### live1, q10, idcn-rgb" in capsys.readouterr().out
    assert "| ctrl | 2 | 26.750 ± 0.071 |" in out.read_text()
    assert pd.read_csv(csv)["seeds"].tolist() == [2]
    assert main(["summary", str(tmp_path / "none")]) == 2


def test_base_joins_its_seed_replicates() -> None:
    assert condition_of("base") == ""  # the recipe's own seeds ...
    assert condition_of("seed124-seed124") == ""  # ... and a point that changes only the stages' seeds
    assert condition_of("ratio0.25-seed124-seed124") == "ratio0.25"


def test_target_averages_the_deployed_scores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctrl = _results(tmp_path, "ctrl", {"base": 26.70, "seed124": 26.72, "seed125": 26.74}, 10)
    q = pd.read_csv(ctrl / "quality.csv")
    dep = q[["recipe", "variant", "variant_name", "dataset", "quality", "protocol"]].assign(
        target="cpu-ov-int8", psnr=[26.60, 26.61, 26.65], ssim=0.77, psnrb=26.3, cpu="x")
    dep.iloc[:2].to_csv(ctrl / "deployed.csv", index=False)  # the third seed not scored in the runtime yet
    t = summarize([ctrl]).set_index("condition")
    assert t.loc["ctrl", "seeds"] == 3 and t.loc["ctrl", "psnr"] == pytest.approx(26.72)
    t = summarize([ctrl], target="cpu-ov-int8").set_index("condition")
    assert t.loc["ctrl", "seeds"] == 2 and t.loc["ctrl", "psnr"] == pytest.approx(26.605)
    assert t.loc["ctrl", "ssim"] == pytest.approx(0.77)
    with pytest.raises(DataError, match=r"no deployed.csv row for target 'cpu-ort-int8'.*scored: cpu-ov-int8"):
        summarize([ctrl], target="cpu-ort-int8")
    assert main(["summary", str(ctrl), "--target", "cpu-ov-int8"]) == 0
    assert "### live1, q10, idcn-rgb, as deployed on cpu-ov-int8" in capsys.readouterr().out


def test_target_scores_of_pooled_machines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--machine: whose deployed rows; several pool (one CPU under an old and a new key), named in the table."""
    ctrl = _results(tmp_path, "ctrl", {"base": 26.70, "seed124": 26.72, "seed125": 26.74}, 10)
    q = pd.read_csv(ctrl / "quality.csv")
    dep = q[["recipe", "variant", "variant_name", "dataset", "quality", "protocol"]].assign(
        target="cpu-ov-int8", psnr=[26.60, 26.61, 26.65], ssim=0.77, psnrb=26.3, cpu=["old", "old", "new"])
    pd.concat([dep, dep.iloc[:1].assign(psnr=26.0, cpu="new")]).to_csv(ctrl / "deployed.csv", index=False)
    t = summarize([ctrl], target="cpu-ov-int8", machine=["old", "new"]).set_index("condition")
    assert t.loc["ctrl", "seeds"] == 3 and t.loc["ctrl", "psnr"] == pytest.approx(26.62)  # old's 26.60 wins the tie
    assert t.loc["ctrl", "machine"] == "old + new"
    t = summarize([ctrl], target="cpu-ov-int8", machine="new").set_index("condition")
    assert t.loc["ctrl", "seeds"] == 2 and t.loc["ctrl", "machine"] == "new"
    assert main(["summary", str(ctrl), "--target", "cpu-ov-int8", "--machine", "old", "--machine", "new"]) == 0
    assert "as deployed on cpu-ov-int8 (old + new)" in capsys.readouterr().out
