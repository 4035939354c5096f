"""Structured channel pruning with torch-pruning's dependency graph (``MetaPruner``).

The plan is torch-pruning's pruning history (per step: module name, whether output channels were
pruned, the removed indices) plus the example-input shape used to trace the graph. It is plain JSON
and :func:`replay_plan` re-applies it to a fresh base model: the same channels go, so the shapes are
identical and, with the base model's weights, so are the weights. Loading the saved state dict into
the replayed model restores a pruned and fine-tuned variant without pickling any module.

Every layer whose output width the architecture fixes is ignored: the output layer (it writes the
image) and, for IDCN, the layers listed by ``fixed_width_layers()``. ConvTranspose2d (Fast ARCNN's
last layer) and PReLU (one shared slope, nothing to prune) are handled by torch-pruning itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.errors import CompressError
from compress.recipe.schema import Importance, PruneStage
from compress.registry import Registry
from compress.stages.base import STAGES, StageContext, StageResult, output_layer

PLAN_KIND = "torch-pruning-history/1"

IMPORTANCES: Registry[Callable[[], Any]] = Registry("importance")
"""Importance criterion name -> factory of a torch-pruning importance (imported lazily)."""


def _l1() -> Any:
    import torch_pruning as tp

    return tp.importance.MagnitudeImportance(p=1)


def _l2() -> Any:
    import torch_pruning as tp

    return tp.importance.MagnitudeImportance(p=2)


def _taylor() -> Any:
    import torch_pruning as tp

    return tp.importance.TaylorImportance()


def _lamp() -> Any:
    import torch_pruning as tp

    return tp.importance.LAMPImportance(p=2)


def _random() -> Any:
    import torch_pruning as tp

    return tp.importance.RandomImportance()


for _name, _factory in {
    Importance.l1: _l1, Importance.l2: _l2, Importance.taylor: _taylor, Importance.lamp: _lamp,
    Importance.random: _random,
}.items():
    IMPORTANCES.add(_name.value, _factory)

NEEDS_GRADIENTS = frozenset({Importance.taylor.value})
"""Criteria that score channels from gradients of the loss (computed on training patches)."""


def fixed_width_layers(model: nn.Module) -> list[nn.Module]:
    """Layers whose output channels must stay: the output layer plus the model's own list, if it has one."""
    fixed = [output_layer(model)]
    own = getattr(model, "fixed_width_layers", None)
    if callable(own):
        fixed += [m for m in own() if all(m is not f for f in fixed)]
    return fixed


def _named(model: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    from compress.registry import unknown_message

    modules = dict(model.named_modules())
    out = []
    for n in names:
        if n not in modules:
            raise CompressError(unknown_message("layer", n, [k for k in modules if k]))
        out.append(modules[n])
    return out


def count_macs(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """``(MACs, params)`` of one forward at the example's size, counted by torch-pruning."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def channel_widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every convolution, by module name."""
    return {n: int(m.out_channels) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)}


def _accumulate_gradients(model: nn.Module, cfg: PruneStage, ctx: StageContext, step: int) -> None:
    """Gradients of the L2 loss on training patches, which the Taylor criterion reads."""
    model.zero_grad(set_to_none=True)
    model.train()
    for x, y in ctx.patches(cfg.calibration_batches, cfg.batch_size, cfg.patch_size, seed=1000 + step):
        F.mse_loss(model(x), y).backward()


def prune_model(model: nn.Module, cfg: PruneStage, ctx: StageContext) -> tuple[nn.Module, dict[str, Any]]:
    """Prune ``model`` in place as ``cfg`` says; returns the model and the replayable plan."""
    import torch_pruning as tp

    example = ctx.example_input()
    ignored = fixed_width_layers(model) + _named(model, cfg.ignored_layers)
    macs0, params0 = count_macs(model, example)
    widths0 = channel_widths(model)
    by_target = cfg.target_macs is not None
    # A MACs target has no closed form: prune in small equal steps towards max_ratio and stop at the target.
    steps = max(cfg.iterative_steps, 32) if by_target else cfg.iterative_steps
    ratio = cfg.max_ratio if by_target else float(cfg.ratio or 0.0)
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=IMPORTANCES.get(cfg.importance.value)(),
        pruning_ratio=ratio,
        global_pruning=cfg.global_pruning,
        max_pruning_ratio=cfg.max_ratio,
        iterative_steps=steps,
        ignored_layers=ignored,
        round_to=cfg.round_to,
    )
    macs = macs0
    done = 0
    for i in range(steps):
        if by_target and macs <= (cfg.target_macs or 0.0) * macs0:
            break
        if cfg.importance.value in NEEDS_GRADIENTS:
            _accumulate_gradients(model, cfg, ctx, i)
        pruner.step()
        model.zero_grad(set_to_none=True)
        macs, _ = count_macs(model, example)
        done += 1
    model.eval()
    history = [[str(name), bool(out), [int(j) for j in idx]] for name, out, idx in pruner.pruning_history()]
    macs1, params1 = count_macs(model, example)
    plan = {
        "kind": PLAN_KIND,
        "example_input": list(example.shape),
        "history": history,
        "importance": cfg.importance.value,
        "steps_done": done,
        "widths_before": widths0,
        "widths_after": channel_widths(model),
        "params_before": params0,
        "params_after": params1,
        "macs_ratio": macs1 / macs0 if macs0 else 1.0,
    }
    return model, plan


def replay_plan(base_model: nn.Module, plan: dict[str, Any]) -> nn.Module:
    """Re-apply a saved pruning plan to a fresh base model (in place), giving the pruned shapes.

    With the weights the plan was made from, the result equals the pruned model exactly; load the
    variant's saved state dict into it to restore a fine-tuned variant.

    Raises:
        CompressError: not a pruning plan, or one that does not fit this model.
    """
    import torch_pruning as tp

    if plan.get("kind") != PLAN_KIND:
        raise CompressError(f"not a pruning plan (kind {plan.get('kind')!r}, expected {PLAN_KIND!r})")
    example = torch.zeros(*plan["example_input"])
    dg = tp.DependencyGraph().build_dependency(base_model, example_inputs=example)
    try:
        dg.load_pruning_history([(name, bool(out), list(idx)) for name, out, idx in plan["history"]])
    except (AttributeError, IndexError, RuntimeError) as exc:
        raise CompressError(f"the pruning plan does not fit this model: {exc}") from None
    widths = channel_widths(base_model)
    if "widths_after" in plan and widths != plan["widths_after"]:
        raise CompressError(f"replayed widths {widths} differ from the plan's {plan['widths_after']}")
    return base_model


@STAGES.register("prune")
def apply(model: nn.Module, cfg: PruneStage, ctx: StageContext) -> StageResult:
    """The ``prune`` stage."""
    pruned, plan = prune_model(model, cfg, ctx)
    return StageResult(pruned, plan)
