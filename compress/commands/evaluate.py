"""``compress evaluate``: mean PSNR / SSIM / PSNR-B of a model and of JPEG on a dataset."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from compress.errors import CheckpointError


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` sub-command."""
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a model (or plain JPEG) on a dataset under a published protocol",
        description=(
            "Mean PSNR / SSIM / PSNR-B of a model and of the JPEG input beside it, per JPEG quality. "
            "Protocols: arcnn-y, fbcnn-y, idcn-rgb (see compress.protocols). Datasets: live1, live1_gray, "
            "classic5, bsds500[_train|_val|_test], b200, kodak24, tid2008, mcl_jci, embedded, folder:<path>."
        ),
    )
    p.add_argument("--model", help="registered architecture name, or 'jpeg' for the JPEG baseline (or give --onnx)")
    p.add_argument("--onnx", metavar="FILE", help="score an exported graph in a deployment runtime instead of torch "
                   "(a variant's model.onnx; QDQ graphs run in INT8)")
    p.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "openvino"],
                   help="--onnx: the runtime (default %(default)s)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"],
                   help="--onnx: openvino inference precision for float graphs (default: the graph's own); "
                   "a torch model (--model): fp32 (default), bf16 autocast with channels_last, or fp16 "
                   "(weights and arithmetic in float16, as a float student runs on the tv-chip target)")
    p.add_argument("--threads", type=int, default=1, help="--onnx: runtime threads (default %(default)s)")
    p.add_argument("--io", default="f32-nchw", choices=["f32-nchw", "u8-nhwc"],
                   help="--onnx: frames at the graph's boundary; u8-nhwc (openvino) compiles 8-bit NHWC frames "
                   "into both ends, as the cpu-ov-int8-u8 target is timed (default %(default)s)")
    p.add_argument(
        "--weights",
        help="safetensors checkpoint; for arcnn_y also the authors' .mat file. '{q}' in the path is replaced by "
        "each quality (one model per quality, e.g. weights/q{q}.mat)",
    )
    p.add_argument("--dataset", help="dataset name (default: live1 if the data root has it, else embedded)")
    p.add_argument("--quality", type=int, nargs="+", required=True, metavar="Q", help="JPEG quality (1..100)")
    p.add_argument("--protocol", required=True, help="arcnn-y, fbcnn-y or idcn-rgb")
    p.add_argument("--json", action="store_true", help="print a JSON list of results instead of a table")
    p.add_argument("--per-image", metavar="CSV", help="also write one row per image and quality to this CSV")
    p.add_argument("--data-root", metavar="DIR", help="data root (default: $COMPRESS_DATA, then the user cache dir)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N images")
    p.add_argument("--tile", type=int, metavar="PX", help="run large images in overlapping tiles of this size")
    p.add_argument("--overlap", type=int, default=32, metavar="PX", help="tile overlap (default 32)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model(s), evaluate, print a table or JSON."""
    from compress.data.datasets import default_dataset
    from compress.evaluate import (
        JPEG_MODEL,
        evaluate_model,
        format_table,
        load_weights,
        weights_for_quality,
        write_per_image_csv,
    )
    from compress.inference import tile_geometry

    if args.tile is not None:
        try:
            tile_geometry(args.tile, args.overlap)
        except ValueError as exc:
            raise CheckpointError(f"--tile/--overlap: {exc}") from None
    model: Any
    if args.onnx is not None:
        if args.model is not None or args.weights is not None:
            raise CheckpointError("--onnx scores an exported graph: give it without --model / --weights")
        from compress.deploy import runtime_model

        model = runtime_model(args.onnx, args.runtime, precision=args.precision, threads=args.threads, io=args.io)
        frames = "" if args.io == "f32-nchw" else f"-{args.io}"
        args.model = f"{Path(args.onnx).parent.name or Path(args.onnx).stem}@{args.runtime}-{model.precision}{frames}"
    elif args.io != "f32-nchw":
        raise CheckpointError("--io is the frame format of an exported graph: give it with --onnx")
    elif args.model is None:
        raise CheckpointError("give --model NAME (with --weights) or --onnx FILE")
    elif args.model == JPEG_MODEL:
        if args.weights:
            raise CheckpointError("--model jpeg is the JPEG baseline and takes no --weights")
        model = None
    elif args.weights is None:
        from compress.nets import build_model

        model = build_model(args.model)  # an unknown name fails before the warning
        print(f"compress: warning: no --weights: evaluating an untrained {args.model}", file=sys.stderr)
    elif "{q}" in args.weights:
        model = {q: load_weights(args.model, weights_for_quality(args.weights, q)) for q in args.quality}
    else:
        model = load_weights(args.model, args.weights)
    if args.onnx is None and model is not None and args.precision not in (None, "fp32"):
        from compress.inference import with_precision

        model = ({q: with_precision(m, args.precision) for q, m in model.items()} if isinstance(model, dict)
                 else with_precision(model, args.precision))
        args.model = f"{args.model}@{args.precision}"
    dataset = args.dataset or default_dataset(args.data_root)
    results = evaluate_model(
        model,
        dataset,
        args.quality,
        args.protocol,
        data_root=args.data_root,
        limit=args.limit,
        progress=not args.no_progress,
        model_name=args.model,
        tile=args.tile,
        overlap=args.overlap,
        device=args.device,
    )
    if args.per_image:
        write_per_image_csv(args.per_image, results)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_table(results))
    if not all(r.comparable for r in results):
        print(f"compress: note: dataset {results[0].dataset!r} is not comparable to published numbers", file=sys.stderr)
    return 0
