"""``compress profile``: params, TFLOPS and memory at 480p30 / 720p30 / 1080p30, in both conventions."""

from __future__ import annotations

import argparse
import json
import warnings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "profile",
        help="cost of models: params, TFLOPS and memory at 480p30/720p30/1080p30",
        description="Params, TFLOPS and memory (MB) per model at 480p30, 720p30 and 1080p30: the published "
        "convention (thop MACs x 30; torchsummary size) and the true one (ConvTranspose2d per input pixel; "
        "peak live activations of an fp32 inference).",
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help="registered model names (default: all)")
    p.add_argument("--weights", help="a checkpoint to profile instead (e.g. a pruned variant's weights)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from compress.cost import format_comparison, format_table, profile_model
    from compress.nets import MODELS

    warnings.filterwarnings("ignore", message="This API is being deprecated")
    names = args.models or MODELS.names()
    for n in names:
        MODELS.get(n)  # unknown names fail before any work, listing the valid ones
    costs = [profile_model(n) for n in names]
    if args.json:
        print(json.dumps([c.to_json() for c in costs], indent=1))
        return 0
    print(format_table(costs))
    print()
    print("Network comparison (every registered model):")
    print(format_comparison())
    return 0
