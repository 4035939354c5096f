"""Cost model: parameters, compute and memory per frame, in the published and in the true convention.

Two conventions, both reported:

* **published** — what the brief's table uses: thop's MAC count x fps, one MAC counted as one "FLOP",
  so "TFLOPS at 480p30" = thop MACs at 720x480 x 30 / 1e12. thop charges ``ConvTranspose2d`` per
  *output* pixel (stride^2 too much for Fast ARCNN's last layer). Memory = torchsummary's
  "Estimated Total Size (MB)": input + 2 x (the outputs of every hooked module, activations included)
  + params, float32, in MiB, with torchsummary's rule for which modules are hooked (every module but
  the model itself, ``Sequential`` and ``ModuleList``).
* **true** — MACs of convolutions and linear layers only, ``ConvTranspose2d`` charged per input pixel.
  ``peak_activation_mb`` is the peak of live tensor bytes (input, intermediates, output; not weights)
  during one fp32 batch-1 inference in eager PyTorch, tracked allocation by allocation with a
  ``TorchDispatchMode``; it runs on the meta device, so even 1080p teachers profile in seconds.

All of it runs on the meta device: no real tensors of frame size are ever allocated.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

RESOLUTIONS: dict[str, tuple[int, int]] = {"480p30": (720, 480), "720p30": (1280, 720), "1080p30": (1920, 1080)}
FPS = 30
MIB = 1024.0**2


@dataclass(frozen=True)
class FrameCost:
    """Cost of one model at one resolution (per frame) and at its fps (per second)."""

    width: int
    height: int
    macs_thop: int
    macs_true: int
    summary_bytes: float
    peak_activation_bytes: int

    @property
    def tflops(self) -> float:
        """Published convention: thop MACs x fps / 1e12."""
        return self.macs_thop * FPS / 1e12

    @property
    def tflops_true(self) -> float:
        return self.macs_true * FPS / 1e12

    @property
    def memory_mb(self) -> float:
        return self.summary_bytes / MIB

    @property
    def peak_activation_mb(self) -> float:
        return self.peak_activation_bytes / MIB


@dataclass(frozen=True)
class ModelCost:
    """Profile of one model over the standard resolutions."""

    model: str
    params: int
    layers: int
    frames: dict[str, FrameCost] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``compress profile --json`` object."""
        return {
            "model": self.model,
            "params": self.params,
            "layers": self.layers,
            "tflops": {k: f.tflops for k, f in self.frames.items()},
            "tflops_true": {k: f.tflops_true for k, f in self.frames.items()},
            "memory_mb": {k: f.memory_mb for k, f in self.frames.items()},
            "peak_activation_mb": {k: f.peak_activation_mb for k, f in self.frames.items()},
            "macs": {k: f.macs_thop for k, f in self.frames.items()},
            "macs_true": {k: f.macs_true for k, f in self.frames.items()},
            "frames": {k: asdict(f) for k, f in self.frames.items()},
        }


def count_layers(model: nn.Module) -> int:
    """Weight layers (convolutions, transposed convolutions, linear), the brief's "Layers" column."""
    return sum(isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear) for m in model.modules())


# ---------------------------------------------------------------------------------------------
# true MACs and torchsummary sizes, by forward hooks


def _conv_true_macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(m, nn.ConvTranspose2d):
        k = m.kernel_size[0] * m.kernel_size[1]
        return int(inp[0].numel() * (m.out_channels // m.groups) * k)  # per input pixel
    if isinstance(m, nn.Conv2d):
        k = m.kernel_size[0] * m.kernel_size[1]
        return int(out[0].numel() * (m.in_channels // m.groups) * k)
    if isinstance(m, nn.Linear):
        return int(out[..., 0].numel() // max(1, out.shape[0]) * m.in_features * m.out_features)
    return 0


def _summary_hooked(m: nn.Module, root: nn.Module) -> bool:
    return m is not root and not isinstance(m, nn.Sequential | nn.ModuleList)


def _out_numel(out: Any) -> int:
    if isinstance(out, torch.Tensor):
        return int(out[0].numel())
    if isinstance(out, list | tuple):
        # torchsummary records list outputs as shapes but its total ignores them (it sums a list of lists)
        return 0
    return 0


@contextlib.contextmanager
def _hooks(model: nn.Module, acc: dict[str, int]) -> Iterator[None]:
    handles = []

    def hook(m: nn.Module, inp: tuple[Any, ...], out: Any) -> None:
        x = inp[0] if inp and isinstance(inp[0], torch.Tensor) else None
        if isinstance(out, torch.Tensor) and x is not None:
            acc["macs_true"] += _conv_true_macs(m, x, out)
        if _summary_hooked(m, model):
            acc["summary_out"] += _out_numel(out)

    for m in model.modules():
        handles.append(m.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class _LiveBytes(TorchDispatchMode):
    """Tracks live tensor bytes allocated by ops during a forward; remembers the peak."""

    def __init__(self, base: int) -> None:
        super().__init__()
        self.live = base
        self.peak = base
        self._seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._seen.discard(key)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, list | tuple) else (out,):
            if not isinstance(t, torch.Tensor):
                continue
            st = t.untyped_storage()
            key = id(st) if t.device.type == "meta" else st.data_ptr()
            if key in self._seen:
                continue  # a view of a tensor already counted
            nbytes = st.nbytes()
            self._seen.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(st, self._free, key, nbytes)
        return out


def _thop_macs(model: nn.Module, x: torch.Tensor) -> int:
    import io
    from contextlib import redirect_stdout

    from thop import profile

    with redirect_stdout(io.StringIO()):
        macs, _ = profile(model, inputs=(x,), verbose=False)
    # thop leaves total_ops/total_params buffers on every module; drop them
    for m in model.modules():
        for name in ("total_ops", "total_params"):
            if name in m._buffers:
                del m._buffers[name]
    return int(macs)


def profile_frame(model: nn.Module, channels: int, width: int, height: int) -> FrameCost:
    """Cost of one ``channels x height x width`` frame through ``model`` (batch 1, meta device)."""
    m = copy.deepcopy(model).to("meta").eval()
    x = torch.empty(1, channels, height, width, device="meta")
    macs_thop = _thop_macs(m, x)
    acc = {"macs_true": 0, "summary_out": 0}
    in_bytes = x.numel() * 4
    with torch.inference_mode(), _hooks(m, acc):
        tracker = _LiveBytes(base=in_bytes)
        with tracker:
            y = m(x)
        del y
    n_params = sum(p.numel() for p in model.parameters())
    summary = (x.numel() + 2 * acc["summary_out"] + n_params) * 4.0
    return FrameCost(width, height, macs_thop, acc["macs_true"], summary, tracker.peak)


def profile_model(
    name: str, model: nn.Module | None = None, *, channels: int | None = None,
    resolutions: dict[str, tuple[int, int]] | None = None,
) -> ModelCost:
    """Profile a registered model (or a given module, e.g. a pruned one) at the standard resolutions."""
    from compress.nets import MODELS, build_model

    if model is None:
        model = build_model(name, channels)
    if channels is None:
        channels = MODELS.get(name).default_channels if name in MODELS else _in_channels(model)
    frames = {k: profile_frame(model, channels, w, h) for k, (w, h) in (resolutions or RESOLUTIONS).items()}
    return ModelCost(name, sum(p.numel() for p in model.parameters()), count_layers(model), frames)


def _in_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            return int(m.in_channels)
    raise ValueError("model has no convolution: cannot infer its input channels")


def format_table(costs: list[ModelCost]) -> str:
    """The brief's table: params, TFLOPS and MB per resolution, published convention, then the true figures."""
    lines = []
    head = (
        f"{'model':<16} {'input':<8} {'params':>11} {'TFLOPS':>7} {'Mem(MB)':>9}   "
        f"{'TFLOPS(true)':>12} {'peak act(MB)':>12}"
    )
    lines.append(head)
    lines.append("-" * len(head))
    for c in costs:
        for i, (res, f) in enumerate(c.frames.items()):
            params = f"{c.params:,}" if i == 0 else ""
            name = c.model if i == 0 else ""
            lines.append(
                f"{name:<16} {res:<8} {params:>11} {f.tflops:>7.2f} {f.memory_mb:>9.2f}   "
                f"{f.tflops_true:>12.2f} {f.peak_activation_mb:>12.2f}"
            )
    lines.append("")
    lines.append("TFLOPS / Mem(MB): the published convention (thop MACs x 30 fps; torchsummary estimated total size).")
    lines.append("TFLOPS(true): ConvTranspose2d charged per input pixel. peak act: live tensors of one fp32 inference.")
    return "\n".join(lines)


def format_comparison() -> str:
    """Layers / params of every registered model beside the brief's "network comparison" figures."""
    from compress.nets import MODELS, build_model

    lines = [
        f"{'model':<16} {'family':<8} {'layers':>6} {'params':>12}   {'published (layers, params)':<26} description"
    ]
    lines.append("-" * 100)
    for name in MODELS:
        spec = MODELS.get(name)
        m = build_model(name)
        pub = f"{spec.published[0]}, {spec.published[1]}" if spec.published else "-"
        lines.append(
            f"{name:<16} {spec.family:<8} {count_layers(m):>6} {sum(p.numel() for p in m.parameters()):>12,}   "
            f"{pub:<26} {spec.description}"
        )
    return "\n".join(lines)
