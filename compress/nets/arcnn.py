"""ARCNN, Fast ARCNN (the brief's RGB PyTorch models) and the authors' 1-channel ARCNN.

``arcnn`` / ``fast_arcnn`` follow the reference PyTorch implementation used in the brief exactly
(state-dict keys ``base.0.weight`` ... ``last.weight``, PReLU, zero padding, output is the image,
not a residual): 117,734 and 85,575 parameters with 3 channels. ``act='relu'`` gives the
deploy-friendly variants whose INT8 graphs fuse in onnxruntime.

``arcnn_y`` is the ICCV 2015 paper's model (1 channel, ReLU, replicate padding, 106,561 params);
:func:`load_matlab_arcnn` reads the authors' released ``q*.mat`` weights into it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compress.errors import CheckpointError
from compress.nets.registry import ModelSpec, register_model


def _act(kind: str) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU()
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {kind!r}; valid: prelu, relu")


class ARCNN(nn.Module):
    """ARCNN: feature extraction 9x9, enhancement 7x7, mapping 1x1, reconstruction 5x5."""

    def __init__(self, channels: int = 3, features: tuple[int, int, int] = (64, 32, 16), act: str = "prelu") -> None:
        super().__init__()
        f1, f2, f3 = features
        self.base = nn.Sequential(
            nn.Conv2d(channels, f1, kernel_size=9, padding=4),
            _act(act),
            nn.Conv2d(f1, f2, kernel_size=7, padding=3),
            _act(act),
            nn.Conv2d(f2, f3, kernel_size=1),
            _act(act),
        )
        self.last = nn.Conv2d(f3, channels, kernel_size=5, padding=2)
        for m in self.modules():  # the reference initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.base(x))


class FastARCNN(nn.Module):
    """Fast ARCNN: stride-2 feature extraction, shrinking, enhancement, expanding, stride-2 deconvolution.

    The reference maps an odd-sized input to a larger output (49x51 -> 50x52). This module pads the
    input to a multiple of the stride (replicate) and crops the output back, so every model keeps the
    input size; with the default options the parameters and state-dict keys are the reference's. The
    padding and the crop are traced into exported ONNX graphs (Shape / Mod / Pad ... Slice), so an
    exported model keeps the input size too.

    Options (recipe ``arch_kwargs``; the defaults are the reference): ``stride`` 2 or 4 of the encoder and
    the transposed-conv decoder (input padded to a multiple of it), ``mid_kernel`` and ``mid_layers`` of
    the middle (enhancement) convolutions, ``features`` (encoder, shrink, middle, expand widths) and
    ``act``. Stride 4 runs the middle on 1/16 of the pixels: ``models/fast-arcnn-s4-q10`` is stride 4,
    widths 64, four 3x3 middle layers (11.4 GMAC a 720p frame against the reference's 20.5).
    """

    def __init__(
        self, channels: int = 3, features: tuple[int, int, int, int] = (64, 32, 32, 64), act: str = "prelu",
        stride: int = 2, mid_kernel: int = 7, mid_layers: int = 1,
    ) -> None:
        super().__init__()
        if stride not in (2, 4):
            raise ValueError(f"stride must be 2 or 4, got {stride}")
        if mid_kernel < 1 or mid_kernel % 2 == 0:
            raise ValueError(f"mid_kernel must be odd and positive, got {mid_kernel}")
        if mid_layers < 1:
            raise ValueError(f"mid_layers must be at least 1, got {mid_layers}")
        f1, f2, f3, f4 = features
        self.stride = stride
        self.base = nn.Sequential(
            nn.Conv2d(channels, f1, kernel_size=9, stride=stride, padding=4),
            _act(act),
            nn.Conv2d(f1, f2, kernel_size=1),
            _act(act),
            *(layer for i in range(mid_layers) for layer in (
                nn.Conv2d(f2 if i == 0 else f3, f3, kernel_size=mid_kernel, padding=mid_kernel // 2), _act(act))),
            nn.Conv2d(f3, f4, kernel_size=1),
            _act(act),
        )
        self.last = nn.ConvTranspose2d(
            f4, channels, kernel_size=9, stride=stride, padding=4, output_padding=stride - 1
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        ph, pw = -h % self.stride, -w % self.stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        y = self.last(self.base(x))
        return y[..., :h, :w] if (ph or pw) else y


class ARCNNY(nn.Module):
    """The paper's ARCNN: 1 channel, ReLU, replicate padding (as Matlab ``imfilter(..., 'replicate')``)."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 64, 9, padding=4, padding_mode="replicate")
        self.conv2 = nn.Conv2d(64, 32, 7, padding=3, padding_mode="replicate")
        self.conv22 = nn.Conv2d(32, 16, 1)
        self.conv3 = nn.Conv2d(16, channels, 5, padding=2, padding_mode="replicate")
        self.relu = nn.ReLU()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv22(x))
        return self.conv3(x)


def load_matlab_arcnn(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the authors' Matlab ARCNN file into an ``arcnn_y`` state dict.

    Layout: ``weights_convN`` is ``[Cin, k*k, Cout]`` with the k*k index column-major, so
    ``w[o, i, r, c] = W[i, r + k*c, o]``; ``biases_convN`` is ``(Cout, 1)``.
    """
    from scipy.io import loadmat

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such Matlab weight file")
    try:
        mat = loadmat(str(p))
    except Exception as exc:  # scipy raises several kinds on a bad file
        raise CheckpointError(f"{p}: not a readable Matlab file ({exc})") from None
    shapes = {"conv1": (1, 64, 9), "conv2": (64, 32, 7), "conv22": (32, 16, 1), "conv3": (16, 1, 5)}
    state: dict[str, torch.Tensor] = {}
    for name, (cin, cout, k) in shapes.items():
        try:
            w = np.asarray(mat[f"weights_{name}"], dtype=np.float64)
            b = np.asarray(mat[f"biases_{name}"], dtype=np.float64).reshape(-1)
        except KeyError as exc:
            raise CheckpointError(f"{p}: missing {exc.args[0]} (not an ARCNN Matlab release?)") from None
        except (TypeError, ValueError) as exc:  # a struct or string where numbers belong
            raise CheckpointError(f"{p}: {name} is not numeric ({exc})") from None
        if w.size != cin * k * k * cout or b.size != cout:
            raise CheckpointError(
                f"{p}: {name} has {w.size} weights and {b.size} biases; ARCNN's needs {cin * k * k * cout} and {cout}"
            )
        w = w.reshape(cin, k * k, cout)
        # index j = r + k*c (column-major), so reshape to (c, r) order then swap
        t = w.reshape(cin, k, k, cout)  # [i, c, r, o]
        t = np.transpose(t, (3, 0, 2, 1))  # [o, i, r, c]
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(t)).float()
        state[f"{name}.bias"] = torch.from_numpy(b).float()
    return state


register_model(
    ModelSpec(
        "arcnn", ARCNN, "student", 3, "ARCNN (Dong et al. 2015), RGB, PReLU: the brief's reference model",
        published=(5, "117K"), reference_params=117_734,
    )
)
register_model(
    ModelSpec(
        "arcnn_relu", ARCNN, "student", 3, "ARCNN with ReLU (deploy-friendly: INT8 graphs fuse)",
        reference_params=117_731, kwargs={"act": "relu"},
    )
)
register_model(
    ModelSpec(
        "fast_arcnn", FastARCNN, "student", 3, "Fast ARCNN (Dong et al. 2016), RGB, PReLU: the brief's reference",
        reference_params=85_575,
    )
)
register_model(
    ModelSpec(
        "fast_arcnn_relu", FastARCNN, "student", 3, "Fast ARCNN with ReLU (deploy-friendly)",
        reference_params=85_571, kwargs={"act": "relu"},
    )
)
register_model(
    ModelSpec(
        "arcnn_y", ARCNNY, "student", 1, "ARCNN as in the paper: Y channel, ReLU, replicate padding",
        reference_params=106_561,
    )
)
