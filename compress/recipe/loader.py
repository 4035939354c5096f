"""Safe YAML loading with line numbers, and validation into typed objects with one-line errors.

``load_yaml`` composes the document with PyYAML's safe machinery and keeps, for every dotted key
path, the line it came from. ``validate`` runs a pydantic model (``extra="forbid"``) over the data
and turns every validation error into ``FILE:LINE: dotted.key: message``, naming the valid values
and the closest match for unknown keys and enum values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from compress.errors import RecipeError
from compress.registry import closest

M = TypeVar("M", bound=BaseModel)


class _SafeLineLoader(yaml.SafeLoader):
    """SafeLoader that also resolves ``1e-4`` (YAML 1.1 reads it as a string) as a float."""


_SafeLineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    __import__("re").compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        __import__("re").X,
    ),
    list("-+0123456789."),
)


def _walk(node: yaml.Node, path: tuple[str, ...], lines: dict[tuple[str, ...], int], loader: yaml.SafeLoader) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k_node, v_node in node.value:
            key = loader.construct_object(k_node, deep=True)
            if isinstance(key, list | dict):
                raise RecipeError(f"line {k_node.start_mark.line + 1}: a mapping key must be a plain value")
            skey = str(key)
            if skey in out:
                raise RecipeError(f"line {k_node.start_mark.line + 1}: {'.'.join((*path, skey))}: duplicate key")
            lines[(*path, skey)] = k_node.start_mark.line + 1
            out[skey] = _walk(v_node, (*path, skey), lines, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(v, (*path, str(i)), lines, loader) for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(text: str, source: str = "<string>") -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse one YAML document with the safe loader; return ``(data, {key path: line})``."""
    loader = _SafeLineLoader(text)
    lines: dict[tuple[str, ...], int] = {}
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines
        return _walk(node, (), lines, loader), lines
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{source}:{line}: malformed YAML: {problem}") from None
    except RecipeError as exc:
        raise RecipeError(f"{source}:{str(exc).removeprefix('line ')}") from None
    finally:
        loader.dispose()


def _line_for(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int | str:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return "?"


def _model_at(model: type[BaseModel], loc: tuple[str, ...]) -> type[BaseModel] | None:
    cur: Any = model
    for part in loc:
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)):
            return None
        field = cur.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        cur = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return cur if isinstance(cur, type) and issubclass(cur, BaseModel) else None


def format_errors(err: ValidationError, model: type[BaseModel], lines: dict[tuple[str, ...], int], source: str) -> str:
    """One ``FILE:LINE: key: message`` line per pydantic error."""
    out = []
    for e in err.errors(include_url=False):
        loc = tuple(str(p) for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(loc) or "(document)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            valid = sorted(parent.model_fields) if parent is not None else []
            hint = closest(loc[-1], valid) if valid else None
            msg = "unknown key" + (f"; valid: {', '.join(valid)}" if valid else "")
            msg += f" (did you mean {hint!r}?)" if hint else ""
        elif e["type"] == "enum":
            expected = e.get("ctx", {}).get("expected", "")
            opts = [o.strip().strip("'") for o in expected.replace(" or ", ",").split(",") if o.strip()]
            hint = closest(str(e.get("input")), opts)
            msg = f"invalid value {e.get('input')!r}; valid: {', '.join(opts)}"
            msg += f" (did you mean {hint!r}?)" if hint else ""
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        out.append(f"{source}:{_line_for(loc, lines)}: {key}: {msg}")
    return "\n".join(out)


def validate(model: type[M], data: Any, lines: dict[tuple[str, ...], int], source: str) -> M:
    """Validate ``data`` into ``model``; any error becomes a :class:`RecipeError` naming file, line and key."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}:1: (document): expected a mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise RecipeError(format_errors(err, model, lines, source)) from None


def load_file(model: type[M], path: str | Path) -> M:
    """Read, parse and validate one YAML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{p}: cannot read ({exc})") from None
    data, lines = load_yaml(text, str(p))
    return validate(model, data, lines, str(p))
