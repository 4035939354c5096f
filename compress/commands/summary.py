"""``compress summary``: seed-averaged comparison of recipes' results, against a control."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "summary",
        help="mean and sd over seeds of each recipe's variants, with the difference to a control",
        description="Groups the variants of each RESULTS folder into conditions (the variant name without "
        "its seedN token), and prints, per dataset x JPEG quality x protocol, the seeds, mean PSNR +- sample sd, "
        "SSIM, PSNR-B, the gain over JPEG, params and GMACs per 720p frame, and the PSNR difference to --control.",
    )
    p.add_argument("results", nargs="+", metavar="RESULTS", help="results folders (results/<recipe>)")
    p.add_argument("--control", help="condition to compare with: RECIPE, or RECIPE/CONDITION")
    p.add_argument("--target", help="average the scores of the exported graphs in this target's runtime "
                   "(deployed.csv, from compress deployed) instead of torch's")
    p.add_argument("--machine", action="append", metavar="CPU",
                   help="--target: whose deployed.csv rows (their cpu column; default the machine that timed most "
                   "recently; repeat to pool machines, the first named winning a tie)")
    p.add_argument("--out", help="also write the markdown here")
    p.add_argument("--csv", help="also write the table as CSV here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from compress.fsio import atomic_write_bytes
    from compress.summary import summarize, summary_markdown

    table = summarize(args.results, control=args.control, target=args.target, machine=args.machine)
    text = summary_markdown(table, control=args.control, target=args.target)
    print(text)
    if args.out:
        atomic_write_bytes(Path(args.out), text.encode())
    if args.csv:
        atomic_write_bytes(Path(args.csv), table.to_csv(index=False).encode())
    return 0
