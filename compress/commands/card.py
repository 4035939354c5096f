"""``compress card``: measure a trained checkpoint and write its model card (models/<name>/README.md), or
(``--results``) write the card of every compressed variant from the results tables."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "card",
        help="evaluate models/<name>/best.safetensors and write its model card; --results: the variants' cards",
        description="Scores the checkpoint on LIVE1 / B200 / Kodak24 (RGB, idcn-rgb) or LIVE1 / Classic5 / B200 / "
        "Kodak24 (Y, arcnn-y and fbcnn-y) at its training quality and writes card.json and README.md beside it. "
        "With --results, writes results/<recipe>/<variant>/README.md of every variant from the tables instead.",
    )
    p.add_argument("model_dirs", nargs="*", metavar="DIR")
    p.add_argument("--results", nargs="+", metavar="RESULTS",
                   help="instead: (re)write the card README.md of every variant of these results folders "
                   "(results/<recipe>) from their tables and the variants' recipe.yaml / plan.json; measures nothing, "
                   "rewrites only cards whose text changed (run it after rows were added)")
    p.add_argument("--backfill", action="store_true",
                   help="--results: first fill the cost tables' training budget columns (train_steps, ...) for rows "
                   "written before they existed, from each variant's recipe.yaml (checked against its plan.json)")
    p.add_argument("--data-root")
    p.add_argument("--limit", type=int, help="first N images per set (quick check; the card says so)")
    p.add_argument("--threads", type=int)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="fp32 (default), or bf16 autocast with channels_last: several times faster for the full-size "
                   "teachers on a CPU with native bf16; the card says which")
    p.add_argument("--set", dest="sets", action="append", metavar="NAME",
                   help="score only this set (repeat; default every set of the model's colour)")
    p.add_argument("--notes", default="", help="a paragraph on how the run was made (machine load, resumes, ...)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from compress.cards import measure_card, write_card
    from compress.errors import CompressError

    if args.results:
        if args.model_dirs:
            raise CompressError("give model folders or --results folders, not both")
        return _variant_cards(args.results, backfill=args.backfill)
    if not args.model_dirs or args.backfill:
        raise CompressError("give model folders (models/<name>), or --results folders [--backfill]")
    if args.threads:
        torch.set_num_threads(args.threads)
    for d in args.model_dirs:
        card = measure_card(d, data_root=args.data_root, limit=args.limit, notes=args.notes,
                            precision=args.precision, sets=args.sets)
        print(write_card(card, d))
    return 0


def _variant_cards(folders: list[str], *, backfill: bool) -> int:
    from compress.cards import write_variant_cards
    from compress.results import fill_cost_budget

    for folder in folders:
        filled = fill_cost_budget(folder) if backfill else 0
        changed = write_variant_cards(folder)
        print(f"{folder}: {len(changed)} card(s) written" + (f", budget filled for {filled} variant(s)" if backfill
                                                              else ""))
    return 0
