"""Documentation generated from the recipe schema: JSON Schema, the key reference, recipe templates.

``docs/recipe-keys.md`` is :func:`recipe_keys_markdown`'s output (a test checks it is up to date;
regenerate with ``compress recipe keys --out docs/recipe-keys.md``).
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from compress.errors import RecipeError
from compress.recipe.schema import STAGE_MODELS, DataConfig, Hint, Recipe, Student, Sweep, Teacher
from compress.recipe.train_recipe import TrainData, TrainRecipe

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
"""Shipped recipes, at the repository root of a checkout."""

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
"""The templates of ``compress recipe new``: copies of the compression recipes in ``recipes/``, shipped
inside the package so an installed ``compress`` has them too (a test keeps the copies identical)."""


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a recipe file (for editors and other tools)."""
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "compress recipe"
    return schema


def json_schema_text() -> str:
    """:func:`json_schema` as indented JSON text."""
    return json.dumps(json_schema(), indent=1) + "\n"


# ---------------------------------------------------------------------------------------------
# key reference


def _type_name(ann: Any) -> str:
    origin = get_origin(ann)
    if origin is Annotated:
        return _type_name(get_args(ann)[0])
    if origin in (Union, UnionType):
        args = get_args(ann)
        if all(isinstance(a, type) and issubclass(a, BaseModel) for a in args):
            return "mapping (keys by type)"
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return " / ".join(repr(a) for a in get_args(ann))
    if origin in (tuple, list):
        return f"list of {_type_name(get_args(ann)[0])}"
    if origin is dict:
        return f"mapping of {_type_name(get_args(ann)[1])}"
    if isinstance(ann, type) and issubclass(ann, Enum):
        return "one of " + ", ".join(str(m.value) for m in ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "mapping"
    if ann is Any:
        return "any"
    return getattr(ann, "__name__", str(ann))


def _range(field: FieldInfo) -> str:
    parts = []
    for m in field.metadata:
        if isinstance(m, at.Gt):
            parts.append(f"> {m.gt}")
        elif isinstance(m, at.Ge):
            parts.append(f">= {m.ge}")
        elif isinstance(m, at.Lt):
            parts.append(f"< {m.lt}")
        elif isinstance(m, at.Le):
            parts.append(f"<= {m.le}")
        elif isinstance(m, at.MinLen):
            parts.append(f"at least {m.min_length} item(s)")
        elif getattr(m, "pattern", None):
            parts.append(f"matches `{m.pattern}`")
    return ", ".join(parts)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "(see below)"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    return "`" + json.dumps(value) + "`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rows(model: type[BaseModel], prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    rows = []
    fields = sorted(model.model_fields.items(), key=lambda kv: kv[0] != "type")  # a stage's type first
    for name, field in fields:
        if name in skip:
            continue
        key = f"{prefix}{name}"
        desc = field.description or (model.__doc__ or "").strip().splitlines()[0]
        rows.append(
            f"| `{key}` | {_cell(_type_name(field.annotation))} | {_cell(_default(field))} | "
            f"{_cell(_range(field))} | {_cell(desc)} |"
        )
    return rows


_HEAD = ["| key | type | default | range | meaning |", "|---|---|---|---|---|"]


def recipe_keys_markdown() -> str:
    """Every recipe key with its type, default, range and meaning, generated from the schema."""
    out = [
        "# Recipe keys",
        "",
        "Generated from `compress/recipe/schema.py` by `compress recipe keys --out docs/recipe-keys.md`; "
        "do not edit by hand (a test checks this file is up to date).",
        "",
        "A recipe is YAML, read with a safe loader. Unknown keys, wrong types and out-of-range values are "
        "errors that name the file, the line and the dotted key. Run `compress recipe validate FILE` to check one, "
        "`compress recipe schema` for the JSON Schema.",
        "",
        "## Top level",
        "",
        *_HEAD,
        *_rows(Recipe, ""),
        "",
        "## student",
        "",
        *_HEAD,
        *_rows(Student, "student."),
        "",
        "## teachers",
        "",
        "A mapping from a teacher name (used by distill stages) to:",
        "",
        *_HEAD,
        *_rows(Teacher, "teachers.<name>."),
        "",
        "## data",
        "",
        *_HEAD,
        *_rows(DataConfig, "data."),
        "",
        "## stages",
        "",
        "An ordered list; each item's `type` picks its keys. Order rules: prune before quantize, one quantize "
        "stage, export last (added automatically when absent, so every variant has a `model.onnx`).",
        "",
    ]
    for kind, model in STAGE_MODELS.items():
        out += [f"### type: {kind.value}", "", (model.__doc__ or "").strip().splitlines()[0], "", *_HEAD]
        out += _rows(model, "stages.<i>.")
        out.append("")
        if kind.value == "distill":
            out += ["#### hints", "", *_HEAD, *_rows(Hint, "stages.<i>.hints.<j>."), ""]
    out += [
        "## sweep",
        "",
        "Variants of the recipe. A path addresses any key of the recipe by dotted path, list items by index "
        "(`stages.0.ratio`). Every variant is validated on its own; an error in a swept value names the line "
        "of that value. A variant's id is a readable name from its values plus 8 hex digits of the hash of "
        "its resolved recipe.",
        "",
        *_HEAD,
        *_rows(Sweep, "sweep."),
        "",
        "## Training recipes (`kind: train`)",
        "",
        "`recipes/train-*.yaml`, run by `compress train --recipe FILE` (flags given beside it override it); "
        "checkpoints go to `models/<name>/`.",
        "",
        *_HEAD,
        *_rows(TrainRecipe, ""),
        "",
        "### data (training)",
        "",
        *_HEAD,
        *_rows(TrainData, "data."),
        "",
    ]
    out += _target_sections()
    return "\n".join(out)


def _target_sections() -> list[str]:
    """The keys of a hardware target (``recipes/targets/*.yaml``, :mod:`compress.targets`)."""
    from compress.targets import Budgets, ComputeBudget, LatencyBudget, MemoryBudget, Target

    return [
        "## Hardware targets (`recipes/targets/*.yaml`)",
        "",
        "Read by `compress pareto --target`, `compress latency`, `compress deployed` and `compress bench speedgoal` "
        "(a shipped name or a path to a file like these). Measured targets (onnxruntime, OpenVINO) are timed here; "
        "analytic ones are judged by their budgets only and say whether their numbers are illustrative.",
        "",
        *_HEAD,
        *_rows(Target, ""),
        "",
        "### budgets",
        "",
        *_HEAD,
        *_rows(Budgets, "budgets."),
        "",
        "### budgets.compute",
        "",
        *_HEAD,
        *_rows(ComputeBudget, "budgets.compute."),
        "",
        "### budgets.activations",
        "",
        *_HEAD,
        *_rows(MemoryBudget, "budgets.activations."),
        "",
        "### budgets.latency",
        "",
        *_HEAD,
        *_rows(LatencyBudget, "budgets.latency."),
        "",
    ]


# ---------------------------------------------------------------------------------------------
# templates


def template_names() -> list[str]:
    """Names of the shipped recipes usable with ``compress recipe new --from``."""
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.yaml"))


def recipe_from_template(template: str, *, name: str | None = None) -> str:
    """The text of a shipped recipe (comments kept), renamed to ``name`` when given.

    Raises:
        RecipeError: no such template, or an invalid name.
    """
    from compress.registry import unknown_message

    p = Path(template)
    if not p.is_file():
        p = TEMPLATES_DIR / f"{template.removesuffix('.yaml')}.yaml"
    if not p.is_file() or p.stem.startswith("train-"):
        raise RecipeError(unknown_message("recipe template", template, template_names()))
    text = p.read_text(encoding="utf-8")
    if name is not None:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
            raise RecipeError(f"--name {name!r}: use letters, digits, '_', '.', '-'")
        text, n = re.subn(r"(?m)^name:\s*\S+", f"name: {name}", text, count=1)
        if n == 0:
            text = f"name: {name}\n" + text
    return f"# Made with: compress recipe new --from {template}\n" + text
