"""Registry-driven model tests: every model builds for 1 and 3 channels and keeps the input size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from compress.errors import RegistryError
from compress.nets import MODELS, build_model, count_params
from compress.nets.arcnn import load_matlab_arcnn

# full-size teachers are only built for counting here; tests/test_teachers.py runs small configs of them
FULL_SIZE = {"rdn", "idcn"}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("name", MODELS.names())
def test_reference_param_count(name: str) -> None:
    spec = MODELS.get(name)
    assert spec.reference_params is not None, f"{name} must state its parameter count"
    assert count_params(build_model(name)) == spec.reference_params


def test_brief_param_counts() -> None:
    assert count_params(build_model("arcnn")) == 117_734
    assert count_params(build_model("fast_arcnn")) == 85_575
    assert count_params(build_model("arcnn_y")) == 106_561


@pytest.mark.parametrize("name", [n for n in MODELS.names() if n not in FULL_SIZE])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("hw", [(24, 24), (49, 51), (33, 40)])
def test_forward_keeps_size(name: str, channels: int, hw: tuple[int, int]) -> None:
    m = build_model(name, channels).eval()
    x = torch.rand(2, channels, *hw)
    with torch.no_grad():
        y = m(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(RegistryError, match=r"unknown model 'arcn'.*valid: .*arcnn.*did you mean 'arcnn'"):
        build_model("arcn")


def test_reference_state_dict_layout() -> None:
    """Keys and shapes of the brief's reference implementation, so weights move both ways."""
    arcnn = build_model("arcnn").state_dict()
    assert list(arcnn) == [
        "base.0.weight", "base.0.bias", "base.1.weight", "base.2.weight", "base.2.bias", "base.3.weight",
        "base.4.weight", "base.4.bias", "base.5.weight", "last.weight", "last.bias",
    ]
    assert arcnn["base.0.weight"].shape == (64, 3, 9, 9)
    assert arcnn["last.weight"].shape == (3, 16, 5, 5)
    fast = build_model("fast_arcnn").state_dict()
    assert fast["last.weight"].shape == (64, 3, 9, 9)  # ConvTranspose2d: (in, out, k, k)
    assert [k for k in fast if k.startswith("base.") and k.endswith("weight")] == [
        f"base.{i}.weight" for i in range(8)
    ]


def test_fast_arcnn_odd_sizes_match_even_padding() -> None:
    """49x51 -> 49x51: the wrapper pads to even size and crops back; interior equals the padded run."""
    m = build_model("fast_arcnn").eval()
    x = torch.rand(1, 3, 49, 51)
    xp = torch.nn.functional.pad(x, (0, 1, 0, 1), mode="replicate")
    with torch.no_grad():
        assert torch.allclose(m(x), m(xp)[..., :49, :51])


@pytest.mark.parametrize("kwargs", [{"stride": 4, "features": (64, 48, 48, 64)}, {"mid_kernel": 3}])
def test_fast_arcnn_options_keep_size_and_cut_macs(kwargs: dict) -> None:
    """Recipe-level options (``arch_kwargs``): stride 4 runs the middle at 1/16 of the pixels. With one
    middle layer the reference's layer names stay; the encoder is always ``base.0`` and the decoder ``last``."""
    from compress.cost import profile_frame

    m = build_model("fast_arcnn", **kwargs).eval()
    ref = build_model("fast_arcnn")
    assert [n for n, _ in m.named_modules()] == [n for n, _ in ref.named_modules()]
    for hw in ((49, 51), (24, 24), (30, 34)):
        with torch.no_grad():
            assert m(torch.rand(1, 3, *hw)).shape[-2:] == hw
    deep = build_model("fast_arcnn", stride=4, features=(64, 64, 64, 64), mid_kernel=3, mid_layers=4)
    convs = [n for n, mod in deep.named_modules() if isinstance(mod, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    assert convs[0] == "base.0" and convs[-1] == "last" and len(convs) == 8
    assert profile_frame(m, 3, 1280, 720).macs_true < 0.6 * profile_frame(ref, 3, 1280, 720).macs_true


def test_fast_arcnn_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="stride must be 2 or 4"):
        build_model("fast_arcnn", stride=3)
    with pytest.raises(ValueError, match="mid_kernel must be odd"):
        build_model("fast_arcnn", mid_kernel=4)


WEIGHTS = Path(os.environ.get("COMPRESS_WEIGHTS", Path(__file__).resolve().parents[2] / "shared" / "weights"))


@pytest.mark.parametrize("q", [10, 20, 30, 40])
def test_matlab_weights_load(q: int) -> None:
    path = WEIGHTS / "arcnn_official" / f"q{q}.mat"
    if not path.exists():
        pytest.skip(f"authors' ARCNN weights not found at {path} (set COMPRESS_WEIGHTS)")
    m = build_model("arcnn_y")
    m.load_state_dict(load_matlab_arcnn(path), strict=True)
    w = m.conv1.weight
    assert w.shape == (64, 1, 9, 9) and torch.isfinite(w).all() and w.abs().sum() > 0
    # a flat image stays nearly flat: the learned filters restore, they do not invent structure
    with torch.no_grad():
        y = m(torch.full((1, 1, 32, 32), 0.5))
    assert (y - 0.5).abs().max() < 0.05
