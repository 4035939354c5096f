"""``compress bench``: benchmarks written to results/bench/ (training speed, input pipeline, latency)."""

from __future__ import annotations

import argparse
from pathlib import Path

TTQ_RECIPES = ("reference-code", "recipes/train-ttq-arcnn-3min-bf16.yaml", "recipes/train-ttq-arcnn-jpeg1db.yaml")
ABLATIONS = ("recipes/ablations/arcnn-ttq.yaml", "recipes/ablations/fast-arcnn-init.yaml")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "bench",
        help="benchmarks: training throughput, input pipeline, inference latency (results/bench/)",
        description="Run benchmarks and write CSVs under results/bench/. Run on an idle machine: the load "
        "average is recorded with every number.",
    )
    p.add_argument(
        "which", nargs="*", default=["loader", "train", "eval"],
        choices=["loader", "train", "eval", "latency", "ttq", "ablation", "report", "speedgoal", "all"],
        help="which benchmarks (default: loader train eval; ttq = time to quality, about an hour; ablation = "
        "equal-budget ablations of the training recipe, about 45 minutes; report = print the ttq and ablation "
        "tables as markdown; speedgoal = the fastest measured variant at >= JPEG + 1 dB per target, from the "
        "results tables (measures nothing); all = every one but speedgoal)",
    )
    p.add_argument("--results", nargs="+", metavar="DIR",
                   help="speedgoal: results folders (default: every results/*/ with quality.csv and cost.csv)")
    p.add_argument("--min-gain", type=float, default=1.0,
                   help="speedgoal: quality floor, dB over the JPEG input on LIVE1 q10 (default: %(default)s)")
    p.add_argument("--machine", action="append", metavar="CPU",
                   help="speedgoal: whose latencies (the cpu column of latency.csv; default: the machine that timed "
                   "most recently; 'all' mixes machines; repeat to pool machines, the first named winning a tie)")
    p.add_argument("--seeds", choices=["mean", "each"], default="mean",
                   help="speedgoal: mean (default): the seed replicates of a condition are one candidate at the "
                   "mean of their PSNRs; each: every seed its own")
    p.add_argument("--fronts", default="results/fronts", metavar="DIR",
                   help="speedgoal: the fronts folder made from the same tables and machine(s), named in the report "
                   "(default: %(default)s; 'none': no pointer)")
    p.add_argument("--ablation", nargs="+", default=list(ABLATIONS), metavar="FILE",
                   help="ablation: the ablation files (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2,
                   help="ttq / ablation: torch threads for training and scoring (default: %(default)s)")
    p.add_argument(
        "--ttq-recipes", nargs="+", default=list(TTQ_RECIPES), metavar="RECIPE",
        help="training recipes timed by the ttq benchmark; the name reference-code re-runs the brief's reference "
        "training loop on this machine for --reference-minutes (default: %(default)s)",
    )
    p.add_argument("--reference-minutes", type=float, default=30.0, metavar="MIN",
                   help="ttq: how long the reference-code run trains (default: %(default)s)")
    p.add_argument("--ttq-runs", metavar="DIR", help="ttq: where runs, snapshots and final checkpoints go "
                   "(default: OUT/ttq_runs)")
    p.add_argument("--ttq-phase", choices=["all", "train", "score"], default="all",
                   help="ttq: train (timed: idle machine), score (not timed: may share the machine), or both")
    p.add_argument("--ttq-marks", type=float, nargs="+", metavar="MINUTES",
                   help="ttq: wall-time marks (minutes) at which snapshots are kept and scored "
                   "(default: 0.5 1 1.5 2 2.5 3 4 5 7.5 10 12.5 15 20 25 30 40 50 60)")
    p.add_argument("--out", default="results/bench")
    p.add_argument("--quick", action="store_true", help="fewer models / sizes")
    p.add_argument("--data-root", help="data root (default: $COMPRESS_DATA)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from compress import bench

    out = Path(args.out)
    if "all" in args.which:
        args.which = ["loader", "train", "eval", "latency", "ttq", "ablation"]
    if "loader" in args.which:
        from compress.data.datasets import dataset_folder, get_spec

        folder = dataset_folder(get_spec("bsds500_train"), args.data_root)
        rows = [bench.loader_speed(folder, patch=p, seconds=10 if args.quick else 20) for p in (24, 48)]
        for r in rows:
            print(f"loader p{int(r['patch'])}: reference {r['reference_patches_per_s']:.0f} patches/s, fast "
                  f"{r['fast_patches_per_s']:.0f} patches/s: {r['ratio']:.1f}x (setup {r['fast_setup_s']:.0f} s)")
        print(bench.write_csv(out / "loader.csv", rows))
    if "train" in args.which:
        print(bench.run_training_bench(out, quick=args.quick))
    if "eval" in args.which:
        models = ["arcnn", "fast_arcnn"] if args.quick else ["arcnn", "fast_arcnn", "arcnn_y", "rdn_s", "idcn_s"]
        rows = bench.evaluation_time(models, data_root=args.data_root)
        print(bench.write_csv(out / "eval_time.csv", rows))
    if "latency" in args.which:
        from compress.deploy import run_latency_bench

        print(run_latency_bench(out))
    if "ttq" in args.which:
        marks = [60 * m for m in args.ttq_marks] if args.ttq_marks else None
        from compress.ttq import score_runs, train_runs

        runs = Path(args.ttq_runs) if args.ttq_runs else out / "ttq_runs"
        dirs = [runs / Path(r).stem for r in args.ttq_recipes]
        if args.ttq_phase in ("all", "train"):
            dirs = train_runs(args.ttq_recipes, runs, marks_s=marks, data_root=args.data_root, threads=args.threads,
                              reference_minutes=args.reference_minutes)
        if args.ttq_phase in ("all", "score"):
            print(score_runs(dirs, out, data_root=args.data_root, threads=args.threads))
    if "ablation" in args.which:
        from compress.ttq import run_ablation

        for f in args.ablation:
            print(run_ablation(f, out, data_root=args.data_root, threads=args.threads))
    if "report" in args.which:
        from compress.ttq import report_markdown

        print(report_markdown(out))
    if "speedgoal" in args.which:
        from compress.speedgoal import Goal, write_speed_goal

        # every results folder (not results/bench): a variant that was not timed itself takes the latency of
        # its graph from another folder's timed variants
        folders = args.results or sorted(str(p.parent) for p in Path("results").glob("*/quality.csv")
                                         if (p.parent / "cost.csv").is_file())
        if not folders:
            from compress.errors import DataError

            raise DataError("speedgoal: no results/*/quality.csv; run a recipe first or pass --results")
        csv, md = write_speed_goal(folders, out, Goal(min_gain_db=args.min_gain), machine=args.machine,
                                   seeds=args.seeds, fronts=None if args.fronts == "none" else args.fronts)
        print(md.read_text(encoding="utf-8"), end="")
        print(csv)
    return 0
