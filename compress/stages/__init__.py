"""Compression stages: each takes a model and returns a model plus an inspectable plan.

Contract (see :mod:`compress.stages.base`): ``apply(model, cfg, ctx) -> StageResult``; a stage
never pickles a module; what it did is a JSON-able plan saved next to a state_dict, from which the
compressed model is rebuilt on a fresh base model (:func:`compress.stages.replay.rebuild_model`).
Importing this package registers every stage in :data:`STAGES`; heavy libraries (torch-pruning,
brevitas, nncf, onnxruntime) are imported only when a stage runs.
"""

from compress.stages import distill as distill  # registers "distill"
from compress.stages import export as export  # registers "export"
from compress.stages import finetune as finetune  # registers "finetune"
from compress.stages import prune as prune  # registers "prune"
from compress.stages import prune_layers as prune_layers  # registers "prune_layers"
from compress.stages import quantize as quantize  # registers "quantize"
from compress.stages.base import STAGES, StageContext, StageResult
from compress.stages.prune import IMPORTANCES, replay_plan
from compress.stages.quantize import QUANTIZERS

__all__ = ["IMPORTANCES", "QUANTIZERS", "STAGES", "StageContext", "StageResult", "replay_plan"]
