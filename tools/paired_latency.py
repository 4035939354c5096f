"""Paired OpenVINO INT8 latency of several ONNX graphs: each round times every graph in turn, so neighbours
on a shared machine slow them all alike and the ratios hold even when the absolute numbers do not.

    python tools/paired_latency.py 1080 1920 BASE.onnx OTHER.onnx... [--rounds 4] [--reps 15]

Each graph is compiled the way the cpu-ov-int8 targets compile it (QDQ graphs as they are, float graphs
quantized by ``nncf.quantize`` on synthetic frames), once with f32 NCHW frames and once with uint8 NHWC
frames (cpu-ov-int8-u8), 2 threads. Prints per round the median of ``--reps`` runs of every graph, then
the median over rounds and its ratio to the first graph. Used for the README's depth-pruning table:

    python tools/paired_latency.py 1080 1920 \
        results/chain-fast-arcnn-s4-q10/ratio0.5-ignored_layers_base.0_base.12-*/model.onnx \
        results/depth-fast-arcnn-s4-q10/count2-ratio0.25-*/model.onnx
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import openvino as ov

    from compress.deploy import _ov_prepare, _ov_u8_nhwc, cpu_probe_gflops, synthetic_calibration
    from compress.targets import Precision

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("height", type=int)
    ap.add_argument("width", type=int)
    ap.add_argument("onnx", nargs="+", type=Path, help="graphs; the first is the baseline of the ratios")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=15, help="timed runs per graph and round")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    h, w = args.height, args.width
    core = ov.Core()
    cfg = {"INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
           "NUM_STREAMS": 1}
    cal = synthetic_calibration(3)
    reqs = {}
    for path in args.onnx:
        art = _ov_prepare(path, Precision.int8, Path(tempfile.mkdtemp()), cal)
        name = path.parent.name if path.name == "model.onnx" else path.stem
        for io in ("f32", "u8"):
            model = core.read_model(str(art.path))
            model.reshape({model.inputs[0]: ov.PartialShape([1, 3, h, w])})
            if io == "u8":
                model = _ov_u8_nhwc(model)
                x = np.random.default_rng(0).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
            else:
                x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
            req = core.compile_model(model, "CPU", cfg).create_infer_request()
            req.infer([x])
            reqs[(name, io)] = (req, x)
    medians: dict[tuple[str, str], list[float]] = {k: [] for k in reqs}
    for r in range(args.rounds):
        for key, (req, x) in reqs.items():
            ts = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                req.infer([x])
                ts.append((time.perf_counter() - t0) * 1e3)
            medians[key].append(float(np.median(ts)))
        probe = cpu_probe_gflops(args.threads)
        print(f"round {r + 1}: probe {probe:.0f} GFLOP/s; " + ", ".join(
            f"{n} {io} {m[-1]:.1f}" for (n, io), m in medians.items()))
    for io in ("u8", "f32"):
        base = float(np.median(medians[(next(iter(reqs))[0], io)]))
        for (n, kind), m in medians.items():
            if kind == io:
                med = float(np.median(m))
                spread = f"({min(m):.1f}-{max(m):.1f})"
                print(f"{io:3s} frames {n:50s} median {med:6.1f} ms {spread}  ratio {med / base:.2f}")


if __name__ == "__main__":
    main()
