"""The sub-pixel rewrite of transposed convolutions: exact in torch terms, in float and QDQ ONNX graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compress.deploy import export_onnx
from compress.nets.arcnn import FastARCNN
from compress.stages.export import onnx_session
from compress.subpixel import rewrite_subpixel, subpixel_kernel


@pytest.mark.parametrize(("k", "p"), [(9, 4), (5, 2), (3, 1), (7, 3)])
@pytest.mark.parametrize("s", [2, 3, 4])
def test_kernel_reproduces_the_transposed_convolution(k: int, p: int, s: int) -> None:
    g = torch.Generator().manual_seed(k * 10 + s)
    w = torch.randn(6, 4, k, k, generator=g)
    x = torch.randn(1, 6, 11, 13, generator=g)
    ref = F.conv_transpose2d(x, w, stride=s, padding=p, output_padding=s - 1)
    kern = torch.from_numpy(subpixel_kernel(w.numpy(), s, p))
    got = F.pixel_shuffle(F.conv2d(x, kern, padding=kern.shape[-1] // 2), s)
    assert got.shape == ref.shape == (1, 4, 11 * s, 13 * s)
    assert torch.allclose(got, ref, atol=1e-4)


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _fast_arcnn() -> nn.Module:
    torch.manual_seed(0)
    m = FastARCNN()
    for p in m.parameters():
        p.data.normal_(0, 0.05)
    return m.eval()


def test_float_fast_arcnn_graph_keeps_its_output(tmp_path: Path) -> None:
    from compress.stages.export import export_onnx as stage_export

    model = _fast_arcnn()
    path = stage_export(model, tmp_path / "m.onnx", channels=3)  # traced at an odd size: pad and crop in the graph
    out = tmp_path / "sub.onnx"
    assert rewrite_subpixel(path, out) == 1
    ops = _ops(out)
    assert "ConvTranspose" not in ops and "DepthToSpace" in ops
    sess = onnx_session(out)
    for h, w in ((40, 24), (37, 29)):  # even, and odd (the wrapper's pad and crop)
        x = torch.rand(1, 3, h, w)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-5


def test_other_transposed_convolutions_are_left_alone(tmp_path: Path) -> None:
    m = nn.Sequential(nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1)).eval()  # k != 2p + 1
    path = export_onnx(m, tmp_path / "t.onnx", channels=4)
    before = path.read_bytes()
    assert rewrite_subpixel(path, tmp_path / "same.onnx") == 0
    assert "ConvTranspose" in _ops(tmp_path / "same.onnx") and path.read_bytes() == before


def test_qdq_graph_is_rewritten_with_the_same_int8_weights(tmp_path: Path) -> None:
    from compress.data.datasets import open_dataset
    from compress.recipe.expand import parse_recipe
    from compress.stages import STAGES
    from compress.stages.base import StageContext
    from compress.stages.export import export_onnx as stage_export

    text = ("name: t\nstudent: {arch: fast_arcnn}\ndata: {train: embedded, train_limit: 1, eval: [embedded], "
            "limit: 1}\nstages:\n  - {type: quantize, backend: nncf, mode: ptq, calibration_images: 2, "
            "batch_size: 2, patch_size: 32}\n")
    recipe = parse_recipe(text, "t.yaml").variants[0].recipe
    ctx = StageContext(recipe, tmp_path, threads=1)
    ds = open_dataset("embedded", limit=1)
    ctx._images = [ds.load(item) for item in ds]
    ctx.stage_index = 0
    q = STAGES.get("quantize")(_fast_arcnn(), recipe.stages[0], ctx).model
    path = stage_export(q, tmp_path / "q.onnx", channels=3, quant=ctx.quant)
    out = tmp_path / "q_sub.onnx"
    assert rewrite_subpixel(path, out) == 1
    g = onnx.load(str(out)).graph
    assert "ConvTranspose" not in [n.op_type for n in g.node]
    producers = {o: n for n in g.node for o in n.output}
    consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant"}
    consts.update({i.name: onnx.numpy_helper.to_array(i) for i in g.initializer})
    conv = next(n for n in g.node if n.name.endswith("__conv"))
    chain, name = [], conv.input[1]
    while name in producers and producers[name].op_type in ("QuantizeLinear", "DequantizeLinear"):
        chain.append(producers[name])
        name = producers[name].input[0]
    assert [n.op_type for n in chain] == ["DequantizeLinear", "QuantizeLinear"]  # NNCF's QDQ export
    assert consts[name].shape == (12, 64, 5, 5)
    for q in chain:
        assert next(a.i for a in q.attribute if a.name == "axis") == 0
        assert consts[q.input[1]].shape == (12,)  # one scale per output channel and phase
    x = np.random.default_rng(0).random((1, 3, 36, 44), dtype=np.float32)
    a = onnx_session(path).run(None, {"input": x})[0]
    b = onnx_session(out).run(None, {"input": x})[0]
    assert np.abs(a - b).max() < 1e-5


def test_export_stage_rewrites_and_checks_against_torch(tmp_path: Path) -> None:
    from compress.data.datasets import open_dataset
    from compress.recipe.expand import parse_recipe, recipe_hash
    from compress.stages import STAGES
    from compress.stages.base import StageContext

    def recipe(export: str):  # type: ignore[no-untyped-def]
        text = ("name: t\nstudent: {arch: fast_arcnn}\ndata: {train: embedded, train_limit: 1, eval: [embedded], "
                f"limit: 1}}\nstages:\n  - {{type: export{export}}}\n")
        return parse_recipe(text, "t.yaml").variants[0].recipe

    on = recipe(", subpixel: true")
    # the default is left out of the variant id, so variants exported before the key existed keep theirs
    assert recipe_hash(recipe(", subpixel: false")) == recipe_hash(recipe("")) != recipe_hash(on)
    ctx = StageContext(on, tmp_path, threads=1)
    ds = open_dataset("embedded", limit=1)
    ctx._images = [ds.load(item) for item in ds]
    ctx.stage_index = 0
    res = STAGES.get("export")(_fast_arcnn(), on.stages[0], ctx)
    assert res.plan["subpixel_rewrites"] == 1 and res.plan["max_abs_diff"] < 1e-4
    assert "ConvTranspose" not in _ops(tmp_path / res.plan["file"])
