"""``compress deployed``: score each variant's exported graph in the runtimes of the measured targets."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "deployed",
        help="score each variant's model.onnx in the runtime of every measured target (deployed quality)",
        description="Runs results/<recipe>/<variant>/model.onnx in onnxruntime / OpenVINO at the precision each "
        "measured target uses for it (QDQ graphs in INT8) on one dataset x JPEG quality x protocol, and upserts "
        "results/<recipe>/deployed.csv with the torch score beside it. compress pareto and compress bench "
        "speedgoal then judge each target by what it really runs.",
    )
    p.add_argument("results", nargs="+", metavar="RESULTS", help="results folders (results/<recipe>)")
    p.add_argument("--target", action="append", metavar="T",
                   help="target name or YAML file; repeat for several (default: every measured shipped target)")
    p.add_argument("--only", action="append", metavar="VARIANT", help="variant id or name; repeat for several")
    p.add_argument("--dataset", default="live1", help="dataset (default %(default)s)")
    p.add_argument("--quality", type=int, default=10, help="JPEG quality (default %(default)s)")
    p.add_argument("--protocol", default="idcn-rgb", help="evaluation protocol (default %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="runtime threads (default %(default)s)")
    p.add_argument("--skip-done", action="store_true", help="skip rows already scored for the same ONNX file")
    p.add_argument("--limit", type=int, metavar="N", help="score only the first N images")
    p.add_argument("--data-root", metavar="DIR", help="data root (default: $COMPRESS_DATA)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from compress.cards import write_variant_cards
    from compress.deployed import score_results
    from compress.targets import get_targets

    targets = [t for t in get_targets(args.target) if t.measured]
    for folder in args.results:
        out = score_results(folder, targets, dataset=args.dataset, quality=args.quality, protocol=args.protocol,
                            threads=args.threads, only=args.only, skip_done=args.skip_done,
                            data_root=args.data_root, limit=args.limit, progress=not args.no_progress)
        print(f"wrote {out}")
        write_variant_cards(folder)  # the cards show the deployed scores
    return 0
