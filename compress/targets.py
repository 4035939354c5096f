"""Hardware targets: where a variant is meant to run, at which precisions, within which budgets.

A target is one YAML file in ``recipes/targets/`` (the file stem is its name), validated into a frozen
:class:`Target`. Measured targets (``runtime: onnxruntime`` or ``openvino``) are timed on this machine by
:mod:`compress.deploy`; ``runtime: analytic`` targets are budgets only (compute, activation memory,
weight bytes) checked against the cost table, and are normally labelled ``illustrative: true`` because
their numbers describe a hypothetical chip, not a data sheet.

Units: ``MB`` is MiB (2**20 bytes) throughout, as in :mod:`compress.cost`. TFLOPS budgets name their
convention: ``true`` (true MACs x fps / 1e12, ConvTranspose2d per input pixel) or ``published`` (the
brief's thop convention). Which precisions a variant needs follows from its bits
(:func:`required_precisions`); the target runs it at the first of its own precisions that fits
(:meth:`Target.precision_for`).

Byte budgets are charged at that precision, not at the size of the exported file: a QDQ INT8 ONNX graph
stores its weights as fp32 initializers (~4x the deployed size), and the cost table's
``peak_activation_mb`` is profiled in fp32. So the weights are ``params x`` :data:`PRECISION_BYTES`
(:func:`weights_mb_at`) and the activations ``peak_activation_mb x bytes / 4`` (:func:`activations_mb_at`).
**Approximation:** every parameter and every live tensor counts at the one precision the variant runs at.
A mixed graph (INT8 with a float last layer, ``keep_float``) keeps that layer's weights and output in
float, and INT8 kernels keep biases in int32; the cost table has no per-layer split, so these few thousand
bytes (e.g. Fast ARCNN's last layer, 7.8k params: +23 KiB at fp32) are not charged.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from compress.errors import RecipeError, RegistryError
from compress.recipe.loader import load_yaml, read_text, validate
from compress.registry import unknown_message

SCHEMA_VERSION = 1
MIB = 1024.0**2
TARGETS_ENV = "COMPRESS_TARGETS"


class Runtime(StrEnum):
    """How a target's cost is known: measured with a runtime on this machine, or analytic only."""

    onnxruntime = "onnxruntime"
    openvino = "openvino"
    analytic = "analytic"


class Precision(StrEnum):
    """Compute precision of a deployed model."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    int8 = "int8"


class FrameIO(StrEnum):
    """The frame format at a deployed model's boundary (what the caller hands over and gets back)."""

    f32_nchw = "f32-nchw"
    """float32 planes in [0, 1]: the exported ONNX graph's own input and output."""
    u8_nhwc = "u8-nhwc"
    """8-bit interleaved frames, as decoders and displays exchange them; OpenVINO compiles the conversion,
    the scaling, the layout change and the output's rounding and clipping into the graph."""


class Convention(StrEnum):
    """TFLOPS convention of a compute budget (see :mod:`compress.cost`)."""

    true = "true"
    published = "published"


class Resolution(StrEnum):
    """The standard resolutions of the cost table (keys of :data:`compress.cost.RESOLUTIONS`)."""

    p480 = "480p30"
    p720 = "720p30"
    p1080 = "1080p30"


#: Which precisions each runtime can execute on a CPU (what a target may list).
RUNTIME_PRECISIONS: dict[Runtime, frozenset[Precision]] = {
    Runtime.onnxruntime: frozenset({Precision.fp32, Precision.int8}),
    Runtime.openvino: frozenset({Precision.fp32, Precision.bf16, Precision.fp16, Precision.int8}),
    Runtime.analytic: frozenset(Precision),
}


#: Bytes per stored weight or activation value at each precision (4-bit weights live in int8 lanes).
PRECISION_BYTES: dict[Precision, int] = {Precision.fp32: 4, Precision.bf16: 2, Precision.fp16: 2, Precision.int8: 1}


def required_precisions(weight_bits: int, act_bits: int) -> frozenset[Precision]:
    """Precisions of which a target must support at least one to run a variant with these bits.

    The rule: weights and activations both at 8 bits or fewer need integer kernels (``int8``; 4-bit
    weights are stored in int8 lanes). Otherwise the variant is a float model and any float precision
    runs it: ``fp32`` as trained, or ``bf16`` / ``fp16`` down-cast by the runtime (OpenVINO's precision
    hint does it itself; deploying a float-trained CNN at FP16 is the normal practice on accelerators
    that have no fp32 units). A down-cast changes the output slightly: where no score in that precision
    exists, a front says its quality was measured in fp32 (:func:`compress.pareto.target_points`).

    Args:
        weight_bits: bits per weight (32 for a float model).
        act_bits: bits per activation (32 for a float model).

    Returns:
        The acceptable precisions.
    """
    if weight_bits <= 8 and act_bits <= 8:
        return frozenset({Precision.int8})
    return frozenset({Precision.fp32, Precision.bf16, Precision.fp16})


def weights_mb_at(params: float, precision: Precision | str) -> float:
    """MiB of weights a variant of ``params`` parameters stores when it runs at ``precision``
    (``params x`` :data:`PRECISION_BYTES`; see the module docstring for what this leaves out)."""
    return float(params) * PRECISION_BYTES[Precision(precision)] / MIB


def activations_mb_at(peak_activation_mb_fp32: float, precision: Precision | str) -> float:
    """MiB of live activations at ``precision``, from the fp32 analytic peak of the cost table."""
    return float(peak_activation_mb_fp32) * PRECISION_BYTES[Precision(precision)] / PRECISION_BYTES[Precision.fp32]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComputeBudget(_Strict):
    """At most ``max_tflops`` at ``resolution`` (fps included, as in the cost table)."""

    max_tflops: float = Field(..., gt=0, description="TFLOPS ceiling (MACs x fps / 1e12)")
    convention: Convention = Field(Convention.true, description="true MACs or the brief's published convention")
    resolution: Resolution = Field(Resolution.p720, description="resolution and fps the ceiling applies to")

    @field_validator("convention", mode="before")
    @classmethod
    def _yaml_true(cls, v: Any) -> Any:
        # YAML reads a bare `true` as a bool; the convention is then "true"
        return "true" if v is True else v


class MemoryBudget(_Strict):
    """At most ``max_mb`` MiB of live activations at ``resolution``, at the precision the variant runs at
    (:func:`activations_mb_at`)."""

    max_mb: float = Field(..., gt=0, description="activation memory ceiling, MiB, at the precision run")
    resolution: Resolution = Field(Resolution.p1080, description="resolution the ceiling applies to")


class LatencyBudget(_Strict):
    """At most ``max_ms`` measured milliseconds per frame at ``resolution``."""

    max_ms: float = Field(..., gt=0, description="median latency ceiling per frame, ms")
    resolution: Resolution = Field(Resolution.p720, description="resolution the ceiling applies to")


class Budgets(_Strict):
    """Every budget is optional; a variant must meet all that are set."""

    compute: ComputeBudget | None = None
    activations: MemoryBudget | None = None
    latency: LatencyBudget | None = None
    weights_mb: float | None = Field(None, gt=0, description="weights ceiling, MiB: params x bytes of the precision "
                                     "the variant runs at (not the ONNX file size)")


class Target(_Strict):
    """One hardware target, as read from ``recipes/targets/<name>.yaml``."""

    schema_version: int = Field(SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION, description="target format version")
    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="equal to the file stem")
    description: str = Field(..., min_length=1)
    runtime: Runtime
    precisions: tuple[Precision, ...] = Field(..., min_length=1, description="precisions it can execute")
    threads: int = Field(2, ge=1, le=1024, description="inference threads (measured runtimes)")
    io: FrameIO = Field(
        FrameIO.f32_nchw, description="frame format at the model's boundary: f32-nchw (the graph's own float "
        "planes in [0, 1]) or u8-nhwc (8-bit interleaved frames; openvino only: conversion, scaling, layout, "
        "rounding and clipping compiled into the graph)",
    )
    illustrative: bool = Field(False, description="hypothetical numbers, not a real device's data sheet")
    source: str | None = Field(None, description="where the budgets come from")
    budgets: Budgets = Field(default_factory=Budgets)  # type: ignore[arg-type]

    @field_validator("precisions")
    @classmethod
    def _unique(cls, v: tuple[Precision, ...]) -> tuple[Precision, ...]:
        dup = sorted({p.value for p in v if v.count(p) > 1})
        if dup:
            raise ValueError(f"precision listed twice: {', '.join(dup)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Target:
        bad = [p.value for p in self.precisions if p not in RUNTIME_PRECISIONS[self.runtime]]
        if bad:
            ok = ", ".join(sorted(p.value for p in RUNTIME_PRECISIONS[self.runtime]))
            raise ValueError(f"runtime {self.runtime.value} cannot run {', '.join(bad)} on a CPU; valid: {ok}")
        if self.runtime is Runtime.analytic and self.budgets.latency is not None:
            raise ValueError("an analytic target cannot have a latency budget (nothing is measured)")
        if self.io is not FrameIO.f32_nchw and self.runtime is not Runtime.openvino:
            raise ValueError(f"io {self.io.value} needs runtime openvino (it compiles the conversion into the graph)")
        return self

    @property
    def measured(self) -> bool:
        """True when latency is measured with a runtime (not analytic)."""
        return self.runtime is not Runtime.analytic

    def can_run(self, weight_bits: int, act_bits: int) -> bool:
        """Whether a variant with these bits can run here (see :func:`required_precisions`)."""
        return bool(required_precisions(weight_bits, act_bits) & set(self.precisions))

    def precision_for(self, weight_bits: int, act_bits: int) -> Precision | None:
        """The precision this target runs such a variant at (its first listed that fits), or None."""
        need = required_precisions(weight_bits, act_bits)
        return next((p for p in self.precisions if p in need), None)

    def label(self) -> str:
        """Name plus an ``(illustrative)`` mark where it applies, for plots."""
        return f"{self.name} (illustrative)" if self.illustrative else self.name


def targets_dir() -> Path:
    """The folder of shipped targets: ``$COMPRESS_TARGETS`` or ``recipes/targets`` of this checkout."""
    env = os.environ.get(TARGETS_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "recipes" / "targets"


def load_target(path: str | Path) -> Target:
    """Read and validate one target file; errors name file, line and key.

    Raises:
        RecipeError: unreadable file, malformed YAML, invalid keys or values, or ``name`` unlike the stem.
    """
    p = Path(path)
    text = read_text(p)
    data, lines = load_yaml(text, str(p))
    target = validate(Target, data, lines, str(p))
    if target.name != p.stem:
        line = lines.get(("name",), "?")
        raise RecipeError(f"{p}:{line}: name: {target.name!r} must equal the file stem {p.stem!r}")
    return target


def shipped_targets(folder: str | Path | None = None) -> dict[str, Target]:
    """Every ``*.yaml`` target in ``folder`` (default :func:`targets_dir`), by name, sorted."""
    root = Path(folder) if folder is not None else targets_dir()
    if not root.is_dir():
        raise RecipeError(f"{root}: no targets folder (set ${TARGETS_ENV} or add recipes/targets/)")
    return {t.name: t for t in sorted((load_target(f) for f in root.glob("*.yaml")), key=lambda t: t.name)}


def get_target(name: str | Path, folder: str | Path | None = None) -> Target:
    """A shipped target by name, or a target file by path (anything ending in ``.yaml``/``.yml``).

    Raises:
        RegistryError: an unknown name; the message lists the valid ones and the closest match.
        RecipeError: an invalid target file.
    """
    s = str(name)
    if s.endswith((".yaml", ".yml")):
        return load_target(s)
    root = Path(folder) if folder is not None else targets_dir()
    path = root / f"{s}.yaml"
    if not path.is_file():
        names = [f.stem for f in sorted(root.glob("*.yaml"))] if root.is_dir() else []
        raise RegistryError(unknown_message("target", s, names))
    return load_target(path)


def get_targets(names: list[str] | None = None, folder: str | Path | None = None) -> list[Target]:
    """Targets by name or path, in order; all shipped ones when ``names`` is empty or None."""
    if not names:
        return list(shipped_targets(folder).values())
    return [get_target(n, folder) for n in names]
