"""Deployment latency on a tiny ONNX model (onnxruntime, OpenVINO), INT8 fusion checks, latency tables.

Timings on a shared 2-core machine are noisy: these tests check that numbers are positive and
repeatable to within an order of magnitude, never a speed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from compress.cli import main
from compress.deploy import (
    BACKENDS,
    Fusion,
    LatencyRecord,
    bench_latency,
    check_fusion,
    export_onnx,
    make_dynamic_hw,
    matmul_peak,
    measure_latency,
    onnx_input,
    onnx_macs,
    onnx_precision,
    records_frame,
    sha256,
    write_latency,
)
from compress.errors import CompressError
from compress.targets import Precision, Runtime, get_target

os.environ.setdefault("NNCF_CI", "1")
SMALL = {"64x64": (64, 64)}


class TwoConv(nn.Module):
    """Conv -> ReLU -> Conv: every convolution fuses in onnxruntime INT8."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


class ConvDeconv(nn.Module):
    """Strided conv -> ReLU -> ConvTranspose, like Fast ARCNN's ends (the transposed conv stays float)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.b = nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2-conv net exported at a fixed 64x64 (no dynamic axes): deploy must free height and width."""
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    torch.manual_seed(0)
    with torch.no_grad():
        torch.onnx.export(TwoConv().eval(), (torch.rand(1, 3, 64, 64),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"])
    return path


@pytest.fixture(scope="module")
def deconv_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return export_onnx(ConvDeconv(), tmp_path_factory.mktemp("onnx") / "deconv.onnx", channels=3)


def _repeatable(a: LatencyRecord, b: LatencyRecord) -> None:
    load = os.getloadavg()
    assert a.ms_median > 0 and b.ms_median > 0 and a.ms_p90 >= a.ms_median
    ratio = max(a.ms_median, b.ms_median) / min(a.ms_median, b.ms_median)
    assert ratio < 10, f"{a.ms_median:.3f} vs {b.ms_median:.3f} ms (load {load})"


def test_every_measured_runtime_has_a_backend() -> None:
    assert sorted(BACKENDS) == sorted(r.value for r in Runtime if r is not Runtime.analytic)


def test_onnx_helpers(tiny_onnx: Path, tmp_path: Path) -> None:
    assert onnx_input(tiny_onnx) == ("input", 3)
    assert onnx_precision(tiny_onnx) is Precision.fp32
    assert onnx_macs(tiny_onnx, 64, 64) == 64 * 64 * (8 * 27 + 3 * 72)
    dyn = make_dynamic_hw(tiny_onnx, tmp_path / "dyn.onnx")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(dyn), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((1, 3, 40, 56), np.float32)})[0].shape == (1, 3, 40, 56)


def test_onnx_macs_match_the_cost_model(deconv_onnx: Path) -> None:
    from compress.cost import profile_frame

    torch.manual_seed(0)
    assert onnx_macs(deconv_onnx, 64, 96) == profile_frame(ConvDeconv(), 3, 96, 64).macs_true


@pytest.mark.parametrize("target", ["cpu-ort-fp32", "cpu-ov-fp32"])
def test_latency_positive_and_repeatable(tiny_onnx: Path, target: str) -> None:
    t = get_target(target)
    a, b = (measure_latency(tiny_onnx, t, resolutions=SMALL, n=15, warmup=3, peak_memory=False)[0] for _ in "ab")
    _repeatable(a, b)
    assert (a.target, a.runtime, a.resolution, a.width, a.height) == (target, t.runtime.value, "64x64", 64, 64)
    assert a.precision == "fp32" and a.precision_effective == "fp32" and a.threads == t.threads == 2
    assert a.n == 15 and len(a.onnx_sha256) == 64 and a.variant == "tiny" and a.load_avg >= 0


def test_peak_memory_beside_the_analytic_peak(tiny_onnx: Path) -> None:
    analytic = {"128x128": 4 * 128 * 128 * (3 + 8 + 3) / 2**20}
    rec = measure_latency(tiny_onnx, get_target("cpu-ort-fp32"), resolutions={"128x128": (128, 128)}, n=2,
                          warmup=1, analytic_mb=analytic)[0]
    assert rec.peak_rss_mb is not None and 0 <= rec.peak_rss_mb < 256
    assert rec.rss_hwm_mb is not None and rec.rss_hwm_mb > rec.peak_rss_mb
    assert rec.analytic_peak_mb == pytest.approx(analytic["128x128"])


def test_onnxruntime_int8_from_a_float_model(tiny_onnx: Path) -> None:
    rec = measure_latency(tiny_onnx, get_target("cpu-ort-int8"), resolutions=SMALL, n=5, peak_memory=False)[0]
    assert rec.ms_median > 0 and rec.precision == "int8"
    assert rec.quantized_by == "onnxruntime.quantize_static"
    assert rec.fusion == Fusion.full and rec.precision_effective == "int8"


def test_openvino_int8_via_nncf(tiny_onnx: Path) -> None:
    rec = measure_latency(tiny_onnx, get_target("cpu-ov-int8"), resolutions=SMALL, n=5, peak_memory=False)[0]
    assert rec.ms_median > 0 and rec.precision == "int8" and rec.quantized_by == "nncf.quantize"
    assert rec.precision_effective.startswith("int8")


def test_openvino_u8_frames_are_timed_with_uint8_nhwc_input(tiny_onnx: Path) -> None:
    target = get_target("cpu-ov-int8-u8")
    rec = measure_latency(tiny_onnx, target, resolutions={"48x32": (48, 32)}, n=3, peak_memory=True)[0]
    assert rec.target == "cpu-ov-int8-u8" and rec.ms_median > 0 and rec.precision_effective.startswith("int8")
    assert rec.peak_rss_mb is not None  # the memory subprocess builds the same uint8 graph
    from compress.deploy import frame_input

    loaded = BACKENDS.get("openvino").load(
        BACKENDS.get("openvino").prepare(tiny_onnx, Precision.fp32, Path(tempfile.mkdtemp()), []),
        1, 3, 32, 48, target.io,
    )
    y = loaded.run(frame_input(target.io, 3, 32, 48))
    assert y.dtype == np.uint8 and y.shape == (1, 32, 48, 3)
    with pytest.raises(CompressError, match="not u8-nhwc"):
        BACKENDS.get("onnxruntime").load(
            BACKENDS.get("onnxruntime").prepare(tiny_onnx, Precision.fp32, Path(tempfile.mkdtemp()), []),
            1, 3, 32, 48, target.io,
        )


def test_openvino_bf16_records_what_the_cpu_did(tiny_onnx: Path) -> None:
    rec = measure_latency(tiny_onnx, get_target("cpu-ov-bf16"), resolutions=SMALL, n=3, peak_memory=False)[0]
    assert rec.precision == "bf16" and rec.precision_effective in {"bf16", "fp32"}  # f32 without AMX/AVX512-BF16


def test_fusion_report(tiny_onnx: Path, deconv_onnx: Path, tmp_path: Path) -> None:
    assert check_fusion(tiny_onnx).status is Fusion.float_model
    ort_backend = BACKENDS.get("onnxruntime")
    from compress.deploy import synthetic_calibration

    full = ort_backend.prepare(tiny_onnx, Precision.int8, tmp_path, synthetic_calibration(3, count=2))
    rep = check_fusion(full.path)
    assert rep.status is Fusion.full and rep.quantized_convs == 2 and rep.float_convs == 0
    (tmp_path / "d").mkdir()
    part = ort_backend.prepare(deconv_onnx, Precision.int8, tmp_path / "d", synthetic_calibration(3, count=2))
    rep = check_fusion(part.path)
    assert rep.status is Fusion.partial and rep.float_convs >= 1  # quantized ConvTranspose is not fused
    assert onnx_precision(part.path) is Precision.int8


def test_measure_refuses_what_a_target_cannot_run(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(CompressError, match="analytic: nothing to measure"):
        measure_latency(tiny_onnx, get_target("edge-npu"), resolutions=SMALL)
    from compress.deploy import synthetic_calibration

    q = BACKENDS.get("onnxruntime").prepare(tiny_onnx, Precision.int8, tmp_path, synthetic_calibration(3, count=2))
    with pytest.raises(CompressError, match="INT8 graph; target 'cpu-ort-fp32' runs only fp32"):
        measure_latency(q.path, get_target("cpu-ort-fp32"), resolutions=SMALL)
    with pytest.raises(CompressError, match="not found"):
        measure_latency(tmp_path / "missing.onnx", get_target("cpu-ort-fp32"))


def _record(variant: str, target: str, ms: float, cpu: str = "cpu") -> LatencyRecord:
    return LatencyRecord(
        variant=variant, target=target, runtime="onnxruntime", resolution="720p30", width=1280, height=720,
        precision="fp32", precision_effective="fp32", quantized_by="", fusion="", threads=2, n=5, warmup=1,
        ms_median=ms, ms_p90=ms, ms_min=ms, ms_max=ms, load_avg=1.0, load_avg_end=1.0, peak_rss_mb=None,
        rss_hwm_mb=None, analytic_peak_mb=None, onnx_path="m.onnx", onnx_sha256="0" * 64, runtime_version="1",
        cpu=cpu, timestamp="now",
    )


def test_write_latency_upserts(tmp_path: Path) -> None:
    out = tmp_path / "r" / "latency.csv"
    write_latency([_record("a", "cpu-ort-fp32", 10.0), _record("b", "cpu-ort-fp32", 20.0)], out)
    write_latency([_record("a", "cpu-ort-fp32", 12.0), _record("a", "cpu-ov-fp32", 5.0)], out)
    df = pd.read_csv(out).set_index(["variant", "target"])
    assert len(df) == 3 and df.loc[("a", "cpu-ort-fp32"), "ms_median"] == 12.0
    assert list(pd.read_csv(out).columns) == LatencyRecord.columns()
    assert list(records_frame([]).columns) == LatencyRecord.columns()


def test_write_latency_keeps_each_machines_rows(tmp_path: Path) -> None:
    out = tmp_path / "latency.csv"
    write_latency([_record("a", "cpu-ort-fp32", 900.0, "AMD EPYC [avx2]")], out)
    write_latency([_record("a", "cpu-ort-fp32", 300.0, "AMD EPYC [avx512+vnni+bf16]")], out)
    write_latency([_record("a", "cpu-ort-fp32", 310.0, "AMD EPYC [avx512+vnni+bf16]")], out)
    df = pd.read_csv(out).set_index("cpu")
    assert df["ms_median"].to_dict() == {"AMD EPYC [avx2]": 900.0, "AMD EPYC [avx512+vnni+bf16]": 310.0}


def test_another_machines_timings_are_not_skipped_or_counted(tiny_onnx: Path, tmp_path: Path) -> None:
    """Resuming (skip_done) and --per-graph look at this machine's rows only: a table timed elsewhere is
    timed again here, beside the old rows."""
    from compress.deploy import count_timed_graphs, cpu_name, measure_results

    root = tmp_path / "demo"
    root.mkdir()
    base = {"resolution": "720p30", "params": 435, "tflops": 0.01, "tflops_true": 0.01, "memory_mb": 30.0,
            "peak_activation_mb": 20.0, "model_bytes": tiny_onnx.stat().st_size, "onnx_path": str(tiny_onnx),
            "weight_bits": 32, "act_bits": 32}
    pd.DataFrame([{"variant": "tiny", **base}]).to_csv(root / "cost.csv", index=False)
    res = {"720p30": (1280, 720)}
    out = measure_results(root, [get_target("cpu-ort-fp32")], resolutions=res, n=2, warmup=1, peak_memory=False)
    lat = pd.read_csv(out)
    assert lat["cpu"].tolist() == [cpu_name()]
    lat["cpu"] = "Elsewhere CPU [avx2]"
    lat.to_csv(out, index=False)
    assert count_timed_graphs([out]) == {}
    assert len(count_timed_graphs([out], cpu="Elsewhere CPU [avx2]")) == 1
    measure_results(root, [get_target("cpu-ort-fp32")], resolutions=res, n=2, warmup=1, peak_memory=False,
                    skip_done=True, per_graph=1)
    assert sorted(pd.read_csv(out)["cpu"]) == sorted(["Elsewhere CPU [avx2]", cpu_name()])


def test_matmul_peak_is_positive() -> None:
    peak = matmul_peak(threads=2, size=512, repeats=2, max_seconds=2.0)
    assert set(peak) == {"fp32", "bf16"}
    assert all(p.gflops > 0 and math.isfinite(p.gflops) and 256 <= p.size <= 512 for p in peak.values())


def test_bench_fraction_of_peak(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench" / "latency.csv"
    table = bench_latency({"tiny": tiny_onnx}, [get_target("cpu-ort-fp32"), get_target("edge-npu")],
                          resolution="480p30", n=2, warmup=1, out=out, matmul_size=256)
    assert list(table["target"]) == ["cpu-ort-fp32"]  # analytic targets are skipped
    row = table.iloc[0]
    assert row["gmacs"] == pytest.approx(720 * 480 * (8 * 27 + 3 * 72) / 1e9)
    assert row["fps"] > 0 and 0 < row["frac_fp32_peak"] and row["peak_gflops_fp32"] > 0
    assert out.is_file() and "frac_bf16_peak" in pd.read_csv(out).columns


def test_latency_cli(tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "latency.csv"
    rc = main(["latency", str(tiny_onnx), "--target", "cpu-ort-fp32", "--resolution", "480p30", "--n", "2",
               "--warmup", "1", "--no-memory", "--variant", "tiny-v", "--out", str(out), "--quiet-wait", "0"])
    assert rc == 0 and "tiny-v" in capsys.readouterr().out
    df = pd.read_csv(out)
    assert list(df["variant"]) == ["tiny-v"] and (df["ms_median"] > 0).all()
    assert (df["probe_gflops"] > 0).all() and (df["attempts"] == 1).all()  # the guard ran, and never waited
    assert main(["latency", str(tiny_onnx), "--target", "edge-npu", "--out", str(out)]) == 2
    assert "no measured target" in capsys.readouterr().err


def test_measure_results_then_pareto_on_latency(tiny_onnx: Path, tmp_path: Path) -> None:
    """End to end: a results folder -> latency.csv -> a front on measured latency."""
    from compress.deploy import measure_results
    from compress.pareto import Axis, CostAxis, Selection, load_tables, target_points

    root = tmp_path / "demo"
    root.mkdir()
    base = {"resolution": "720p30", "params": 435, "tflops": 0.01, "tflops_true": 0.01, "memory_mb": 30.0,
            "peak_activation_mb": 20.0, "model_bytes": tiny_onnx.stat().st_size, "onnx_path": str(tiny_onnx)}
    pd.DataFrame([{"variant": "tiny", "weight_bits": 32, "act_bits": 32, **base},
                  {"variant": "tiny-int8", "weight_bits": 8, "act_bits": 8, **base}]).to_csv(root / "cost.csv",
                                                                                          index=False)
    pd.DataFrame([{"variant": v, "dataset": "live1", "quality": 10, "protocol": "idcn-rgb", "psnr": p}
                  for v, p in (("tiny", 26.0), ("tiny-int8", 25.9))]).to_csv(root / "quality.csv", index=False)
    out = measure_results(root, [get_target("cpu-ort-fp32"), get_target("edge-npu")],
                          resolutions={"720p30": (1280, 720)}, n=2, warmup=1, peak_memory=False)
    lat = pd.read_csv(out)
    assert list(lat["variant"]) == ["tiny"] and list(lat["target"]) == ["cpu-ort-fp32"]  # int8 can't run on fp32
    assert lat["analytic_peak_mb"].item() == 20.0
    pts, axis = target_points(load_tables([root]), get_target("cpu-ort-fp32"), Selection("live1", 10, "idcn-rgb"))
    assert axis == Axis(CostAxis.latency_ms, "720p30")
    row = pts.set_index("key").loc["tiny"]
    assert row["on_front"] and row["x"] == pytest.approx(lat["ms_median"].item())
    # resumable: what is measured (same ONNX file) is skipped, a new resolution is measured
    stamp = lat["timestamp"].item()
    measure_results(root, [get_target("cpu-ort-fp32")], resolutions={"720p30": (1280, 720)}, n=2, warmup=1,
                    peak_memory=False, skip_done=True)
    assert pd.read_csv(out)["timestamp"].tolist() == [stamp]
    measure_results(root, [get_target("cpu-ort-fp32")], resolutions={"720p30": (1280, 720), "480p30": (720, 480)},
                    n=2, warmup=1, peak_memory=False, skip_done=True)
    assert sorted(pd.read_csv(out)["resolution"]) == ["480p30", "720p30"]


def test_measure_results_skips_variants_whose_onnx_is_not_here(tiny_onnx: Path, tmp_path: Path) -> None:
    """A clone holds weights and ONNX for front members only: the others are skipped with a message, not an
    error that stops the folder."""
    from compress.deploy import measure_results

    root = tmp_path / "clone"
    root.mkdir()
    base = {"resolution": "720p30", "weight_bits": 32, "act_bits": 32, "peak_activation_mb": 20.0}
    pd.DataFrame([{"variant": "gone", "onnx_path": "gone/model.onnx", **base},
                  {"variant": "tiny", "onnx_path": str(tiny_onnx), **base}]).to_csv(root / "cost.csv", index=False)
    said: list[str] = []
    out = measure_results(root, [get_target("cpu-ort-fp32")], resolutions={"720p30": (1280, 720)}, n=2, warmup=1,
                          peak_memory=False, log=said.append)
    assert pd.read_csv(out)["variant"].tolist() == ["tiny"]
    assert len(said) == 1 and said[0].startswith("clone/gone: no ") and said[0].endswith("skipped")


def test_per_graph_times_one_variant_of_a_graph_and_the_rest_share_it(tiny_onnx: Path, tmp_path: Path) -> None:
    """--per-graph 1: of two variants with one graph only the first is timed; cost.csv's backfilled signature
    gives the other the same latency on the front."""
    from compress.deploy import count_timed_graphs, graph_signature, measure_results
    from compress.pareto import Selection, load_tables, target_points
    from compress.results import fill_cost_signatures

    root = tmp_path / "demo"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    shutil.copy(tiny_onnx, root / "a" / "model.onnx")
    shutil.copy(tiny_onnx, root / "b" / "model.onnx")
    base = {"resolution": "720p30", "params": 435, "tflops": 0.01, "tflops_true": 0.01, "memory_mb": 30.0,
            "peak_activation_mb": 20.0, "model_bytes": tiny_onnx.stat().st_size, "weight_bits": 32, "act_bits": 32}
    pd.DataFrame([{"variant": v, "onnx_path": f"{v}/model.onnx", **base} for v in ("a", "b")]).to_csv(
        root / "cost.csv", index=False)
    pd.DataFrame([{"variant": v, "dataset": "live1", "quality": 10, "protocol": "idcn-rgb", "psnr": p}
                  for v, p in (("a", 26.0), ("b", 26.1))]).to_csv(root / "quality.csv", index=False)
    assert fill_cost_signatures(root, graph_signature) == 2
    assert set(pd.read_csv(root / "cost.csv")["graph_signature"]) == {graph_signature(tiny_onnx)}
    assert fill_cost_signatures(root, graph_signature) == 0  # nothing left to fill
    out = measure_results(root, [get_target("cpu-ort-fp32")], resolutions={"720p30": (1280, 720)}, n=2, warmup=1,
                          peak_memory=False, per_graph=1)
    lat = pd.read_csv(out)
    assert list(lat["variant"]) == ["a"]
    assert count_timed_graphs([out]) == {(graph_signature(tiny_onnx), "cpu-ort-fp32"): 1}
    pts, _ = target_points(load_tables([root]), get_target("cpu-ort-fp32"), Selection("live1", 10, "idcn-rgb"))
    pts = pts.set_index("key")
    assert pts.loc["b", "x"] == pytest.approx(lat["ms_median"].item()) and not pts.loc["b", "x_timed"]
    assert list(pts.index[pts["on_front"]]) == ["b"]  # the same cost, better quality


def test_cost_signatures_fall_back_to_the_timed_file(tmp_path: Path) -> None:
    """Without the ONNX file (not committed off the front), a cost row takes its latency rows' signature."""
    from compress.results import fill_cost_signatures

    root = tmp_path / "r"
    root.mkdir()
    pd.DataFrame([{"variant": v, "resolution": "720p30", "onnx_path": f"{v}/model.onnx"} for v in ("a", "b")]).to_csv(
        root / "cost.csv", index=False)
    pd.DataFrame([{"variant": "a", "target": "t", "graph_signature": "g"}]).to_csv(root / "latency.csv", index=False)
    assert fill_cost_signatures(root, lambda p: "never called") == 1
    sig = pd.read_csv(root / "cost.csv").set_index("variant")["graph_signature"]
    assert sig["a"] == "g" and pd.isna(sig["b"])


# ---------------------------------------------------------------------------------------------
# scoring a deployed graph


@pytest.fixture(scope="module")
def arcnn_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    from compress.nets import build_model
    from compress.train import init_model_

    torch.manual_seed(0)
    model = build_model("arcnn").eval()
    init_model_(model, "identity")  # restores like a trained model would (close to the JPEG input)
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx") / "arcnn.onnx", channels=3)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtime_model_scores_like_torch(arcnn_onnx: tuple[nn.Module, Path], runtime: str) -> None:
    from compress.deploy import runtime_model
    from compress.evaluate import evaluate_model

    model, path = arcnn_onnx
    rm = runtime_model(path, runtime)
    assert (rm.runtime, rm.precision) == (runtime, "fp32")
    for h, w in ((40, 24), (37, 29)):  # any size, odd ones too
        x = torch.rand(1, 3, h, w)
        with torch.no_grad():
            assert torch.allclose(rm(x), model(x), atol=1e-4)
    args = {"dataset": "embedded", "qualities": 10, "protocol": "idcn-rgb", "limit": 1, "progress": False,
            "metrics": ("psnr",)}
    assert evaluate_model(rm, **args)[0].psnr == pytest.approx(evaluate_model(model, **args)[0].psnr, abs=1e-3)


def test_runtime_model_with_u8_frames_rounds_like_the_protocols(arcnn_onnx: tuple[nn.Module, Path]) -> None:
    from compress.deploy import runtime_model
    from compress.evaluate import evaluate_model

    model, path = arcnn_onnx
    rm = runtime_model(path, "openvino", io="u8-nhwc")
    assert rm.io == "u8-nhwc"
    x = torch.randint(0, 256, (1, 3, 37, 29)).float() / 255  # frames read as uint8, as the evaluation feeds them
    with torch.no_grad():
        want = torch.clamp(torch.round(model(x) * 255), 0, 255)
    got = rm(x) * 255
    assert torch.allclose(got, torch.round(got), atol=1e-3)  # 8-bit values
    assert float((got - want).abs().max()) <= 1.0 and float((got - want).abs().mean()) < 0.01  # ties only
    args = {"dataset": "embedded", "qualities": 10, "protocol": "idcn-rgb", "limit": 1, "progress": False,
            "metrics": ("psnr",)}
    assert evaluate_model(rm, **args)[0].psnr == pytest.approx(evaluate_model(model, **args)[0].psnr, abs=1e-3)


def test_runtime_model_refuses_what_it_cannot_run(arcnn_onnx: tuple[nn.Module, Path], tmp_path: Path) -> None:
    from compress.deploy import runtime_model

    _, path = arcnn_onnx
    with pytest.raises(CompressError, match="QDQ graph"):
        runtime_model(path, "openvino", precision="int8")  # a float graph is never quantized silently
    with pytest.raises(CompressError, match="as it is"):
        runtime_model(path, "onnxruntime", precision="bf16")
    with pytest.raises(CompressError, match="unknown runtime"):
        runtime_model(path, "tensorrt")
    with pytest.raises(CompressError, match="no such ONNX"):
        runtime_model(tmp_path / "missing.onnx")
    with pytest.raises(CompressError, match="io u8-nhwc needs runtime openvino"):
        runtime_model(path, "onnxruntime", io="u8-nhwc")


def test_evaluate_cli_scores_an_onnx_file(
    arcnn_onnx: tuple[nn.Module, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    _, path = arcnn_onnx
    argv = ["evaluate", "--onnx", str(path), "--runtime", "openvino", "--dataset", "embedded", "--quality", "10",
            "--protocol", "idcn-rgb", "--limit", "1", "--no-progress", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["model"].endswith("@openvino-fp32") and out[0]["psnr"] > 20
    assert main([*argv, "--io", "u8-nhwc"]) == 0  # 8-bit frames: what cpu-ov-int8-u8 runs, scored the same way
    u8 = json.loads(capsys.readouterr().out)
    assert u8[0]["model"].endswith("@openvino-fp32-u8-nhwc") and abs(u8[0]["psnr"] - out[0]["psnr"]) < 0.01
    assert main([*argv[:3], "--runtime", "onnxruntime", *argv[5:], "--io", "u8-nhwc"]) == 2
    assert "needs runtime openvino" in capsys.readouterr().err
    assert main(["evaluate", "--onnx", str(path), "--model", "arcnn", "--quality", "10", "--protocol", "idcn-rgb"]) == 2
    assert "without --model" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# graph signatures and deployed quality


def test_graph_signature_ignores_weights_not_structure(tmp_path: Path) -> None:
    from compress.deploy import graph_signature
    from compress.nets import build_model

    def export(seed: int, name: str, model_name: str = "arcnn") -> Path:
        torch.manual_seed(seed)
        return export_onnx(build_model(model_name).eval(), tmp_path / f"{name}.onnx", channels=3, size=32)

    a, b = export(0, "a"), export(1, "b")
    assert a.read_bytes() != b.read_bytes()  # other weights ...
    assert graph_signature(a) == graph_signature(b)  # ... same graph: two seeds of one architecture
    assert graph_signature(export(0, "fast", "fast_arcnn")) != graph_signature(a)
    assert graph_signature(export(0, "relu", "arcnn_relu")) != graph_signature(a)  # PRelu vs Relu


def test_graph_signature_ignores_how_the_exporter_shared_equal_constants(tmp_path: Path) -> None:
    """QAT exports merge zero points of equal value into one Constant node: the count and order of the
    Constant nodes then differ between seeds of one graph, which must not change its signature."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from compress.deploy import graph_signature

    def qdq(shared: bool, scale_shape: tuple[int, ...] = ()) -> Path:
        zp = [helper.make_node("Constant", [], ["zp_a"], value=numpy_helper.from_array(np.uint8(3), "v"))]
        if not shared:
            zp.append(helper.make_node("Constant", [], ["zp_b"], value=numpy_helper.from_array(np.uint8(3), "v")))
        scale = numpy_helper.from_array(np.full(scale_shape, 0.1, np.float32), "s")
        nodes = [*zp, helper.make_node("QuantizeLinear", ["x", "s", "zp_a"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "s", "zp_a" if shared else "zp_b"], ["y"])]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [scale])
        path = tmp_path / f"{shared}{len(scale_shape)}.onnx"
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
        return path

    assert graph_signature(qdq(shared=True)) == graph_signature(qdq(shared=False))
    assert graph_signature(qdq(shared=True, scale_shape=(3,))) != graph_signature(qdq(shared=True))


def test_measured_rows_carry_the_graph_signature(tiny_onnx: Path) -> None:
    from compress.deploy import graph_signature

    rec = measure_latency(tiny_onnx, get_target("cpu-ort-fp32"), resolutions={"r": (32, 24)}, n=1, warmup=0,
                          peak_memory=False)[0]
    assert rec.graph_signature == graph_signature(tiny_onnx) and len(rec.graph_signature) == 64


def test_deployed_scores_each_variant_in_each_runtime(arcnn_onnx: tuple[nn.Module, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """End to end: a results folder -> deployed.csv (onnxruntime + OpenVINO) -> the front takes it as quality."""
    import shutil

    from compress.deployed import score_results
    from compress.evaluate import evaluate_model
    from compress.pareto import Selection, load_tables, target_points

    model, path = arcnn_onnx
    root = tmp_path / "demo"
    (root / "v").mkdir(parents=True)
    shutil.copy(path, root / "v" / "model.onnx")
    base = {"recipe": "demo", "resolution": "720p30", "weight_bits": 32, "act_bits": 32, "params": 117734}
    pd.DataFrame([{"variant": "v", "variant_name": "v", "onnx_path": "v/model.onnx", **base},
                  {"variant": "gone", "variant_name": "gone", "onnx_path": "gone/model.onnx", **base}]
                 ).to_csv(root / "cost.csv", index=False)
    torch_psnr = evaluate_model(model, "embedded", 10, "idcn-rgb", limit=1, progress=False)[0].psnr
    pd.DataFrame([{"variant": v, "dataset": "embedded", "quality": 10, "protocol": "idcn-rgb", "psnr": torch_psnr,
                   "jpeg_psnr": 20.0} for v in ("v", "gone")]).to_csv(root / "quality.csv", index=False)
    targets = [get_target(t) for t in ("cpu-ort-fp32", "cpu-ov-fp32", "cpu-ort-int8", "edge-npu")]
    out = score_results(root, targets, dataset="embedded", limit=1, threads=1, progress=False)
    assert "gone: no " in capsys.readouterr().out  # a variant without its ONNX file is skipped, said so
    df = pd.read_csv(out)
    # the float variant runs on the two fp32 targets; the INT8-only and analytic targets do not score it
    assert sorted(df["target"]) == ["cpu-ort-fp32", "cpu-ov-fp32"]
    assert set(df["precision"]) == {"fp32"} and (df["delta_psnr"].abs() < 1e-3).all()
    assert df["torch_psnr"].tolist() == pytest.approx([torch_psnr] * 2) and len(df["onnx_sha256"].iloc[0]) == 64
    stamp = df["timestamp"].tolist()
    score_results(root, targets, dataset="embedded", limit=1, threads=1, progress=False, skip_done=True)
    assert pd.read_csv(out)["timestamp"].tolist() == stamp  # resumable: nothing scored twice
    # a front takes the runtime's score for its own target
    pd.DataFrame(df.assign(psnr=df["psnr"] - 0.5)).to_csv(out, index=False)
    tables = load_tables([root])
    pts, _ = target_points(tables, get_target("cpu-ov-fp32"), Selection("embedded", 10, "idcn-rgb"), x="params")
    row = pts.set_index("key").loc["v"]
    assert row["y"] == pytest.approx(torch_psnr - 0.5, abs=1e-3) and row["y_from"] == "openvino fp32"
    # v is a q10 model (quality.csv): asked for q20, it is skipped, not scored at a quality it was not made for
    out.unlink()
    capsys.readouterr()
    with pytest.raises(CompressError, match="no variant could be scored"):
        score_results(root, targets, dataset="embedded", quality=20, limit=1, threads=1, progress=False, only=["v"])
    assert "made for q10, not q20" in capsys.readouterr().out
    with pytest.raises(CompressError, match="no variant named nope"):
        score_results(root, targets, only=["nope"])
    with pytest.raises(CompressError, match="no measured target"):
        score_results(root, [get_target("edge-npu")])


def test_fill_graph_signatures_only_for_the_file_that_was_timed(tiny_onnx: Path, tmp_path: Path) -> None:
    from compress.deploy import fill_graph_signatures, graph_signature

    rows = [_record("a", "cpu-ort-fp32", 5.0), _record("b", "cpu-ort-fp32", 6.0), _record("c", "cpu-ort-fp32", 7.0)]
    df = records_frame(rows).drop(columns=["graph_signature"])  # a table from before the column
    df["onnx_path"] = [str(tiny_onnx), str(tiny_onnx), str(tmp_path / "gone.onnx")]
    df["onnx_sha256"] = [sha256(tiny_onnx), "0" * 64, sha256(tiny_onnx)]  # b: the file changed since
    out = tmp_path / "latency.csv"
    df.to_csv(out, index=False)
    assert fill_graph_signatures(out) == 1
    sig = pd.read_csv(out)["graph_signature"].tolist()
    assert sig[0] == graph_signature(tiny_onnx) and all(isinstance(s, float) and math.isnan(s) for s in sig[1:])


def test_signatures_only_recomputes_stale_signatures(tiny_onnx: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """After a change of graph_signature: rows whose timed file is here are signed again, the others emptied
    (an old-style signature matches nothing new), and nothing is timed."""
    from compress.deploy import graph_signature

    root = tmp_path / "r"
    (root / "a").mkdir(parents=True)
    shutil.copy(tiny_onnx, root / "a" / "model.onnx")
    rows = [_record("a", "cpu-ort-fp32", 5.0), _record("gone", "cpu-ort-fp32", 6.0)]
    lat = records_frame(rows)
    lat["onnx_path"] = [str(root / "a" / "model.onnx"), str(root / "gone" / "model.onnx")]
    lat["onnx_sha256"] = [sha256(tiny_onnx), "0" * 64]
    lat["graph_signature"] = "old"
    lat.to_csv(root / "latency.csv", index=False)
    pd.DataFrame([{"variant": v, "resolution": "720p30", "onnx_path": f"{v}/model.onnx", "graph_signature": "old"}
                  for v in ("a", "gone")]).to_csv(root / "cost.csv", index=False)
    assert main(["latency", "--results", str(root), "--signatures-only"]) == 0
    assert "1 latency row(s), 1 variant(s) signed" in capsys.readouterr().out
    new = pd.read_csv(root / "latency.csv")
    assert new["graph_signature"].fillna("").tolist() == [graph_signature(tiny_onnx), ""]
    assert new["ms_median"].tolist() == lat["ms_median"].tolist()  # nothing timed
    cost = pd.read_csv(root / "cost.csv").set_index("variant")["graph_signature"]
    assert cost["a"] == graph_signature(tiny_onnx) and pd.isna(cost["gone"])
    assert main(["latency", str(tiny_onnx), "--signatures-only"]) == 2


def test_latency_cli_measures_a_results_folder(tiny_onnx: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "demo"
    root.mkdir()
    pd.DataFrame([{"variant": "tiny", "resolution": "480p30", "weight_bits": 32, "act_bits": 32,
                   "peak_activation_mb": 1.0, "onnx_path": str(tiny_onnx)}]).to_csv(root / "cost.csv", index=False)
    argv = ["latency", "--results", str(root), "--target", "cpu-ort-fp32", "--resolution", "480p30", "--n", "1",
            "--warmup", "0", "--no-memory"]
    assert main(argv) == 0
    lat = pd.read_csv(root / "latency.csv")
    assert list(lat["variant"]) == ["tiny"] and lat["ms_median"].item() > 0 and len(lat["graph_signature"][0]) == 64
    assert main([*argv, "--skip-done"]) == 0 and pd.read_csv(root / "latency.csv")["timestamp"].equals(lat["timestamp"])
    assert main(["latency", str(tiny_onnx), "--results", str(root)]) == 2
    assert "give no ONNX file" in capsys.readouterr().err


def test_quiet_guard_repeats_a_timing_taken_while_the_cpu_was_slowed() -> None:
    from compress.deploy import QuietGuard

    # warm-up probes see 100 GFLOP/s; then a neighbour halves the CPU for two attempts
    probes = iter([100.0] * 3 + [50.0, 100.0, 100.0, 45.0, 95.0, 90.0])
    timings = iter([np.array([20.0]), np.array([21.0]), np.array([10.0])])
    guard = QuietGuard(2, ratio=0.8, warm=3, pause_s=0.0, probe=lambda t: next(probes))
    ms, probe, attempts = guard.measure(lambda: next(timings))
    assert attempts == 3 and ms.tolist() == [10.0] and probe == 90.0
    assert guard.reference == 100.0


def test_quiet_guard_gives_up_after_its_wait_and_can_be_off() -> None:
    from compress.deploy import QuietGuard

    probes = iter([100.0, 10.0, 10.0])
    slow = QuietGuard(1, ratio=0.9, warm=1, pause_s=0.0, max_wait_s=0.0, probe=lambda t: next(probes))
    ms, probe, attempts = slow.measure(lambda: np.array([1.0]))
    assert attempts == 1 and probe == 10.0  # kept, and the row shows how slow the CPU was

    def never(threads: int) -> float:
        raise AssertionError("probed while off")

    off = QuietGuard(1, ratio=0.0, probe=never)
    ms, probe, attempts = off.measure(lambda: np.array([2.0]))
    assert ms.tolist() == [2.0] and probe is None and attempts == 1
    with pytest.raises(CompressError):
        QuietGuard(1, ratio=1.5)


def test_quiet_guard_remembers_the_machine_across_processes(tmp_path: Path) -> None:
    """A guard that starts in a busy stretch (probes ~50) lets its timings through by its own probes alone;
    with the history of an earlier, quiet process (~100) it waits for the quiet minutes instead."""
    from compress.deploy import HISTORY_MAX_AGE_S, QuietGuard

    hist = tmp_path / "probes.json"
    now = [1_000_000.0]
    QuietGuard(2, ratio=0.75, warm=5, probe=lambda t: 100.0, history=hist, clock=lambda: now[0])
    assert len(json.loads(hist.read_text())["readings"]) == 5
    busy = iter([50.0] * 3 + [50.0, 50.0] + [52.0, 51.0] + [100.0, 98.0])
    alone = QuietGuard(2, ratio=0.75, warm=3, pause_s=0.0, probe=lambda t: 50.0)
    assert alone.measure(lambda: np.array([40.0]))[2] == 1  # its reference is the busy stretch itself
    guard = QuietGuard(2, ratio=0.75, warm=3, pause_s=0.0, probe=lambda t: next(busy), history=hist,
                       clock=lambda: now[0])
    assert guard.reference == pytest.approx(100.0)
    timings = iter([np.array([40.0]), np.array([40.0]), np.array([25.0])])
    ms, probe, attempts = guard.measure(lambda: next(timings))
    assert attempts == 3 and ms.tolist() == [25.0] and probe == 98.0
    assert len(json.loads(hist.read_text())["readings"]) == 5 + 3 + 6
    now[0] += HISTORY_MAX_AGE_S + 1  # two weeks later the old readings no longer count
    later = QuietGuard(2, ratio=0.75, warm=1, probe=lambda t: 60.0, history=hist, clock=lambda: now[0])
    assert later.reference == 60.0
    hist.write_text("{not json")
    assert QuietGuard(2, ratio=0.75, warm=1, probe=lambda t: 70.0, history=hist).reference == 70.0


def test_cpu_probe_and_rows_record_it(tiny_onnx: Path) -> None:
    from compress.deploy import QuietGuard, cpu_probe_gflops

    assert cpu_probe_gflops(1, size=64, seconds=0.01) > 0
    guard = QuietGuard(2, ratio=0.8, warm=2, max_wait_s=0.0)
    recs = measure_latency(tiny_onnx, get_target("cpu-ort-fp32"), resolutions={"t": (32, 24)}, n=2, warmup=1,
                           peak_memory=False, guard=guard)
    assert recs[0].probe_gflops is not None and recs[0].probe_gflops > 0
    assert recs[0].probe_ref_gflops is not None and recs[0].probe_ref_gflops >= recs[0].probe_gflops
    assert recs[0].attempts == 1


class WideConv(TwoConv):
    """TwoConv with 4x the hidden channels: another graph to time beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 32, 3, padding=1)
        self.b = nn.Conv2d(32, 3, 3, padding=1)


def test_paired_latency_times_graphs_in_turn_and_keeps_every_run(tiny_onnx: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from compress.deploy import append_paired, paired_latency, paired_summary

    wide = tmp_path / "wide-v" / "model.onnx"
    wide.parent.mkdir()
    torch.manual_seed(0)
    export_onnx(WideConv(), wide, channels=3)
    targets = [get_target("cpu-ort-fp32"), get_target("cpu-ov-int8-u8")]
    lines: list[str] = []
    table = paired_latency({"tiny": tiny_onnx, "wide": wide}, targets, resolution="480p30", rounds=2, n=2, warmup=1,
                           log=lines.append)
    assert len(table) == 2 * 2 * 2 and len(lines) == 2  # graphs x targets x rounds; one line per round
    assert list(table["round"]) == [1] * 4 + [2] * 4  # a round times every graph on every target
    assert (table["ms_median"] > 0).all() and (table["ms_min"] <= table["ms_max"]).all()
    assert (table["probe_gflops"] > 0).all() and table["run"].nunique() == 1
    ov = table[table["target"] == "cpu-ov-int8-u8"]
    assert set(ov["quantized_by"]) == {"nncf.quantize"} and set(ov["precision"]) == {"int8"}
    summary = paired_summary(table)
    assert len(summary) == 4 and set(summary["baseline"]) == {"tiny"}
    base = summary[summary["variant"] == "tiny"]
    assert (base["ratio"] == 1.0).all() and (summary["ms_low"] <= summary["ms_high"]).all()
    wide_row = summary[(summary["variant"] == "wide") & (summary["target"] == "cpu-ort-fp32")].iloc[0]
    tiny_med = float(np.median(table[(table["variant"] == "tiny") & (table["target"] == "cpu-ort-fp32")]["ms_median"]))
    assert wide_row["ratio"] == pytest.approx(wide_row["ms_median"] / tiny_med)

    out = tmp_path / "paired.csv"
    append_paired(table, out)
    append_paired(table.assign(run="later"), out)
    assert len(pd.read_csv(out)) == 16  # a second run is appended, not upserted over the first

    with pytest.raises(CompressError, match="at least two"):
        paired_latency({"tiny": tiny_onnx}, targets, resolution="480p30")
    with pytest.raises(CompressError, match="analytic"):
        paired_latency({"a": tiny_onnx, "b": wide}, [get_target("edge-npu")], resolution="480p30")

    # the CLI: names from the results folders (.../<variant>/model.onnx), rows appended to --out
    cli_out = tmp_path / "cli.csv"
    rc = main(["latency", str(tiny_onnx), str(wide), "--paired", "1", "--target", "cpu-ort-fp32", "--resolution",
               "480p30", "--n", "2", "--warmup", "0", "--out", str(cli_out)])
    text = capsys.readouterr().out
    assert rc == 0 and "wide-v" in text and "ratio" in text
    assert set(pd.read_csv(cli_out)["variant"]) == {"tiny", "wide-v"}
    assert main(["latency", str(tiny_onnx), str(tiny_onnx), "--paired", "1", "--target", "cpu-ort-fp32"]) == 2
    assert "share the name" in capsys.readouterr().err
