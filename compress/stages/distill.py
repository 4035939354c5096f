"""Knowledge distillation: the student learns the teacher's output, the ground truth and feature hints.

Loss = ``teacher_l1 * L1(s, t) + teacher_l2 * L2(s, t) + gt_l1 * L1(s, y) + gt_l2 * L2(s, y)`` plus,
for each hint, ``weight * L(adapter(student feature), teacher feature)``. An adapter is a 1x1
convolution from the student layer's channels to the teacher layer's; when the two features differ
in size (Fast ARCNN works at half resolution) the teacher's is resized to the student's (area
averaging). Adapters are trained with the student (``Trainer(extra_params=...)``) but live only in
this stage: they are never attached to the student, so they never reach its weights or its ONNX.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.recipe.schema import DistillStage, Loss
from compress.stages.base import STAGES, StageContext, StageResult, train_stage

_CRITERIA: dict[Loss, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    Loss.l1: F.l1_loss,
    Loss.l2: F.mse_loss,
}


class _Features:
    """Keeps the latest output of the named modules, through forward hooks removed on close."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        modules = dict(model.named_modules())
        self.out: dict[str, torch.Tensor] = {}
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str) -> Callable[..., None]:
        def fn(module: nn.Module, inp: Any, out: torch.Tensor) -> None:
            self.out[name] = out

        return fn

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def make_adapters(
    student: nn.Module, teacher: nn.Module, cfg: DistillStage, example: torch.Tensor
) -> nn.ModuleList:
    """One 1x1 conv per hint, sized by running both models once on ``example``."""
    s_feats = _Features(student, [h.student for h in cfg.hints])
    t_feats = _Features(teacher, [h.teacher for h in cfg.hints])
    try:
        with torch.no_grad():
            student(example)
            teacher(example)
        adapters = nn.ModuleList(
            nn.Conv2d(s_feats.out[h.student].shape[1], t_feats.out[h.teacher].shape[1], kernel_size=1)
            for h in cfg.hints
        )
    finally:
        s_feats.close()
        t_feats.close()
    return adapters


def distill_loss(
    teacher: nn.Module, cfg: DistillStage, adapters: nn.ModuleList, s_feats: _Features, t_feats: _Features
) -> Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The stage's ``loss_fn(model, x, y, out)`` for :class:`compress.train.Trainer`."""

    bf16 = cfg.precision.value == "bf16"

    def fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            t_out = teacher(x)
        t_out = t_out.float()
        out = out.float()
        loss = out.new_zeros(())
        for w, crit, target in (
            (cfg.teacher_l1, F.l1_loss, t_out), (cfg.teacher_l2, F.mse_loss, t_out),
            (cfg.gt_l1, F.l1_loss, y), (cfg.gt_l2, F.mse_loss, y),
        ):
            if w > 0:
                loss = loss + w * crit(out, target)
        for hint, adapter in zip(cfg.hints, adapters, strict=True):
            s = adapter(s_feats.out[hint.student].float())  # bf16 under autocast; the adapter trains in fp32
            t = t_feats.out[hint.teacher].float()
            if t.shape[-2:] != s.shape[-2:]:
                t = F.interpolate(t, size=s.shape[-2:], mode="area")
            loss = loss + hint.weight * _CRITERIA[hint.loss](s, t)
        return loss

    return fn


@STAGES.register("distill")
def apply(model: nn.Module, cfg: DistillStage, ctx: StageContext) -> StageResult:
    """The ``distill`` stage."""
    teacher = ctx.teacher(cfg.teacher)
    torch.manual_seed(cfg.seed)
    adapters = make_adapters(model, teacher, cfg, ctx.example_input())
    s_feats = _Features(model, [h.student for h in cfg.hints])
    t_feats = _Features(teacher, [h.teacher for h in cfg.hints])
    try:
        record = train_stage(
            model, cfg, ctx, loss_fn=distill_loss(teacher, cfg, adapters, s_feats, t_feats),
            extra_params=list(adapters.parameters()),
        )
    finally:
        s_feats.close()
        t_feats.close()
    model.eval()
    hints = [
        {"student": h.student, "teacher": h.teacher, "weight": h.weight, "loss": h.loss.value,
         "adapter": [a.in_channels, a.out_channels]}
        for h, a in zip(cfg.hints, adapters, strict=True)
    ]
    weights = {k: getattr(cfg, k) for k in ("teacher_l1", "teacher_l2", "gt_l1", "gt_l2")}
    return StageResult(model, {"teacher": cfg.teacher, "weights": weights, "hints": hints, **record})
