"""``compress recipe``: write the JSON Schema, validate recipes, start a recipe from a shipped one."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the ``recipe`` sub-command and its actions."""
    p = sub.add_parser(
        "recipe",
        help="recipe authoring: JSON Schema, validation, new recipe from a template, key reference",
        description="Author compression recipes (recipes/*.yaml). See docs/recipe-keys.md for every key.",
    )
    acts = p.add_subparsers(dest="action", metavar="ACTION")
    acts.required = True
    s = acts.add_parser("schema", help="write the recipe JSON Schema (for editors)")
    s.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    s.set_defaults(func=schema)
    v = acts.add_parser("validate", help="validate recipes; exit 2 if any is invalid (nothing runs)")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument("--no-check-files", action="store_true", help="do not require checkpoint files to exist")
    v.set_defaults(func=validate)
    n = acts.add_parser("new", help="write a new recipe from a shipped one (recipes/NAME.yaml)")
    n.add_argument("--from", dest="template", required=True, metavar="NAME", help="shipped recipe name or path")
    n.add_argument("--name", help="the new recipe's name (default: the template's)")
    n.add_argument("--out", metavar="FILE", help="write here instead of stdout (an existing file is kept)")
    n.set_defaults(func=new)
    k = acts.add_parser("keys", help="write the key reference (docs/recipe-keys.md)")
    k.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    k.set_defaults(func=keys)


def _emit(text: str, out: str | None) -> None:
    if out is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    from pathlib import Path

    from compress.checkpoint import atomic_write_bytes

    atomic_write_bytes(Path(out), text.encode())
    print(f"wrote {out}")


def schema(args: argparse.Namespace) -> int:
    """Print or write the JSON Schema."""
    from compress.recipe.docs import json_schema_text

    _emit(json_schema_text(), args.out)
    return 0


def validate(args: argparse.Namespace) -> int:
    """Validate every file; print each error line; exit 2 on any."""
    import sys

    from compress.errors import RecipeError
    from compress.recipe.expand import load_recipe

    bad = 0
    for path in args.files:
        try:
            f = load_recipe(path, check_files=not args.no_check_files)
        except RecipeError as exc:  # every error line of every file, not only the first
            print(str(exc), file=sys.stderr)
            bad += 1
            continue
        print(f"{f.path}: ok, {len(f.variants)} variant(s): {', '.join(v.id for v in f.variants)}")
    return 2 if bad else 0


def new(args: argparse.Namespace) -> int:
    """Write a recipe from a template."""
    from pathlib import Path

    from compress.errors import CompressError
    from compress.recipe.docs import recipe_from_template

    if args.out and Path(args.out).exists():
        raise CompressError(f"{args.out}: exists; pick another --out")
    _emit(recipe_from_template(args.template, name=args.name), args.out)
    return 0


def keys(args: argparse.Namespace) -> int:
    """Print or write the key reference."""
    from compress.recipe.docs import recipe_keys_markdown

    _emit(recipe_keys_markdown(), args.out)
    return 0
