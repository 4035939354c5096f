"""The teacher families (RDN, IDCN): structure, fixed DCT machinery, JPEG tables, sizes and parameter counts.

Forward passes use tiny configurations and tiny images; the full-size models are only built on the meta
device to count parameters and layers.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.fft import dctn, idctn
from torch import nn

from compress.nets import MODELS, build_model, count_params
from compress.nets.idcn import (
    IDCN,
    IJG_CHROMINANCE,
    IJG_LUMINANCE,
    dct_basis_8x8,
    ijg_quant_table,
    ijg_scale_factor,
    implicit_idct_kernel,
)
from compress.nets.rdn import RDN, ResidualDenseBlock

TEACHERS = ("rdn", "rdn_s", "idcn", "idcn_s")
FULL_SIZE = ("rdn", "idcn")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the test machine is shared; tiny convs gain nothing from more threads


def _tiny_rdn(channels: int) -> RDN:
    return RDN(channels, num_blocks=3, num_layers=4, growth=8, g0=16)


def _tiny_idcn(channels: int) -> IDCN:
    return IDCN(channels, features=16, num_units=2, pyramid_features=8, dilations=(3, 2, 1), quality=20)


def _conv_layers(model: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in model.modules())


def _meta_build(name: str, channels: int | None = None) -> nn.Module:
    with torch.device("meta"):
        return build_model(name, channels)


# --- registry and sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TEACHERS)
def test_registered_teacher_has_its_reference_params(name: str) -> None:
    spec = MODELS.get(name)
    assert spec.family == "teacher"
    assert spec.default_channels == 3
    assert spec.reference_params == count_params(_meta_build(name))


@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_matches_the_brief_table(name: str) -> None:
    spec = MODELS.get(name)
    assert spec.published is not None
    layers, params = spec.published
    model = _meta_build(name)
    assert _conv_layers(model) == layers
    published = float(params.rstrip("M")) * 1e6
    assert abs(count_params(model) - published) / published < 0.05


@pytest.mark.parametrize("name", ("rdn_s", "idcn_s"))
def test_small_teachers_are_cpu_sized(name: str) -> None:
    assert 300_000 <= count_params(_meta_build(name)) <= 1_000_000


@pytest.mark.parametrize("name", TEACHERS)
def test_one_channel_build(name: str) -> None:
    model = _meta_build(name, channels=1)
    assert model.reconstruct.out_channels == 1  # type: ignore[union-attr]
    assert model.fixed_width_layers()[0] is model.reconstruct  # type: ignore[operator]


# --- forward: any size, both channel counts ---------------------------------------------------------------


@pytest.mark.parametrize("make", (_tiny_rdn, _tiny_idcn), ids=("rdn", "idcn"))
@pytest.mark.parametrize("channels", (1, 3))
@pytest.mark.parametrize("size", ((8, 8), (13, 17), (9, 24)))
def test_forward_keeps_the_input_size(make, channels: int, size: tuple[int, int]) -> None:
    model = make(channels).eval()
    x = torch.rand(2, channels, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("make", (_tiny_rdn, _tiny_idcn), ids=("rdn", "idcn"))
def test_zero_reconstruction_gives_the_identity(make) -> None:
    """Global image residual: the network adds its output to the input."""
    model = make(3).eval()
    nn.init.zeros_(model.reconstruct.weight)
    nn.init.zeros_(model.reconstruct.bias)
    x = torch.rand(1, 3, 11, 10)
    with torch.no_grad():
        assert torch.equal(model(x), x)


# --- RDN structure ----------------------------------------------------------------------------------------


def test_rdn_blocks_are_dense_with_local_fusion() -> None:
    d, c, g, g0 = 3, 4, 8, 16
    model = RDN(3, num_blocks=d, num_layers=c, growth=g, g0=g0)
    assert len(model.blocks) == d
    for block in model.blocks:
        assert isinstance(block, ResidualDenseBlock)
        assert len(block.layers) == c
        for i, layer in enumerate(block.layers):
            assert layer.conv.in_channels == g0 + i * g
            assert layer.conv.out_channels == g
            assert layer.conv.kernel_size == (3, 3)
        assert block.fusion.kernel_size == (1, 1)
        assert (block.fusion.in_channels, block.fusion.out_channels) == (g0 + c * g, g0)
    assert model.gff[0].kernel_size == (1, 1)
    assert (model.gff[0].in_channels, model.gff[0].out_channels) == (d * g0, g0)
    assert model.gff[1].kernel_size == (3, 3)
    assert (model.sfe1.kernel_size, model.sfe2.kernel_size) == ((3, 3), (3, 3))
    assert _conv_layers(model) == 2 + d * (c + 1) + 3


def test_rdn_dense_layer_passes_its_input_through() -> None:
    layer = _tiny_rdn(3).blocks[0].layers[0]
    x = torch.rand(1, 16, 6, 7)
    with torch.no_grad():
        y = layer(x)
    assert y.shape[1] == 16 + 8
    assert torch.equal(y[:, :16], x)
    assert (y[:, 16:] >= 0).all()  # ReLU output


def test_rdb_with_zero_fusion_is_the_identity() -> None:
    """Local residual learning: the block adds the fused dense features to its input."""
    block = _tiny_rdn(3).blocks[1]
    nn.init.zeros_(block.fusion.weight)
    nn.init.zeros_(block.fusion.bias)
    x = torch.randn(1, 16, 7, 5)
    with torch.no_grad():
        assert torch.equal(block(x), x)


def test_rdn_global_feature_residual_adds_the_shallow_feature() -> None:
    model = _tiny_rdn(3).eval()
    for conv in model.gff:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        expected = x + model.reconstruct(model.sfe1(x))
        assert torch.allclose(model(x), expected, atol=1e-6)


# --- IDCN: DCT machinery and JPEG tables ------------------------------------------------------------------


def test_dct_basis_is_orthonormal() -> None:
    d = dct_basis_8x8().double()
    assert torch.allclose(d @ d.t(), torch.eye(64, dtype=torch.float64), atol=1e-6)


def test_dct_basis_is_the_blockwise_jpeg_dct() -> None:
    img = torch.rand(1, 1, 16, 24, dtype=torch.float64)
    coeffs = nn.functional.conv2d(img, dct_basis_8x8().double().view(64, 1, 8, 8), stride=8)
    for by in range(2):
        for bx in range(3):
            block = img[0, 0, 8 * by : 8 * by + 8, 8 * bx : 8 * bx + 8].numpy()
            expected = dctn(block, type=2, norm="ortho").reshape(-1)
            np.testing.assert_allclose(coeffs[0, :, by, bx].numpy(), expected, atol=1e-6)


def test_implicit_kernel_dequantizes_and_inverse_transforms() -> None:
    q = ijg_quant_table(10).reshape(-1)
    kernel = implicit_idct_kernel(dct_basis_8x8().double(), q)
    spectrum = torch.rand(64, dtype=torch.float64) - 0.5  # quantization steps
    pixels = nn.functional.conv2d(spectrum.view(1, 64, 1, 1), kernel).view(-1)
    expected = idctn((spectrum * q / 255.0).view(8, 8).numpy(), type=2, norm="ortho").reshape(-1)
    np.testing.assert_allclose(pixels.numpy(), expected, atol=1e-6)  # float32 basis


def test_dct_basis_is_a_buffer_not_a_parameter() -> None:
    model = _tiny_idcn(3)
    buffers = dict(model.named_buffers())
    assert "dct_basis" in buffers and "qtables" in buffers
    assert not buffers["dct_basis"].requires_grad
    assert all(p.data_ptr() != buffers["dct_basis"].data_ptr() for p in model.parameters())
    state = model.state_dict()
    assert "qtables" in state and "dct_basis" not in state  # tables travel with the weights; the basis is fixed
    model(torch.rand(1, 3, 8, 8)).mean().backward()
    assert buffers["dct_basis"].grad is None


def test_quality_50_gives_the_ijg_tables() -> None:
    assert ijg_quant_table(50).reshape(-1).tolist() == list(IJG_LUMINANCE)
    assert ijg_quant_table(50, chroma=True).reshape(-1).tolist() == list(IJG_CHROMINANCE)
    assert IJG_LUMINANCE[:8] == (16, 11, 10, 16, 24, 40, 51, 61)  # natural, not zigzag, order


@pytest.mark.parametrize("quality", (1, 10, 20, 49, 75, 100))
def test_quality_scaling_follows_libjpeg(quality: int) -> None:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    assert ijg_scale_factor(quality) == scale
    expected = [min(max((b * scale + 50) // 100, 1), 255) for b in IJG_LUMINANCE]
    assert ijg_quant_table(quality).reshape(-1).tolist() == expected


@pytest.mark.parametrize("quality", (5, 10, 30, 50, 51, 90))
def test_tables_match_what_libjpeg_writes(quality: int) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        tables = im.quantization  # type: ignore[attr-defined]
    assert list(tables[0]) == ijg_quant_table(quality).reshape(-1).tolist()
    assert list(tables[1]) == ijg_quant_table(quality, chroma=True).reshape(-1).tolist()


@pytest.mark.parametrize("quality", (0, 101, 10.5))
def test_invalid_quality_is_refused(quality) -> None:
    with pytest.raises(ValueError, match=r"1\.\.100"):
        ijg_quant_table(quality)


def test_set_quality_changes_tables_and_output() -> None:
    model = _tiny_idcn(3).eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        y20 = model(x)
        model.set_quality(50)
        y50 = model(x)
    assert model.qtables[0].tolist() == [float(v) for v in IJG_LUMINANCE]
    assert model.qtables[1].tolist() == [float(v) for v in IJG_CHROMINANCE]
    assert not torch.equal(y20, y50)
    with pytest.raises(ValueError):
        model.set_qtables([0] * 64, [1] * 64)


def test_checkpoint_carries_its_tables() -> None:
    trained = _tiny_idcn(3)
    trained.set_quality(30)
    fresh = _tiny_idcn(3)
    fresh.load_state_dict(trained.state_dict())
    assert torch.equal(fresh.qtables, trained.qtables)


# --- IDCN structure ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", (1, 3))
def test_idcn_units_have_pyramid_and_dual_branches(channels: int) -> None:
    f, p, dilations = 16, 8, (3, 2, 1)
    model = IDCN(channels, features=f, num_units=2, pyramid_features=p, dilations=dilations)
    assert len(model.units) == 2
    for unit in model.units:
        pyr = unit.pyramid
        assert (pyr.entry.in_channels, pyr.entry.out_channels) == (f, 2 * p)
        for i, (layer, d) in enumerate(zip(pyr.layers, dilations, strict=True)):
            assert layer.in_channels == 2 * p + i * p
            assert layer.dilation == (d, d)
        assert pyr.fusion.kernel_size == (1, 1)
        assert unit.to_dct_y.out_channels == 64
        assert unit.pixel.out_channels == f
        if channels == 3:
            assert unit.to_dct_c is not None
            assert unit.to_dct_c.out_channels == 64
            assert unit.to_dct_c.dilation == (2, 2)  # 4:2:0 chroma blocks span 16x16 pixels
            assert unit.from_dct.in_channels == 128
        else:
            assert unit.to_dct_c is None
            assert unit.from_dct.in_channels == 64
    per_unit = len(dilations) + (6 if channels == 3 else 5)
    assert _conv_layers(model) == 4 + 2 * per_unit
    assert set(model.fixed_width_layers()) >= {u.to_dct_y for u in model.units}


def test_dcu_with_zero_corrections_is_the_identity() -> None:
    model = _tiny_idcn(3)
    unit = model.units[0]
    for conv in (unit.from_dct, unit.pixel):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x = torch.randn(1, 16, 9, 8)
    with torch.no_grad():
        assert torch.equal(unit(x, *model.implicit_kernels()), x)


def test_luminance_spectrum_is_clamped_to_the_rounding_error() -> None:
    """Whatever the features, the luminance branch adds at most half a quantization step per coefficient."""
    model = _tiny_idcn(1)
    unit = model.units[0]
    nn.init.constant_(unit.to_dct_y.bias, 1e3)
    captured: list[torch.Tensor] = []
    handle = unit.from_dct.register_forward_hook(lambda _m, inp, _out: captured.append(inp[0]))
    with torch.no_grad():
        model(torch.rand(1, 1, 8, 8))
    handle.remove()
    q = model.qtables[0] / 255.0
    # a spectrum of +0.5 steps everywhere, inverse-transformed: the bound is exact, not just a clip
    bound = (dct_basis_8x8().t() @ (0.5 * q)).view(1, 64, 1, 1)
    assert torch.allclose(captured[0], bound.expand_as(captured[0]), atol=1e-5)
