"""Depth pruning: remove whole convolutions (each with the activation after it) from a model.

torch-pruning removes channels, never layers. A plain CNN's middle convolution whose input and output
have the same shape (``in_channels == out_channels``, stride 1, size-preserving padding, one group) can
go altogether: bypassing it leaves a valid network, which fine-tuning then repairs. Such a layer is
*removable* when it sits in an ``nn.Sequential`` (whose forward passes every child in turn, so an
``nn.Identity`` in its place is exactly a bypass) and is not the output layer; the activation right
after it in the same ``Sequential`` goes with it.

Which layers go: named in the recipe (``layers``), or chosen greedily (``count``): each round bypasses
every remaining candidate in turn, measures the L2 loss on fixed calibration patches, and removes the
one that raises it least (the usual layer-ablation criterion of layer-pruning papers). The plan lists
the removed module names; :func:`replay_plan` replaces the same modules with ``nn.Identity`` on a fresh
base model, so the saved state dict (which simply lacks their keys) loads strictly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.errors import CompressError
from compress.recipe.schema import PruneLayersStage
from compress.stages.base import STAGES, StageContext, StageResult, output_layer

PLAN_KIND = "layer-removal/1"

ACTIVATIONS = (nn.ReLU, nn.PReLU, nn.LeakyReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.ELU)
"""Modules that go with the convolution before them."""


def _same_shape(conv: nn.Conv2d) -> bool:
    k, d, p = conv.kernel_size, conv.dilation, conv.padding
    if isinstance(p, str):
        same_pad = p == "same"
    else:
        same_pad = all(p[i] * 2 == d[i] * (k[i] - 1) for i in range(2))
    return (
        conv.in_channels == conv.out_channels and conv.groups == 1 and tuple(conv.stride) == (1, 1) and same_pad
    )


def removable_layers(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Removable convolutions: ``{conv name: (conv name, activation name if any)}``, in module order."""
    last = output_layer(model)
    out: dict[str, tuple[str, ...]] = {}
    for pname, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for i, (cname, child) in enumerate(children):
            if type(child) is not nn.Conv2d or child is last or not _same_shape(child):
                continue
            full = f"{pname}.{cname}" if pname else cname
            names = [full]
            if i + 1 < len(children) and isinstance(children[i + 1][1], ACTIVATIONS):
                names.append(f"{pname}.{children[i + 1][0]}" if pname else children[i + 1][0])
            out[full] = tuple(names)
    return out


def _remove(model: nn.Module, names: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """Replace the named modules by ``nn.Identity``; returns what was there (to put back)."""
    old = [(n, model.get_submodule(n)) for n in names]
    for n in names:
        model.set_submodule(n, nn.Identity())
    return old


def _restore(model: nn.Module, old: list[tuple[str, nn.Module]]) -> None:
    for n, m in old:
        model.set_submodule(n, m)


def _check_names(candidates: dict[str, tuple[str, ...]], names: tuple[str, ...]) -> None:
    from compress.registry import unknown_message

    for n in names:
        if n not in candidates:
            raise CompressError(unknown_message("removable layer", n, list(candidates)))


@torch.no_grad()
def _loss(model: nn.Module, batches: list[tuple[torch.Tensor, ...]]) -> float:
    return float(sum(F.mse_loss(model(x), y).item() for x, y in batches) / len(batches))


def prune_layers(model: nn.Module, cfg: PruneLayersStage, ctx: StageContext) -> tuple[nn.Module, dict[str, Any]]:
    """Remove layers from ``model`` in place as ``cfg`` says; returns the model and the replayable plan.

    Raises:
        CompressError: a named layer is not removable, or fewer removable layers than ``count``.
    """
    candidates = removable_layers(model)
    params0 = sum(p.numel() for p in model.parameters())
    rounds: list[dict[str, Any]] = []
    if cfg.layers:
        _check_names(candidates, cfg.layers)
        chosen = list(cfg.layers)
        for name in chosen:
            _remove(model, candidates[name])
    else:
        count = int(cfg.count or 0)
        if count > len(candidates):
            raise CompressError(
                f"prune_layers: count {count} but the model has {len(candidates)} removable layer(s): "
                f"{', '.join(candidates) or 'none'} (a removable layer keeps its input's shape)"
            )
        model.eval()
        batches = list(ctx.patches(cfg.calibration_batches, cfg.batch_size, cfg.patch_size, seed=2000))
        chosen = []
        for _ in range(count):
            base = _loss(model, batches)
            scores: dict[str, float] = {}
            for name in candidates:
                if name in chosen:
                    continue
                old = _remove(model, candidates[name])
                scores[name] = _loss(model, batches)
                _restore(model, old)
            best = min(scores, key=lambda n: scores[n])
            rounds.append({"loss_before": base, "loss_without": scores, "removed": best})
            _remove(model, candidates[best])
            chosen.append(best)
    model.eval()
    plan = {
        "kind": PLAN_KIND,
        "removed": [list(candidates[n]) for n in chosen],
        "candidates": list(candidates),
        "rounds": rounds,
        "params_before": params0,
        "params_after": sum(p.numel() for p in model.parameters()),
    }
    return model, plan


def replay_plan(base_model: nn.Module, plan: dict[str, Any]) -> nn.Module:
    """Remove the plan's layers from a fresh base model (in place): the same modules become ``nn.Identity``.

    Raises:
        CompressError: not a layer-removal plan, or one that does not fit this model.
    """
    if plan.get("kind") != PLAN_KIND:
        raise CompressError(f"not a layer-removal plan (kind {plan.get('kind')!r}, expected {PLAN_KIND!r})")
    candidates = removable_layers(base_model)
    for names in plan["removed"]:
        if not names or candidates.get(names[0]) != tuple(names):
            raise CompressError(f"the layer-removal plan does not fit this model: {names} is not removable here")
    for names in plan["removed"]:
        _remove(base_model, tuple(names))
    return base_model


@STAGES.register("prune_layers")
def apply(model: nn.Module, cfg: PruneLayersStage, ctx: StageContext) -> StageResult:
    """The ``prune_layers`` stage."""
    pruned, plan = prune_layers(model, cfg, ctx)
    return StageResult(pruned, plan)
