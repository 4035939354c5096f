"""``compress compare``: before/after panels of one image (original, JPEG, each model) as a PNG."""

from __future__ import annotations

import argparse
from typing import Any

from compress.errors import CheckpointError


def register(subparsers: Any) -> None:
    """Add the ``compare`` sub-command."""
    p = subparsers.add_parser(
        "compare",
        help="save before/after panels (original / JPEG / models) with crops of the worst artifacts",
        description=(
            "Compress one image with JPEG, restore it with each model, and save a PNG with the panels side by "
            "side, their PSNR, and crops of the regions with the largest JPEG error. Repeat --model/--weights "
            "for several models."
        ),
    )
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--quality", type=int, required=True, metavar="Q", help="JPEG quality (1..100)")
    p.add_argument("--model", action="append", required=True, help="architecture name (repeatable)")
    p.add_argument("--weights", action="append", required=True, help="weights for the --model at the same position")
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--protocol", help="colour/rounding protocol (default: fbcnn-y for 1-channel models, else idcn-rgb)")
    p.add_argument("--crop", type=int, default=96, metavar="PX", help="crop size (default 96)")
    p.add_argument("--crops", type=int, default=2, metavar="N", help="number of crops (default 2)")
    p.add_argument("--tile", type=int, metavar="PX", help="run the models in overlapping tiles of this size")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the models and write the figure."""
    from compress.compare import save_comparison
    from compress.evaluate import load_weights

    if len(args.model) != len(args.weights):
        raise CheckpointError(
            f"give one --weights per --model (got {len(args.model)} models, {len(args.weights)} weights)"
        )
    if not 1 <= args.quality <= 100:
        raise CheckpointError(f"--quality must be in 1..100, got {args.quality}")
    models = [(name, load_weights(name, w)) for name, w in zip(args.model, args.weights, strict=True)]
    out = save_comparison(
        args.image,
        args.quality,
        models,
        args.out,
        protocol=args.protocol,
        crop=args.crop,
        crops=args.crops,
        tile=args.tile,
    )
    print(out)
    return 0
