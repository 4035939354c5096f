"""Per-layer OpenVINO profile (PERF_COUNT) of an ONNX graph compiled as the cpu-ov-int8 targets compile it.

    python tools/ov_profile.py 1080 1920 GRAPH.onnx [--f32-frames] [--runs 10]

Prints the wall median and, per executed node, the median of its own time (ms), largest first: where a
frame's time goes (the README's "the four 3x3 middle convolutions are about 40 % of the 1080p frame").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def main() -> None:
    import openvino as ov

    from compress.deploy import _ov_prepare, _ov_u8_nhwc, synthetic_calibration
    from compress.targets import Precision

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("height", type=int)
    ap.add_argument("width", type=int)
    ap.add_argument("onnx", type=Path)
    ap.add_argument("--f32-frames", action="store_true", help="f32 NCHW frames instead of uint8 NHWC")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    h, w = args.height, args.width
    art = _ov_prepare(args.onnx, Precision.int8, Path(tempfile.mkdtemp()), synthetic_calibration(3))
    core = ov.Core()
    model = core.read_model(str(art.path))
    model.reshape({model.inputs[0]: ov.PartialShape([1, 3, h, w])})
    rng = np.random.default_rng(0)
    if args.f32_frames:
        x = rng.random((1, 3, h, w), dtype=np.float32)
    else:
        model = _ov_u8_nhwc(model)
        x = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    cfg = {"INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
           "NUM_STREAMS": 1, "PERF_COUNT": True}
    req = core.compile_model(model, "CPU", cfg).create_infer_request()
    for _ in range(3):
        req.infer([x])
    per_node: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    wall = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        req.infer([x])
        wall.append((time.perf_counter() - t0) * 1e3)
        for p in req.profiling_info:
            if p.status == p.Status.EXECUTED:
                per_node[(p.node_name, p.node_type, p.exec_type)].append(p.real_time.total_seconds() * 1e3)
    meds = {k: float(np.median(v)) for k, v in per_node.items()}
    print(f"wall median {np.median(wall):.1f} ms; sum of node medians {sum(meds.values()):.1f} ms")
    for (name, kind, impl), ms in sorted(meds.items(), key=lambda kv: -kv[1]):
        if ms > 0.05:
            print(f"{ms:7.2f}  {kind:18s} {impl:28s} {name[:70]}")


if __name__ == "__main__":
    main()
