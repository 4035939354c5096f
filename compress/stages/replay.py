"""Rebuild a compressed variant from its base model, its plan and its weights (no pickled module).

``plan.json`` lists the stages in order with their plans; the ones that change structure are
replayed on the freshly built base model: a prune plan re-removes the same channels
(:func:`compress.stages.prune.replay_plan`), a prune_layers plan the same layers
(:func:`compress.stages.prune_layers.replay_plan`), a quantize plan re-inserts the same quantizers
(:func:`compress.stages.quantize.rebuild_quantized`). Then ``weights.safetensors`` loads strictly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import CheckpointError
from compress.stages import prune_layers
from compress.stages.prune import replay_plan
from compress.stages.quantize import rebuild_quantized


def replay_structure(base_model: nn.Module, plan: dict[str, Any]) -> nn.Module:
    """Apply every structural stage of a variant plan (``{"stages": [{"type", "plan"}, ...]}``) in order."""
    model = base_model
    for st in plan.get("stages", []):
        if st["type"] == "prune":
            model = replay_plan(model, st["plan"])
        elif st["type"] == "prune_layers":
            model = prune_layers.replay_plan(model, st["plan"])
        elif st["type"] == "quantize":
            model = rebuild_quantized(model, st["plan"])
    return model


def rebuild_model(base_model: nn.Module, plan: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """The variant's model: structure replayed from ``plan``, then ``state_dict`` loaded strictly.

    Raises:
        CheckpointError: the weights do not fit the replayed structure.
    """
    model = replay_structure(base_model, plan)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit the replayed model: {str(exc).splitlines()[0]}") from None
    return model.eval()


def load_variant(folder: str | Path, weights: str | Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a finished variant from its folder: ``plan.json`` + ``weights.safetensors`` (or ``weights``:
    another file with the same tensors, e.g. the student checkpoint of a recipe that only exports it).

    Returns:
        The model (eval mode) and its plan.

    Raises:
        CheckpointError: missing or inconsistent files.
    """
    from compress.checkpoint import read_checkpoint
    from compress.nets import build_model

    p = Path(folder)
    try:
        plan = json.loads((p / "plan.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: no readable plan.json ({exc})") from None
    tensors, _ = read_checkpoint(p / "weights.safetensors" if weights is None else Path(weights))
    base = plan["base"]
    model = build_model(base["arch"], int(base["channels"]), **dict(base.get("arch_kwargs", {})))
    return rebuild_model(model, plan, tensors), plan
