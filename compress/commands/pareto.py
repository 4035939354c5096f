"""``compress pareto``: Pareto fronts per hardware target from results tables, plotted to PNG, SVG and HTML."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from compress.pareto import CostAxis, LatencyPer, QualityAxis, QualityFrom, Seeds
    from compress.targets import Resolution

    p = sub.add_parser(
        "pareto",
        help="Pareto fronts (quality vs cost) per hardware target, with PNG/SVG/HTML plots",
        description="Reads quality.csv, cost.csv and latency.csv of each RESULTS folder and writes, for one "
        "dataset x JPEG quality x protocol (or --all of them), front.csv, points.csv, front-<target>.png/.svg "
        "and one self-contained fronts.html with a target selector (--all: one fronts.html for every selection, "
        "with a data-set selector too). Only variants a target can run (precision "
        "and budgets) compete; published reference points are drawn apart, never on a front.",
    )
    p.add_argument("results", nargs="+", metavar="RESULTS", help="results folders (results/<recipe>)")
    p.add_argument("--target", action="append", metavar="T",
                   help="target name or YAML file; repeat for several (default: every shipped target)")
    p.add_argument("--x", default=CostAxis.auto.value, choices=[c.value for c in CostAxis],
                   help="cost axis (default auto: measured latency where measured, else true TFLOPS)")
    p.add_argument("--y", default=QualityAxis.psnr.value, choices=[q.value for q in QualityAxis],
                   help="quality axis (default psnr; *_gain = over the JPEG input)")
    p.add_argument("--resolution", default=Resolution.p720.value, choices=[r.value for r in Resolution],
                   help="resolution of per-frame cost axes (default 720p30)")
    p.add_argument("--quality-from", default=QualityFrom.deployed.value, choices=[q.value for q in QualityFrom],
                   help="deployed (default): a target's quality is its runtime's score in deployed.csv where "
                   "there is one (compress deployed), else torch's; torch: quality.csv only")
    p.add_argument("--latency-per", default=LatencyPer.architecture.value, choices=[v.value for v in LatencyPer],
                   help="architecture (default): variants with the same graph structure share the median of their "
                   "latencies (seed noise does not pick the front); variant: each its own measurement")
    p.add_argument("--seeds", default=Seeds.mean.value, choices=[v.value for v in Seeds],
                   help="mean (default): the seed replicates of a condition (variant names that differ only in "
                   "seedN) are one point at the mean of their scores, shipped as the replicate nearest it; "
                   "each: every seed its own point")
    p.add_argument("--machine", action="append", metavar="CPU",
                   help="whose latency.csv / deployed.csv rows (their cpu column, e.g. 'AMD EPYC [avx512+vnni+bf16]'): "
                   "default the machine that timed most recently; 'all' mixes machines; repeat to pool machines you "
                   "know to be alike (a variant measured on several keeps the first-named one's row)")
    p.add_argument("--dataset", help="dataset of the quality rows (needed when the table has several)")
    p.add_argument("--quality", type=int, help="JPEG quality of the quality rows")
    p.add_argument("--protocol", help="evaluation protocol of the quality rows")
    p.add_argument("--all", action="store_true",
                   help="every dataset x quality x protocol (those of --dataset / --quality / --protocol where given), "
                   "one sub-folder each and one fronts.html for all")
    p.add_argument("--min-variants", type=int, default=1, metavar="N",
                   help="--all: skip a dataset x quality x protocol scored for fewer than N variants (default "
                   "%(default)s; e.g. a set only a few variants were rescored on)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from compress.pareto import export_fronts, load_tables, resolve_selection, write_fronts
    from compress.targets import get_targets

    targets = get_targets(args.target)  # unknown names fail first, listing the valid ones
    if args.all:
        files = export_fronts(args.results, targets, args.out, y=args.y, resolution=args.resolution,
                              quality_from=args.quality_from, latency_per=args.latency_per, machine=args.machine,
                              seeds=args.seeds, min_variants=args.min_variants, log=print, x=args.x,
                              dataset=args.dataset, quality=args.quality, protocol=args.protocol)
    else:
        tables = load_tables(args.results, args.machine)
        sel = resolve_selection(tables, args.dataset, args.quality, args.protocol)
        files = write_fronts(tables, targets, sel, args.out, x=args.x, y=args.y, resolution=args.resolution,
                             quality_from=args.quality_from, latency_per=args.latency_per, seeds=args.seeds)
    front = [f for f in files if f.name == "front.csv"]
    print(f"wrote {len(files)} files under {Path(args.out)} ({len(front)} front table(s))")
    for f in files:
        if f.suffix in (".csv", ".html"):
            print(f"  {f}")
    return 0
