"""The speed-goal report on hand-made results tables: qualifying variant, budget, and a missed goal."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_pareto import make_results

from compress.cli import main
from compress.errors import DataError
from compress.speedgoal import Goal, speed_goal, write_speed_goal

# ms/frame at 720p30. JPEG is 25.69 dB, so the floor is 26.69 dB: arcnn 27.10, arcnn-p50 26.95, fast 26.80 and
# fast-int8 26.70 qualify; tiny-w4 (26.30) and slow (26.00) do not.
LATENCY = {
    ("arcnn", "cpu-a"): 900.0, ("arcnn-p50", "cpu-a"): 300.0, ("fast", "cpu-a"): 100.0,
    ("fast-int8", "cpu-a"): 30.0, ("tiny-w4", "cpu-a"): 10.0,
    ("tiny-w4", "cpu-b"): 12.0, ("slow", "cpu-b"): 2000.0,
    ("fast-int8", "cpu-c"): 40.0, ("arcnn", "cpu-c"): 800.0,
}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return make_results(tmp_path / "demo", latency=LATENCY)


def _row(table, target: str):  # type: ignore[no-untyped-def]
    rows = table[table["target"] == target]
    assert len(rows) == 1
    return rows.iloc[0]


def test_fastest_qualifying_variant_and_budget(results: Path) -> None:
    table = speed_goal([results])
    a = _row(table, "cpu-a")
    assert a["floor_psnr"] == pytest.approx(26.69)
    # tiny-w4 is faster but below the floor: the answer is fast-int8, within 33.3 ms
    assert (a["variant"], a["ms"], bool(a["met"])) == ("fast-int8", 30.0, True)
    assert (a["fastest_variant"], a["fastest_ms"]) == ("tiny-w4", 10.0)
    assert (a["best_variant"], a["best_ms"], a["short_db"]) == ("arcnn", 900.0, 0.0)
    assert a["n_timed"] == 5
    # tiny-w4: 0.1 true TFLOPS at 720p30 = 3.33 GMAC a frame in 10 ms -> 333 GMAC/s, 11.1 GMAC fit in 33.3 ms
    assert a["fastest_gmac_per_s"] == pytest.approx(0.1e12 / 30 / 1e9 / 0.010)
    assert a["gmac_in_budget"] == pytest.approx(a["fastest_gmac_per_s"] / 30)
    assert (a["distance_of"], a["ms_over_budget"]) == ("qualifying", pytest.approx(30.0 - 1000 / 30))
    assert a["x_budget"] == pytest.approx(0.9)  # 30 ms / 33.33 ms
    c = _row(table, "cpu-c")
    assert (c["variant"], bool(c["met"])) == ("fast-int8", False)  # qualifies, but 40 ms > 33.3 ms
    assert (c["ms_over_budget"], c["x_budget"]) == (pytest.approx(40.0 - 1000 / 30), pytest.approx(1.2))


def test_missed_floor_reports_how_far(results: Path) -> None:
    b = _row(speed_goal([results]), "cpu-b")
    assert b["variant"] == "" and math.isnan(b["ms"]) and not b["met"]
    assert (b["best_variant"], b["short_db"]) == ("tiny-w4", pytest.approx(26.69 - 26.30))
    # nothing qualifies: the distance is the best variant's (tiny-w4, 12 ms: inside the budget)
    assert (b["distance_of"], b["x_budget"]) == ("best", pytest.approx(12.0 * 30 / 1000))
    # a lower floor lets tiny-w4 through
    b2 = _row(speed_goal([results], Goal(min_gain_db=0.5)), "cpu-b")
    assert (b2["variant"], bool(b2["met"])) == ("tiny-w4", True)


def test_errors_without_latency_or_selection(tmp_path: Path) -> None:
    bare = make_results(tmp_path / "bare")
    with pytest.raises(DataError, match="no latency"):
        speed_goal([bare])
    with pytest.raises(DataError, match="kodak24"):
        speed_goal([make_results(tmp_path / "timed", latency=LATENCY)], Goal(dataset="kodak24"))


def test_written_files_and_cli(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv, md = write_speed_goal([results], tmp_path / "a", fronts="results/fronts")
    text = md.read_text()
    assert csv.is_file() and "| cpu-a | 720p30 | fast-int8 | 26.700 | 30.0 | yes | -3.3 | 0.90 | tiny-w4 |" in text
    assert "| cpu-c | 720p30 | fast-int8 | 26.700 | 40.0 | no | +6.7 | 1.20 |" in text
    assert "`results/fronts/live1-q10-idcn-rgb/`" in text  # the fronts the report corresponds to
    assert main(["bench", "speedgoal", "--results", str(results), "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "JPEG + 1.0" in out and "| cpu-b | 720p30 | none | | | no | -21.3 (best) | 0.36 (best) |" in out
    assert "`results/fronts/live1-q10-idcn-rgb/`" in out
    assert main(["bench", "speedgoal", "--results", str(results), "--out", str(tmp_path / "c"), "--fronts",
                 "none"]) == 0
    assert "results/fronts" not in capsys.readouterr().out
    assert (tmp_path / "b" / "speed_goal.csv").is_file()


def test_deployed_quality_and_per_graph_latency(results: Path) -> None:
    import pandas as pd

    # fast-int8 loses 0.1 dB in cpu-a's runtime: below the floor there, so fast (100 ms) is the answer
    pd.DataFrame([{"variant": "fast-int8", "target": "cpu-a", "runtime": "onnxruntime", "precision": "int8",
                   "dataset": "live1", "quality": 10, "protocol": "idcn-rgb", "psnr": 26.60}]
                 ).to_csv(results / "deployed.csv", index=False)
    a = _row(speed_goal([results]), "cpu-a")
    assert (a["variant"], a["ms"], a["n_deployed"]) == ("fast", 100.0, 1)
    c = _row(speed_goal([results]), "cpu-c")
    assert (c["variant"], c["n_deployed"]) == ("fast-int8", 0)  # the row is for cpu-a only
    # fast and fast-int8 given one graph signature share the median of their cpu-a times
    lat = pd.read_csv(results / "latency.csv")
    lat["graph_signature"] = lat["variant"].map({"fast": "g", "fast-int8": "g"})
    lat.to_csv(results / "latency.csv", index=False)
    assert _row(speed_goal([results]), "cpu-a")["ms"] == pytest.approx(65.0)


def test_an_untimed_variant_of_a_timed_graph_can_be_the_answer(results: Path) -> None:
    import pandas as pd

    # on cpu-b only tiny-w4 (below the floor) and slow are timed; arcnn-p50 shares tiny-w4's graph in cost.csv
    # (say, the same shapes): it is not timed on cpu-b itself but takes tiny-w4's 12 ms and qualifies
    lat = pd.read_csv(results / "latency.csv")
    lat["graph_signature"] = lat["variant"].map({"tiny-w4": "g"})
    lat.to_csv(results / "latency.csv", index=False)
    cost = pd.read_csv(results / "cost.csv")
    cost["graph_signature"] = cost["variant"].map({"tiny-w4": "g", "arcnn-p50": "g"})
    cost.to_csv(results / "cost.csv", index=False)
    b = _row(speed_goal([results]), "cpu-b")
    assert (b["variant"], b["ms"], b["met"]) == ("arcnn-p50", 12.0, True)
    assert (b["n_timed"], b["n_with_latency"]) == (2, 3)


def test_cli_default_folders_include_untimed_ones_and_skip_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Without --results: every results/*/ with quality.csv + cost.csv (results/bench has a latency.csv of its
    own and is not one); an untimed folder's variant takes the latency of its graph from a timed one."""
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    timed = make_results(tmp_path / "results" / "timed", {"fast": (26.80, 0.40, 32, 32, 342_000, 300.0)},
                         latency={("fast", "cpu-a"): 100.0})
    other = make_results(tmp_path / "results" / "control", {"fast-ft": (26.95, 0.40, 32, 32, 342_000, 300.0)})
    for root in (timed, other):
        cost = pd.read_csv(root / "cost.csv")
        cost["graph_signature"] = "g-fast"
        cost.to_csv(root / "cost.csv", index=False)
    (tmp_path / "results" / "bench").mkdir()
    pd.DataFrame([{"variant": "arcnn", "target": "cpu-a", "ms_median": 1.0}]).to_csv(
        tmp_path / "results" / "bench" / "latency.csv", index=False)
    assert main(["bench", "speedgoal", "--out", str(tmp_path / "out")]) == 0
    row = pd.read_csv(tmp_path / "out" / "speed_goal.csv").set_index("target").loc["cpu-a"]
    assert row["best_variant"] == "control/fast-ft" and row["best_ms"] == 100.0
    assert "| cpu-a |" in capsys.readouterr().out


def test_seed_replicates_are_one_candidate_at_their_mean(tmp_path: Path) -> None:
    """A lucky seed does not pass the floor for its condition: 'cut' seeds 123/124/125 score 26.71 / 26.66 /
    26.65 (mean 26.673 < 26.69), so the answer is the slower 'mid' (26.80), unless seeds=each."""
    variants = {name: (psnr, 0.20, 8, 8, 100_000, 100.0) for name, psnr in
                (("cut", 26.71), ("cut-seed124", 26.66), ("cut-seed125", 26.65), ("mid", 26.80))}
    lat = {("cut", "cpu-a"): 20.0, ("cut-seed124", "cpu-a"): 22.0, ("cut-seed125", "cpu-a"): 30.0,
           ("mid", "cpu-a"): 31.0}
    root = make_results(tmp_path / "seeds", variants, latency=lat)
    a = _row(speed_goal([root]), "cpu-a")
    assert (a["variant"], a["psnr"], a["seeds"]) == ("mid", 26.80, 1)
    assert a["fastest_variant"] == "cut (mean of 3 seeds)"
    assert a["fastest_psnr"] == pytest.approx((26.71 + 26.66 + 26.65) / 3)
    assert a["fastest_ms"] == 22.0  # the median of the replicates' times
    assert (a["n_timed"], a["n_with_latency"]) == (4, 4)
    each = _row(speed_goal([root], seeds="each"), "cpu-a")
    assert (each["variant"], each["ms"], each["seeds"]) == ("cut", 20.0, 1)
    md = write_speed_goal([root], tmp_path / "md")[1].read_text()
    assert "| cut (mean of 3 seeds) | 26.673 | 22.0 |" in md


def test_seed_mean_prefers_the_runtime_score_and_says_how_many(tmp_path: Path) -> None:
    """Two replicates, only one scored in cpu-a's runtime: the runtime's score is used (it is what ships), not
    averaged with the other's torch score, and the name says it stands for 1 of 2 seeds."""
    import pandas as pd

    variants = {"cut": (26.75, 0.20, 8, 8, 100_000, 100.0), "cut-seed124": (26.80, 0.20, 8, 8, 100_000, 100.0)}
    root = make_results(tmp_path / "mixed", variants, latency={("cut", "cpu-a"): 20.0, ("cut-seed124", "cpu-a"): 22.0})
    pd.DataFrame([{"variant": "cut", "target": "cpu-a", "runtime": "openvino", "precision": "int8",
                   "dataset": "live1", "quality": 10, "protocol": "idcn-rgb", "psnr": 26.74}]
                 ).to_csv(root / "deployed.csv", index=False)
    a = _row(speed_goal([root]), "cpu-a")
    assert (a["variant"], a["psnr"], a["seeds"]) == ("cut (1 of 2 seeds)", 26.74, 1)
