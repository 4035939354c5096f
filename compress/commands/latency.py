"""``compress latency``: measured latency and peak memory of ONNX models per hardware target."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "latency",
        help="time ONNX models on measured targets (onnxruntime, OpenVINO) at 480p/720p/1080p",
        description="Median / p90 ms per frame (batch 1, warm-up first, one measurement at a time, load average "
        "recorded) and the peak RSS rise of one inference in a fresh subprocess, upserted into a latency.csv. "
        "With --bench: 720p only, plus the fraction of this machine's measured matmul peak.",
    )
    p.add_argument("onnx", nargs="*", metavar="ONNX", help="ONNX models (float or INT8 QDQ)")
    p.add_argument("--results", nargs="+", metavar="DIR",
                   help="instead of ONNX files: every variant of these results folders (results/<recipe>) on every "
                   "target that runs it, upserted into each folder's latency.csv")
    p.add_argument("--skip-done", action="store_true",
                   help="--results: skip variant x target pairs already timed for the same ONNX file")
    p.add_argument("--per-graph", type=int, metavar="K",
                   help="--results: time at most K variants of each graph structure per target, counted over all "
                   "the folders given; the others take the median of theirs on fronts (weights do not change a "
                   "graph's cost)")
    p.add_argument("--signatures-only", action="store_true",
                   help="--results: time nothing; recompute the graph signatures of the folders' latency and cost "
                   "rows from the ONNX files still there (after an upgrade of compress changed how they are made)")
    p.add_argument("--variant", action="append", help="variant name per model, in order (default: file stem)")
    p.add_argument("--target", action="append", metavar="T",
                   help="target name or YAML file; repeat for several (default: every measured shipped target)")
    p.add_argument("--resolution", action="append", choices=["480p30", "720p30", "1080p30"],
                   help="repeat for several (default: all three; --bench: 720p30)")
    p.add_argument("--n", type=int, default=10, help="timed runs per measurement (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess")
    p.add_argument("--reference", action="append", metavar="MODEL",
                   help="registered model per ONNX file, in order, for the analytic activation peak")
    p.add_argument("--bench", action="store_true", help="720p, plus matmul-peak fractions (results/bench/)")
    p.add_argument("--paired", type=int, metavar="ROUNDS",
                   help="compare the ONNX files: time them in turn, --n runs each per round, ROUNDS rounds, at one "
                   "--resolution (default 1080p30), on each --target (default: the measured targets that run all of "
                   "them); prints the median over rounds and its ratio to the first file, appends the rounds to "
                   "--out (default results/bench/paired_latency.csv). Ratios that hold on a machine whose speed "
                   "drifts")
    p.add_argument("--out", help="latency.csv to upsert into (default results/bench/latency.csv)")
    p.add_argument("--quiet-ratio", type=float, default=0.75, metavar="R",
                   help="repeat a timing when a matmul probe before or after it got less than R x the 90th "
                   "percentile of the probes so far (a virtual machine slowed by its neighbours; 0: off; "
                   "default 0.75)")
    p.add_argument("--quiet-wait", type=float, default=60.0, metavar="S",
                   help="give up waiting for a quiet CPU after S seconds per timing and keep the last one "
                   "(default 60)")
    p.add_argument("--no-quiet-history", action="store_true",
                   help="judge quietness by this process's probes only, not also by the readings earlier runs on "
                   "this machine kept in the user cache (the last 14 days): without the history, a run that starts "
                   "in a busy stretch takes it for normal")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from compress.cost import RESOLUTIONS
    from compress.deploy import (
        analytic_peak_mb,
        bench_latency,
        configure_quiet,
        measure_latency,
        records_frame,
        write_latency,
    )
    from compress.errors import CompressError
    from compress.targets import get_targets

    targets = [t for t in get_targets(args.target) if t.measured]
    if not targets:
        raise CompressError("no measured target given (analytic targets have nothing to time)")
    res_map = {r: RESOLUTIONS[r] for r in (args.resolution or list(RESOLUTIONS))}
    configure_quiet(args.quiet_ratio, args.quiet_wait, history=not args.no_quiet_history)
    if args.signatures_only and not args.results:
        raise CompressError("--signatures-only works on --results folders")
    if args.results:
        if args.onnx or args.bench:
            raise CompressError("--results measures the folders' own ONNX files: give no ONNX file and no --bench")
        from compress.cards import write_variant_cards
        from compress.deploy import count_timed_graphs, fill_graph_signatures, graph_signature, measure_results
        from compress.results import fill_cost_signatures

        if args.signatures_only:
            for folder in args.results:
                timed = fill_graph_signatures(Path(folder) / "latency.csv", recompute=True)
                variants = fill_cost_signatures(folder, graph_signature, recompute=True)
                print(f"{folder}: {timed} latency row(s), {variants} variant(s) signed")
            return 0
        for folder in args.results:
            fill_cost_signatures(folder, graph_signature)
        counts = count_timed_graphs([Path(f) / "latency.csv" for f in args.results]) \
            if args.per_graph is not None else None
        for folder in args.results:
            out = measure_results(folder, targets, resolutions=res_map, n=args.n, warmup=args.warmup,
                                  peak_memory=not args.no_memory, skip_done=args.skip_done,
                                  per_graph=args.per_graph, graph_counts=counts)
            print(f"wrote {out}")
            write_variant_cards(folder)  # the cards show the latency medians
        return 0
    if not args.onnx:
        raise CompressError("give ONNX files, or --results DIR")
    names = args.variant or [_name(Path(o)) for o in args.onnx]
    refs = args.reference or []
    if len(names) != len(args.onnx) or (refs and len(refs) != len(args.onnx)):
        raise CompressError("give one --variant (and --reference) per ONNX file, or none")
    if len(set(names)) != len(names):
        raise CompressError(f"two ONNX files share the name {sorted(n for n in names if names.count(n) > 1)[0]!r}; "
                            "name them with --variant")
    models = dict(zip(names, args.onnx, strict=True))
    if args.paired is not None:
        return _paired(args, models)
    out = Path(args.out or "results/bench/latency.csv")
    if args.bench:
        res = (args.resolution or ["720p30"])[0]
        table = bench_latency(models, targets, resolution=res, n=args.n, warmup=args.warmup, out=out,
                              reference_models=dict(zip(names, refs, strict=True)) if refs else None,
                              peak_memory=not args.no_memory)
    else:
        frames = []
        for i, (name, path) in enumerate(models.items()):
            analytic = {r: analytic_peak_mb(refs[i], w, h) for r, (w, h) in res_map.items()} if refs else None
            for t in targets:
                recs = measure_latency(path, t, variant=name, resolutions=res_map, n=args.n, warmup=args.warmup,
                                       peak_memory=not args.no_memory, analytic_mb=analytic)
                write_latency(recs, out)
                frames.append(records_frame(recs))
        table = pd.concat(frames, ignore_index=True)
    if {"peak_rss_mb", "analytic_peak_mb"} <= set(table.columns):
        # the measured memory against the fp32 live-tensor bound: >1 is runtime workspace (im2col / packed
        # weights, arena slack), INT8 buffers and fp32 staging at the graph's boundary (see README, memory)
        table["rss_over_analytic"] = table["peak_rss_mb"].astype(float) / table["analytic_peak_mb"].astype(float)
    cols = [c for c in ("variant", "target", "resolution", "precision_effective", "ms_median", "ms_p90", "load_avg",
                        "probe_gflops", "attempts",
                        "peak_rss_mb", "analytic_peak_mb", "rss_over_analytic", "fps", "frac_fp32_peak")
            if c in table.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote {out}")
    return 0


def _name(path: Path) -> str:
    """A variant's name from its ONNX file: the folder of a results variant (``.../<variant>/model.onnx``),
    else the file stem."""
    return path.parent.name if path.name == "model.onnx" and path.parent.name else path.stem


def _paired(args: argparse.Namespace, models: dict[str, str]) -> int:
    import pandas as pd

    from compress.deploy import append_paired, onnx_precision, paired_latency, paired_summary
    from compress.errors import CompressError
    from compress.targets import Precision, get_targets

    if args.bench or args.reference or args.results:
        raise CompressError("--paired takes ONNX files only (no --bench, --reference or --results)")
    if args.resolution and len(args.resolution) > 1:
        raise CompressError("--paired times one --resolution")
    int8 = any(onnx_precision(p) is Precision.int8 for p in models.values())
    targets = [t for t in get_targets(args.target) if t.measured]
    if not args.target:
        targets = [t for t in targets if Precision.int8 in t.precisions or not int8]
    table = paired_latency(models, targets, resolution=(args.resolution or ["1080p30"])[0], rounds=args.paired,
                           n=args.n, warmup=args.warmup)
    out = append_paired(table, Path(args.out or "results/bench/paired_latency.csv"))
    summary = paired_summary(table)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 70):
        print(summary.drop(columns=["run"]).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"wrote {out}")
    return 0
