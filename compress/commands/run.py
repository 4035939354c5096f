"""``compress run``: run compression recipes into results/<recipe>/<variant>/ and the results tables."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compress.run import VariantOutcome


def register(sub: Any) -> None:
    """Add the ``run`` sub-command."""
    from compress.executors import EXECUTORS  # light: the executors import their backends when they run

    p = sub.add_parser(
        "run",
        help="run compression recipes (prune, distill, finetune, quantize, export) and record the results",
        description="Validate every recipe (nothing runs if any is invalid), expand sweeps into variants and run "
        "each into results/<recipe>/<variant>/: plan.json, weights.safetensors, quant.json, model.onnx; then "
        "evaluate and profile it and append the rows to results/<recipe>/quality.csv, cost.csv and variants.csv. "
        "A variant done with the same recipe and input checkpoints is skipped unless --force.",
    )
    p.add_argument("recipes", nargs="+", metavar="RECIPE", help="recipe YAML files (recipes/*.yaml)")
    p.add_argument("--only", action="append", metavar="VARIANT", help="run only this variant (id, name or id prefix)")
    p.add_argument("--dry-run", action="store_true", help="list the variants and their estimated cost; run nothing")
    p.add_argument("--force", action="store_true", help="re-run variants that are already done")
    p.add_argument("--data-root", metavar="DIR", help="data root (default: $COMPRESS_DATA)")
    p.add_argument("--results", default="results", metavar="DIR", help="results root (default: results)")
    p.add_argument("--threads", type=int,
                   help="torch threads per variant (default: torch's default; with --workers N, cores // N)")
    p.add_argument("--executor", default="sequential", choices=EXECUTORS.names(),
                   help="sequential (default); local: a pool of --workers processes; ray: one Ray task per variant "
                   "(needs pip install 'compress[ray]')")
    p.add_argument("--workers", type=int, metavar="N", help="variants at once (--executor local: default one per core)")
    p.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to join (auto, ray://HOST:10001); default: start a local one")
    p.add_argument("--also-score", action="append", metavar="DATASET",
                   help="then score the variants on this data set too (repeatable: --also-score kodak24 --also-score "
                   "b200), while their weights are at hand; as compress rescore --skip-done, cards refreshed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Parse, then hand over to :func:`compress.run.run_recipes`."""
    import logging
    import warnings

    from compress.run import RunOptions, run_recipes

    logging.basicConfig(level=logging.WARNING, format="compress: warning: %(message)s")
    warnings.filterwarnings("ignore", message="This API is being deprecated")  # thop, inside compress.cost
    opts = RunOptions(
        results_dir=Path(args.results), data_root=args.data_root, force=args.force,
        progress=not args.no_progress, threads=args.threads, executor=args.executor, workers=args.workers,
        address=args.address,
    )
    outcomes = run_recipes(args.recipes, only=args.only, dry_run=args.dry_run, options=opts)
    if not args.dry_run:
        ran = sum(o.status == "ran" for o in outcomes)
        print(f"{ran} variant(s) run, {len(outcomes) - ran} skipped; tables in {args.results}/<recipe>/")
        if args.also_score:
            also_score(outcomes, args.also_score, data_root=args.data_root, threads=args.threads,
                       progress=not args.no_progress)
    return 0


def also_score(outcomes: Sequence[VariantOutcome], datasets: Sequence[str], *, data_root: str | None,
               threads: int | None, progress: bool) -> None:
    """Score the run's variants (:class:`compress.run.VariantOutcome`) on more data sets with
    :func:`compress.rescore.rescore_results` (``skip_done``), and refresh the cards of those scored."""
    from compress.cards import write_variant_cards
    from compress.rescore import rescore_results

    folders: dict[Path, list[str]] = {}
    for o in outcomes:
        folders.setdefault(o.folder.parent, []).append(o.variant)
    for folder, variants in folders.items():
        for dataset in datasets:
            done = rescore_results(folder, dataset=dataset, only=variants, skip_done=True, data_root=data_root,
                                   threads=threads, progress=progress)
            scored = [o.variant for o in done if o.status == "scored"]
            if scored:
                write_variant_cards(folder, only=scored)
