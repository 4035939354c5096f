"""``compress main``: the main job of ``nox -s compress``: run recipes, then export their Pareto fronts."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_RECIPE = "recipes/quick.yaml"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "main",
        help="the main job: run recipes (default: recipes/quick.yaml) and export Pareto fronts",
        description="Runs the given recipes (default: the quick one, a few minutes on 2 CPU cores), measures "
        "latency of the exported variants, then writes the Pareto fronts of every shipped hardware target "
        "under results/<recipe>/pareto/ (CSV, PNG, SVG, one self-contained HTML).",
    )
    p.add_argument("recipes", nargs="*", metavar="RECIPE", default=[DEFAULT_RECIPE])
    p.add_argument("--data-root", metavar="DIR")
    p.add_argument("--results", default="results", metavar="DIR")
    p.add_argument("--threads", type=int)
    p.add_argument("--force", action="store_true")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import warnings

    from compress.pareto import export_fronts
    from compress.recipe.expand import load_recipes
    from compress.run import RunOptions, run_recipes

    logging.basicConfig(level=logging.WARNING, format="compress: warning: %(message)s")
    warnings.filterwarnings("ignore", message="This API is being deprecated")
    results = Path(args.results)
    opts = RunOptions(results_dir=results, data_root=args.data_root, force=args.force,
                      progress=not args.no_progress, threads=args.threads)
    names = [f.recipe.name for f in load_recipes(args.recipes, check_files=False)]
    run_recipes(args.recipes, options=opts)
    for name in dict.fromkeys(names):
        folder = results / name
        if not args.no_latency:
            from compress.deploy import measure_results
            from compress.targets import get_targets

            measured = [t for t in get_targets(None) if t.measured]
            print(f"{name}: measuring latency at 720p on {', '.join(t.name for t in measured)}")
            measure_results(folder, measured, resolutions={"720p30": (1280, 720)}, n=3, warmup=1)
        written = export_fronts(folder, None, folder / "pareto")
        pngs = [p for p in written if p.suffix == ".png"]
        print(f"{name}: table {folder / 'variants.csv'}; {len(pngs)} front plot(s), e.g. "
              f"{pngs[0] if pngs else '(none)'}; interactive: {folder / 'pareto' / 'fronts.html'}")
    return 0
