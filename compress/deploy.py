"""Deployment latency of ONNX models per hardware target (onnxruntime, OpenVINO), and INT8 fusion checks.

One measurement (:func:`measure_latency`) takes an ONNX model and a measured :class:`~compress.targets.Target`
and, per resolution (480p / 720p / 1080p by default):

1. **prepares** a deployable artifact: the ONNX file with free height/width, or for an INT8 target and a
   float model a runtime-quantized copy (onnxruntime ``quantize_static`` to QDQ; ``nncf.quantize`` on the
   OpenVINO model from ``ov.convert_model``), calibrated on a few images (synthetic by default: enough
   for latency, and the quality of such a model is *not* measured: the row says ``quantized_by``);
2. **times** it: onnxruntime ``InferenceSession`` with ``intra_op_num_threads`` fixed and all graph
   optimizations, or OpenVINO ``compile_model`` on the model reshaped to the frame size with
   ``INFERENCE_NUM_THREADS`` and ``INFERENCE_PRECISION_HINT``; warm-up runs, then the median and 90th
   percentile of ``n`` runs, one frame (batch 1) at a time, one measurement at a time on the machine (a
   file lock serialises concurrent ``compress`` processes), with the 1-minute load average recorded.
   A virtual machine's cores can be slowed by its neighbours without any load showing in it (2-2.5x on
   the 2-core Xeon here, in bursts of seconds): a short matmul probe before and after each measurement
   (:class:`QuietGuard`) compares the CPU share this process gets with what it usually gets, and a measurement
   taken while it was below ``quiet_ratio`` of it is repeated (up to a wait limit); the probe and the
   attempts are recorded with the timing;
3. measures **peak memory** as the peak RSS rise of a fresh subprocess over one inference (its session
   already built and its input allocated; the kernel's high-water mark is reset through
   ``/proc/self/clear_refs`` just before the inference), beside the analytic peak of live activations
   from :mod:`compress.cost` when the caller knows it.

The precision a runtime really used is recorded apart from the one asked for (``precision_effective``):
OpenVINO silently keeps f32 when asked for bf16 on a CPU without AVX512-BF16 / AMX, and an INT8 QDQ graph
that onnxruntime cannot fuse runs its convolutions in float (:func:`check_fusion`).

Heavy libraries (onnx, onnxruntime, openvino, nncf, torch) are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from compress.errors import CompressError
from compress.fsio import atomic_write
from compress.registry import Registry
from compress.targets import FrameIO, Precision, Runtime, Target

F32 = NDArray[np.float32]
MIB = 1024.0**2
LATENCY_KEY = ("variant", "target", "resolution", "cpu")  # one row per machine

#: ONNX operators that make a graph an integer (QDQ or QOperator) model.
INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"})
#: After onnxruntime's optimizations: convolutions running on integer kernels ...
QUANT_CONV_OPS = frozenset({"QLinearConv", "NhwcQLinearConv", "ConvInteger", "QLinearConvTranspose"})
#: ... and in float (any domain: ``com.microsoft.nchwc`` Conv, ``com.microsoft`` FusedConv).
FLOAT_CONV_OPS = frozenset({"Conv", "FusedConv", "NhwcFusedConv", "ConvTranspose"})


class Fusion(StrEnum):
    """How much of an INT8 graph onnxruntime fused into integer convolutions."""

    full = "full"
    partial = "partial"
    none = "none"
    float_model = "float-model"


class ArtifactFormat(StrEnum):
    onnx = "onnx"
    openvino_ir = "openvino-ir"


@dataclass(frozen=True)
class Artifact:
    """A file a runtime loads, and how it was made from the measured ONNX model."""

    path: Path
    fmt: ArtifactFormat
    precision: Precision
    quantized_by: str = ""


@dataclass(frozen=True)
class LatencyRecord:
    """One row of ``latency.csv``: one variant on one target at one resolution."""

    variant: str
    target: str
    runtime: str
    resolution: str
    width: int
    height: int
    precision: str
    precision_effective: str
    quantized_by: str
    fusion: str
    threads: int
    n: int
    warmup: int
    ms_median: float
    ms_p90: float
    ms_min: float
    ms_max: float
    load_avg: float
    load_avg_end: float
    peak_rss_mb: float | None
    rss_hwm_mb: float | None
    analytic_peak_mb: float | None
    onnx_path: str
    onnx_sha256: str
    runtime_version: str
    cpu: str
    timestamp: str
    graph_signature: str = ""
    probe_gflops: float | None = None
    probe_ref_gflops: float | None = None
    attempts: int = 1

    @classmethod
    def columns(cls) -> list[str]:
        """The column order of ``latency.csv``."""
        return [f.name for f in fields(cls)]


class Runner(Protocol):
    """A loaded model: one frame in, one frame out (float32 NCHW, or uint8 NHWC for ``u8-nhwc`` targets)."""

    def __call__(self, x: F32) -> F32: ...


@dataclass(frozen=True)
class Loaded:
    """A runner plus what the runtime reports it really does."""

    run: Runner
    precision_effective: str
    version: str


@dataclass(frozen=True)
class Backend:
    """A runtime: ``prepare`` makes the artifact once, ``load`` compiles it for one frame size."""

    prepare: Callable[[Path, Precision, Path, Sequence[F32]], Artifact]
    load: Callable[[Artifact, int, int, int, int, FrameIO], Loaded]  # artifact, threads, channels, height, width, io


def frame_input(io: FrameIO, channels: int, height: int, width: int, seed: int = 0) -> NDArray[Any]:
    """A random frame in the format ``io`` names: float32 ``(1, C, H, W)`` in [0, 1] or uint8 ``(1, H, W, C)``."""
    rng = np.random.default_rng(seed)
    if io is FrameIO.u8_nhwc:
        return rng.integers(0, 256, (1, height, width, channels), dtype=np.uint8)
    return rng.random((1, channels, height, width), dtype=np.float32)


BACKENDS: Registry[Backend] = Registry("runtime")


# ---------------------------------------------------------------------------------------------
# ONNX helpers


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def graph_signature(path: str | Path) -> str:
    """SHA-256 of an ONNX graph's structure, not its values: equal for graphs that cost the same to run.

    Covers, in graph order, every node but ``Constant`` nodes: its op type, input / output arity and
    attributes (a tensor attribute by dtype and shape only), and for each input whether it is an
    activation or a constant (an initializer or a ``Constant`` node's output: then its dtype and shape);
    then the dtype and shape of the graph inputs / outputs. Names and weight values are left out, and so
    are the ``Constant`` nodes themselves, whose number and order depend on values (the exporter merges
    equal zero points), so the seeds of one architecture (or two QAT runs of one quantization scheme)
    share a signature, and :mod:`compress.pareto` can take the median of their latencies instead of
    letting measurement noise pick one of them.
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    h = hashlib.sha256()

    def attr(a: Any) -> str:
        if a.type == onnx.AttributeProto.TENSOR:
            return f"{a.name}:tensor{a.t.data_type}{list(a.t.dims)}"
        if a.type == onnx.AttributeProto.GRAPH:
            return f"{a.name}:graph"
        return f"{a.name}:{helper.get_attribute_value(a)!r}"

    constants = {i.name: f"c{i.data_type}{list(i.dims)}" for i in g.initializer}
    for node in g.node:
        if node.op_type == "Constant" and not node.domain:
            value = next((a.t for a in node.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR),
                         None)
            constants[node.output[0]] = f"c{value.data_type}{list(value.dims)}" if value is not None else "c"
    for node in g.node:
        if node.op_type == "Constant" and not node.domain:
            continue
        attrs = ",".join(sorted(attr(a) for a in node.attribute))
        ins = ",".join(constants.get(i, "a") if i else "-" for i in node.input)
        h.update(f"{node.domain}:{node.op_type}({ins})/{len(node.output)}[{attrs}];".encode())
    for vi in (*g.input, *g.output):
        dims = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
        h.update(f"io{vi.type.tensor_type.elem_type}{dims};".encode())
    return h.hexdigest()


def onnx_precision(path: str | Path) -> Precision:
    """``int8`` for a graph with quantize/dequantize or integer ops, ``fp16`` for float16 weights, else ``fp32``."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    if any(n.op_type in INT8_OPS for n in m.graph.node):
        return Precision.int8
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer):
        return Precision.fp16
    return Precision.fp32


def onnx_input(path: str | Path) -> tuple[str, int]:
    """Name and channel count of the model's (single) image input ``(N, C, H, W)``."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    if len(ins) != 1:
        raise CompressError(f"{path}: expected one image input, found {[i.name for i in ins]}")
    dims = ins[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[1].dim_value:
        raise CompressError(f"{path}: input {ins[0].name!r} must be (N, C, H, W) with a fixed C")
    return ins[0].name, int(dims[1].dim_value)


def make_dynamic_hw(src: str | Path, dst: str | Path) -> Path:
    """Copy of ``src`` whose image input and outputs have free height and width (``dim_param``).

    Fully convolutional models exported at one size (``dynamo=False`` without ``dynamic_axes``) run at
    any size once the fixed dims are freed; inner shapes are left to the runtime's shape inference.
    """
    import onnx

    m = onnx.load(str(src))
    inits = {t.name for t in m.graph.initializer}
    for vi in [*(i for i in m.graph.input if i.name not in inits), *m.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[2].dim_param, dims[3].dim_param = "height", "width"
    del m.graph.value_info[:]
    onnx.save(m, str(dst))
    return Path(dst)


def _shapes(model: Any) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if dims and all(dims):
            out[vi.name] = dims
    for t in model.graph.initializer:
        out[t.name] = list(t.dims)
    return out


def onnx_macs(path: str | Path, height: int, width: int) -> int:
    """Multiply-accumulates of one ``height x width`` frame: (transposed) convolutions, float or quantized.

    ``ConvTranspose`` is charged per input pixel (the true convention of :mod:`compress.cost`).
    """
    import onnx

    m = onnx.load(str(path))
    inits = {t.name for t in m.graph.initializer}
    for vi in [*(i for i in m.graph.input if i.name not in inits), *m.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[0].dim_value = 1
            dims[2].dim_value, dims[3].dim_value = height, width
    del m.graph.value_info[:]
    m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    shapes = _shapes(m)
    macs = 0
    for n in m.graph.node:
        if n.op_type in ("Conv", "ConvTranspose"):
            x, w, y = n.input[0], n.input[1], n.output[0]
        elif n.op_type == "QLinearConv":
            x, w, y = n.input[0], n.input[3], n.output[0]
        else:
            continue
        if w not in shapes or (y if n.op_type != "ConvTranspose" else x) not in shapes:
            raise CompressError(f"{path}: cannot infer the shapes around {n.op_type} {n.name!r}")
        per = int(np.prod(shapes[w][1:]))
        base = shapes[x] if n.op_type == "ConvTranspose" else shapes[y]
        macs += int(np.prod(base[1:])) * per
    return macs


def export_onnx(model: Any, path: str | Path, *, channels: int, size: int = 64) -> Path:
    """Export a fully convolutional torch model to one ONNX file with free height and width.

    A small helper for latency checks and tests (the recipe engine has its own export stage).
    """
    import torch

    model = model.eval()
    x = torch.rand(1, channels, size, size)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
            output_names=["output"], dynamic_axes={"input": axes, "output": axes},
        )
    return Path(path)


def synthetic_calibration(channels: int, *, count: int = 8, size: int = 128, seed: int = 0) -> list[F32]:
    """Blocky, smooth images in [0, 1] shaped like JPEG inputs: for calibrating latency-only INT8 models."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        coarse = rng.random((channels, size // 16, size // 16)).astype(np.float32)
        img = np.kron(coarse, np.ones((16, 16), np.float32))[:, :size, :size]
        img = 0.8 * img + 0.2 * rng.random((channels, size, size), dtype=np.float32)
        out.append(img[None].astype(np.float32))
    return out


# ---------------------------------------------------------------------------------------------
# onnxruntime


def _ort_options(threads: int, optimized_path: Path | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # the "optimized model is hardware specific" notice is expected
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return so


def _ort_prepare(onnx_path: Path, precision: Precision, work: Path, calibration: Sequence[F32]) -> Artifact:
    model_prec = onnx_precision(onnx_path)
    dyn = make_dynamic_hw(onnx_path, work / "dynamic.onnx")
    if precision is Precision.int8 and model_prec is not Precision.int8:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        name, _ = onnx_input(dyn)

        class _Reader(CalibrationDataReader):  # type: ignore[misc]
            def __init__(self) -> None:
                self._it = iter([{name: c} for c in calibration])

            def get_next(self) -> dict[str, F32] | None:
                return next(self._it, None)

        out = work / "int8-qdq.onnx"
        import logging

        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing" advice on every call
        try:
            quantize_static(
                str(dyn), str(out), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            )
        finally:
            logging.getLogger().setLevel(level)
        return Artifact(out, ArtifactFormat.onnx, precision, "onnxruntime.quantize_static")
    return Artifact(dyn, ArtifactFormat.onnx, precision)


def _ort_load(
    art: Artifact, threads: int, channels: int, height: int, width: int, io: FrameIO = FrameIO.f32_nchw
) -> Loaded:
    import onnxruntime as ort

    if io is not FrameIO.f32_nchw:
        raise CompressError(f"onnxruntime runs the graph's own float32 NCHW frames, not {io.value}")

    sess = ort.InferenceSession(str(art.path), _ort_options(threads), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: F32) -> F32:
        return sess.run(None, {name: x})[0]  # type: ignore[no-any-return]

    # what an INT8 graph really runs on is decided by fusion: see measure_latency / check_fusion
    return Loaded(run, art.precision.value, ort.__version__)


BACKENDS.add(Runtime.onnxruntime.value, Backend(_ort_prepare, _ort_load))


@dataclass(frozen=True)
class FusionReport:
    """Convolutions of an onnxruntime-optimized graph, by kernel kind."""

    model: str
    qdq_nodes: int
    quantized_convs: int
    float_convs: int
    ops: dict[str, int]

    @property
    def status(self) -> Fusion:
        """``full`` when every convolution runs on integer kernels, ``none`` when none does."""
        if self.qdq_nodes == 0 and self.quantized_convs == 0:
            return Fusion.float_model
        if self.quantized_convs and not self.float_convs:
            return Fusion.full
        return Fusion.partial if self.quantized_convs else Fusion.none


def check_fusion(onnx_path: str | Path, *, threads: int = 1) -> FusionReport:
    """Whether onnxruntime fused a QDQ graph: count QLinearConv / ConvInteger vs float Conv after optimization.

    The optimized graph is saved through ``SessionOptions.optimized_model_filepath`` (all optimizations on,
    as in a latency measurement) and its operators are counted.
    """
    import onnx
    import onnxruntime as ort

    src = onnx.load(str(onnx_path), load_external_data=False)
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in src.graph.node)
    with tempfile.TemporaryDirectory(prefix="compress-fusion-") as tmp:
        opt = Path(tmp) / "optimized.onnx"
        ort.InferenceSession(str(onnx_path), _ort_options(threads, opt), providers=["CPUExecutionProvider"])
        g = onnx.load(str(opt), load_external_data=False)
    ops: dict[str, int] = {}
    for n in g.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    quant = sum(v for k, v in ops.items() if k in QUANT_CONV_OPS)
    flt = sum(v for k, v in ops.items() if k in FLOAT_CONV_OPS)
    return FusionReport(str(onnx_path), qdq, quant, flt, ops)


# ---------------------------------------------------------------------------------------------
# OpenVINO

_OV_HINT = {Precision.fp32: "f32", Precision.bf16: "bf16", Precision.fp16: "f16", Precision.int8: "f32"}
_OV_PREC = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "u8": "int8", "i8": "int8"}


def _ov_prepare(onnx_path: Path, precision: Precision, work: Path, calibration: Sequence[F32]) -> Artifact:
    import openvino as ov

    _, channels = onnx_input(onnx_path)
    model = ov.convert_model(str(onnx_path))
    model.reshape({model.inputs[0]: ov.PartialShape([1, channels, -1, -1])})
    quantized_by = ""
    if precision is Precision.int8 and onnx_precision(onnx_path) is not Precision.int8:
        os.environ.setdefault("NNCF_CI", "1")
        import nncf

        with _quiet():
            model = nncf.quantize(model, nncf.Dataset(list(calibration)), subset_size=len(calibration))
        quantized_by = "nncf.quantize"
    out = work / "model.xml"
    ov.save_model(model, str(out), compress_to_fp16=False)
    return Artifact(out, ArtifactFormat.openvino_ir, precision, quantized_by)


def _ov_u8_nhwc(model: Any) -> Any:
    """``model`` with uint8 NHWC frames at both ends: input ``/ 255``, output ``x 255``, rounded half to even
    and clipped to 0..255 (what the evaluation protocols do to a float output), compiled into the graph."""
    import openvino as ov
    import openvino.opset13 as ops
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).scale(255.0)
    ppp.output().model().set_layout(ov.Layout("NCHW"))
    ppp.output().tensor().set_layout(ov.Layout("NHWC"))

    def to_u8(node: Any) -> Any:
        y = ops.multiply(node, ops.constant(np.float32(255.0)))
        y = ops.clamp(ops.round(y, "half_to_even"), 0.0, 255.0)
        return ops.convert(y, ov.Type.u8).output(0)

    ppp.output().postprocess().custom(to_u8)
    return ppp.build()


def _ov_load(
    art: Artifact, threads: int, channels: int, height: int, width: int, io: FrameIO = FrameIO.f32_nchw
) -> Loaded:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(art.path))
    model.reshape({model.inputs[0]: ov.PartialShape([1, channels, height, width])})
    if io is FrameIO.u8_nhwc:
        model = _ov_u8_nhwc(model)
    # INT8 models keep their non-quantized parts in f32 (the CPU plugin would pick bf16 on AMX CPUs)
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": _OV_HINT[art.precision],
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    }
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()

    def run(x: F32) -> F32:
        return request.infer([x])[0]  # type: ignore[no-any-return]

    precs = set()
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if rt["layerType"].astype(str) in ("Convolution", "Deconvolution", "FullyConnected"):
            precs.add(_OV_PREC.get(rt["runtimePrecision"].astype(str), rt["runtimePrecision"].astype(str)))
    eff = "+".join(sorted(precs, key=lambda p: (p != "int8", p))) or _OV_PREC[_OV_HINT[art.precision]]
    return Loaded(run, eff, ov.__version__.split("-")[0])


BACKENDS.add(Runtime.openvino.value, Backend(_ov_prepare, _ov_load))


def runtime_model(onnx_path: str | Path, runtime: Runtime | str = Runtime.onnxruntime, *,
                  precision: Precision | str | None = None, threads: int = 1,
                  io: FrameIO | str = FrameIO.f32_nchw) -> Any:
    """An ``nn.Module`` that runs an exported graph in a deployment runtime, for scoring what is deployed.

    The module takes and returns float32 NCHW tensors of any height and width (the graph must have
    dynamic H/W, as ``compress`` exports them) and carries a 1x1 probe convolution with the graph's
    input channels, so :func:`compress.evaluate.evaluate_model` checks colour as for a torch model; its
    ``runtime``, ``precision``, ``path`` and ``version`` (of the runtime) say what ran.
    ``precision``: ``fp32`` / ``bf16`` (OpenVINO's inference-precision hint) for float graphs; QDQ graphs
    run in INT8 as they are. Float graphs are never quantized here (that needs calibration data: see
    :func:`measure_latency`, whose INT8-by-calibration models are timed, not scored).
    ``io``: ``u8-nhwc`` (OpenVINO) compiles uint8 NHWC frames into both ends of the graph as the target
    of that name is timed; the module then rounds its input to 8 bits (exact for images read as uint8) and
    returns the graph's 8-bit output over 255.

    Raises:
        CompressError: an unknown runtime, or a precision or frame format the graph cannot run in.
    """
    import torch
    from torch import nn

    path = Path(onnx_path)
    if not path.is_file():
        raise CompressError(f"{path}: no such ONNX file")
    try:
        rt = Runtime(str(runtime))
    except ValueError:
        raise CompressError(f"unknown runtime {runtime!r}; valid: onnxruntime, openvino") from None
    graph = onnx_precision(path)
    want = Precision(str(precision)) if precision is not None else graph
    if (graph is Precision.int8) != (want is Precision.int8):
        raise CompressError(f"{path}: a {graph.value} graph cannot run as {want.value} here "
                            "(INT8 needs a QDQ graph: a quantize stage)")
    name, channels = onnx_input(path)
    frames = FrameIO(str(io))
    if frames is not FrameIO.f32_nchw and rt is not Runtime.openvino:
        raise CompressError(f"io {frames.value} needs runtime openvino")
    run: Callable[[F32], F32]
    if rt is Runtime.onnxruntime:
        if want is not graph:
            raise CompressError(f"onnxruntime runs the graph as it is ({graph.value}), not {want.value}")
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), _ort_options(threads), providers=["CPUExecutionProvider"])
        version = str(ort.__version__)

        def run(x: F32) -> F32:
            return sess.run(None, {name: x})[0]  # type: ignore[no-any-return]
    elif rt is Runtime.openvino:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        model.reshape({model.inputs[0]: ov.PartialShape([-1, channels, -1, -1])})
        if frames is FrameIO.u8_nhwc:
            model = _ov_u8_nhwc(model)
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                     "INFERENCE_PRECISION_HINT": _OV_HINT[want]})
        version = str(ov.__version__).split("-")[0]

        def run(x: F32) -> F32:
            if frames is FrameIO.u8_nhwc:
                u8 = np.clip(np.rint(x * np.float32(255.0)), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
                y = np.asarray(compiled(np.ascontiguousarray(u8))[0])
                return y.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
            return np.asarray(compiled(x)[0])
    else:
        raise CompressError(f"runtime {rt.value!r} is analytic: nothing to run")

    class RuntimeModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.probe = nn.Conv2d(channels, channels, 1)  # input channels, for colour checks only
            self.runtime, self.precision, self.path, self.version = rt.value, want.value, str(path), version
            self.io = frames.value

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(run(x.detach().float().cpu().numpy())))

    return RuntimeModel().eval()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence progress bars and advice printed by quantizers (stdout/stderr of this process)."""
    import io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield


# ---------------------------------------------------------------------------------------------
# measurement


def _standard_resolutions() -> dict[str, tuple[int, int]]:
    # imported here: compress.cost imports torch, which the peak-memory subprocess must not pay for
    from compress.cost import RESOLUTIONS

    return dict(RESOLUTIONS)


def _cpuinfo_fields() -> dict[str, str]:
    """The first processor's fields in ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the end of the first processor
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpuinfo() -> tuple[str, set[str]]:
    """The first processor's model name and flags in ``/proc/cpuinfo`` (empty where there is none)."""
    fields = _cpuinfo_fields()
    return fields.get("model name", ""), set(fields.get("flags", "").split())


def cpu_isa(flags: set[str] | None = None) -> str:
    """The vector extensions that decide this CPU's kernel speed, e.g. ``avx512+vnni+bf16`` or ``avx2``.

    Two machines with one model name (cloud CPUs read "AMD EPYC" whatever their generation) can differ by
    5x in INT8 and bf16 speed: ``vnni`` (INT8 dot products), ``bf16`` (AVX-512 BF16) and ``amx`` (tile
    matrix units) say which fast paths OpenVINO, onnxruntime and oneDNN can take. Empty where the flags
    cannot be read (not Linux / x86).
    """
    f = _cpuinfo()[1] if flags is None else flags
    if not f:
        return ""
    base = "avx512" if "avx512f" in f else "avx2" if "avx2" in f else "avx" if "avx" in f else "sse"
    extra = [tag for tag, names in (("vnni", ("avx512_vnni", "avx_vnni")), ("bf16", ("avx512_bf16",)),
                                    ("amx", ("amx_tile",))) if any(n in f for n in names)]
    return "+".join([base, *extra])


def cpu_name(fields: Mapping[str, str] | None = None) -> str:
    """The machine that timed a row: the CPU model name and its :func:`cpu_isa` in brackets, e.g.
    ``AMD EPYC 7763 64-Core Processor [avx2]`` (latency and deployed rows are kept apart per machine).

    A virtual machine may report a generic name with no model number (``AMD EPYC``, ``Intel(R) Xeon(R)
    Processor``): then the CPU family and model number follow it, ``AMD EPYC (family 23 model 1) [avx2]``,
    because two generations under one name differed 3x in speed here. ``fields``: ``/proc/cpuinfo``'s
    (default: this machine's).
    """
    f = _cpuinfo_fields() if fields is None else fields
    model = f.get("model name", "") or platform.processor() or platform.machine()
    if not any(ch.isdigit() for ch in model) and f.get("cpu family") and f.get("model"):
        model += f" (family {f['cpu family']} model {f['model']})"
    isa = cpu_isa(set(f.get("flags", "").split()))
    return f"{model} [{isa}]" if isa else model


def machine_rows(table: Any, cpu: str | None = None) -> Any:
    """The rows of a ``latency.csv`` / ``deployed.csv`` frame measured on ``cpu`` (default: this machine,
    :func:`cpu_name`); none when the table predates the ``cpu`` column."""
    if "cpu" not in table.columns:
        return table.iloc[:0]
    return table[table["cpu"].astype(str) == (cpu_name() if cpu is None else cpu)]


@contextlib.contextmanager
def machine_lock(timeout: float = 3600.0) -> Iterator[None]:
    """Hold the machine-wide benchmark lock: one timing at a time across ``compress`` processes."""
    from filelock import FileLock
    from platformdirs import user_cache_dir

    folder = Path(user_cache_dir("compress"))
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / "latency.lock"), timeout=timeout):
        yield


def time_runner(run: Runner, x: F32, *, n: int, warmup: int) -> NDArray[np.float64]:
    """Milliseconds of ``n`` calls of ``run(x)`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run(x)
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        run(x)
        out[i] = (time.perf_counter() - t0) * 1e3
    return out


def cpu_probe_gflops(threads: int, *, size: int = 384, seconds: float = 0.08) -> float:
    """GFLOP/s of fp32 ``size`` x ``size`` matmuls on ``threads`` torch threads for about ``seconds``.

    A cheap reading of the CPU share this process gets right now: on a shared virtual machine it drops
    when neighbours use the physical cores, though this machine's load average does not move."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=gen)
        b = torch.randn(size, size, generator=gen)
        a @ b
        count, t0 = 0, time.perf_counter()
        while True:
            a @ b
            count += 1
            dt = time.perf_counter() - t0
            if dt >= seconds:
                return 2.0 * size**3 * count / dt / 1e9
    finally:
        torch.set_num_threads(old)


HISTORY_SIZE = 500
"""Probe readings a :class:`QuietGuard` history file keeps (the latest)."""
HISTORY_MAX_AGE_S = 14 * 86400.0
"""Older readings leave the reference (a VM moved to another host should not wait for the old one's speed)."""


def probe_history_path(threads: int) -> Path:
    """Where this machine's probe readings for ``threads`` persist: the user cache, per CPU model."""
    from platformdirs import user_cache_dir

    cpu = hashlib.sha256(cpu_name().encode()).hexdigest()[:12]
    return Path(user_cache_dir("compress")) / f"quiet-probes-{cpu}-t{threads}.json"


class QuietGuard:
    """Repeat a timing taken while the CPU was slowed from outside (a shared VM's noisy neighbours).

    The reference is the 90th percentile of the :func:`cpu_probe_gflops` readings this guard has taken
    (``warm`` of them first; a percentile, not the maximum, because single probes are noisy) and, with a
    ``history`` file, of the readings earlier processes on this machine took in the last 14 days (the
    latest 500): without it a process that starts in a busy stretch takes that stretch for normal and
    lets every timing of it through. A measurement counts as quiet when the probes before and after it both
    reach ``ratio`` x the reference. :meth:`measure` retries a measurement that was not quiet, sleeping
    ``pause_s`` between attempts, until ``max_wait_s`` have passed; then it keeps the last attempt (the row
    records the probe, the reference and the attempts, so such a row can be told apart). ``ratio`` 0 turns
    it off.
    """

    def __init__(self, threads: int, *, ratio: float = 0.75, max_wait_s: float = 60.0, pause_s: float = 1.0,
                 warm: int = 5, probe: Callable[[int], float] | None = None, history: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise CompressError(f"quiet ratio must be in [0, 1], got {ratio}")
        self.threads, self.ratio, self.max_wait_s, self.pause_s = threads, ratio, max_wait_s, pause_s
        self._probe = probe or cpu_probe_gflops
        self._clock = clock
        self.history = history
        self.readings: list[float] = []
        self.past: list[float] = [g for _, g in self._read_history()] if ratio > 0 else []
        if ratio > 0:
            for _ in range(warm):
                self.probe()

    def _read_history(self) -> list[tuple[float, float]]:
        """``(unix time, GFLOP/s)`` readings of the history file younger than the age limit; [] without one."""
        if self.history is None:
            return []
        try:
            doc = json.loads(self.history.read_text())
            rows = [(float(t), float(g)) for t, g in doc["readings"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []  # none yet, or unreadable: start afresh (the file is a cache)
        now = self._clock()
        return [(t, g) for t, g in rows if now - t <= HISTORY_MAX_AGE_S and g > 0]

    def _append_history(self, g: float) -> None:
        if self.history is None:
            return
        rows = [*self._read_history(), (self._clock(), g)][-HISTORY_SIZE:]
        doc = {"cpu": cpu_name(), "threads": self.threads, "readings": [[round(t, 1), round(v, 2)] for t, v in rows]}
        try:
            self.history.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.history.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc))
            tmp.replace(self.history)
        except OSError:
            pass  # a read-only cache only costs the memory of earlier runs

    @property
    def reference(self) -> float:
        """The 90th percentile of the probes so far, this process's and the history's (0 before any)."""
        both = self.past + self.readings
        return float(np.percentile(both, 90)) if both else 0.0

    def probe(self) -> float:
        """One probe, kept for the reference (and in the history file)."""
        g = self._probe(self.threads)
        self.readings.append(g)
        self._append_history(g)
        return g

    def measure(self, fn: Callable[[], NDArray[np.float64]]) -> tuple[NDArray[np.float64], float | None, int]:
        """Run ``fn`` (one timing) until it is quiet or the wait is over: (its result, probe GFLOP/s, attempts)."""
        if self.ratio <= 0:
            return fn(), None, 1
        start, attempts = time.monotonic(), 0
        while True:
            attempts += 1
            before = self.probe()
            out = fn()
            probe = min(before, self.probe())
            if probe >= self.ratio * self.reference or time.monotonic() - start >= self.max_wait_s:
                return out, probe, attempts
            time.sleep(self.pause_s)


_GUARDS: dict[int, QuietGuard] = {}
_QUIET: dict[str, Any] = {"ratio": 0.75, "max_wait_s": 60.0, "history": True}


def configure_quiet(ratio: float = 0.75, max_wait_s: float = 60.0, history: bool = True) -> None:
    """Settings of the guards :func:`default_guard` makes from now on (``compress latency --quiet-ratio``,
    ``--quiet-wait``, ``--no-quiet-history``)."""
    QuietGuard(1, ratio=ratio, warm=0)  # validates the ratio now, not at the first timing
    _QUIET.update(ratio=ratio, max_wait_s=max_wait_s, history=history)
    _GUARDS.clear()


def default_guard(threads: int) -> QuietGuard:
    """This process's :class:`QuietGuard` for ``threads``, so its reference grows over the measurements; with
    the machine's probe history (:func:`probe_history_path`) unless configured off."""
    if threads not in _GUARDS:
        hist = probe_history_path(threads) if _QUIET["history"] else None
        _GUARDS[threads] = QuietGuard(threads, ratio=_QUIET["ratio"], max_wait_s=_QUIET["max_wait_s"], history=hist)
    return _GUARDS[threads]


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def _rss_child(spec_json: str) -> None:
    """Subprocess body of :func:`peak_rss_rise`: build the runner, reset the high-water mark, infer once."""
    import resource

    spec = json.loads(spec_json)
    art = Artifact(Path(spec["path"]), ArtifactFormat(spec["fmt"]), Precision(spec["precision"]))
    c, h, w = spec["channels"], spec["height"], spec["width"]
    io = FrameIO(spec.get("io", FrameIO.f32_nchw.value))
    loaded = BACKENDS.get(spec["runtime"]).load(art, spec["threads"], c, h, w, io)
    x = frame_input(io, c, h, w)
    try:
        base = _status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        exact = True
    except OSError:
        base = _status_kib("VmRSS") if Path("/proc/self/status").exists() else 0
        exact = False
    loaded.run(x)
    hwm = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rise_kib": hwm - base, "hwm_kib": hwm, "exact": exact}))


def peak_rss_rise(
    art: Artifact, runtime: Runtime, *, threads: int, channels: int, height: int, width: int,
    io: FrameIO = FrameIO.f32_nchw,
) -> dict:
    """Peak RSS rise (MiB) of a fresh subprocess over one inference, and its whole high-water mark.

    Returns:
        ``{"peak_rss_mb": rise, "rss_hwm_mb": whole-process peak, "exact": whether HWM could be reset}``.
    """
    spec = {
        "path": str(art.path), "fmt": art.fmt.value, "precision": art.precision.value, "runtime": runtime.value,
        "threads": threads, "channels": channels, "height": height, "width": width, "io": io.value,
    }
    code = "import sys; from compress.deploy import _rss_child; _rss_child(sys.argv[1])"
    env = {**os.environ, "NNCF_CI": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise CompressError(f"peak-memory subprocess failed ({runtime.value}, {art.path.name}): {' | '.join(tail)}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"peak_rss_mb": res["rise_kib"] / 1024.0, "rss_hwm_mb": res["hwm_kib"] / 1024.0, "exact": res["exact"]}


def analytic_peak_mb(model_name: str, width: int, height: int) -> float:
    """Analytic peak of live activations (MiB) of a registered model, from :mod:`compress.cost`."""
    from compress.cost import profile_frame
    from compress.nets import MODELS, build_model

    spec = MODELS.get(model_name)
    return profile_frame(build_model(model_name), spec.default_channels, width, height).peak_activation_mb


def run_precision(path: Path, target: Target, graph: Precision | None = None) -> Precision:
    """The precision ``target`` runs the graph at ``path`` in: INT8 for a QDQ graph, else the target's first.

    ``graph``: :func:`onnx_precision` of the file, when the caller has it.

    Raises:
        CompressError: an INT8 graph on a target without INT8.
    """
    graph = onnx_precision(path) if graph is None else graph
    if graph is not Precision.int8:
        return target.precisions[0]
    if Precision.int8 not in target.precisions:
        raise CompressError(f"{path.name} is an INT8 graph; target {target.name!r} runs only "
                            f"{', '.join(p.value for p in target.precisions)}")
    return Precision.int8


def measure_latency(
    onnx_path: str | Path,
    target: Target,
    *,
    variant: str | None = None,
    resolutions: Mapping[str, tuple[int, int]] | None = None,
    n: int = 10,
    warmup: int = 2,
    calibration: Sequence[F32] | None = None,
    peak_memory: bool = True,
    analytic_mb: Mapping[str, float] | None = None,
    lock: bool = True,
    guard: QuietGuard | None = None,
) -> list[LatencyRecord]:
    """Time one ONNX model on one measured target, one resolution after the other.

    Args:
        onnx_path: the model (float, or INT8 QDQ); any fixed height/width is freed first.
        target: a measured target (``onnxruntime`` or ``openvino``).
        variant: name in the results table (default: the file stem).
        resolutions: name -> (width, height); default 480p30 / 720p30 / 1080p30.
        n: timed runs per resolution (median and p90 reported).
        warmup: untimed runs before timing.
        calibration: images ``(1, C, h, w)`` in [0, 1] for runtime INT8 quantization of a float model
            (default: :func:`synthetic_calibration`).
        peak_memory: also measure the peak RSS rise in a subprocess (one inference per resolution).
        analytic_mb: the analytic activation peak per resolution name (e.g. ``peak_activation_mb`` of
            ``cost.csv``), written beside the measured one.
        lock: hold :func:`machine_lock` while timing.
        guard: repeats timings taken while the CPU was slowed from outside (default: a
            :class:`QuietGuard` with ratio 0.75 on the target's threads; ``QuietGuard(t, ratio=0)`` is off).

    Returns:
        One :class:`LatencyRecord` per resolution.

    Raises:
        CompressError: an analytic target, a precision the target lacks, or a runtime failure.
    """
    path = Path(onnx_path)
    if not path.is_file():
        raise CompressError(f"{path}: ONNX model not found")
    if not target.measured:
        raise CompressError(f"target {target.name!r} is analytic: nothing to measure (runtime: {target.runtime})")
    precision = run_precision(path, target)
    if n < 1 or warmup < 0:
        raise CompressError(f"need n >= 1 and warmup >= 0, got n={n}, warmup={warmup}")
    backend = BACKENDS.get(target.runtime.value)
    _, channels = onnx_input(path)
    res = dict(resolutions or _standard_resolutions())
    digest = sha256(path)
    signature = graph_signature(path)
    name = variant or path.stem
    calib = list(calibration) if calibration is not None else synthetic_calibration(channels)
    guard = guard or default_guard(target.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="compress-deploy-") as tmp:
        art = backend.prepare(path, precision, Path(tmp), calib)
        fusion = ""
        if target.runtime is Runtime.onnxruntime:
            fusion = check_fusion(art.path, threads=target.threads).status.value
        for res_name, (w, h) in res.items():
            loaded = backend.load(art, target.threads, channels, h, w, target.io)
            x = frame_input(target.io, channels, h, w)
            with machine_lock() if lock else contextlib.nullcontext():
                load0 = os.getloadavg()[0]
                ms, probe, attempts = guard.measure(functools.partial(time_runner, loaded.run, x, n=n, warmup=warmup))
                load1 = os.getloadavg()[0]
            eff, version = loaded.precision_effective, loaded.version
            if fusion and art.precision is Precision.int8:
                eff = {Fusion.full.value: "int8", Fusion.partial.value: "int8+fp32"}.get(fusion, "fp32")
            del loaded, x
            mem: dict[str, Any] = {"peak_rss_mb": None, "rss_hwm_mb": None}
            if peak_memory:
                with machine_lock() if lock else contextlib.nullcontext():
                    mem = peak_rss_rise(art, target.runtime, threads=target.threads, channels=channels, height=h,
                                        width=w, io=target.io)
            rows.append(
                LatencyRecord(
                    variant=name, target=target.name, runtime=target.runtime.value, resolution=res_name,
                    width=w, height=h, precision=precision.value, precision_effective=eff,
                    quantized_by=art.quantized_by, fusion=fusion, threads=target.threads, n=n, warmup=warmup,
                    ms_median=float(np.median(ms)), ms_p90=float(np.percentile(ms, 90)), ms_min=float(ms.min()),
                    ms_max=float(ms.max()), load_avg=round(load0, 2), load_avg_end=round(load1, 2),
                    peak_rss_mb=mem["peak_rss_mb"], rss_hwm_mb=mem["rss_hwm_mb"],
                    analytic_peak_mb=(analytic_mb or {}).get(res_name), onnx_path=str(path), onnx_sha256=digest,
                    runtime_version=version, cpu=cpu_name(),
                    timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"), graph_signature=signature,
                    probe_gflops=None if probe is None else round(probe, 1),
                    probe_ref_gflops=round(guard.reference, 1) if probe is not None else None, attempts=attempts,
                )
            )
    return rows


# ---------------------------------------------------------------------------------------------
# tables


def records_frame(records: Sequence[LatencyRecord]) -> Any:
    """The records as a pandas DataFrame in ``latency.csv`` column order."""
    import pandas as pd

    return pd.DataFrame([asdict(r) for r in records], columns=LatencyRecord.columns())


def write_latency(records: Sequence[LatencyRecord] | Any, path: str | Path) -> Path:
    """Upsert rows into ``latency.csv``: a row replaces the old one with the same variant, target and resolution.

    The file is written to a temporary name and renamed, so a reader never sees half a table.
    """
    import pandas as pd

    new = records if isinstance(records, pd.DataFrame) else records_frame(records)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_file():
        old = pd.read_csv(p)
        for col in LATENCY_KEY:  # a table from before the column existed
            if col not in old.columns:
                old[col] = ""
        keys = set(map(tuple, new[list(LATENCY_KEY)].astype(str).to_numpy()))
        keep = ~old[list(LATENCY_KEY)].astype(str).apply(tuple, axis=1).isin(keys)
        new = pd.concat([old[keep], new], ignore_index=True) if keep.any() else new
    tmp = p.with_name(p.name + ".tmp")
    new.to_csv(tmp, index=False)
    os.replace(tmp, p)
    return p


# ---------------------------------------------------------------------------------------------
# the "speed goal" benchmark


@dataclass(frozen=True)
class MatmulPeak:
    """Measured matmul throughput of one dtype: the median of ``repeats`` products of ``size`` x ``size``."""

    dtype: str
    size: int
    repeats: int
    gflops: float


def matmul_peak(
    *, threads: int = 2, size: int = 2048, repeats: int = 5, max_seconds: float = 30.0
) -> dict[str, MatmulPeak]:
    """This machine's measured matmul throughput (GFLOP/s, 2 x size^3 per product) in fp32 and bf16 with torch.

    The median of ``repeats`` products after one warm-up, on ``threads`` threads (restored afterwards).
    A CPU without native bf16 (no AVX512-BF16 / AMX) multiplies bf16 some 30x slower than fp32; so the
    size grows from 256 by doubling, up to ``size``, only while the next size's products (8x the time
    of one at the current size) fit in ``max_seconds``: the size really used is returned with the result.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    out: dict[str, MatmulPeak] = {}

    def product_seconds(a: torch.Tensor, b: torch.Tensor) -> float:
        t0 = time.perf_counter()
        torch.mm(a, b)
        return time.perf_counter() - t0

    try:
        for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            g = torch.Generator().manual_seed(0)
            n = min(256, size)
            while True:
                a, b = (torch.randn(n, n, generator=g).to(dtype) for _ in range(2))
                torch.mm(a, b)  # warm-up
                one = product_seconds(a, b)
                if 2 * n > size or one * 8 * (repeats + 1) > max_seconds:
                    break
                n *= 2
            ts = [product_seconds(a, b) for _ in range(repeats)]
            out[label] = MatmulPeak(label, n, repeats, 2.0 * n**3 / float(np.median(ts)) / 1e9)
    finally:
        torch.set_num_threads(old)
    return out


def bench_latency(
    models: Mapping[str, str | Path],
    targets: Sequence[Target],
    *,
    resolution: str = "720p30",
    n: int = 5,
    warmup: int = 1,
    out: str | Path | None = Path("results/bench/latency.csv"),
    reference_models: Mapping[str, str] | None = None,
    peak_memory: bool = False,
    matmul_size: int = 2048,
) -> Any:
    """Time every model on every measured target at one resolution; relate it to the machine's matmul peak.

    Adds to each latency row: ``fps``, ``gmacs`` (true MACs of one frame), ``achieved_gflops`` (2 x MACs /
    latency), the measured ``peak_gflops_fp32`` / ``peak_gflops_bf16`` of a 2048^2 torch matmul on the
    target's thread count (:func:`matmul_peak`, measured in this same run, with the size really used and
    the load average beside it) and the fractions ``frac_fp32_peak`` / ``frac_bf16_peak`` of those peaks.
    Analytic targets are skipped.

    Args:
        models: variant name -> ONNX file.
        targets: targets to time (analytic ones are skipped).
        resolution: a key of :data:`compress.cost.RESOLUTIONS`.
        n: timed runs per measurement.
        warmup: untimed runs first.
        out: CSV to upsert into (None: don't write).
        reference_models: variant -> registered model name, for the analytic activation peak.
        peak_memory: also measure the peak RSS rise (one subprocess per measurement).
        matmul_size: side of the square matrices of the peak measurement.

    Returns:
        The rows as a pandas DataFrame.
    """
    import pandas as pd

    standard = _standard_resolutions()
    if resolution not in standard:
        raise CompressError(f"unknown resolution {resolution!r}; valid: {', '.join(standard)}")
    w, h = standard[resolution]
    measured = [t for t in targets if t.measured]
    peaks: dict[int, tuple[dict[str, MatmulPeak], float]] = {}
    frames = []
    for name, path in models.items():
        macs = onnx_macs(path, h, w)
        ref = (reference_models or {}).get(name)
        analytic = {resolution: analytic_peak_mb(ref, w, h)} if ref else None
        for t in measured:
            if onnx_precision(path) is Precision.int8 and Precision.int8 not in t.precisions:
                continue
            if t.threads not in peaks:
                with machine_lock():
                    load = os.getloadavg()[0]
                    peaks[t.threads] = (matmul_peak(threads=t.threads, size=matmul_size), load)
            recs = measure_latency(path, t, variant=name, resolutions={resolution: (w, h)}, n=n, warmup=warmup,
                                   peak_memory=peak_memory, analytic_mb=analytic)
            df = records_frame(recs)
            pk, pk_load = peaks[t.threads]
            df["fps"] = 1e3 / df["ms_median"]
            df["gmacs"] = macs / 1e9
            df["achieved_gflops"] = 2.0 * macs / (df["ms_median"] / 1e3) / 1e9
            for dt in ("fp32", "bf16"):
                df[f"peak_gflops_{dt}"] = pk[dt].gflops
                df[f"matmul_size_{dt}"] = pk[dt].size
                df[f"frac_{dt}_peak"] = df["achieved_gflops"] / pk[dt].gflops
            df["peak_load_avg"] = round(pk_load, 2)
            frames.append(df)
    table = pd.concat(frames, ignore_index=True) if frames else records_frame([])
    if out is not None and len(table):
        write_latency(table, out)
    return table


PAIRED_COLUMNS = (
    "run", "round", "variant", "target", "resolution", "width", "height", "precision", "precision_effective",
    "quantized_by", "threads", "n", "warmup", "ms_median", "ms_min", "ms_max", "probe_gflops", "load_avg", "onnx_path",
    "onnx_sha256", "graph_signature", "runtime_version", "cpu", "timestamp",
)
"""Columns of ``paired_latency.csv``: one row per graph, target and round of one paired run."""


def paired_latency(
    models: Mapping[str, str | Path],
    targets: Sequence[Target],
    *,
    resolution: str = "1080p30",
    rounds: int = 4,
    n: int = 15,
    warmup: int = 2,
    calibration: Sequence[F32] | None = None,
    log: Callable[[str], None] | None = print,
) -> Any:
    """Time several graphs *in turn*: each round runs ``n`` timed inferences of every graph on every target.

    On a shared virtual machine the absolute speed drifts by 2x within minutes (neighbours on the physical
    cores); graphs timed minutes apart by :func:`measure_latency` then differ by more than their real
    difference. Interleaving them makes the drift hit all alike, so the ratios of their medians over rounds
    hold where the absolute numbers do not. Every graph is prepared and compiled first (as
    :func:`measure_latency` does: float graphs quantized by the runtime for an INT8 target), so a round only
    times; a matmul probe (:func:`cpu_probe_gflops`) after each round records the CPU share it had.

    Args:
        models: variant name -> ONNX file; the first is the baseline of :func:`paired_summary`'s ratios.
        targets: measured targets; a target that cannot run a graph (an INT8 graph on a float target) is an
            error, not a skip, since the comparison would be incomplete.
        resolution: a key of :data:`compress.cost.RESOLUTIONS`.
        rounds: how many times every graph is timed.
        n: timed runs per graph and round (the row keeps their median, min and max).
        warmup: untimed runs per graph before the first round.
        calibration: calibration frames for runtime INT8 quantization (default: synthetic).
        log: where each round's line goes (None: silent).

    Returns:
        A pandas DataFrame with :data:`PAIRED_COLUMNS`, one row per graph x target x round.

    Raises:
        CompressError: fewer than two graphs, a missing file, an analytic target, an unknown resolution, or a
            graph a target cannot run.
    """
    import pandas as pd

    if len(models) < 2:
        raise CompressError("a paired timing needs at least two graphs")
    if rounds < 1 or n < 1 or warmup < 0:
        raise CompressError(f"need rounds >= 1, n >= 1, warmup >= 0; got {rounds}, {n}, {warmup}")
    standard = _standard_resolutions()
    if resolution not in standard:
        raise CompressError(f"unknown resolution {resolution!r}; valid: {', '.join(standard)}")
    w, h = standard[resolution]
    for t in targets:
        if not t.measured:
            raise CompressError(f"target {t.name!r} is analytic: nothing to time")
    run_id = time.strftime("%Y-%m-%dT%H:%M:%S")
    cpu = cpu_name()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="compress-paired-")))
        loaded: list[tuple[dict[str, Any], Loaded, NDArray[Any]]] = []
        for name, path_like in models.items():
            path = Path(path_like)
            if not path.is_file():
                raise CompressError(f"{path}: ONNX model not found")
            graph = onnx_precision(path)
            _, channels = onnx_input(path)
            calib = list(calibration) if calibration is not None else synthetic_calibration(channels)
            info = {"variant": name, "onnx_path": str(path), "onnx_sha256": sha256(path),
                    "graph_signature": graph_signature(path)}
            for t in targets:
                precision = run_precision(path, t, graph)
                work = tmp / f"{len(loaded)}"
                work.mkdir()
                backend = BACKENDS.get(t.runtime.value)
                art = backend.prepare(path, precision, work, calib)
                run = backend.load(art, t.threads, channels, h, w, t.io)
                x = frame_input(t.io, channels, h, w)
                time_runner(run.run, x, n=0, warmup=warmup)
                loaded.append(({**info, "target": t.name, "precision": precision.value,
                                "precision_effective": run.precision_effective, "quantized_by": art.quantized_by,
                                "threads": t.threads, "runtime_version": run.version}, run, x))
        stack.enter_context(machine_lock())
        rows = []
        for r in range(1, rounds + 1):
            load = round(os.getloadavg()[0], 2)
            batch = []
            for info, run, x in loaded:
                ms = time_runner(run.run, x, n=n, warmup=0)
                batch.append({**info, "ms_median": float(np.median(ms)), "ms_min": float(ms.min()),
                              "ms_max": float(ms.max())})
            probe = round(cpu_probe_gflops(max(int(i["threads"]) for i, _, _ in loaded)), 1)
            for b in batch:
                rows.append({**b, "run": run_id, "round": r, "resolution": resolution, "width": w, "height": h,
                             "n": n, "warmup": warmup, "probe_gflops": probe, "load_avg": load, "cpu": cpu,
                             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            if log is not None:
                log(f"round {r}/{rounds}: probe {probe:.0f} GFLOP/s, load {load}; " + ", ".join(
                    f"{b['variant']} {b['target']} {b['ms_median']:.1f} ms" for b in batch))
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))


def paired_summary(table: Any) -> Any:
    """Per run, target and graph: the median over rounds of the per-round medians, their range, and the ratio
    to the run's first graph on the same target (the comparison a paired timing is for)."""
    import pandas as pd

    out = []
    for (run, target, res), g in table.groupby(["run", "target", "resolution"], sort=False):
        first = str(g["variant"].iloc[0])
        meds = {str(v): float(np.median(gv["ms_median"])) for v, gv in g.groupby("variant", sort=False)}
        for v, gv in g.groupby("variant", sort=False):
            out.append({"run": run, "target": target, "resolution": res, "variant": v, "rounds": len(gv),
                        "ms_median": meds[str(v)], "ms_low": float(gv["ms_median"].min()),
                        "ms_high": float(gv["ms_median"].max()), "ratio": meds[str(v)] / meds[first],
                        "baseline": first})
    return pd.DataFrame(out)


def append_paired(table: Any, path: str | Path) -> Path:
    """Append a paired run's rows to ``paired_latency.csv`` (earlier runs stay; ``run`` tells them apart)."""
    import pandas as pd

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_file():
        table = pd.concat([pd.read_csv(p), table], ignore_index=True)
    tmp = p.with_name(p.name + ".tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, p)
    return p


def fill_graph_signatures(latency_csv: str | Path, base: str | Path = ".", *, recompute: bool = False) -> int:
    """Add ``graph_signature`` to rows of a ``latency.csv`` written before the column existed.

    A row gets one only when its ``onnx_path`` (absolute, or relative to ``base``) still holds the file
    that was timed (same SHA-256); the others stay empty and keep their own latency on fronts. Returns
    the number of rows filled. ``recompute``: every row, not only empty ones (after a change of
    :func:`graph_signature`); a row whose timed file is gone gets an empty signature.
    """
    import pandas as pd

    p = Path(latency_csv)
    if not p.is_file():
        return 0
    df = pd.read_csv(p)
    if "graph_signature" not in df.columns:
        df["graph_signature"] = pd.NA
    df["graph_signature"] = df["graph_signature"].astype(object)
    if recompute:
        df["graph_signature"] = ""
    todo = df["graph_signature"].isna() | (df["graph_signature"].astype(str) == "")
    cache: dict[tuple[str, str], str] = {}
    filled = 0
    for i in df.index[todo]:
        onnx = Path(str(df.at[i, "onnx_path"]))
        onnx = onnx if onnx.is_absolute() else Path(base) / onnx
        key = (str(onnx), str(df.at[i, "onnx_sha256"]))
        if key not in cache:
            cache[key] = graph_signature(onnx) if onnx.is_file() and sha256(onnx) == key[1] else ""
        if cache[key]:
            df.at[i, "graph_signature"] = cache[key]
            filled += 1
    if filled or recompute:
        atomic_write(p, lambda t: df.to_csv(t, index=False))
    return filled


def measure_results(
    results_dir: str | Path,
    targets: Sequence[Target],
    *,
    onnx_column: str = "onnx_path",
    resolutions: Mapping[str, tuple[int, int]] | None = None,
    n: int = 10,
    warmup: int = 2,
    peak_memory: bool = True,
    skip_done: bool = False,
    per_graph: int | None = None,
    graph_counts: dict[tuple[str, str], int] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Measure every variant of a results folder on every measured target it can run; upsert ``latency.csv``.

    Variants whose ONNX file is missing (a clone holds them for front members only) are skipped with a
    message: their graph's other variants, where timed, stand in for them on fronts.

    With ``skip_done``, a variant x target already in ``latency.csv`` at every requested resolution, for the
    same ONNX file (SHA-256), is not measured again: a stopped measurement resumes where it was.

    With ``per_graph`` K, a target times at most K variants of one graph structure (``graph_signature``):
    the others take the median of those measurements on fronts (:func:`compress.pareto.latency_at`).
    ``graph_counts`` maps (signature, target) to the variants already timed (default: this folder's
    ``latency.csv``); pass one dict to several calls to share it across folders (:func:`count_timed_graphs`).

    Variants and their ONNX files come from ``cost.csv`` (column ``onnx_column``, relative to the folder
    or absolute); a target runs a variant when its precisions fit the variant's ``weight_bits`` /
    ``act_bits`` (:meth:`Target.can_run`). The analytic peak beside the measured one is the variant's
    ``peak_activation_mb`` at the same resolution.
    """
    import pandas as pd

    root = Path(results_dir)
    cost_path = root / "cost.csv"
    if not cost_path.is_file():
        raise CompressError(f"{cost_path}: no cost table (run the recipe first)")
    cost = pd.read_csv(cost_path)
    if onnx_column not in cost.columns:
        raise CompressError(f"{cost_path}: no column {onnx_column!r}; columns: {', '.join(cost.columns)}")
    out = root / "latency.csv"
    fill_graph_signatures(out)  # rows timed before signatures existed, where the timed file is still here
    if per_graph is not None and graph_counts is None:
        graph_counts = count_timed_graphs([out])
    done: set[tuple[str, str, str, str]] = set()
    if skip_done and out.is_file():
        old = pd.read_csv(out)
        old = machine_rows(old)
        done = {(str(v), str(t), str(r), str(h)) for v, t, r, h in
                old[["variant", "target", "resolution", "onnx_sha256"]].itertuples(index=False)}
    wanted = list((resolutions or _standard_resolutions()).keys())
    for variant, rows in cost.groupby("variant", sort=True):
        first = rows.iloc[0]
        onnx = Path(str(first[onnx_column]))
        onnx = onnx if onnx.is_absolute() else root / onnx
        if not onnx.is_file():
            log(f"{root.name}/{variant}: no {onnx} (weights and ONNX are committed for front variants only): "
                "skipped")
            continue
        analytic = dict(zip(rows["resolution"], rows["peak_activation_mb"], strict=True))
        digest = sha256(onnx) if done and onnx.is_file() else ""
        sig = graph_signature(onnx) if per_graph is not None and onnx.is_file() else ""
        for t in targets:
            if done and all((str(variant), t.name, r, digest) in done for r in wanted):
                continue
            if not (t.measured and t.can_run(int(first["weight_bits"]), int(first["act_bits"]))):
                continue
            if per_graph is not None and graph_counts is not None and sig \
                    and graph_counts.get((sig, t.name), 0) >= per_graph:
                continue
            recs = measure_latency(onnx, t, variant=str(variant), resolutions=resolutions, n=n, warmup=warmup,
                                   peak_memory=peak_memory, analytic_mb=analytic)
            write_latency(recs, out)
            if graph_counts is not None and sig:
                graph_counts[(sig, t.name)] = graph_counts.get((sig, t.name), 0) + 1
    return out


def count_timed_graphs(latency_csvs: Sequence[str | Path], cpu: str | None = None) -> dict[tuple[str, str], int]:
    """How many variants of each (graph_signature, target) these ``latency.csv`` files have timed on the
    machine ``cpu`` (default: this one, :func:`cpu_name`); timings of other machines do not count."""
    import pandas as pd

    seen: dict[tuple[str, str], set[str]] = {}
    for path in latency_csvs:
        p = Path(path)
        if not p.is_file():
            continue
        df = pd.read_csv(p)
        if "graph_signature" not in df.columns:
            continue
        df = machine_rows(df, cpu)
        for v, t, g in df[["variant", "target", "graph_signature"]].itertuples(index=False):
            if isinstance(g, str) and g:
                seen.setdefault((g, str(t)), set()).add(f"{p.parent}/{v}")
    return {k: len(v) for k, v in seen.items()}


def run_latency_bench(
    out_dir: str | Path = Path("results/bench"), *, models: Sequence[str] = ("arcnn", "fast_arcnn"),
    targets: Sequence[Target] | None = None, n: int = 5,
) -> Path:
    """The "speed goal" benchmark: registered models exported to ONNX, timed on every measured target at 720p.

    Weights are the architectures' initial ones (latency does not depend on their values). Writes
    ``<out_dir>/latency.csv`` (see :func:`bench_latency`).

    Returns:
        The CSV written.
    """
    from compress.nets import MODELS, build_model
    from compress.targets import get_targets

    ts = [t for t in (targets if targets is not None else get_targets(None)) if t.measured]
    out = Path(out_dir) / "latency.csv"
    with tempfile.TemporaryDirectory(prefix="compress-bench-") as tmp:
        paths = {}
        for name in models:
            spec = MODELS.get(name)
            paths[name] = export_onnx(build_model(name), Path(tmp) / f"{name}.onnx", channels=spec.default_channels)
        bench_latency(paths, ts, resolution="720p30", n=n, out=out, reference_models={m: m for m in models},
                      peak_memory=True)
    return out
