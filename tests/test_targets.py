"""Hardware targets: the shipped YAML files, the schema's errors (file, line, key), precision rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.errors import RecipeError, RegistryError
from compress.targets import (
    Convention,
    Precision,
    Resolution,
    Runtime,
    activations_mb_at,
    get_target,
    get_targets,
    load_target,
    required_precisions,
    shipped_targets,
    weights_mb_at,
)

SHIPPED = ["cpu-ort-fp32", "cpu-ort-int8", "cpu-ov-bf16", "cpu-ov-fp32", "cpu-ov-int8", "cpu-ov-int8-u8", "edge-npu",
           "tv-chip"]


def test_shipped_targets_load() -> None:
    targets = shipped_targets()
    assert sorted(targets) == SHIPPED
    for t in targets.values():
        assert t.threads >= 1 and t.precisions
        assert t.illustrative == (t.runtime is Runtime.analytic)


def test_edge_npu_and_tv_chip_budgets() -> None:
    npu = get_target("edge-npu")
    assert npu.precisions == (Precision.int8,) and npu.illustrative
    assert npu.budgets.compute is not None
    assert npu.budgets.compute.max_tflops == 0.5
    assert npu.budgets.compute.convention is Convention.true  # YAML's bare `true` read as the convention
    assert npu.budgets.compute.resolution is Resolution.p720
    assert npu.budgets.weights_mb == 1.0
    tv = get_target("tv-chip")
    assert set(tv.precisions) == {Precision.int8, Precision.fp16} and tv.illustrative
    assert tv.budgets.compute is not None and tv.budgets.compute.max_tflops == 1.0
    assert tv.budgets.compute.resolution is Resolution.p1080
    assert tv.budgets.activations is not None and tv.budgets.activations.max_mb == 512
    assert "(illustrative)" in tv.label()


def test_unknown_target_lists_valid_names() -> None:
    with pytest.raises(RegistryError) as err:
        get_target("edge-nup")
    msg = str(err.value)
    assert "edge-npu" in msg and "cpu-ort-fp32" in msg and "did you mean 'edge-npu'" in msg


def test_get_targets_default_is_all_shipped() -> None:
    assert [t.name for t in get_targets(None)] == SHIPPED
    assert [t.name for t in get_targets(["tv-chip", "cpu-ov-int8"])] == ["tv-chip", "cpu-ov-int8"]


@pytest.mark.parametrize(
    ("bits", "expected"),
    [
        ((8, 8), {Precision.int8}),
        ((4, 8), {Precision.int8}),
        ((32, 32), {Precision.fp32, Precision.bf16, Precision.fp16}),
        ((16, 16), {Precision.fp16, Precision.bf16, Precision.fp32}),
        ((8, 32), {Precision.fp32, Precision.bf16, Precision.fp16}),
    ],
)
def test_required_precisions(bits: tuple[int, int], expected: set[Precision]) -> None:
    assert required_precisions(*bits) == expected


def test_can_run_and_precision_for() -> None:
    ov_bf16, ort_int8, tv = get_target("cpu-ov-bf16"), get_target("cpu-ort-int8"), get_target("tv-chip")
    assert ov_bf16.can_run(32, 32) and ov_bf16.precision_for(32, 32) is Precision.bf16
    assert not ov_bf16.can_run(8, 8)
    assert ort_int8.can_run(8, 8) and not ort_int8.can_run(32, 32)
    assert tv.precision_for(16, 16) is Precision.fp16
    # a float-trained student runs on the TV chip at FP16 (its first listed float precision), INT8 ones at int8
    assert tv.can_run(32, 32) and tv.precision_for(32, 32) is Precision.fp16
    assert tv.precision_for(8, 8) is Precision.int8 and tv.precision_for(4, 8) is Precision.int8
    assert not get_target("edge-npu").can_run(32, 32)


def test_bytes_at_precision_by_hand() -> None:
    # ARCNN (117,734 params): 117734 B = 0.1123 MiB at int8, x2 at fp16, x4 at fp32 (its fp32 ONNX is 472,451 B)
    assert weights_mb_at(117_734, Precision.int8) == pytest.approx(117_734 / 1_048_576)
    assert weights_mb_at(117_734, "fp16") == pytest.approx(2 * 117_734 / 1_048_576)
    assert weights_mb_at(117_734, Precision.bf16) == pytest.approx(2 * 117_734 / 1_048_576)
    assert weights_mb_at(117_734, Precision.fp32) == pytest.approx(4 * 117_734 / 1_048_576)
    # the fp32 analytic peak at 1080p30 is quartered at int8 and halved at fp16
    assert activations_mb_at(530.0, Precision.int8) == pytest.approx(132.5)
    assert activations_mb_at(530.0, Precision.fp16) == pytest.approx(265.0)
    assert activations_mb_at(530.0, Precision.fp32) == pytest.approx(530.0)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p


GOOD = """name: my-chip
description: a test chip
runtime: analytic
precisions: [int8]
illustrative: true
budgets:
  compute: {max_tflops: 2.0, convention: published, resolution: 1080p30}
"""


def test_a_valid_file_loads(tmp_path: Path) -> None:
    t = load_target(_write(tmp_path, "my-chip", GOOD))
    assert t.budgets.compute is not None and t.budgets.compute.convention is Convention.published
    assert get_target(str(tmp_path / "my-chip.yaml")).name == "my-chip"
    assert get_target("my-chip", folder=tmp_path).name == "my-chip"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("illustrative: true", "illustrative: true\nthreds: 2"), ":6: threds: unknown key"),
        (GOOD.replace("[int8]", "[int4]"), ":4: precisions.0: invalid value 'int4'; valid: fp32, bf16, fp16, int8"),
        (GOOD.replace("runtime: analytic", "runtime: tensorrt"), ":3: runtime: invalid value 'tensorrt'"),
        (GOOD.replace("max_tflops: 2.0", "max_tflops: -1"), ":7: budgets.compute.max_tflops: "),
        (GOOD.replace("1080p30", "4k"), ":7: budgets.compute.resolution: invalid value '4k'"),
        (GOOD.replace("convention: published", "convention: thop"), ":7: budgets.compute.convention: invalid"),
        (GOOD.replace("budgets:\n", "budgets:\n  latency: {max_ms: 30}\n"), ":1: (document): an analytic target"),
        (GOOD.replace("runtime: analytic", "runtime: onnxruntime").replace("[int8]", "[int8, bf16]"),
         "runtime onnxruntime cannot run bf16"),
        (GOOD.replace("[int8]", "[int8, int8]"), ":4: precisions: precision listed twice: int8"),
        (GOOD.replace("runtime: analytic", "runtime: onnxruntime").replace("illustrative: true", "io: u8-nhwc"),
         "io u8-nhwc needs runtime openvino"),
        (GOOD.replace("illustrative: true", "io: u8"), ":5: io: invalid value 'u8'; valid: f32-nchw, u8-nhwc"),
        (GOOD.replace("description: a test chip\n", ""), ":1: description: required key is missing"),
        (GOOD.replace("name: my-chip", "name: other-chip"), ":1: name: 'other-chip' must equal the file stem"),
        ("name: [unclosed", ":1: malformed YAML"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, "my-chip", text)
    with pytest.raises(RecipeError) as err:
        load_target(path)
    msg = str(err.value)
    assert msg.startswith(str(path)), msg
    assert expected in msg, msg


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    path = _write(tmp_path, "my-chip", GOOD.replace("max_tflops", "max_tflop"))
    with pytest.raises(RecipeError, match=r":7: budgets\.compute\.max_tflop: unknown key.*did you mean 'max_tflops'"):
        load_target(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="file not found"):
        load_target(tmp_path / "nope.yaml")
