"""Compression recipes (``recipes/*.yaml``): a student, its teachers, data, ordered stages and a sweep.

A recipe is data: :func:`compress.recipe.compile.load_recipe` reads it with the safe YAML loader,
validates it into the frozen objects below (unknown keys, wrong types and out-of-range values are
errors naming file, line and key), cross-checks what one key cannot know alone (a distill stage's
teacher is declared, a hint layer exists, checkpoint files exist) and expands the sweep into
variants. Nothing here touches a model's weights.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from compress.recipe.train_recipe import ARCH_KWARGS_HELP, Color, Init, Loss, Precision, Strict

SCHEMA_VERSION = 1
"""The recipe format version this code reads (``schema_version``)."""
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class StageType(StrEnum):
    """What a stage does; the ``type`` key of every stage."""

    prune = "prune"
    prune_layers = "prune_layers"
    distill = "distill"
    finetune = "finetune"
    quantize = "quantize"
    export = "export"


class Importance(StrEnum):
    """Channel importance criteria of torch-pruning (see :data:`compress.stages.prune.IMPORTANCES`)."""

    l1 = "l1"
    l2 = "l2"
    taylor = "taylor"
    lamp = "lamp"
    random = "random"


class Backend(StrEnum):
    """Quantization library."""

    brevitas = "brevitas"
    nncf = "nncf"


class QuantMode(StrEnum):
    """Quantization-aware training, or post-training quantization (calibration only)."""

    qat = "qat"
    ptq = "ptq"


class ActMode(StrEnum):
    """How activations map onto 8-bit integers: symmetric (zero point 0) or asymmetric (a zero point per tensor)."""

    symmetric = "symmetric"
    asymmetric = "asymmetric"


class OverflowFix(StrEnum):
    """NNCF's guard against int8 saturation on CPUs without VNNI: weights of the chosen layers use 7 of 8 bits."""

    disable = "disable"
    first_layer = "first_layer"
    enable = "enable"


class ExportFormat(StrEnum):
    """ONNX flavour: float graph, or QuantizeLinear/DequantizeLinear pairs onnxruntime can run."""

    fp32 = "fp32"
    qdq = "qdq"


class MissingPolicy(StrEnum):
    """What to do when a checkpoint file does not exist."""

    error = "error"
    init = "init"


class SweepMode(StrEnum):
    """How sweep axes combine: every combination (grid) or element by element (zip)."""

    grid = "grid"
    zip = "zip"


# ---------------------------------------------------------------------------------------------
# models


def _known_arch(v: str) -> str:
    from compress.checkpoint import normalize_arch
    from compress.nets import MODELS
    from compress.registry import unknown_message

    name = normalize_arch(v)
    if name not in MODELS:
        raise ValueError(unknown_message("model", v, tuple(MODELS.names())))
    return name


class Student(Strict):
    """The model to compress."""

    arch: str = Field(..., description="registered model name (arcnn, fast_arcnn, arcnn_relu, ...)")
    checkpoint: str | None = Field(
        None,
        description="weights: a .safetensors path, or a models/ name (models/<name>/best.safetensors); "
        "null = freshly initialised",
    )
    arch_kwargs: dict[str, Any] = Field(default_factory=dict, description=ARCH_KWARGS_HELP)
    if_missing: MissingPolicy = Field(
        MissingPolicy.error,
        description="when the checkpoint file does not exist: error, or init (fresh weights, with a warning)",
    )
    init: Init = Field(Init.identity, description="initialisation of fresh weights (reference, identity, kaiming)")

    _arch = field_validator("arch")(_known_arch)


class Teacher(Strict):
    """A model that distillation stages learn from (never compressed)."""

    arch: str = Field(..., description="registered model name (rdn_s, idcn_s, rdn, idcn, or a student)")
    checkpoint: str | None = Field(None, description="weights path or models/ name; null = freshly initialised")
    arch_kwargs: dict[str, Any] = Field(default_factory=dict, description="architecture options")
    if_missing: MissingPolicy = Field(MissingPolicy.error, description="error, or init when the file is missing")

    _arch = field_validator("arch")(_known_arch)


# ---------------------------------------------------------------------------------------------
# data


def _known_dataset(v: str) -> str:
    from compress.data.datasets import get_spec
    from compress.errors import CompressError

    try:
        get_spec(v)
    except CompressError as exc:  # the registry's message lists the valid names and the closest one
        raise ValueError(str(exc)) from None
    return v


class DataConfig(Strict):
    """Training images, evaluation sets, JPEG qualities, colour and protocol."""

    train: str = Field("bsds500_train", description="dataset of training patches (fine-tuning, distillation, QAT)")
    train_limit: int | None = Field(None, ge=1, description="use only the first N training images (null = all)")
    eval: tuple[Annotated[str, AfterValidator(_known_dataset)], ...] = Field(
        ("live1",), min_length=1, description="datasets every variant is evaluated on"
    )
    qualities: tuple[Annotated[int, Field(ge=1, le=100)], ...] = Field(
        (10,), min_length=1, description="JPEG qualities 1..100 (training and evaluation)"
    )
    color: Color = Field(Color.rgb, description="rgb, or y (MATLAB rgb2ycbcr luma); sets the model's channels")
    protocol: str | None = Field(
        None, description="evaluation protocol (idcn-rgb, arcnn-y, fbcnn-y); null = idcn-rgb for rgb, arcnn-y for y"
    )
    limit: int | None = Field(None, ge=1, description="evaluate only the first N images of each set (null = all)")
    fallback: str | None = Field(
        "embedded",
        description="dataset used (with a warning) when a set's folder is missing; null = missing data is an error",
    )
    tile: int | None = Field(None, ge=64, description="tile size for whole-image inference (null = whole image)")

    @field_validator("train", "fallback")
    @classmethod
    def _dataset(cls, v: str | None) -> str | None:
        return None if v is None else _known_dataset(v)

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from compress.protocols import PROTOCOLS
        from compress.registry import unknown_message

        if v not in PROTOCOLS:
            raise ValueError(unknown_message("protocol", v, tuple(PROTOCOLS.names())))
        return v

    @property
    def channels(self) -> int:
        """Model input channels for this colour."""
        return 3 if self.color is Color.rgb else 1

    @property
    def protocol_name(self) -> str:
        """The protocol actually used."""
        return self.protocol or ("idcn-rgb" if self.color is Color.rgb else "arcnn-y")


# ---------------------------------------------------------------------------------------------
# stages


class StageBase(Strict):
    """Keys every stage has."""

    label: str | None = Field(None, pattern=NAME_PATTERN, description="optional short name of the stage in logs")


class TrainParams(StageBase):
    """Keys of every stage that trains (finetune, distill, quantize with mode qat)."""

    steps: int = Field(200, ge=1, le=10_000_000, description="optimizer steps")
    lr: float = Field(1e-4, gt=0, le=1, description="peak learning rate (Adam)")
    batch_size: int = Field(16, ge=1, le=4096, description="patches per step")
    patch_size: int = Field(48, ge=8, le=512, description="side of the square training patches")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps, then cosine decay")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final learning rate / lr")
    grad_clip: float = Field(1.0, ge=0, description="gradient norm clip (0 = off)")
    seed: int = Field(123, description="seed of the patch sampler and of initialisations")
    precision: Precision = Field(
        Precision.fp32, description="fp32, or bf16 autocast for the forward passes (student and teacher); fast only "
        "on CPUs with native bf16 (AVX-512 BF16, AMX) or a GPU; not for quantize (fake quantizers need fp32)",
    )
    channels_last: bool = Field(False, description="channels-last memory layout of the training batches")


class PruneStage(StageBase):
    """Structured channel pruning with torch-pruning's dependency graph (MetaPruner)."""

    type: Literal["prune"] = Field(description="prune")
    importance: Importance = Field(Importance.l1, description="channel importance criterion")
    ratio: float | None = Field(
        None, gt=0, lt=1, description="fraction of channels to remove (per layer, or overall with global_pruning)"
    )
    target_macs: float | None = Field(
        None, gt=0, lt=1, description="instead of ratio: prune until the MACs are at most this fraction of before"
    )
    global_pruning: bool = Field(False, description="rank channels across layers instead of within each layer")
    max_ratio: float = Field(0.9, gt=0, lt=1, description="no layer loses more than this fraction of its channels")
    iterative_steps: int = Field(1, ge=1, le=64, description="prune in this many equal steps")
    round_to: int | None = Field(None, ge=1, le=256, description="keep channel counts a multiple of this")
    ignored_layers: tuple[str, ...] = Field(
        (), description="module names whose output channels are kept (the last layer always is)"
    )
    calibration_batches: int = Field(4, ge=1, le=256, description="batches of gradients for the taylor criterion")
    batch_size: int = Field(8, ge=1, le=4096, description="patches per calibration batch (taylor)")
    patch_size: int = Field(48, ge=8, le=512, description="calibration patch side (taylor)")

    @model_validator(mode="after")
    def _one_target(self) -> PruneStage:
        if (self.ratio is None) == (self.target_macs is None):
            raise ValueError("set exactly one of ratio, target_macs")
        return self


class PruneLayersStage(StageBase):
    """Depth pruning: remove whole convolutions whose output has their input's shape (with the activation after)."""

    type: Literal["prune_layers"] = Field(description="prune_layers")
    count: int | None = Field(
        None, ge=1, le=64,
        description="layers to remove, chosen greedily: each round drops the one whose bypass raises the "
        "L2 loss on the calibration patches least",
    )
    layers: tuple[str, ...] = Field(
        (), description="instead of count: the convolutions to remove, by module name (e.g. base.6)"
    )
    calibration_batches: int = Field(4, ge=1, le=256, description="batches of patches scoring the layers (count)")
    batch_size: int = Field(8, ge=1, le=4096, description="patches per calibration batch (count)")
    patch_size: int = Field(48, ge=8, le=512, description="calibration patch side (count)")

    @model_validator(mode="after")
    def _one_choice(self) -> PruneLayersStage:
        if (self.count is None) == (not self.layers):
            raise ValueError("set exactly one of count, layers")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError("layers names a layer twice")
        return self


class Hint(Strict):
    """A feature hint: a 1x1 adapter maps a student layer's output onto a teacher layer's output."""

    student: str = Field(..., description="student module name, e.g. base.1")
    teacher: str = Field(..., description="teacher module name, e.g. sfe2")
    weight: float = Field(1.0, ge=0, description="weight of this hint in the loss")
    loss: Loss = Field(Loss.l2, description="l1 or l2 between adapted student and teacher features")


class DistillStage(TrainParams):
    """Knowledge distillation from a named teacher: output losses plus optional feature hints."""

    type: Literal["distill"] = Field(description="distill")
    teacher: str = Field(..., description="a name under teachers:")
    teacher_l1: float = Field(0.0, ge=0, description="weight of L1(student output, teacher output)")
    teacher_l2: float = Field(1.0, ge=0, description="weight of L2(student output, teacher output)")
    gt_l1: float = Field(0.0, ge=0, description="weight of L1(student output, ground truth)")
    gt_l2: float = Field(1.0, ge=0, description="weight of L2(student output, ground truth)")
    hints: tuple[Hint, ...] = Field((), description="feature hints (1x1 adapters, dropped after training)")

    @model_validator(mode="after")
    def _some_loss(self) -> DistillStage:
        if self.teacher_l1 + self.teacher_l2 + self.gt_l1 + self.gt_l2 + sum(h.weight for h in self.hints) <= 0:
            raise ValueError("every loss weight is 0: nothing to train")
        return self


class FinetuneStage(TrainParams):
    """Training on the ground truth (after pruning, to recover quality)."""

    type: Literal["finetune"] = Field(description="finetune")
    loss: Loss = Field(Loss.l2, description="l1 or l2 to the ground truth")


class QuantizeStage(TrainParams):
    """Fake-quantization of weights and activations, calibrated (ptq) and optionally trained (qat)."""

    type: Literal["quantize"] = Field(description="quantize")
    backend: Backend = Field(Backend.brevitas, description="brevitas (2-8 bits) or nncf (8 bits)")
    mode: QuantMode = Field(QuantMode.qat, description="qat trains for steps after calibration; ptq only calibrates")
    weight_bits: int = Field(8, ge=2, le=8, description="weight bit width")
    act_bits: int = Field(8, ge=2, le=8, description="activation bit width")
    per_channel: bool = Field(True, description="one weight scale per output channel (else per tensor)")
    act_mode: ActMode = Field(
        ActMode.symmetric,
        description="nncf only: symmetric activations (zero point 0: a signed PReLU output keeps 7 bits for its "
        "positive side) or asymmetric (a zero point, all 256 levels over the calibrated range; OpenVINO runs "
        "both as INT8 convolutions, onnxruntime fuses only zero point 0)",
    )
    calibration_images: int = Field(32, ge=1, le=100_000, description="training patches used for calibration")
    loss: Loss = Field(Loss.l2, description="QAT loss to the ground truth")
    lr: float = Field(2e-5, gt=0, le=1, description="QAT peak learning rate")
    parent_l2: float = Field(
        0.0, ge=0, description="QAT self-distillation: weight of L2(quantized output, float parent's output), added "
        "to the ground-truth loss; the parent is the model as it entered this stage",
    )
    keep_float: tuple[str, ...] = Field(
        (), description="modules left in float, e.g. [last] (ARCNN's 16->3 output conv: 1 % of its MACs, most of "
        "its INT8 error); nncf also leaves their input unquantized, brevitas keeps the quantized activations",
    )
    conv_output: bool = Field(
        False,
        description="brevitas only: also quantize (signed, act_bits) the output of every convolution that a PReLU "
        "follows, so that QAT trains with it and onnxruntime fuses each such convolution into a QLinearConv (the "
        "PReLU then runs in float between two quantizers); without it a quantizer only after the PReLU leaves "
        "those convolutions in float in onnxruntime (INT8 slower than fp32). OpenVINO runs either layout in INT8. "
        "Fused u8 x s8 kernels saturate 8-bit weights on CPUs without VNNI: use weight_bits: 7 there",
    )
    overflow_fix: OverflowFix = Field(
        OverflowFix.disable,
        description="nncf only: first_layer (NNCF's default) or enable keep 7-bit weights in the first / every layer "
        "against u8 x s8 saturation on CPUs without VNNI; on ARCNN first_layer costs 3 dB after calibration "
        "(measured), and onnxruntime on this AVX2 CPU matches torch without it",
    )

    @model_validator(mode="after")
    def _asymmetric_is_nncf(self) -> QuantizeStage:
        if self.act_mode is ActMode.asymmetric and self.backend is not Backend.nncf:
            raise ValueError("act_mode: asymmetric is implemented for backend nncf only")
        return self

    @model_validator(mode="after")
    def _conv_output_is_brevitas(self) -> QuantizeStage:
        if self.conv_output and self.backend is not Backend.brevitas:
            raise ValueError("conv_output: true is implemented for backend brevitas only (NNCF places its own "
                             "quantizers, after each PReLU)")
        return self

    @model_validator(mode="after")
    def _fp32_fake_quant(self) -> QuantizeStage:
        if self.precision is not Precision.fp32:
            raise ValueError("precision: quantize trains in fp32 (fake quantizers calibrate and round fp32 values); "
                             "use bf16 in finetune / distill stages")
        return self


class ExportStage(StageBase):
    """ONNX export, checked in onnxruntime against torch."""

    type: Literal["export"] = Field(description="export")
    format: ExportFormat | None = Field(None, description="fp32 or qdq; null = qdq after a quantize stage, else fp32")
    opset: int = Field(17, ge=13, le=21, description="ONNX opset")
    dynamic_hw: bool = Field(True, description="variable height and width (and batch)")
    check: bool = Field(True, description="run the ONNX model in onnxruntime and compare with torch")
    atol: float = Field(
        1e-3, gt=0, le=1,
        description="largest allowed |onnxruntime - torch| on [0, 1] outputs (mean for qdq); INT8 differences "
        "depend on the CPU: without VNNI 8-bit weights can saturate onnxruntime's kernels (the error says so)",
    )
    subpixel: bool = Field(
        False,
        description="rewrite each stride-s transposed convolution (Fast ARCNN's output layer) as a convolution to "
        "s*s times the channels plus DepthToSpace: the same function (exact), which OpenVINO runs 1.3-3x faster "
        "and onnxruntime can fuse in INT8 (compress.subpixel)",
    )
    qdq_atol: float = Field(
        0.1, gt=0, le=1,
        description="qdq only: largest allowed difference (a value on a rounding boundary moves one step); "
        "the mean difference must stay within atol",
    )


Stage = Annotated[
    PruneStage | PruneLayersStage | DistillStage | FinetuneStage | QuantizeStage | ExportStage,
    Field(discriminator="type"),
]
"""One stage: the ``type`` key picks the schema."""


# ---------------------------------------------------------------------------------------------
# sweep and recipe


class Sweep(Strict):
    """Variants of the recipe: values for keys addressed by dotted path (``stages.0.ratio``)."""

    mode: SweepMode = Field(SweepMode.grid, description="grid: every combination; zip: i-th values together")
    axes: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key path -> list of values")
    points: tuple[dict[str, Any], ...] = Field((), description="explicit variants: each a {dotted path: value}")

    @field_validator("axes")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for k, vals in v.items():
            if not vals:
                raise ValueError(f"axis {k!r} has no values")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> Sweep:
        if bool(self.axes) == bool(self.points):
            raise ValueError("give either axes or points")
        if self.mode is SweepMode.zip and len({len(v) for v in self.axes.values()}) > 1:
            lens = ", ".join(f"{k}: {len(v)}" for k, v in self.axes.items())
            raise ValueError(f"zip needs axes of equal length, got {lens}")
        return self


class Recipe(Strict):
    """A compression recipe: what to compress, with what, on which data, and the variants to try."""

    schema_version: Literal[1] = Field(1, description="recipe format version (1)")
    kind: Literal["compress"] = Field("compress", description="always 'compress' (training recipes say 'train')")
    name: str = Field(..., pattern=NAME_PATTERN, description="recipe name; results go to results/<name>/")
    description: str = Field("", description="one line on what the recipe is for")
    seed: int = Field(0, description="global seed (torch) set before each variant")
    student: Student = Field(description="the model to compress (see student)")
    teachers: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Teacher] = Field(
        default_factory=dict, description="name -> teacher model, referenced by distill stages"
    )
    data: DataConfig = Field(
        default_factory=DataConfig,  # type: ignore[arg-type]
        description="training and evaluation data (see data)",
    )
    stages: tuple[Stage, ...] = Field((), description="applied in order; none = evaluate, profile and export as is")
    sweep: Sweep | None = Field(None, description="variants of this recipe (see sweep)")

    def without_sweep(self) -> Recipe:
        """This recipe with the sweep dropped (what one variant runs)."""
        return self.model_copy(update={"sweep": None})


STAGE_MODELS: dict[StageType, type[StageBase]] = {
    StageType.prune: PruneStage,
    StageType.prune_layers: PruneLayersStage,
    StageType.distill: DistillStage,
    StageType.finetune: FinetuneStage,
    StageType.quantize: QuantizeStage,
    StageType.export: ExportStage,
}
"""Schema of each stage type (for documentation and the registry test)."""
