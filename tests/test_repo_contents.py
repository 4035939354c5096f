"""What the repository commits under results/: per-variant weights and graphs only for Pareto-front members."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# variant weights a shipped recipe reads as its student checkpoint (e.g. qat-fast-arcnn-q10-long.yaml's control)
READ_BY_RECIPES = {
    m
    for r in (ROOT / "recipes").glob("*.yaml")
    for m in re.findall(r"results/[\w.-]+/[\w.-]+/weights\.safetensors", r.read_text())
}


def _tracked(*patterns: str) -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_committed_weights_and_graphs_are_front_members() -> None:
    members = set()
    # results/fronts (the main machine's) and the other machines' committed fronts (results/fronts-avx2, ...)
    for front in (ROOT / "results").glob("fronts*/*/front.csv"):
        with front.open(newline="") as fh:
            members |= {f"results/{row['results']}/{row['variant']}" for row in csv.DictReader(fh)}
    assert members, "no fronts in results/fronts"
    tracked = _tracked("results/*/*/model.onnx", "results/*/*/weights.safetensors")
    stray = [p for p in tracked if p.rsplit("/", 1)[0] not in members and p not in READ_BY_RECIPES]
    assert not stray, f"weights / ONNX committed for variants on no front: {stray[:5]} ({len(stray)} in all)"
    for p in READ_BY_RECIPES:
        assert p in tracked, f"{p} is read by a shipped recipe and must stay committed"


def test_main_front_members_ship_their_weights_and_graphs() -> None:
    """The other direction, for the fronts rebuilt here (results/fronts, results/fronts-params): a front member
    a user would pick must come with its files. results/fronts-avx2 is rebuilt from another machine's tables
    and lists three members whose files were not kept (README, 'The machines')."""
    tracked = set(_tracked("results/*/*/model.onnx", "results/*/*/weights.safetensors"))
    missing = []
    fronts = [f for name in ("fronts", "fronts-params") for f in (ROOT / "results" / name).glob("*/front.csv")]
    for front in fronts:
        with front.open(newline="") as fh:
            for row in csv.DictReader(fh):
                base = f"results/{row['results']}/{row['variant']}"
                files = (f"{base}/model.onnx", f"{base}/weights.safetensors")
                missing += [f for f in files if f not in tracked]
    assert not missing, f"front members without committed files (git add -f): {sorted(set(missing))[:5]}"
