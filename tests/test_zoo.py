"""The shipped model zoo: every checkpoint loads (also into the reference layout) and its card's numbers hold."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compress.cards import read_card
from compress.checkpoint import load_model, read_checkpoint
from compress.evaluate import evaluate_model
from compress.inference import with_precision
from compress.nets import build_model

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
CARDS = sorted(p.parent.name for p in MODELS_DIR.glob("*/card.json"))
# A full-LIVE1 evaluation takes 0.5-3 min per student on a 2-core AVX2 CPU and minutes per teacher: the default
# suite re-measures one card per student family (the brief's two students, the Y student, the stride-4 speed-goal
# parent); every other card, teachers included, is re-measured with -m slow.
DEFAULT_LIVE1 = {"arcnn-q10", "arcnn-y-q10", "fast-arcnn-q10", "fast-arcnn-s4-q10"}
FULL_SIZE_TEACHERS = {"idcn", "rdn"}
LIVE1_CHECKS = [n if n in DEFAULT_LIVE1 else pytest.param(n, marks=pytest.mark.slow) for n in CARDS]


def test_zoo_has_cards() -> None:
    assert {"arcnn-q10", "fast-arcnn-q10"} <= set(CARDS) and DEFAULT_LIVE1 <= set(CARDS)


@pytest.mark.parametrize("name", CARDS)
def test_checkpoint_loads_and_is_small(name: str) -> None:
    path = MODELS_DIR / name / "best.safetensors"
    card = read_card(MODELS_DIR / name)
    # students and small teachers well under 10 MB; the full-size teachers (10-14 M parameters) up to 60 MB (issue 10)
    assert path.stat().st_size < (60 if card.arch in FULL_SIZE_TEACHERS else 10) * 2**20
    model, meta = load_model(path)
    assert meta["arch"] == card.arch and sum(p.numel() for p in model.parameters()) == card.params
    if card.arch in ("arcnn", "fast_arcnn"):
        # the reference implementation's module layout (with the card's architecture options, if any)
        # takes the same state dict, key for key
        tensors, _ = read_checkpoint(path)
        ref = build_model(card.arch, **card.train_config.get("arch_kwargs", {}))
        ref.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("_extra.")}, strict=True)


@pytest.mark.data
@pytest.mark.parametrize("name", LIVE1_CHECKS)
def test_card_live1_score_is_reproduced(name: str, data_root: Path) -> None:
    torch.set_num_threads(2)
    card = read_card(MODELS_DIR / name)
    row = next(r for r in card.scores if r["dataset"] == "live1")
    model, _ = load_model(MODELS_DIR / name / "best.safetensors")
    model = with_precision(model, card.eval_precision)  # the full-size teachers' cards are scored in bf16
    (res,) = evaluate_model(model, "live1", [row["quality"]], row["protocol"], data_root=data_root, progress=False)
    assert res.n_images == row["n_images"] == 29
    assert res.psnr == pytest.approx(row["psnr"], abs=0.005)
    assert res.ssim == pytest.approx(row["ssim"], abs=0.0005)
    assert res.jpeg_psnr == pytest.approx(row["jpeg_psnr"], abs=1e-9)


def test_a_card_says_when_it_was_scored_in_bf16(tmp_path: Path) -> None:
    import dataclasses
    import json

    from compress.cards import render_card, write_card

    card = read_card(MODELS_DIR / "idcn-s-q10-long")
    assert card.eval_precision == "fp32"  # written before the field existed: read at its default
    assert "bf16" not in render_card(card).split("## Scores")[1]
    bf16 = dataclasses.replace(card, eval_precision="bf16")
    text = render_card(bf16)
    assert "## Scores (measured" in text and "bf16 autocast)" in text and "--precision bf16`" in text
    write_card(bf16, tmp_path)
    assert json.loads((tmp_path / "card.json").read_text())["eval_precision"] == "bf16"
    assert read_card(tmp_path) == bf16


@pytest.mark.data
def test_a_card_can_score_some_sets_in_bf16(tmp_path: Path, data_root: Path) -> None:
    import shutil

    from compress.cards import measure_card
    from compress.errors import CheckpointError

    d = tmp_path / "fast-arcnn-q10"
    d.mkdir()
    shutil.copy(MODELS_DIR / "fast-arcnn-q10" / "best.safetensors", d)
    with pytest.raises(CheckpointError, match="not classic5"):
        measure_card(d, data_root=str(data_root), sets=["classic5"], progress=False)
    card = measure_card(d, data_root=str(data_root), limit=2, sets=["kodak24"], precision="bf16", progress=False,
                        recipe="recipes/train-fast-arcnn-q10.yaml")
    assert [r["dataset"] for r in card.scores] == ["kodak24"] and card.scores[0]["n_images"] == 2
    assert card.eval_precision == "bf16" and card.scores[0]["psnr"] > card.scores[0]["jpeg_psnr"]
