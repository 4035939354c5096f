"""What every stage shares: the contract, the stage registry, the context, and training through the one loop.

A stage is a function ``apply(model, cfg, ctx) -> StageResult``: it takes a model (it may modify it),
its validated config (one of the :mod:`compress.recipe.schema` stage models) and a
:class:`StageContext`, and returns the new model plus a JSON-able plan of what it did. Fine-tuning,
distillation and QAT all train through :class:`compress.train.Trainer`, fed with patches from the
recipe's training set by :class:`PatchTrainer`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from compress.errors import CheckpointError, DataError
from compress.recipe.schema import MissingPolicy, Recipe, Student, Teacher, TrainParams
from compress.registry import Registry
from compress.train import LossFn, TrainConfig, Trainer

log = logging.getLogger(__name__)

EXAMPLE_SIZE = 32
"""Side of the example input used for graph tracing (pruning dependency graphs)."""


@dataclass(frozen=True)
class StageResult:
    """A stage's output: the model and a JSON-able plan of what was done (saved in plan.json)."""

    model: nn.Module
    plan: dict[str, Any]


@dataclass
class StageContext:
    """What a stage may use besides the model and its config.

    Attributes:
        recipe: the resolved recipe of the variant being run.
        work_dir: the variant's folder; stage ``i`` writes its logs under ``work_dir/stages/<i>-<type>``.
        data_root: the data root (default ``$COMPRESS_DATA``).
        threads: torch threads for training.
        progress: show progress bars.
        stage_index: index of the running stage.
        quant: the quantization config once a quantize stage ran (backend, bits, layers), else None.
        float_model: the model as it was before quantization (same shapes; used for the cost profile).
        train_wall_s: seconds spent in training loops so far.
        input_hashes: the SHA-256 of the student and teacher checkpoints (:func:`compress.run.run_key`'s
            inputs), so training stages need not hash them again; None: hashed when needed.
        reuse_stages: a training stage may copy the finished stage of another variant of the recipe with the
            same :func:`stage_key` instead of training (off for forced runs).
        notes: warnings worth keeping with the results (e.g. a fallback dataset).
    """

    recipe: Recipe
    work_dir: Path
    data_root: str | None = None
    threads: int = 1
    progress: bool = False
    stage_index: int = 0
    quant: dict[str, Any] | None = None
    float_model: nn.Module | None = None
    train_wall_s: float = 0.0
    reuse_stages: bool = True
    input_hashes: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    _images: list[NDArray[np.uint8]] | None = None
    _teachers: dict[str, nn.Module] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        """Model input channels (3 for rgb, 1 for y)."""
        return self.recipe.data.channels

    def stage_dir(self) -> Path:
        """This stage's folder (created)."""
        st = self.recipe.stages[self.stage_index] if self.stage_index < len(self.recipe.stages) else None
        kind = getattr(st, "type", "stage")
        p = self.work_dir / "stages" / f"{self.stage_index}-{kind}"
        p.mkdir(parents=True, exist_ok=True)
        return p

    def note(self, msg: str) -> None:
        """Log a warning and keep it for the variant's record."""
        log.warning(msg)
        self.notes.append(msg)

    def example_input(self, size: int = EXAMPLE_SIZE) -> torch.Tensor:
        """A deterministic ``(1, C, size, size)`` input in [0, 1] for tracing."""
        g = torch.Generator().manual_seed(0)
        return torch.rand(1, self.channels, size, size, generator=g)

    def training_images(self) -> list[NDArray[np.uint8]]:
        """The recipe's training images, decoded once per variant (RGB or gray uint8)."""
        if self._images is None:
            d = self.recipe.data
            ds = open_dataset_or_fallback(d.train, self.data_root, d.train_limit, d.fallback, self.note)
            self._images = [ds.load(item) for item in ds]
        return self._images

    def patches(self, steps: int, batch_size: int, patch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """``steps`` batches ``(jpeg, clean)`` of training patches, a pure function of ``seed``."""
        from compress.data.patches import PatchBatches, PatchConfig

        d = self.recipe.data
        pcfg = PatchConfig(patch_size, batch_size, d.qualities, d.color.value, True, seed)
        ds = PatchBatches(self.training_images(), pcfg)
        for i in range(steps):
            yield ds[i]

    def teacher(self, name: str) -> nn.Module:
        """The named teacher, loaded once, in eval mode with gradients off."""
        if name not in self._teachers:
            m, _ = load_student_or_teacher(self.recipe.teachers[name], self.channels, f"teacher {name!r}", self.note)
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
            self._teachers[name] = m
        return self._teachers[name]


StageFn = Callable[[nn.Module, Any, StageContext], StageResult]

STAGES: Registry[StageFn] = Registry("stage")
"""Stage type (``prune``, ``distill``...) -> ``apply`` function; filled by the modules of this package."""


# ---------------------------------------------------------------------------------------------
# data and models


def open_dataset_or_fallback(
    name: str,
    data_root: str | Path | None,
    limit: int | None,
    fallback: str | None,
    warn: Callable[[str], None] = log.warning,
) -> Any:
    """Open ``name``; when its files are missing and ``fallback`` is set, open ``fallback`` instead, with a warning.

    Raises:
        DataError: the data is missing and there is no fallback.
    """
    from compress.data.datasets import NOT_COMPARABLE, open_dataset

    try:
        return open_dataset(name, data_root=data_root, limit=limit)
    except DataError as exc:
        if fallback is None or fallback == name:
            raise
        warn(f"{exc}; using dataset {fallback!r} instead ({NOT_COMPARABLE})")
        return open_dataset(fallback, data_root=data_root, limit=limit)


def load_student_or_teacher(
    spec: Student | Teacher, channels: int, who: str, warn: Callable[[str], None] = log.warning
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model a recipe names: from its checkpoint, or freshly initialised.

    Returns:
        The model and how to build its base again: ``{"arch", "channels", "arch_kwargs", "source"}``
        (``source`` is the checkpoint path, relative to the working directory when inside it, or ``fresh``).

    Raises:
        CheckpointError: a missing file (unless ``if_missing: init``), or weights of another architecture.
    """
    from compress.checkpoint import load_model
    from compress.nets import build_model
    from compress.recipe.expand import resolve_checkpoint
    from compress.train import init_model_

    if spec.checkpoint is not None:
        path = resolve_checkpoint(spec.checkpoint)
        if path.is_file():
            model, meta = load_model(path, spec.arch)
            got = _in_channels(model)
            if got != channels:
                raise CheckpointError(f"{path}: {who} takes {got} channel(s), the recipe's data.color needs {channels}")
            kwargs = json.loads(meta.get("arch_kwargs", "{}"))
            here = Path.cwd()  # inside the working directory: recorded relative to it (a clone elsewhere reads it)
            source = path.relative_to(here) if path.is_relative_to(here) else path
            return model, {"arch": meta.get("arch", spec.arch), "channels": got, "arch_kwargs": kwargs,
                           "source": str(source)}
        if spec.if_missing is MissingPolicy.error:
            raise CheckpointError(f"{path}: {who} checkpoint not found")
        warn(f"{who}: checkpoint {path} not found; using a FRESHLY INITIALISED {spec.arch} (results mean little)")
    model = build_model(spec.arch, channels, **dict(spec.arch_kwargs))
    init_model_(model, str(getattr(spec, "init", "kaiming")))
    return model, {"arch": spec.arch, "channels": channels, "arch_kwargs": dict(spec.arch_kwargs), "source": "fresh"}


def _in_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            return int(m.in_channels)
    return -1


def output_layer(model: nn.Module) -> nn.Module:
    """The last convolution in module order: it writes the image, so its width is fixed."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    if not convs:
        raise ValueError("model has no convolution")
    return convs[-1]


# ---------------------------------------------------------------------------------------------
# training


class PatchTrainer(Trainer):
    """The training loop fed from a stage context's training images instead of a folder.

    Its checkpoints (``save_fn`` = :func:`_save_weights`) hold the model, the optimizer state and the
    stage's extra parameters (distillation adapters), so a stage resumes exactly where it stopped.
    """

    def __init__(self, cfg: TrainConfig, ctx: StageContext, **kwargs: Any) -> None:
        super().__init__(cfg, **kwargs)
        self.ctx = ctx
        self.extra_params: list[nn.Parameter] = list(kwargs.get("extra_params") or [])

    def training_images(self) -> list[NDArray[np.uint8]]:
        """The recipe's training images, decoded once per variant by the context."""
        return self.ctx.training_images()

    def batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batch ``i`` depends on ``(seed, i)`` only, as in the folder-fed loop."""
        ds = self.patch_batches()
        for i in range(start, self.cfg.steps):
            yield ds[i]

    def resume_tensors(self) -> dict[str, torch.Tensor]:
        """The optimizer's tensors and the extra parameters' values."""
        return {**super().resume_tensors(), **_extra_param_tensors(self.extra_params)}

    def load_resume_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        super().load_resume_tensors(tensors)
        with torch.no_grad():
            for i, p in enumerate(self.extra_params):
                key = f"{EXTRA_PARAM_KEY}{i}"
                if key not in tensors:
                    raise CheckpointError(f"{self.out / 'last.safetensors'}: no {key} (extra parameter {i})")
                p.copy_(tensors[key])


EXTRA_PARAM_KEY = "_param."
"""Key prefix of a stage's extra parameters (adapters) among a checkpoint's extra tensors (stored under
``compress.checkpoint.EXTRA_PREFIX``, so the model's loader skips them)."""

STAGE_CKPT_EVERY = 1000
"""Training stages checkpoint (model, optimizer, adapters) every this many steps, and at the end."""


def _extra_param_tensors(params: list[nn.Parameter]) -> dict[str, torch.Tensor]:
    return {f"{EXTRA_PARAM_KEY}{i}": p.detach().cpu().contiguous() for i, p in enumerate(params)}


def _save_weights(path: Path, model: nn.Module, meta: dict[str, Any], extra: dict[str, torch.Tensor]) -> None:
    """A stage checkpoint: the model's tensors, plus the optimizer's (``extra``) in ``last.safetensors``."""
    from safetensors.torch import save

    from compress.checkpoint import EXTRA_PREFIX
    from compress.fsio import atomic_write_bytes

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({EXTRA_PREFIX + k: v.detach().cpu().contiguous() for k, v in extra.items()})
    text = {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in meta.items()}
    atomic_write_bytes(path, save(tensors, metadata=text))


def state_fingerprint(model: nn.Module, extra_params: list[nn.Parameter] | None = None) -> str:
    """SHA-256 of a model's state-dict tensors (names, shapes, dtypes, values) and of extra parameters."""
    import hashlib

    h = hashlib.sha256()
    items = list(model.state_dict().items()) + [(f"extra.{i}", p) for i, p in enumerate(extra_params or [])]
    for k, v in items:
        t = v.detach().cpu()
        h.update(f"{k}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def stage_key(ctx: StageContext, fingerprint: str) -> str:
    """SHA-256 of everything a training stage's result depends on.

    The model (and adapters) it starts from (``fingerprint``), this stage's settings and those of the
    stages before it, the student and teacher specs with the SHA-256 of their checkpoints, the training
    data settings and data root, the recipe seed and the engine version; not what comes later (later
    stages, export checks, evaluation sets) and not the thread count (which changes only the order of
    float sums). Two variants with equal keys train the stage identically.
    """
    import hashlib
    import os

    from compress.recipe.expand import canonical_json
    from compress.run import ENGINE_VERSION, _input_hash

    r = ctx.recipe
    hashes = ctx.input_hashes or {"student": _input_hash(r.student),
                                  "teachers": {n: _input_hash(t) for n, t in r.teachers.items()}}
    data = r.data.model_dump(mode="json")
    doc = {
        "engine": ENGINE_VERSION,
        "start": fingerprint,
        "stages": [st.model_dump(mode="json") for st in r.stages[: ctx.stage_index + 1]],
        "student": [r.student.model_dump(mode="json"), hashes["student"]],
        "teachers": {n: [t.model_dump(mode="json"), hashes["teachers"][n]] for n, t in sorted(r.teachers.items())},
        "data": {k: data[k] for k in ("train", "train_limit", "qualities", "color", "fallback")},
        "data_root": str(ctx.data_root or os.environ.get("COMPRESS_DATA", "")),
        "seed": r.seed,
    }
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def _finished_twin(out: Path, key: str, steps: int) -> Path | None:
    """A finished stage of another variant of this recipe with the same :func:`stage_key`, if any."""
    variants = out.parent.parent.parent
    for start in sorted(variants.glob(f"*/stages/{out.name}/start.json")):
        twin = start.parent
        if twin == out:
            continue
        try:
            rec = json.loads(start.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("stage_key") == key and rec.get("finished_steps") == steps \
                and (twin / "last.safetensors").is_file():
            return twin
    return None


def _copy_twin(twin: Path, out: Path) -> bool:
    """Copy a finished twin's checkpoints into ``out`` (all but its ``start.json``); False if that failed."""
    import shutil

    try:
        for f in twin.iterdir():
            if f.is_file() and f.name != "start.json":
                shutil.copy2(f, out / f".{f.name}.part")
                (out / f".{f.name}.part").replace(out / f.name)
    except OSError as exc:
        log.warning("could not reuse %s (%s): training the stage", twin, exc)
        for f in out.glob(".*.part"):
            f.unlink(missing_ok=True)
        (out / "last.safetensors").unlink(missing_ok=True)
        return False
    return True


def _keep_or_clear_stage_dir(out: Path, fingerprint: str) -> bool:
    """Keep a stage folder's checkpoint only if it was started from this very model; True if kept.

    ``start.json`` records the fingerprint of the model (and adapters) the stage started from. A
    checkpoint left by a run that started elsewhere (other pruned channels, other calibration) is
    deleted with its folder, so a resumed stage never continues someone else's training.
    """
    import shutil

    start = out / "start.json"
    try:
        kept = json.loads(start.read_text()).get("fingerprint") == fingerprint
    except (OSError, ValueError):
        kept = False
    if not kept:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        start.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
    return kept and (out / "last.safetensors").is_file()


def train_stage(
    model: nn.Module,
    cfg: TrainParams,
    ctx: StageContext,
    *,
    loss: str = "l2",
    loss_fn: LossFn | None = None,
    extra_params: list[nn.Parameter] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place for ``cfg.steps`` with the shared loop; returns what the plan records."""
    d = ctx.recipe.data
    tcfg = TrainConfig(
        arch=ctx.recipe.student.arch,
        outputs_dir=str(ctx.stage_dir()),
        color=d.color.value,
        qualities=tuple(d.qualities),
        patch_size=cfg.patch_size,
        batch_size=cfg.batch_size,
        steps=cfg.steps,
        lr=cfg.lr,
        min_lr_ratio=cfg.min_lr_ratio,
        warmup_steps=cfg.warmup_steps,
        grad_clip=cfg.grad_clip,
        loss=loss,
        threads=ctx.threads,
        seed=cfg.seed,
        augment=True,
        precision=cfg.precision.value,
        channels_last=cfg.channels_last,
        val_dataset="",
        ckpt_every=min(cfg.steps, STAGE_CKPT_EVERY),
    )
    out = Path(tcfg.outputs_dir)
    fingerprint = state_fingerprint(model, extra_params)
    key = stage_key(ctx, fingerprint)
    resumable = _keep_or_clear_stage_dir(out, fingerprint)
    start = json.loads((out / "start.json").read_text())
    reused_from = None
    if ctx.reuse_stages and start.get("finished_steps") != cfg.steps:
        twin = _finished_twin(out, key, cfg.steps)
        if twin is not None and _copy_twin(twin, out):
            resumable, reused_from = True, twin.parent.parent.name
            ctx.note(f"stage {ctx.stage_index} ({out.name}) reused from variant {reused_from}: same start model, "
                     "settings and data")
    trainer = PatchTrainer(
        tcfg, ctx, model=model, loss_fn=loss_fn, extra_params=extra_params, save_fn=_save_weights,
        progress=ctx.progress,
    )
    state = trainer.fit(resume=resumable)
    if resumable and reused_from is None:
        log.info("stage %d resumed from %s", ctx.stage_index, out / "last.safetensors")
    (out / "start.json").write_text(
        json.dumps({"fingerprint": fingerprint, "stage_key": key, "finished_steps": state.step}) + "\n"
    )
    ctx.train_wall_s += state.wall_s
    plan: dict[str, Any] = {"steps": state.step, "wall_s": round(state.wall_s, 2)}
    if reused_from is not None:
        plan["reused_from"] = reused_from
    return plan
