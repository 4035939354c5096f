"""Compression stages, registry-driven: every importance, the distiller and every quantizer on both students.

Everything is tiny (32x32 patches, a couple of steps, one embedded training image, one thread) so
the file runs in about a minute on 2 shared cores.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from compress.nets import build_model, count_params
from compress.recipe.expand import parse_recipe
from compress.recipe.schema import STAGE_MODELS, Recipe
from compress.stages import IMPORTANCES, QUANTIZERS, STAGES, replay_plan
from compress.stages.base import StageContext
from compress.stages.export import check_onnx, export_onnx, onnx_session
from compress.stages.prune import channel_widths
from compress.stages.replay import rebuild_model
from compress.train import init_model_

STUDENTS = ["arcnn", "fast_arcnn"]
TINY = "batch_size: 2, patch_size: 32"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def recipe_of(arch: str, stages: str, *, teachers: str = "") -> Recipe:
    """A validated recipe on embedded data with the given stage lines (YAML flow mappings)."""
    text = (
        f"name: t\nstudent: {{arch: {arch}}}\n{teachers}"
        "data: {train: embedded, train_limit: 1, eval: [embedded], limit: 1}\n"
        f"stages:\n{stages}\n"
    )
    return parse_recipe(text, "t.yaml").variants[0].recipe


def context(recipe: Recipe, tmp_path: Path, images: list[Any]) -> StageContext:
    ctx = StageContext(recipe, tmp_path, threads=1)
    ctx._images = images  # shared across tests: decoding and JPEG-compressing is the slow part
    return ctx


def fresh(arch: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = build_model(arch)
    init_model_(m, "kaiming")  # the reference init (std 0.001) makes every channel look alike
    return m


def run_stages(model: nn.Module, recipe: Recipe, ctx: StageContext) -> tuple[nn.Module, list[dict[str, Any]]]:
    plans = []
    for i, st in enumerate(recipe.stages):
        ctx.stage_index = i
        res = STAGES.get(st.type)(model, st, ctx)
        model = res.model
        plans.append({"type": st.type, "plan": res.plan})
    return model, plans


def test_every_stage_type_is_registered() -> None:
    assert set(STAGES.names()) == {t.value for t in STAGE_MODELS}


@pytest.mark.parametrize("arch", STUDENTS)
@pytest.mark.parametrize("importance", IMPORTANCES.names())
def test_prune_replays_to_identical_weights(arch: str, importance: str, tmp_path: Path, images: list[Any]) -> None:
    recipe = recipe_of(arch, f"  - {{type: prune, ratio: 0.5, importance: {importance}, iterative_steps: 2, "
                             f"calibration_batches: 1, {TINY}}}")
    model = fresh(arch)
    base_state = copy.deepcopy(model.state_dict())
    before = count_params(model)
    pruned, plans = run_stages(model, recipe, context(recipe, tmp_path, images))
    assert count_params(pruned) < before
    x = torch.rand(1, 3, 33, 27)
    assert pruned(x).shape == x.shape
    assert channel_widths(pruned)[next(reversed(channel_widths(pruned)))] == 3  # the output layer keeps 3 channels
    replayed = build_model(arch)
    replayed.load_state_dict(base_state)
    replay_plan(replayed, plans[0]["plan"])
    a, b = pruned.state_dict(), replayed.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a), "replayed weights differ"


@pytest.mark.parametrize("arch", STUDENTS)
def test_prune_to_a_macs_target(arch: str, tmp_path: Path, images: list[Any]) -> None:
    recipe = recipe_of(arch, "  - {type: prune, target_macs: 0.5, ignored_layers: [base.0]}")
    model = fresh(arch)
    width0 = channel_widths(model)["base.0"]
    pruned, plans = run_stages(model, recipe, context(recipe, tmp_path, images))
    assert plans[0]["plan"]["macs_ratio"] <= 0.5
    assert channel_widths(pruned)["base.0"] == width0  # ignored layers keep their width


@pytest.mark.parametrize("arch", STUDENTS)
def test_finetune_changes_weights(arch: str, tmp_path: Path, images: list[Any]) -> None:
    recipe = recipe_of(arch, f"  - {{type: finetune, steps: 2, lr: 1.0e-3, {TINY}}}")
    model = fresh(arch)
    w0 = model.state_dict()["base.0.weight"].clone()
    ctx = context(recipe, tmp_path, images)
    tuned, plans = run_stages(model, recipe, ctx)
    assert plans[0]["plan"]["steps"] == 2
    assert not torch.equal(tuned.state_dict()["base.0.weight"], w0)
    assert ctx.train_wall_s > 0


@pytest.mark.parametrize("arch", STUDENTS)
def test_distillation_adapters_never_reach_the_student(arch: str, tmp_path: Path, images: list[Any]) -> None:
    teachers = "teachers: {rdn: {arch: rdn_s}}\n"
    recipe = recipe_of(
        arch,
        f"  - {{type: distill, teacher: rdn, steps: 2, lr: 1.0e-3, teacher_l1: 0.5, {TINY}, "
        "hints: [{student: base.1, teacher: sfe2}, {student: base.3, teacher: blocks.0, loss: l1}]}",
        teachers=teachers,
    )
    model = fresh(arch)
    keys0 = list(model.state_dict())
    w0 = model.state_dict()["base.0.weight"].clone()
    ctx = context(recipe, tmp_path, images)
    student, plans = run_stages(model, recipe, ctx)
    assert list(student.state_dict()) == keys0  # no adapter weights
    assert not torch.equal(student.state_dict()["base.0.weight"], w0)
    assert not any(m._forward_hooks for m in student.modules())  # feature hooks removed
    assert [h["adapter"][1] for h in plans[0]["plan"]["hints"]] == [48, 48]
    import onnx

    path = export_onnx(student, tmp_path / "distilled.onnx", channels=3)
    inits = onnx.load(str(path)).graph.initializer
    assert sum(int(np.prod(t.dims)) for t in inits) <= count_params(student)  # ONNX may fold equal PReLU slopes
    assert not any(list(t.dims)[:1] == [48] for t in inits)  # no 1x1 adapter to the teacher's 48 channels
    assert {t.name for t in inits if not t.name.startswith("onnx::")} <= set(student.state_dict())


@pytest.mark.parametrize("arch", STUDENTS)
@pytest.mark.parametrize("backend", QUANTIZERS.names())
def test_quantize_export_and_rebuild(arch: str, backend: str, tmp_path: Path, images: list[Any]) -> None:
    bits = "weight_bits: 8, act_bits: 8" if backend == "nncf" else "weight_bits: 4, act_bits: 8"
    recipe = recipe_of(
        arch,
        f"  - {{type: quantize, backend: {backend}, mode: qat, steps: 1, calibration_images: 2, {bits}, {TINY}}}\n"
        "  - {type: export, atol: 0.005}",
    )
    model = fresh(arch)
    base_state = copy.deepcopy(model.state_dict())
    ctx = context(recipe, tmp_path, images)
    q, plans = run_stages(model, recipe, ctx)
    export = plans[1]["plan"]
    assert export["format"] == "qdq" and export["mean_abs_diff"] <= 0.005
    from compress.deploy import cpu_isa

    assert export["check_cpu_isa"] == cpu_isa()  # the check's numbers depend on the CPU's INT8 kernels
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert ctx.float_model is not None and count_params(ctx.float_model) == count_params(fresh(arch))
    base = build_model(arch)
    base.load_state_dict(base_state)
    rebuilt = rebuild_model(base, {"stages": plans}, q.state_dict())
    x = torch.rand(1, 3, 40, 24)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), q(x))


@pytest.mark.parametrize("backend", QUANTIZERS.names())
def test_keep_float_leaves_the_layer_unquantized(backend: str, tmp_path: Path, images: list[Any]) -> None:
    recipe = recipe_of(
        "arcnn", f"  - {{type: quantize, backend: {backend}, mode: ptq, calibration_images: 2, keep_float: [last], "
        f"{TINY}}}\n  - {{type: export}}",
    )
    ctx = context(recipe, tmp_path, images)
    q, plans = run_stages(fresh("arcnn"), recipe, ctx)
    assert plans[0]["plan"]["keep_float"] == ["last"]
    if backend == "nncf":
        from nncf.torch.quantization.layers import BaseQuantizer

        names = [n for n, m in q.named_modules() if isinstance(m, BaseQuantizer)]
        assert names and not any("last/" in n for n in names)  # neither its weights nor its input
        assert not any("base/5/" in n for n in names)
    else:
        assert type(q.net.last) is nn.Conv2d and plans[0]["plan"]["layers"]["net.last"] == "float (keep_float)"
    export = plans[1]["plan"]
    # judged on JPEG'd crops; the noise-input difference is recorded beside it
    assert export["mean_abs_diff"] <= 1e-3 and "noise_mean_abs_diff" in export
    import onnx

    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 4 and sum(c.input[1] in dequantized for c in convs) == 3  # one conv has float weights


@pytest.mark.parametrize("backend", QUANTIZERS.names())
def test_qat_self_distillation_from_the_float_parent(backend: str, tmp_path: Path, images: list[Any]) -> None:
    from compress.recipe.schema import QuantizeStage
    from compress.stages.quantize import _self_distill_loss

    parent = fresh("arcnn").eval()
    cfg = QuantizeStage.model_validate({"type": "quantize", "parent_l2": 2.0})
    fn = _self_distill_loss(parent, cfg)
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        same = parent(x)
    assert fn(parent, x, y, same).item() == pytest.approx(torch.nn.functional.mse_loss(same, y).item())
    assert fn(parent, x, y, same + 0.1).item() == pytest.approx(
        torch.nn.functional.mse_loss(same + 0.1, y).item() + 2.0 * 0.01, rel=1e-4)
    bits = "" if backend == "nncf" else "weight_bits: 4, "
    recipe = recipe_of("arcnn", f"  - {{type: quantize, backend: {backend}, mode: qat, steps: 2, parent_l2: 1.0, "
                       f"calibration_images: 2, {bits}{TINY}}}")
    model = fresh("arcnn")
    w0 = model.base[0].weight.detach().clone()
    ctx = context(recipe, tmp_path, images)
    _, plans = run_stages(model, recipe, ctx)
    assert plans[0]["plan"]["steps"] == 2
    assert ctx.float_model is not None and torch.equal(ctx.float_model.base[0].weight, w0)  # the parent is untouched
    assert all(p.requires_grad for p in ctx.float_model.parameters())


def test_keep_float_names_a_module(tmp_path: Path, images: list[Any]) -> None:
    from compress.errors import CompressError

    recipe = recipe_of("arcnn", f"  - {{type: quantize, backend: brevitas, mode: ptq, keep_float: [lats], {TINY}}}")
    with pytest.raises(CompressError, match=r"no module 'lats'.*base\.0, base\.2, base\.4, last"):
        run_stages(fresh("arcnn"), recipe, context(recipe, tmp_path, images))


@pytest.mark.parametrize("fix", ["disable", "first_layer"])
def test_nncf_overflow_fix_reaches_the_first_layer(fix: str, tmp_path: Path, images: list[Any]) -> None:
    """overflow_fix: disable keeps all 8 bits of the first conv's weights; first_layer (NNCF's default) uses 7."""
    recipe = recipe_of(
        "arcnn", "  - {type: quantize, backend: nncf, mode: ptq, calibration_images: 2, "
        f"overflow_fix: {fix}, {TINY}}}",
    )
    model = fresh("arcnn")
    ctx = context(recipe, tmp_path, images)
    q, plans = run_stages(model, recipe, ctx)
    assert plans[0]["plan"]["overflow_fix"] == fix
    from nncf.torch.quantization.layers import BaseQuantizer

    weight_q = {n: m for n, m in q.named_modules() if isinstance(m, BaseQuantizer) and m.scale.numel() > 1}
    first = next(m for n, m in weight_q.items() if "base/0/" in n)
    w = model.base[0].weight.detach()
    # NNCF's scale is the largest representable weight: the channel's max |w| with 8 bits; with the fix the
    # scale doubles and the weights use only half of the int8 levels (7 bits)
    ratio = (first.scale.detach().flatten() / w.abs().amax(dim=(1, 2, 3))).median().item()
    assert ratio == pytest.approx(1.0 if fix == "disable" else 2.0, rel=0.01)
    last = next(m for n, m in weight_q.items() if "last/" in n)
    assert (last.scale.detach().flatten() / model.last.weight.detach().abs().amax(dim=(1, 2, 3))).median().item() \
        == pytest.approx(1.0, rel=0.01)  # only the first layer is affected


@pytest.mark.parametrize("mode", ["symmetric", "asymmetric"])
def test_nncf_act_mode_sets_the_activation_quantizers(mode: str, tmp_path: Path, images: list[Any]) -> None:
    """act_mode: asymmetric gives every activation quantizer a zero point (NNCF's AsymmetricQuantizer); the
    weights stay symmetric per channel; symmetric (the default) keeps zero point 0 everywhere."""
    recipe = recipe_of(
        "fast_arcnn", f"  - {{type: quantize, backend: nncf, mode: ptq, calibration_images: 2, act_mode: {mode}, "
        f"{TINY}}}",
    )
    q, plans = run_stages(fresh("fast_arcnn"), recipe, context(recipe, tmp_path, images))
    assert plans[0]["plan"]["act_mode"] == mode
    from nncf.torch.quantization.layers import AsymmetricQuantizer, BaseQuantizer, SymmetricQuantizer

    quantizers = [m for m in q.modules() if isinstance(m, BaseQuantizer)]
    acts = [m for m in quantizers if not m.per_channel]
    weights = [m for m in quantizers if m.per_channel]
    assert len(acts) == 5 and len(weights) == 5  # the input and four PReLU outputs; five convolutions
    assert all(isinstance(m, SymmetricQuantizer) for m in weights)
    kind = AsymmetricQuantizer if mode == "asymmetric" else SymmetricQuantizer
    assert all(isinstance(m, kind) for m in acts)


def test_asymmetric_activations_are_nncf_only() -> None:
    from compress.errors import RecipeError

    with pytest.raises(RecipeError, match="nncf only"):
        recipe_of("arcnn", f"  - {{type: quantize, backend: brevitas, act_mode: asymmetric, {TINY}}}")


@pytest.mark.parametrize("conv_output", [False, True])
def test_brevitas_conv_output_lets_onnxruntime_fuse_prelu_convs(
    conv_output: bool, tmp_path: Path, images: list[Any]
) -> None:
    """conv_output: true quantizes each convolution that a PReLU follows at its output too: its QDQ graph has
    Conv -> Q -> DQ -> PRelu, which onnxruntime turns into QLinearConv (ARCNN's three convolutions before a
    PReLU; the output conv, whose output is the image, stays float). Without it every conv stays float there.
    The structure replays from the saved config, and the graph matches torch. 7-bit weights: onnxruntime's u8 x s8
    kernels on CPUs without VNNI saturate 16-bit pair sums of 8-bit weights (255 * 127 * 2 > 32767), and this
    test's random weights hit that; 7 bits cannot (255 * 63 * 2 < 32767), so the check holds on any x86 CPU."""
    from compress.deploy import Fusion, check_fusion

    flag = "true" if conv_output else "false"
    recipe = recipe_of("arcnn", f"  - {{type: quantize, backend: brevitas, mode: ptq, calibration_images: 2, "
                                f"weight_bits: 7, conv_output: {flag}, {TINY}}}\n  - {{type: export}}")
    model = fresh("arcnn")
    ctx = context(recipe, tmp_path, images)
    q, plans = run_stages(copy.deepcopy(model), recipe, ctx)
    layers = plans[0]["plan"]["layers"]
    with_out = sorted(k for k, v in layers.items() if v.endswith(", output a8"))
    assert with_out == (["net.base.0", "net.base.2", "net.base.4"] if conv_output else [])
    assert ("conv_output" in plans[0]["plan"]) is conv_output  # absent at the default: old configs compare equal
    assert plans[1]["plan"]["mean_abs_diff"] <= 1e-3
    rep = check_fusion(tmp_path / "model.onnx")
    if conv_output:
        assert rep.status is Fusion.partial and rep.quantized_convs == 3 and rep.float_convs == 1
    else:
        assert rep.status is Fusion.none
    plan = {"base": {"arch": "arcnn", "channels": 3}, "stages": [{"type": "quantize", "plan": plans[0]["plan"]}]}
    again = rebuild_model(fresh("arcnn"), plan, q.state_dict())
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(again(x), q(x))


def test_conv_output_is_brevitas_only() -> None:
    from compress.errors import RecipeError

    with pytest.raises(RecipeError, match="brevitas only"):
        recipe_of("arcnn", f"  - {{type: quantize, backend: nncf, conv_output: true, {TINY}}}")


@pytest.mark.parametrize("arch", STUDENTS)
def test_fp32_onnx_matches_torch_at_any_size(arch: str, tmp_path: Path) -> None:
    model = fresh(arch)
    path = export_onnx(model, tmp_path / "m.onnx", channels=3)
    found = check_onnx(model, path, channels=3, sizes=((40, 24), (37, 29), (16, 16), (9, 7)))
    assert found["max_abs_diff"] < 1e-4
    assert onnx_session(path).get_inputs()[0].shape[2:] == ["height", "width"]


def test_bf16_distillation_with_hints_trains_in_fp32_weights(tmp_path: Path, images: list[Any]) -> None:
    """precision: bf16 runs student and teacher under autocast; adapters and losses stay fp32."""
    recipe = recipe_of(
        "fast_arcnn",
        f"  - {{type: distill, teacher: rdn, steps: 2, lr: 1.0e-3, {TINY}, precision: bf16, channels_last: true, "
        "hints: [{student: base.1, teacher: sfe2}]}",
        teachers="teachers: {rdn: {arch: rdn_s}}\n",
    )
    model = fresh("fast_arcnn")
    w0 = model.state_dict()["base.0.weight"].clone()
    student, plans = run_stages(model, recipe, context(recipe, tmp_path, images))
    assert plans[0]["plan"]["steps"] == 2
    w = student.state_dict()["base.0.weight"]
    assert w.dtype == torch.float32 and not torch.equal(w, w0) and torch.isfinite(w).all()


def test_export_check_failure_names_the_cpu_when_int8_kernels_may_saturate() -> None:
    """A QDQ check that fails on a CPU without VNNI says why (16-bit u8 x s8 sums) and what to change."""
    from compress.stages.export import saturation_hint

    w8 = {"backend": "nncf", "weight_bits": 8, "act_bits": 8}
    hint = saturation_hint(w8, "avx2")
    assert "avx2" in hint and "no VNNI" in hint and "weight_bits: 7" in hint and "atol" in hint
    assert saturation_hint(w8, "avx512+vnni+bf16") == ""       # VNNI sums in 32 bits
    assert saturation_hint(w8, "") == ""                       # flags unknown: no guess
    assert saturation_hint({**w8, "weight_bits": 7}, "avx2") == ""  # 7-bit weights cannot saturate
    assert saturation_hint(None, "avx2") == ""                 # float graphs


def test_failed_int8_export_check_carries_the_hint(
    tmp_path: Path, images: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from compress.errors import ExportError
    from compress.stages import export as export_stage

    monkeypatch.setattr(export_stage, "cpu_isa", lambda: "avx2")
    recipe = recipe_of(
        "fast_arcnn", f"  - {{type: quantize, backend: nncf, mode: ptq, calibration_images: 2, {TINY}}}\n"
        "  - {type: export, atol: 1.0e-9, qdq_atol: 1.0e-9}",
    )
    with pytest.raises(ExportError, match=r"differs from torch.*This CPU \(avx2\) has no VNNI"):
        run_stages(fresh("fast_arcnn"), recipe, context(recipe, tmp_path, images))
    monkeypatch.setattr(export_stage, "cpu_isa", lambda: "avx512+vnni")
    with pytest.raises(ExportError) as err:
        run_stages(fresh("fast_arcnn"), recipe, context(recipe, tmp_path, images))
    assert "VNNI" not in str(err.value)
