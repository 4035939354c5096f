"""``compress rescore``: finished variants scored on another data set, rows as ``compress run`` writes them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from compress.cli import main
from compress.errors import CompressError
from compress.evaluate import evaluate_model
from compress.rescore import RESCORED_NOTE, rescore_results
from compress.results import QUALITY_COLUMNS, read_table
from compress.run import RunOptions, run_recipes
from compress.stages.replay import load_variant

# A pruned Fast ARCNN (structure replayed by load_variant) trained for two qualities; one embedded image.
TINY = """\
name: tiny-rescore
student: {arch: fast_arcnn, checkpoint: models/absent/best.safetensors, if_missing: init}
data: {eval: [embedded], limit: 1, qualities: [10, 20]}
stages:
  - {type: prune, ratio: 0.5, importance: l1, round_to: 4}
  - {type: export, atol: 0.005}
"""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny recipe run once: (results/<recipe> folder, a data root whose kodak24/ holds one small image)."""
    root = tmp_path_factory.mktemp("rescore")
    recipe = root / "tiny.yaml"
    recipe.write_text(TINY)
    torch.set_num_threads(1)
    run_recipes([recipe], options=RunOptions(results_dir=root / "results", progress=False, threads=1),
                out=lambda _line: None)
    data = root / "data"
    (data / "kodak24").mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 40, (48, 64, 3)).cumsum(1) / 8 % 256, 0, 255).astype(np.uint8)
    Image.fromarray(img).save(data / "kodak24" / "kodim01.png")
    return root / "results" / "tiny-rescore", data


def _copy(folder: Path, tmp_path: Path) -> Path:
    dst = tmp_path / folder.parent.name / folder.name
    shutil.copytree(folder, dst)
    return dst


def _variant(folder: Path) -> Path:
    (v,) = [p for p in folder.iterdir() if (p / "plan.json").is_file()]
    return v


def test_rows_for_the_new_set_match_run_rows_and_a_direct_evaluation(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, data = finished
    folder = _copy(folder, tmp_path)
    before = read_table(folder / "quality.csv")
    out = rescore_results(folder, dataset="kodak24", data_root=str(data), progress=False, out=lambda _line: None)
    assert [(o.status, o.rows) for o in out] == [("scored", 2)]
    q = read_table(folder / "quality.csv")
    assert list(q.columns) == list(QUALITY_COLUMNS)
    assert list(pd.read_csv(folder / "quality.csv").columns) == list(QUALITY_COLUMNS)
    new = q[q["dataset"] == "kodak24"].set_index("quality")
    assert sorted(new.index) == [10, 20]  # the recipe's qualities, under its protocol
    assert set(new["protocol"]) == {"idcn-rgb"} and set(new["n_images"]) == {1}
    old = before.iloc[0]
    for col in ("recipe", "variant", "variant_name", "recipe_hash", "run_key", "student_checkpoint", "seed"):
        assert set(new[col]) == {old[col]}, col
    assert all(RESCORED_NOTE in n for n in new["notes"])
    pd.testing.assert_frame_equal(q[q["dataset"] == "embedded"].reset_index(drop=True), before)  # old rows kept
    model, _ = load_variant(_variant(folder))
    direct = evaluate_model(model, "kodak24", [10, 20], "idcn-rgb", data_root=data, progress=False)
    for r in direct:
        assert new.loc[r.quality, "psnr"] == pytest.approx(r.psnr, abs=1e-9)
        assert new.loc[r.quality, "jpeg_psnr"] == pytest.approx(r.jpeg_psnr, abs=1e-9)
    joined = read_table(folder / "variants.csv")
    assert (joined["dataset"] == "kodak24").sum() == 2 and joined["params"].notna().all()


def test_the_recipes_own_set_reproduces_the_recorded_row(finished: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = finished
    folder = _copy(folder, tmp_path)
    before = read_table(folder / "quality.csv").set_index("quality")
    rescore_results(folder, dataset="embedded", progress=False, out=lambda _line: None)
    after = read_table(folder / "quality.csv").set_index("quality")
    assert len(after) == len(before) == 2  # upserted, not duplicated
    for q in (10, 20):
        assert after.loc[q, "psnr"] == pytest.approx(before.loc[q, "psnr"], abs=1e-4)


def test_skip_done_and_variants_without_weights(finished: tuple[Path, Path], tmp_path: Path) -> None:
    folder, data = finished
    folder = _copy(folder, tmp_path)
    lines: list[str] = []
    out = rescore_results(folder, dataset="embedded", skip_done=True, progress=False, out=lines.append)
    assert [o.status for o in out] == ["done"] and "already scored" in lines[0]
    (_variant(folder) / "weights.safetensors").unlink()  # a non-front variant: weights not committed
    before = (folder / "quality.csv").read_bytes()
    out = rescore_results(folder, dataset="kodak24", data_root=str(data), progress=False, out=lines.append)
    assert [o.status for o in out] == ["no-weights"] and "no weights.safetensors" in lines[-1]
    assert (folder / "quality.csv").read_bytes() == before


def test_command(finished: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, data = finished
    folder = _copy(folder, tmp_path)
    name = _variant(folder).name
    rc = main(["rescore", str(folder), "--dataset", "kodak24", "--data-root", str(data), "--only", name,
               "--threads", "1", "--no-progress"])
    assert rc == 0 and "1 scored" in capsys.readouterr().out
    card = (folder / _variant(folder).name / "README.md").read_text()
    assert "kodak24" in card  # the command refreshed the variant's card with the new rows
    assert main(["rescore", str(folder), "--dataset", "kodak24", "--only", "nope", "--no-progress"]) == 2
    assert "nope" in capsys.readouterr().err
    # an RGB model under a Y protocol: refused before anything is written
    assert main(["rescore", str(folder), "--dataset", "kodak24", "--data-root", str(data), "--protocol", "arcnn-y",
                 "--no-progress"]) == 2


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CompressError, match="no such results folder"):
        rescore_results(tmp_path / "absent", dataset="kodak24")


def test_an_export_only_variant_is_rescored_from_its_student_checkpoint(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    """A baseline (the student exported unchanged) keeps no weights of its own: its student checkpoint is
    them, used only while the file is the one the run read (same SHA-256)."""
    from compress.checkpoint import save_checkpoint
    from compress.nets import build_model

    _, data = finished
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "student.safetensors", build_model("fast_arcnn"), arch="fast_arcnn", channels=3)
    recipe = tmp_path / "base.yaml"
    recipe.write_text(f"name: tiny-baseline\nstudent: {{arch: fast_arcnn, checkpoint: {ckpt}}}\n"
                      "data: {eval: [embedded], limit: 1, qualities: [10]}\nstages:\n  - {type: export}\n")
    run_recipes([recipe], options=RunOptions(results_dir=tmp_path / "results", progress=False, threads=1),
                out=lambda _line: None)
    folder = tmp_path / "results" / "tiny-baseline"
    (_variant(folder) / "weights.safetensors").unlink()  # not a front member: not committed
    lines: list[str] = []
    out = rescore_results(folder, dataset="kodak24", data_root=str(data), progress=False, out=lines.append)
    assert [(o.status, o.rows) for o in out] == [("scored", 1)], lines
    new = read_table(folder / "quality.csv").set_index("dataset")
    assert f"rescored from {ckpt}" in new.loc["kodak24", "notes"]
    model, _ = load_variant(_variant(folder), ckpt)
    (direct,) = evaluate_model(model, "kodak24", [10], "idcn-rgb", data_root=data, progress=False)
    assert new.loc["kodak24", "psnr"] == pytest.approx(direct.psnr, abs=1e-9)
    # the checkpoint changed since the run: not the variant's weights any more
    torch.manual_seed(1)
    save_checkpoint(ckpt, build_model("fast_arcnn"), arch="fast_arcnn", channels=3)
    out = rescore_results(folder, dataset="b200", data_root=str(data), progress=False, out=lines.append)
    assert [o.status for o in out] == ["no-weights"]


def test_run_also_scores_more_sets_while_the_weights_are_there(
    finished: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """compress run --also-score kodak24: the run's variants get kodak24 rows (as compress rescore writes them)
    and their cards show them; running again scores nothing twice."""
    _, data = finished
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    args = ["run", str(recipe), "--results", str(tmp_path / "results"), "--data-root", str(data), "--threads", "1",
            "--no-progress", "--also-score", "kodak24"]
    assert main(args) == 0
    folder = tmp_path / "results" / "tiny-rescore"
    q = read_table(folder / "quality.csv")
    assert sorted(q.loc[q["dataset"] == "kodak24", "quality"]) == [10, 20]
    assert all(RESCORED_NOTE in n for n in q.loc[q["dataset"] == "kodak24", "notes"])
    assert "kodak24" in (_variant(folder) / "README.md").read_text()
    before = (folder / "quality.csv").read_bytes()
    capsys.readouterr()
    assert main(args) == 0  # the variant is done and so are its kodak24 rows
    assert "already scored" in capsys.readouterr().out and (folder / "quality.csv").read_bytes() == before
