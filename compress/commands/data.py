"""``compress data``: list, fetch and verify the data sets."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``data list``, ``data fetch`` and ``data verify``."""
    p = subparsers.add_parser(
        "data",
        help="list, download and verify data sets",
        description="List, download and verify the data sets under the data root.",
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    root_help = "data root (default: $COMPRESS_DATA, then the user cache dir)"

    ls = sub.add_parser("list", help="registered data sets and how many of their images are present")
    ls.add_argument("--data-root", metavar="DIR", help=root_help)
    ls.set_defaults(func=run_list)

    fetch = sub.add_parser("fetch", help="download a data set and verify every image (SHA-256)")
    fetch.add_argument("name", help="bsds500, live1, live1_gray, classic5 or kodak24")
    fetch.add_argument("--data-root", metavar="DIR", help=root_help)
    fetch.add_argument(
        "--url", help="another location of the same bytes (archive URL or local path; base URL of files)"
    )
    fetch.add_argument("--force", action="store_true", help="fetch even if the folder already verifies")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bars")
    fetch.set_defaults(func=run_fetch)

    verify = sub.add_parser("verify", help="check a data set folder against its SHA-256 manifest")
    verify.add_argument("name", help="bsds500, live1, live1_gray, classic5 or kodak24")
    verify.add_argument("--data-root", metavar="DIR", help=root_help)
    verify.set_defaults(func=run_verify)


def run_list(args: argparse.Namespace) -> int:
    """Print one line per dataset: images found / expected, colour, comparability, fetchability."""
    import logging

    from compress.data.datasets import DATASETS, open_dataset, resolve_data_root
    from compress.data.fetch import SOURCES
    from compress.errors import DataError

    root = resolve_data_root(args.data_root)
    print(f"data root: {root}{'' if root.is_dir() else ' (does not exist)'}")
    print(f"{'name':<14} {'found':>5} {'of':>4}  {'colour':<6} {'split':<5} {'fetch':<10} description")
    logging.getLogger("compress.data.datasets").setLevel(logging.ERROR)  # counts are shown; no partial-set warnings
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        try:
            found = str(len(open_dataset(name, data_root=args.data_root)))
        except DataError:
            found = "-"
        expected = str(spec.expected) if spec.expected is not None else "?"
        top = spec.folder.split("/")[0]
        fetchable = top if top and top in SOURCES else "-"
        cols = f"{name:<14} {found:>5} {expected:>4}  {spec.color.value:<6} {spec.split:<5} {fetchable:<10}"
        print(f"{cols} {spec.description}")
    print("also: folder:<path> (every image in a folder)")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """Download and verify one data set."""
    from compress.data.fetch import fetch_dataset

    rep = fetch_dataset(
        args.name, data_root=args.data_root, url=args.url, force=args.force, progress=not args.no_progress
    )
    if rep.already_present:
        print(f"{rep.name}: already present and verified in {rep.folder}")
        return 0
    exact = len(rep.written) - len(rep.pixel_verified)
    print(f"{rep.name}: {len(rep.written)} files written to {rep.folder}; {exact} match the manifest's SHA-256")
    if rep.pixel_verified:
        print(
            f"{rep.name}: {len(rep.pixel_verified)} converted PNG(s) have other bytes than the manifest (another "
            "zlib?) but exactly the pixels of their source BMP, which matched its SHA-256; `compress data verify` "
            f"will list them: {', '.join(rep.pixel_verified[:3])}{' ...' if len(rep.pixel_verified) > 3 else ''}"
        )
    if not rep.archive_checked:
        print(
            f"{rep.name}: note: no pinned archive-level SHA-256 (none could be checked when the source was set up); "
            "the per-image manifest was the check"
        )
    if rep.skipped_unlisted:
        print(f"{rep.name}: {len(rep.skipped_unlisted)} file(s) not in the manifest were skipped")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Verify one folder; exit 2 with the bad files named when it fails."""
    from compress.data.fetch import verify_dataset
    from compress.errors import DataError

    rep = verify_dataset(args.name, data_root=args.data_root)
    if not rep.passed:
        raise DataError(rep.summary())
    print(rep.summary())
    return 0
