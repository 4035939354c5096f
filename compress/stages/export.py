"""ONNX export (float, or QDQ for quantized models) and a check in onnxruntime against torch.

Float graphs go through ``torch.onnx.export(dynamo=False)``, which traces the model; with
``dynamic_axes`` height and width stay free. The trace runs on an odd-sized input so that Fast
ARCNN's pad-to-even and crop (taken only for odd sizes) is in the graph; for even sizes those ops
pad and crop nothing. Weights stay inside the one ``.onnx`` file. The check runs the graph in
onnxruntime on inputs of other sizes than the trace and compares with the torch model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compress.deploy import cpu_isa
from compress.errors import ExportError
from compress.recipe.schema import ExportFormat, ExportStage
from compress.stages.base import STAGES, StageContext, StageResult
from compress.stages.quantize import QUANTIZERS, dynamic_axes

TRACE_SIZE = (35, 33)
"""Height, width of the tracing input: odd, so size-dependent padding branches are traced."""
CHECK_SIZES = ((40, 24), (37, 29))
"""Input sizes the onnxruntime check runs (neither is the trace size)."""
ONNX_NAME = "model.onnx"


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    channels: int,
    quant: dict[str, Any] | None = None,
    opset: int = 17,
    dynamic_hw: bool = True,
) -> Path:
    """Write ``model`` as ONNX: QDQ through its quantization backend when ``quant`` is given, else float.

    Raises:
        ExportError: the exporter failed.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(1, channels, *TRACE_SIZE, generator=torch.Generator().manual_seed(0))
    model = model.eval()
    try:
        if quant is not None:
            QUANTIZERS.get(str(quant["backend"])).export(model, p, example, opset=opset, dynamic_hw=dynamic_hw)
        else:
            torch.onnx.export(
                model, (example,), str(p), dynamo=False, external_data=False, opset_version=opset,
                input_names=["input"], output_names=["output"], dynamic_axes=dynamic_axes(dynamic_hw),
            )
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ExportError(f"ONNX export to {p} failed: {str(exc).splitlines()[0]}") from None
    return p


def onnx_session(path: str | Path) -> Any:
    """An onnxruntime CPU session on one thread, quiet about graph details."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # brevitas graphs list initializers as inputs: ort warns about each
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def check_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    channels: int,
    atol: float = 1e-3,
    sizes: tuple[tuple[int, int], ...] = CHECK_SIZES,
    inputs: Sequence[torch.Tensor] | None = None,
) -> dict[str, float]:
    """Compare onnxruntime with torch on inputs of ``sizes`` (uniform noise in [0, 1]) or on ``inputs``.

    Noise is the harshest input for an INT8 graph: neighbouring values are independent and often both
    large, which is what saturates the 16-bit pair sums of u8 x s8 kernels on CPUs without VNNI. Pass
    real (JPEG) images as ``inputs`` to check what a deployed model sees.

    Returns:
        ``max_abs_diff`` (largest ``|onnxruntime - torch|``), ``mean_abs_diff`` and ``frac_over_atol``
        (share of output values that differ by more than ``atol``).
    """
    sess = onnx_session(path)
    worst = 0.0
    over = 0
    total = 0
    summed = 0.0
    g = torch.Generator().manual_seed(1)
    xs = list(inputs) if inputs is not None else [torch.rand(1, channels, h, w, generator=g) for h, w in sizes]
    for x in xs:
        with torch.no_grad():
            ref = model.eval()(x).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"{path}: onnxruntime output shape {got.shape} differs from torch {ref.shape}")
        diff = np.abs(got - ref)
        worst = max(worst, float(diff.max()))
        over += int((diff > atol).sum())
        summed += float(diff.sum())
        total += diff.size
    n = max(1, total)
    return {"max_abs_diff": worst, "mean_abs_diff": summed / n, "frac_over_atol": over / n}


def _real_inputs(ctx: StageContext, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """JPEG-compressed training crops of each size (cut from 64x64 patches of the stage's data)."""
    side = max(64, *(max(h, w) for h, w in sizes))
    (x, _), = ctx.patches(1, len(sizes), side, seed=4242)
    return [x[i : i + 1, :, :h, :w].contiguous() for i, (h, w) in enumerate(sizes)]


def saturation_hint(quant: dict[str, Any] | None, isa: str) -> str:
    """Why a QDQ graph may fail the check on this CPU only, and what to do (empty where that cannot be it).

    Without VNNI, onnxruntime's fused u8 x s8 convolutions add pairs of products in 16 bits, which
    saturate with 8-bit weights (onnxruntime's own quantizer offers ``reduce_range``, 7-bit weights, for
    this). The same graph can pass on a VNNI CPU and fail here: a fact of the CPU, not of the export.
    """
    if quant is None or not isa or "vnni" in isa.split("+") or int(quant.get("weight_bits", 0)) < 8:
        return ""
    return (
        f". This CPU ({isa}) has no VNNI: onnxruntime's INT8 convolutions add pairs of u8 x s8 products in "
        "16 bits, which can saturate with 8-bit weights. Train with weight_bits: 7 (as onnxruntime's "
        "reduce_range does), or raise this export stage's atol to accept what this CPU computes "
        "(compress deployed scores what the runtimes give)"
    )


def export_and_check(model: nn.Module, cfg: ExportStage, path: Path, ctx: StageContext) -> dict[str, Any]:
    """Export per ``cfg`` (format, opset, dynamic size) and check it; returns the plan."""
    fmt = cfg.format or (ExportFormat.qdq if ctx.quant is not None else ExportFormat.fp32)
    quant = ctx.quant if fmt is ExportFormat.qdq else None
    export_onnx(model, path, channels=ctx.channels, quant=quant, opset=cfg.opset, dynamic_hw=cfg.dynamic_hw)
    plan: dict[str, Any] = {"format": fmt.value, "opset": cfg.opset, "dynamic_hw": cfg.dynamic_hw, "file": path.name}
    if cfg.subpixel:
        from compress.subpixel import rewrite_subpixel

        plan["subpixel_rewrites"] = rewrite_subpixel(path)  # checked against torch below like any export
    if cfg.check:
        sizes = CHECK_SIZES if cfg.dynamic_hw else (TRACE_SIZE,)
        if fmt is ExportFormat.qdq:
            # INT8: judged on JPEG'd training crops, what the model restores; the noise result is kept
            # in the plan as the saturation indicator (see check_onnx)
            noise = check_onnx(model, path, channels=ctx.channels, atol=cfg.atol, sizes=sizes)
            plan.update({f"noise_{k}": v for k, v in noise.items()})
            found = check_onnx(model, path, channels=ctx.channels, atol=cfg.atol, inputs=_real_inputs(ctx, sizes))
        else:
            found = check_onnx(model, path, channels=ctx.channels, atol=cfg.atol, sizes=sizes)
        plan.update(found)
        # the check's numbers depend on the CPU's INT8 kernels (see saturation_hint): say which ran it
        plan["check_cpu_isa"] = cpu_isa()
        # In a QDQ graph a value on a rounding boundary may land one quantization step away in
        # onnxruntime (float rounding differs), and later layers spread that step over their
        # receptive field: for QDQ the mean must stay within atol and the largest difference within qdq_atol.
        qdq = fmt is ExportFormat.qdq
        worst_allowed = cfg.qdq_atol if qdq else cfg.atol
        if found["max_abs_diff"] > worst_allowed or found["mean_abs_diff"] > cfg.atol:
            raise ExportError(
                f"{path}: onnxruntime differs from torch by up to {found['max_abs_diff']:.3g} (allowed "
                f"{worst_allowed:g}), {found['mean_abs_diff']:.3g} on average (allowed {cfg.atol:g})"
                + saturation_hint(quant, plan["check_cpu_isa"])
            )
    plan["bytes"] = path.stat().st_size
    return plan


@STAGES.register("export")
def apply(model: nn.Module, cfg: ExportStage, ctx: StageContext) -> StageResult:
    """The ``export`` stage: ``model.onnx`` in the variant's folder, checked in onnxruntime."""
    plan = export_and_check(model, cfg, ctx.work_dir / ONNX_NAME, ctx)
    return StageResult(model, plan)
