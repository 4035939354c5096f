"""Distillation feature hints through ``compress run``: the 1x1 adapters train with the student and are
dropped before anything is written, so neither ``weights.safetensors`` nor ``model.onnx`` carries them
(issue 10). ``tests/test_stages.py`` checks the stage; this checks the files a user ships."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from compress.nets import build_model
from compress.run import RunOptions, run_recipes

RECIPE = """\
name: hints
student: {arch: fast_arcnn, checkpoint: models/absent/best.safetensors, if_missing: init}
teachers: {small: {arch: rdn_s}}
data: {train: embedded, train_limit: 1, eval: [embedded], limit: 1, qualities: [10]}
stages:
  - type: distill
    teacher: small
    steps: 2
    batch_size: 2
    patch_size: 32
    hints:
      - {student: base.1, teacher: sfe2}
      - {student: base.3, teacher: blocks.0, loss: l1}
  - {type: export, atol: 0.005}
"""


def test_adapters_never_reach_the_written_weights_or_onnx(tmp_path: Path) -> None:
    import onnx

    torch.set_num_threads(1)
    recipe = tmp_path / "hints.yaml"
    recipe.write_text(RECIPE)
    results = tmp_path / "results"
    run_recipes([recipe], options=RunOptions(results_dir=results, progress=False, threads=1), out=lambda _: None)
    (variant,) = [p for p in (results / "hints").iterdir() if p.is_dir()]
    fresh = build_model("fast_arcnn")
    # the written state dict is the plain student's: same names, same shapes, nothing else
    weights = load_file(str(variant / "weights.safetensors"))
    assert {k: tuple(v.shape) for k, v in weights.items()} == {
        k: tuple(v.shape) for k, v in fresh.state_dict().items()
    }
    # the graph holds no more parameters than the student, and nothing shaped like an adapter to rdn_s's
    # 32-channel features (the student's widths are 64 / 32 / 16: an adapter would be [32, C, 1, 1])
    graph = onnx.load(str(variant / "model.onnx")).graph
    n_graph = sum(int(np.prod(t.dims)) for t in graph.initializer)
    assert n_graph <= sum(v.numel() for v in fresh.state_dict().values())
    one_by_one = [tuple(t.dims) for t in graph.initializer if len(t.dims) == 4 and tuple(t.dims[2:]) == (1, 1)]
    student_1x1 = [tuple(v.shape) for v in fresh.state_dict().values() if v.dim() == 4 and v.shape[2:] == (1, 1)]
    assert sorted(one_by_one) == sorted(student_1x1)
    plan = (variant / "plan.json").read_text()
    assert '"hints"' in plan and '"adapter"' in plan  # the adapters did train, and the plan says so


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
