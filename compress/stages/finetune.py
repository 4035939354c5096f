"""Fine-tuning on the ground truth, through the shared training loop (typically after pruning)."""

from __future__ import annotations

from torch import nn

from compress.recipe.schema import FinetuneStage
from compress.stages.base import STAGES, StageContext, StageResult, train_stage


@STAGES.register("finetune")
def apply(model: nn.Module, cfg: FinetuneStage, ctx: StageContext) -> StageResult:
    """The ``finetune`` stage: ``cfg.steps`` of Adam on JPEG -> clean patches with an L1 or L2 loss."""
    record = train_stage(model, cfg, ctx, loss=cfg.loss.value)
    model.eval()
    return StageResult(model, {"loss": cfg.loss.value, **record})
