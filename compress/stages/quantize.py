"""Quantization with brevitas (2-8 bit weights and activations) or NNCF (8 bit), PTQ or QAT.

Each backend is a :class:`Quantizer` in :data:`QUANTIZERS` with three jobs: ``quantize`` a float
model (calibrated on training patches) into a fake-quantized one plus a JSON config; ``rebuild`` the
same quantized structure on a float model of the same shapes from that config (then the saved state
dict loads into it: no module is ever pickled); ``export`` it as an ONNX graph of
QuantizeLinear/DequantizeLinear pairs that onnxruntime runs.

brevitas: every Conv2d / ConvTranspose2d becomes a QuantConv2d / QuantConvTranspose2d with the same
weights; the input gets a QuantIdentity; brevitas has no QuantPReLU, so each PReLU is followed by a
QuantIdentity (and each ReLU becomes a QuantReLU) to quantize the activations between layers; with
``conv_output`` a convolution that a PReLU follows also quantizes its own output, which lets onnxruntime fuse it.
Calibration uses brevitas' ``calibration_mode``. NNCF: ``nncf.quantize`` places and calibrates the
quantizers (8 bit only in this version); its ``get_config`` / ``load_from_config`` are the config;
export switches every quantizer to ONNX Q/DQ pairs (its default writes OpenVINO FakeQuantize nodes,
which onnxruntime cannot run).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from compress.errors import CompressError
from compress.recipe.schema import Backend, QuantizeStage, QuantMode
from compress.registry import Registry
from compress.stages.base import STAGES, StageContext, StageResult, train_stage


class Quantizer(Protocol):
    """A quantization backend."""

    def quantize(
        self, model: nn.Module, cfg: QuantizeStage, calibration: list[torch.Tensor]
    ) -> tuple[nn.Module, dict[str, Any]]:
        """Fake-quantize and calibrate ``model``; return it and its JSON config."""
        ...

    def rebuild(self, model: nn.Module, config: dict[str, Any]) -> nn.Module:
        """The quantized structure of ``config`` on a float model of the same shapes (weights: load after)."""
        ...

    def export(self, model: nn.Module, path: Path, example: torch.Tensor, *, opset: int, dynamic_hw: bool) -> None:
        """Write a QDQ ONNX graph of ``model``."""
        ...


QUANTIZERS: Registry[Quantizer] = Registry("quantizer")
"""Backend name -> :class:`Quantizer`."""


def dynamic_axes(dynamic_hw: bool) -> dict[str, dict[int, str]] | None:
    """Batch, height and width free in the ONNX graph (or nothing free)."""
    if not dynamic_hw:
        return None
    axes = {0: "batch", 2: "height", 3: "width"}
    return {"input": axes, "output": axes}


# ---------------------------------------------------------------------------------------------
# brevitas


class _QuantInput(nn.Module):
    """Quantizes the network input, then runs the (quantized) network."""

    def __init__(self, net: nn.Module, quant_input: nn.Module) -> None:
        super().__init__()
        self.quant_input = quant_input
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.quant_input(x))


class BrevitasQuantizer:
    """brevitas fake-quantization; any of 2..8 bits for weights and activations."""

    name = Backend.brevitas.value

    @staticmethod
    def _swap(module: nn.Module, config: dict[str, Any], prefix: str, layers: dict[str, str]) -> None:
        import brevitas.nn as qnn
        from brevitas.quant import (
            Int8ActPerTensorFloat,
            Int8WeightPerChannelFloat,
            Int8WeightPerTensorFloat,
            Uint8ActPerTensorFloat,
        )

        wq = Int8WeightPerChannelFloat if config["per_channel"] else Int8WeightPerTensorFloat
        wb, ab = int(config["weight_bits"]), int(config["act_bits"])
        children = list(module.named_children())
        for i, (name, child) in enumerate(children):
            full = f"{prefix}{name}"
            new: nn.Module | None = None
            if full.removeprefix("net.") in config.get("keep_float", ()):
                layers[full] = "float (keep_float)"
                continue
            # conv_output: the output of a convolution that a PReLU follows (its next sibling) is quantized too
            before_prelu = i + 1 < len(children) and isinstance(children[i + 1][1], nn.PReLU)
            out_q: dict[str, Any] = (
                {"output_quant": Int8ActPerTensorFloat, "output_bit_width": ab}
                if config.get("conv_output") and before_prelu else {}
            )
            out_note = f", output a{ab}" if out_q else ""
            if isinstance(child, nn.ConvTranspose2d):
                new = qnn.QuantConvTranspose2d(
                    child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                    padding=child.padding, output_padding=child.output_padding, dilation=child.dilation,
                    groups=child.groups, bias=child.bias is not None, weight_quant=wq, weight_bit_width=wb, **out_q,
                )
                layers[full] = f"QuantConvTranspose2d w{wb}{out_note}"
            elif isinstance(child, nn.Conv2d):
                if child.padding_mode != "zeros":
                    raise CompressError(f"{full}: brevitas quantization supports zero padding only")
                new = qnn.QuantConv2d(
                    child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                    padding=child.padding, dilation=child.dilation, groups=child.groups,
                    bias=child.bias is not None, weight_quant=wq, weight_bit_width=wb, **out_q,
                )
                layers[full] = f"QuantConv2d w{wb}{out_note}"
            elif isinstance(child, nn.PReLU):
                # No QuantPReLU in brevitas: keep the PReLU in float and quantize its output.
                new = nn.Sequential(child, qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=ab))
                layers[full] = f"PReLU + QuantIdentity a{ab}"
            elif isinstance(child, nn.ReLU):
                new = qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=ab)
                layers[full] = f"QuantReLU a{ab}"
            else:
                BrevitasQuantizer._swap(child, config, f"{full}.", layers)
                continue
            if isinstance(child, nn.Conv2d | nn.ConvTranspose2d):
                new.load_state_dict(child.state_dict(), strict=False)  # weight and bias; quantizer state is new
            setattr(module, name, new)

    def _build(self, model: nn.Module, config: dict[str, Any]) -> tuple[nn.Module, dict[str, str]]:
        import brevitas.nn as qnn
        from brevitas.quant import Uint8ActPerTensorFloat

        layers: dict[str, str] = {}
        self._swap(model, config, "net.", layers)
        # Inputs are images in [0, 1]: unsigned.
        wrapped = _QuantInput(model, qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=config["act_bits"]))
        layers["quant_input"] = f"QuantIdentity a{config['act_bits']} (unsigned)"
        return wrapped, layers

    def quantize(
        self, model: nn.Module, cfg: QuantizeStage, calibration: list[torch.Tensor]
    ) -> tuple[nn.Module, dict[str, Any]]:
        """See :meth:`Quantizer.quantize`."""
        from brevitas.graph.calibrate import calibration_mode

        config: dict[str, Any] = {
            "backend": self.name, "weight_bits": cfg.weight_bits, "act_bits": cfg.act_bits,
            "per_channel": cfg.per_channel, "keep_float": list(cfg.keep_float),
        }
        if cfg.conv_output:  # absent (not False) otherwise: configs saved before the key existed stay equal
            config["conv_output"] = True
        _check_names(model, cfg.keep_float)
        q, layers = self._build(copy.deepcopy(model), config)
        q.eval()
        with torch.no_grad(), calibration_mode(q):
            for x in calibration:
                q(x)
        config["layers"] = layers
        return q, config

    def rebuild(self, model: nn.Module, config: dict[str, Any]) -> nn.Module:
        """See :meth:`Quantizer.rebuild`."""
        q, _ = self._build(model, config)
        return q

    def export(self, model: nn.Module, path: Path, example: torch.Tensor, *, opset: int, dynamic_hw: bool) -> None:
        """See :meth:`Quantizer.export`."""
        from brevitas.export import export_onnx_qcdq

        export_onnx_qcdq(
            model.eval(), args=example, export_path=str(path), opset_version=opset, input_names=["input"],
            output_names=["output"], dynamic_axes=dynamic_axes(dynamic_hw), dynamo=False,
        )


# ---------------------------------------------------------------------------------------------
# nncf


def _nncf() -> Any:
    # NNCF phones home unless told not to, and compiles a C++ extension on first use: on a busy
    # 2-core machine that takes minutes, beyond its default 60 s timeout.
    os.environ.setdefault("NNCF_CI", "1")
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
    import nncf

    return nncf


class NncfQuantizer:
    """NNCF's ``nncf.quantize`` (8 bit, per-channel symmetric weights by default)."""

    name = Backend.nncf.value

    def quantize(
        self, model: nn.Module, cfg: QuantizeStage, calibration: list[torch.Tensor]
    ) -> tuple[nn.Module, dict[str, Any]]:
        """See :meth:`Quantizer.quantize`."""
        nncf = _nncf()
        from nncf.common.quantization.structs import QuantizationScheme
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            OverflowFix,
            QuantizationParameters,
        )

        model = copy.deepcopy(model).eval()
        advanced = AdvancedQuantizationParameters(
            weights_quantization_params=QuantizationParameters(num_bits=cfg.weight_bits, per_channel=cfg.per_channel),
            activations_quantization_params=QuantizationParameters(
                num_bits=cfg.act_bits,
                mode=QuantizationScheme.ASYMMETRIC if cfg.act_mode.value == "asymmetric" else None),
            overflow_fix={"disable": OverflowFix.DISABLE, "first_layer": OverflowFix.FIRST_LAYER,
                          "enable": OverflowFix.ENABLE}[cfg.overflow_fix.value],
        )
        _check_names(model, cfg.keep_float)
        # NNCF names graph nodes <module path>/<op>/<index>, e.g. last/conv2d/0
        ignored = nncf.IgnoredScope(patterns=[f"^{re.escape(n.replace('.', '/'))}/" for n in cfg.keep_float],
                                    validate=True) if cfg.keep_float else None
        q = nncf.quantize(
            model, nncf.Dataset(calibration), subset_size=len(calibration), advanced_parameters=advanced,
            **({"ignored_scope": ignored} if ignored is not None else {}),
        )
        config = {
            "backend": self.name, "weight_bits": cfg.weight_bits, "act_bits": cfg.act_bits,
            "per_channel": cfg.per_channel, "overflow_fix": cfg.overflow_fix.value, "act_mode": cfg.act_mode.value,
            "keep_float": list(cfg.keep_float), "nncf": nncf.torch.get_config(q),
        }
        return q, config

    def rebuild(self, model: nn.Module, config: dict[str, Any]) -> nn.Module:
        """See :meth:`Quantizer.rebuild`."""
        nncf = _nncf()
        return nncf.torch.load_from_config(model, config["nncf"])

    def export(self, model: nn.Module, path: Path, example: torch.Tensor, *, opset: int, dynamic_hw: bool) -> None:
        """See :meth:`Quantizer.export`."""
        _nncf()
        from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

        for m in model.modules():
            if isinstance(m, BaseQuantizer):
                m.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
        torch.onnx.export(
            model.eval(), (example,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
            output_names=["output"], dynamic_axes=dynamic_axes(dynamic_hw),
        )


QUANTIZERS.add(Backend.brevitas.value, BrevitasQuantizer())
QUANTIZERS.add(Backend.nncf.value, NncfQuantizer())


def _check_names(model: nn.Module, names: Sequence[str]) -> None:
    """keep_float names must be modules of the model; the error lists the quantizable ones."""
    modules = dict(model.named_modules())
    bad = [n for n in names if n not in modules]
    if bad:
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
        raise CompressError(f"keep_float: no module {', '.join(map(repr, bad))} in {type(model).__name__}; "
                            f"its convolutions: {', '.join(convs)}")


def rebuild_quantized(model: nn.Module, config: dict[str, Any]) -> nn.Module:
    """The quantized structure described by a saved quant config, on a float model of the same shapes."""
    return QUANTIZERS.get(str(config["backend"])).rebuild(model, config)


def calibration_inputs(cfg: QuantizeStage, ctx: StageContext) -> list[torch.Tensor]:
    """``cfg.calibration_images`` JPEG training patches, in batches of at most ``cfg.batch_size``."""
    n_batches = -(-cfg.calibration_images // cfg.batch_size)
    out: list[torch.Tensor] = []
    left = cfg.calibration_images
    for x, _ in ctx.patches(n_batches, min(cfg.batch_size, cfg.calibration_images), cfg.patch_size, seed=cfg.seed + 7):
        out.append(x[:left])
        left -= x.shape[0]
    return out


def _self_distill_loss(parent: nn.Module, cfg: QuantizeStage) -> Any:
    """``loss(gt) + parent_l2 * L2(out, parent(x))``: QAT learns the float model's output beside the ground truth."""
    import torch.nn.functional as F

    crit = F.l1_loss if cfg.loss.value == "l1" else F.mse_loss
    for p in parent.parameters():
        p.requires_grad_(False)

    def fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = parent(x)
        out = out.float()
        return crit(out, y) + cfg.parent_l2 * F.mse_loss(out, target)

    return fn


@STAGES.register("quantize")
def apply(model: nn.Module, cfg: QuantizeStage, ctx: StageContext) -> StageResult:
    """The ``quantize`` stage: calibrate, then (qat) train the fake-quantized model."""
    ctx.float_model = copy.deepcopy(model).eval()
    q, config = QUANTIZERS.get(cfg.backend.value).quantize(model, cfg, calibration_inputs(cfg, ctx))
    record: dict[str, Any] = {"steps": 0, "wall_s": 0.0}
    if cfg.mode is QuantMode.qat:
        parent = copy.deepcopy(ctx.float_model) if cfg.parent_l2 > 0 else None
        record = train_stage(q, cfg, ctx, loss=cfg.loss.value,
                             loss_fn=_self_distill_loss(parent, cfg) if parent is not None else None)
    q.eval()
    config["mode"] = cfg.mode.value
    ctx.quant = config
    return StageResult(q, {**config, **record})
