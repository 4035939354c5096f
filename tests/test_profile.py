"""The cost profiler reproduces the brief's ARCNN / Fast ARCNN table exactly."""

from __future__ import annotations

import json

import pytest

from compress.cli import main
from compress.cost import profile_model

BRIEF = {
    "arcnn": (117_734, {"480p30": (1.22, 602.94), "720p30": (3.25, 1607.09), "1080p30": (7.32, 3615.39)}),
    "fast_arcnn": (85_575, {"480p30": (0.34, 265.32), "720p30": (0.91, 706.97), "1080p30": (2.06, 1590.27)}),
}


@pytest.mark.parametrize("name", list(BRIEF))
def test_published_convention(name: str) -> None:
    params, rows = BRIEF[name]
    cost = profile_model(name)
    assert cost.params == params
    for res, (tflops, mb) in rows.items():
        f = cost.frames[res]
        assert round(f.tflops, 2) == tflops
        assert round(f.memory_mb, 2) == mb


def test_true_macs_charge_transposed_conv_per_input_pixel() -> None:
    f = profile_model("fast_arcnn").frames["480p30"]
    # thop charges the last layer (64->3, 9x9, stride 2) per output pixel: 4x its true cost
    last_true = 360 * 240 * 64 * 3 * 81
    prelu_elements = (64 + 32 + 32 + 64) * 360 * 240  # thop also counts one op per PReLU output element
    assert f.macs_thop - f.macs_true == 3 * last_true + prelu_elements
    arcnn = profile_model("arcnn").frames["480p30"]
    per_px = 3 * 64 * 81 + 64 * 32 * 49 + 32 * 16 + 16 * 3 * 25
    assert arcnn.macs_true == per_px * 720 * 480


def test_peak_activation_is_bounded_by_live_tensors() -> None:
    f = profile_model("arcnn").frames["480p30"]
    px = 720 * 480 * 4
    # input + conv1 output + its PReLU output are alive together; never all layers at once
    assert f.peak_activation_bytes == px * (3 + 64 + 64)


def test_cli_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "arcnn", "fast_arcnn"]) == 0
    out = capsys.readouterr().out
    for line in ["1.22    602.94", "3.25   1607.09", "7.32   3615.39", "0.34    265.32", "0.91    706.97",
                 "2.06   1590.27", "117,734", "85,575"]:
        assert line in out
    assert "Network comparison" in out and "rdn" in out and "idcn" in out
    assert main(["profile", "arcnn", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["model"] == "arcnn" and data[0]["params"] == 117_734
    for key in ("tflops", "tflops_true", "memory_mb", "peak_activation_mb"):
        assert set(data[0][key]) == {"480p30", "720p30", "1080p30"}
    assert round(data[0]["memory_mb"]["1080p30"], 2) == 3615.39


def test_cli_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
