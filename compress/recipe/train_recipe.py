"""Training recipes (``recipes/train-*.yaml``): one file reproduces one shipped checkpoint."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from compress.recipe.loader import load_file

if TYPE_CHECKING:
    from compress.train import TrainConfig

SCHEMA_VERSION = 1


ARCH_KWARGS_HELP = (
    "architecture options, e.g. act: relu; fast_arcnn also stride (2, 4), mid_kernel, mid_layers, features"
)
"""Meaning of ``arch_kwargs`` in training and compression recipes (one text for both schemas)."""

class Color(StrEnum):
    rgb = "rgb"
    y = "y"


class Loss(StrEnum):
    l1 = "l1"
    l2 = "l2"


class Init(StrEnum):
    reference = "reference"
    identity = "identity"
    kaiming = "kaiming"


class Precision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"


class TrainPrecision(StrEnum):
    """A training recipe's precision: also ``auto`` (compression stages name theirs: it is in the variant id)."""

    fp32 = "fp32"
    bf16 = "bf16"
    auto = "auto"  # bf16 where the CPU / GPU has native bf16, else fp32 (resolved when the run starts)


class ValPrecision(StrEnum):
    """How a training run's validation computes: fp32, or bf16 autocast (no ``auto``: the recipe says which)."""

    fp32 = "fp32"
    bf16 = "bf16"


class WeightsDtype(StrEnum):
    """How best.safetensors stores the parameters."""

    fp32 = "fp32"
    bf16 = "bf16"


class Strict(BaseModel):
    """Frozen, and unknown keys are errors (pydantic's default silently drops them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainData(Strict):
    """Where training and validation images come from."""

    train: str = Field("bsds500_train", description="dataset name or folder:<path> of training images")
    val: str = Field("bsds500_val", description="dataset used for validation PSNR every val_every steps")
    val_limit: int | None = Field(20, ge=1, description="first N validation images (None = all)")
    train_limit: int | None = Field(None, ge=1, description="first N training images (None = all)")


class TrainRecipe(Strict):
    """A training run. Keys mirror ``compress train``'s flags."""

    schema_version: int = Field(SCHEMA_VERSION, description="recipe format version")
    kind: str = Field("train", pattern="^train$", description="always 'train' for training recipes")
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="run name; checkpoints go to models/<name>")
    arch: str = Field(..., description="registered model name (see compress profile)")
    arch_kwargs: dict[str, Any] = Field(default_factory=dict, description=ARCH_KWARGS_HELP)
    color: Color = Field(Color.rgb, description="rgb, or y (MATLAB rgb2ycbcr luma)")
    qualities: tuple[int, ...] = Field((10,), min_length=1, description="JPEG qualities; several = quality-blind")
    data: TrainData = Field(default_factory=TrainData, description="training and validation images")  # type: ignore[arg-type]
    patch_size: int = Field(48, ge=8, le=512, description="side of the square training crops")
    batch_size: int = Field(16, ge=1, le=4096, description="crops per optimizer step")
    steps: int = Field(2000, ge=1, description="optimizer steps (Adam)")
    lr: float = Field(1e-3, gt=0, le=1, description="peak learning rate, after the linear warm-up")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="the cosine decays to lr x min_lr_ratio at the last step")
    warmup_steps: int = Field(100, ge=0, description="linear warm-up steps")
    grad_clip: float = Field(1.0, ge=0, description="clip the gradient norm to this (0 = off)")
    loss: Loss = Field(Loss.l2, description="l1 or l2 to the clean image (PSNR is an l2 metric)")
    init: Init = Field(
        Init.identity, description="reference (constructor's), identity (start as the input), kaiming"
    )
    init_from: str | None = Field(
        None, description="start from this checkpoint's weights (same arch; a path from the repository root, e.g. "
        "models/rdn-s-q10/best.safetensors) instead of init: a warm restart with this recipe's schedule")
    seed: int = Field(123, description="seeds the weights and the batch stream (batch i = f(seed, i))")
    augment: bool = Field(True, description="rescale 0.6-1.0, rot90 and flips")
    precision: TrainPrecision = Field(
        TrainPrecision.fp32,
        description="fp32, bf16 autocast (fast only with native bf16: AVX-512 BF16, AMX, a GPU), or auto "
        "(bf16 where native, else fp32; config.json records which ran)")
    channels_last: bool = Field(False, description="channels-last memory layout")
    val_every: int = Field(250, ge=1, description="validate (and keep the best checkpoint) every N steps")
    ckpt_every: int = Field(250, ge=1, description="save last.safetensors (with optimizer state) every N steps")
    weights_dtype: WeightsDtype = Field(
        WeightsDtype.fp32, description="dtype of the parameters in best.safetensors, the shipped weights: bf16 "
        "halves a large teacher's file (idcn-q10's score on 3 LIVE1 images moved 0.0002 dB); last.safetensors, "
        "the resume state, stays fp32")
    val_precision: ValPrecision = Field(
        ValPrecision.fp32, description="validation in fp32, or bf16 autocast with channels_last (several times "
        "faster for large models on a CPU with native bf16; the scores differ by bf16 rounding)")

    @field_validator("qualities")
    @classmethod
    def _q_range(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [q for q in v if not 1 <= q <= 100]
        if bad:
            raise ValueError(f"JPEG qualities must be in 1..100, got {bad}")
        return v

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        from compress.nets import MODELS
        from compress.registry import unknown_message

        if v not in MODELS:
            raise ValueError(unknown_message("model", v, tuple(MODELS.names())))
        return v


def load_train_recipe(path: str | Path) -> TrainRecipe:
    return load_file(TrainRecipe, path)


def recipe_settings(r: TrainRecipe) -> dict[str, Any]:
    """The :class:`compress.train.TrainConfig` fields a training recipe sets (outputs go to models/<name>)."""
    from compress.train import resolve_precision

    return {
        "arch": r.arch, "arch_kwargs": dict(r.arch_kwargs), "color": r.color.value, "qualities": r.qualities,
        "patch_size": r.patch_size, "batch_size": r.batch_size, "steps": r.steps, "lr": r.lr,
        "min_lr_ratio": r.min_lr_ratio, "warmup_steps": r.warmup_steps, "grad_clip": r.grad_clip,
        "loss": r.loss.value, "init": r.init.value, "init_from": r.init_from, "seed": r.seed, "augment": r.augment,
        "precision": resolve_precision(r.precision.value), "channels_last": r.channels_last, "val_dataset": r.data.val,
        "val_limit": r.data.val_limit, "val_every": r.val_every, "ckpt_every": r.ckpt_every,
        "val_precision": r.val_precision.value, "weights_dtype": r.weights_dtype.value,
        "image_limit": r.data.train_limit, "outputs_dir": str(Path("models") / r.name),
    }


def recipe_images_dir(r: TrainRecipe, data_root: str | None = None) -> str:
    """The folder of the recipe's training images (``data.train``: a dataset name or ``folder:PATH``)."""
    from compress.data.datasets import dataset_folder, get_spec

    if r.data.train.startswith("folder:"):
        return r.data.train.removeprefix("folder:")
    return str(dataset_folder(get_spec(r.data.train), data_root))


def train_config(path: str | Path, *, data_root: str | None = None, **overrides: Any) -> TrainConfig:
    """The training settings of the recipe at ``path``, with ``overrides`` applied."""
    from compress.train import TrainConfig as Config

    r = load_train_recipe(path)
    kw = {**recipe_settings(r), "images_dir": recipe_images_dir(r, data_root), "data_root": data_root, **overrides}
    return Config(**kw)
