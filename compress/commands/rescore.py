"""``compress rescore``: score finished variants on another data set without running their recipes again."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``rescore`` sub-command."""
    p = sub.add_parser(
        "rescore",
        help="score finished variants (their weights.safetensors) on another data set; upsert quality.csv",
        description="Rebuilds each variant of results/<recipe>/ from plan.json + weights.safetensors, evaluates it "
        "on --dataset at its recipe's JPEG qualities under its recipe's protocol (or --protocol), and upserts the "
        "rows into results/<recipe>/quality.csv (+ .parquet, variants.csv) with the columns and provenance "
        "compress run writes. Variants without weights (only front members' are committed) are skipped; an "
        "export-only variant (a baseline) is scored from its student checkpoint when that file is the one the run "
        "read (same SHA-256).",
    )
    p.add_argument("results", nargs="+", metavar="RESULTS", help="results folders (results/<recipe>)")
    p.add_argument("--dataset", required=True, help="data set to score on (e.g. kodak24, b200)")
    p.add_argument("--protocol", help="score under this protocol instead of the recipe's (e.g. fbcnn-y for Y models)")
    p.add_argument("--only", action="append", metavar="VARIANT", help="variant id, name or id prefix; repeatable")
    p.add_argument("--skip-done", action="store_true",
                   help="skip variants already scored on --dataset under that protocol with their run key")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default %(default)s)")
    p.add_argument("--data-root", metavar="DIR", help="data root (default: $COMPRESS_DATA)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Parse, then hand over to :func:`compress.rescore.rescore_results` per folder."""
    from compress.cards import write_variant_cards
    from compress.rescore import rescore_results

    counts: dict[str, int] = {}
    for folder in args.results:
        print(folder)
        outcomes = rescore_results(folder, dataset=args.dataset, protocol=args.protocol, only=args.only,
                                   skip_done=args.skip_done, data_root=args.data_root, threads=args.threads,
                                   progress=not args.no_progress)
        for o in outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        scored = [o.variant for o in outcomes if o.status == "scored"]
        if scored:
            write_variant_cards(folder, only=scored)  # the cards show the new rows
    print("; ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no variants")
    return 0
