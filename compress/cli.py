"""The ``compress`` command: thin argument parsing; the work lives in the package modules.

Each sub-command is a module in :mod:`compress.commands` exposing ``register(subparsers)``, which
adds its parser and sets ``func``. Command modules import heavy libraries inside ``func`` only, so
``compress --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from compress.errors import CompressError
from compress.sysalloc import tune_malloc

# Order is the order in ``compress --help``.
COMMAND_MODULES = [
    "compress.commands.main",
    "compress.commands.profile",
    "compress.commands.train",
    "compress.commands.infer",
    "compress.commands.card",
    "compress.commands.bench",
    "compress.commands.data",
    "compress.commands.evaluate",
    "compress.commands.compare",
    "compress.commands.latency",
    "compress.commands.deployed",
    "compress.commands.pareto",
    "compress.commands.recipe",
    "compress.commands.run",
    "compress.commands.rescore",
    "compress.commands.summary",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compress",
        description="Compression and quantization workbench for JPEG artifact-removal CNNs.",
    )
    from compress import __version__

    parser.add_argument("--version", action="version", version=f"compress {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod_name in COMMAND_MODULES:
        importlib.import_module(mod_name).register(sub)
    return parser


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Accept the brief's underscore spellings (``--images_dir``) for every dashed long option."""
    out = []
    for a in argv:
        if a.startswith("--") and "_" in a:
            head, eq, tail = a.partition("=")
            a = head.replace("_", "-") + eq + tail
        out.append(a)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args_in = normalize_argv(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_in)
    tune_malloc()  # large tensors stay in the heap: see compress.sysalloc
    try:
        rc = args.func(args)
    except CompressError as exc:
        print(f"compress: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("compress: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `compress data list | head`: the reader left, nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())
