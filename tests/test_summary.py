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


def _keyed(folder: Path, keys: dict[str, tuple[str, str]], checkpoint: str = "abc") -> Path:
    """Give ``folder``'s variants (by name) a condition_key / replicate_key and a student checkpoint."""
    q, c = pd.read_csv(folder / "quality.csv"), pd.read_csv(folder / "cost.csv")
    q["student_checkpoint"] = checkpoint
    names = dict(zip(q["variant"], q["variant_name"], strict=True))
    c["condition_key"] = [keys[names[v]][0] for v in c["variant"]]
    c["replicate_key"] = [keys[names[v]][1] for v in c["variant"]]
    q.to_csv(folder / "quality.csv", index=False)
    c.to_csv(folder / "cost.csv", index=False)
    return folder


def test_seed_replicates_in_other_recipes_are_pooled(tmp_path: Path) -> None:
    # one seed in the sweep recipe, two more in a recipe that only adds seeds to that cell
    sweep = _keyed(_results(tmp_path, "sweep", {"ratio0.25": 26.66, "ratio0.5": 26.60}, 69_390),
                   {"ratio0.25": ("K25", "r123"), "ratio0.5": ("K50", "r50")})
    more = _keyed(_results(tmp_path, "more", {"seed0": 26.64, "seed1": 26.65}, 69_390),
                  {"seed0": ("K25", "r0"), "seed1": ("K25", "r1")})
    ctrl = _keyed(_results(tmp_path, "ctrl", {"seed0": 26.67, "seed1": 26.68, "seed2": 26.66}, 117_734),
                  {"seed0": ("C", "c0"), "seed1": ("C", "c1"), "seed2": ("C", "c2")})
    t = summarize([sweep, more, ctrl], control="ctrl").set_index("condition")
    assert "more" not in t.index  # pooled under the first name given
    assert t.loc["sweep/ratio0.25", "seeds"] == 3
    assert t.loc["sweep/ratio0.25", "psnr"] == pytest.approx(26.65)
    assert t.loc["sweep/ratio0.25", "pooled"] == "more"
    assert not t.loc["sweep/ratio0.25", "below_noise"]  # -0.02 dB, now 3 seeds on both sides
    assert t.loc["sweep/ratio0.5", "seeds"] == 1 and t.loc["sweep/ratio0.5", "pooled"] == ""
    md = summary_markdown(summarize([sweep, more, ctrl], control="ctrl"), control="ctrl")
    assert "| sweep/ratio0.25 (+ more) | 3 | 26.650 ± 0.010 |" in md


def test_pooling_keeps_the_control_name_and_counts_a_repeated_run_once(tmp_path: Path) -> None:
    extra = _keyed(_results(tmp_path, "extra", {"seed5": 26.70, "seed0": 26.99}, 117_734),
                   {"seed5": ("C", "c5"), "seed0": ("C", "c0")})  # seed0 repeats ctrl's seed0 run
    ctrl = _keyed(_results(tmp_path, "ctrl", {"seed0": 26.60, "seed1": 26.62}, 117_734),
                  {"seed0": ("C", "c0"), "seed1": ("C", "c1")})
    t = summarize([extra, ctrl], control="ctrl").set_index("condition")
    assert list(t.index) == ["ctrl"] and t.loc["ctrl", "pooled"] == "extra"
    assert t.loc["ctrl", "seeds"] == 3  # c5, c0 (once: the control's own copy) and c1
    assert t.loc["ctrl", "psnr"] == pytest.approx((26.70 + 26.60 + 26.62) / 3)


def test_another_student_checkpoint_is_another_condition(tmp_path: Path) -> None:
    a = _keyed(_results(tmp_path, "a", {"seed0": 26.6}, 10), {"seed0": ("K", "r0")}, checkpoint="old")
    b = _keyed(_results(tmp_path, "b", {"seed1": 26.7}, 10), {"seed1": ("K", "r1")}, checkpoint="new")
    t = summarize([a, b]).set_index("condition")
    assert set(t.index) == {"a", "b"} and (t["pooled"] == "").all()


def test_one_name_over_two_settings_is_split_by_key(tmp_path: Path) -> None:
    # variant names cut short: two settings of one recipe would otherwise average as one condition
    r = _keyed(_results(tmp_path, "r", {"long-name-a": 26.6, "long-name-b": 26.8}, 10),
               {"long-name-a": ("aaaaaaaa11", "1"), "long-name-b": ("bbbbbbbb22", "2")})
    q = pd.read_csv(r / "quality.csv")
    q["variant_name"] = "long-name"
    q.to_csv(r / "quality.csv", index=False)
    t = summarize([r]).set_index("condition")
    assert set(t.index) == {"r/long-name [aaaaaaaa]", "r/long-name [bbbbbbbb]"} and (t["seeds"] == 1).all()


def test_a_side_that_does_not_train_needs_no_seeds(tmp_path: Path) -> None:
    def steps(folder: Path, n: int) -> Path:
        c = pd.read_csv(folder / "cost.csv")
        c["train_steps"] = n
        c.to_csv(folder / "cost.csv", index=False)
        return folder

    parent = steps(_results(tmp_path, "parent", {"base": 26.70}, 10), 0)  # a checkpoint scored as it is
    qat3 = steps(_results(tmp_path, "qat3", {"seed0": 26.66, "seed1": 26.65, "seed2": 26.67}, 10), 1000)
    qat1 = steps(_results(tmp_path, "qat1", {"base": 26.66}, 10), 1000)
    t = summarize([parent, qat3, qat1], control="parent").set_index("condition")
    assert not t.loc["parent", "trains"] and t.loc["qat3", "trains"]
    assert not t.loc["qat3", "below_noise"]  # -0.04 dB, 3 seeds against an exact parent: a finding
    assert t.loc["qat1", "below_noise"]  # one QAT seed: still noise
    ctrl = steps(_results(tmp_path, "ctrl", {"seed0": 26.69, "seed1": 26.70, "seed2": 26.71}, 10), 2000)
    t = summarize([parent, ctrl], control="ctrl").set_index("condition")
    assert not t.loc["parent", "below_noise"]  # +0.00 dB: the parent has no seeds to run, the control has 3
