"""Safe YAML loading with line numbers, and validation into typed objects with one-line errors.

``load_yaml`` composes the document with PyYAML's safe machinery and keeps, for every dotted key
path, the line it came from. ``validate`` runs a pydantic model (``extra="forbid"``) over the data
and turns every validation error into ``FILE:LINE: dotted.key: message``, naming the valid values
and the closest match for unknown keys and enum values.
"""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from compress.errors import RecipeError
from compress.registry import closest

M = TypeVar("M", bound=BaseModel)


_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"})


def one_line(msg: str) -> str:
    """``msg`` with every character that would break it into several lines escaped (keys may hold any text)."""
    return msg.translate(_LINE_BREAKS)


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


MAX_DEPTH = 32
"""Deepest nesting of mappings and lists a document may have (a recipe needs about 6)."""
MAX_NODES = 100_000
"""Most values a document may expand to, aliases counted at every use (stops 'billion laughs' documents)."""


class _Walk:
    """Turn a composed node tree into plain data, recording the line of every key path.

    Only scalars go through PyYAML's (safe) constructors; mappings and lists are rebuilt here, so a tag on
    a collection never constructs anything. Aliases are followed, but a cycle, nesting deeper than
    :data:`MAX_DEPTH` or more than :data:`MAX_NODES` values is an error, never a hang or a crash.
    """

    def __init__(self, loader: yaml.SafeLoader, lines: dict[tuple[str, ...], int]) -> None:
        self.loader = loader
        self.lines = lines
        self.count = 0
        self.active: set[int] = set()

    def scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. an integer of 5000 digits
            raise RecipeError(f"line {node.start_mark.line + 1}: malformed YAML: {exc}") from None

    def __call__(self, node: yaml.Node, path: tuple[str, ...]) -> Any:
        line = node.start_mark.line + 1
        self.count += 1
        if self.count > MAX_NODES:
            raise RecipeError(f"line {line}: malformed YAML: more than {MAX_NODES} values (aliases expand too far)")
        if len(path) > MAX_DEPTH:
            raise RecipeError(f"line {line}: {'.'.join(path[:3])}...: nested deeper than {MAX_DEPTH} levels")
        self.lines.setdefault(path, line)
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return self.scalar(node)
        if id(node) in self.active:
            raise RecipeError(f"line {line}: {'.'.join(path) or '(document)'}: an alias refers to itself")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self(v, (*path, str(i))) for i, v in enumerate(node.value)]
            out: dict[Any, Any] = {}
            for k_node, v_node in node.value:
                if not isinstance(k_node, yaml.ScalarNode):
                    raise RecipeError(f"line {k_node.start_mark.line + 1}: a mapping key must be a plain value")
                skey = str(self.scalar(k_node))
                if skey in out:
                    raise RecipeError(f"line {k_node.start_mark.line + 1}: {'.'.join((*path, skey))}: duplicate key")
                self.lines[(*path, skey)] = k_node.start_mark.line + 1
                out[skey] = self(v_node, (*path, skey))
            return out
        finally:
            self.active.discard(id(node))


def load_yaml(text: str, source: str = "<string>") -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse one YAML document with the safe loader; return ``(data, {key path: line})``.

    Raises:
        RecipeError: malformed YAML, a non-scalar or duplicate key, nesting deeper than :data:`MAX_DEPTH`,
            a self-referring alias or more than :data:`MAX_NODES` values; ``FILE:LINE: ...``.
    """
    lines: dict[tuple[str, ...], int] = {}
    loader: _SafeLineLoader | None = None
    try:
        loader = _SafeLineLoader(text)  # the reader rejects control characters already here
        node = loader.get_single_node()
        if node is None:
            return None, lines
        return _Walk(loader, lines)(node, ()), lines
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f"{mark.line + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if isinstance(exc, yaml.reader.ReaderError):  # a bad character: no mark, a position
            line = str(text[: exc.position].count("\n") + 1)
            problem = f"unacceptable character #x{exc.character:04x}"
        raise RecipeError(one_line(f"{source}:{line}: malformed YAML: {problem}")) from None
    except RecursionError:  # PyYAML's composer recurses once per level of the text's nesting
        at = loader.line + 1 if loader is not None else "?"  # where the reader had got to
        raise RecipeError(f"{source}:{at}: malformed YAML: nested deeper than {MAX_DEPTH} levels") from None
    except RecipeError as exc:
        raise RecipeError(one_line(f"{source}:{str(exc).removeprefix('line ')}")) from None
    finally:
        if loader is not None:
            loader.dispose()


def _line_for(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int | str:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return "?"


def _unwrap(ann: Any) -> Any:
    """Strip ``Annotated`` and ``Optional`` from a field annotation."""
    while True:
        origin = get_origin(ann)
        if origin is Annotated:
            ann = get_args(ann)[0]
            continue
        if origin in (Union, UnionType):
            members = [a for a in get_args(ann) if a is not type(None)]
            if len(members) == 1:
                ann = members[0]
                continue
        return ann


def _union_member(ann: Any, tag: str) -> type[BaseModel] | None:
    """The member of a discriminated union of models whose ``Literal`` tag field equals ``tag``."""
    if get_origin(ann) not in (Union, UnionType):
        return None
    for member in get_args(ann):
        if not (isinstance(member, type) and issubclass(member, BaseModel)):
            continue
        for field in member.model_fields.values():
            if get_origin(field.annotation) is Literal and tag in [str(a) for a in get_args(field.annotation)]:
                return member
    return None


def resolve_loc(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[tuple[str, ...], type[BaseModel] | None]:
    """Clean a pydantic error location into a dotted key path of the document.

    Pydantic puts the tag of a discriminated union into the location (``stages.0.prune.ratio``);
    the document has no such key, so it is dropped. Also returns the model that holds the last key
    (to list its valid keys), or None.
    """
    cur: Any = model
    out: list[str] = []
    parent: type[BaseModel] | None = None
    for part in (str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-"))):
        cur = _unwrap(cur)
        member = _union_member(cur, part)
        if member is not None:
            cur = member
            continue
        out.append(part)
        if isinstance(cur, type) and issubclass(cur, BaseModel):
            parent = cur
            field = cur.model_fields.get(part)
            cur = field.annotation if field is not None else None
        elif get_origin(cur) in (tuple, list):
            parent, cur = None, get_args(cur)[0]
        elif get_origin(cur) is dict:
            parent, cur = None, get_args(cur)[1]
        else:
            parent, cur = None, None
    return tuple(out), parent


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _options(expected: str) -> list[str]:
    return [o.strip().strip("'") for o in expected.replace(" or ", ",").split(",") if o.strip()]


def format_error(e: Any, model: type[BaseModel], lines: dict[tuple[str, ...], int], source: str) -> str:
    """One ``FILE:LINE: key: message`` line for one pydantic error dict."""
    loc, parent = resolve_loc(model, tuple(e["loc"]))
    msg = e["msg"]
    kind = e["type"]
    ctx = e.get("ctx") or {}
    given = e.get("input")
    if kind == "extra_forbidden":
        valid = sorted(parent.model_fields) if parent is not None else []
        hint = closest(loc[-1], valid) if valid else None
        msg = "unknown key" + (f"; valid: {', '.join(valid)}" if valid else "")
        msg += f" (did you mean {hint!r}?)" if hint else ""
    elif kind in ("enum", "literal_error"):
        opts = _options(str(ctx.get("expected", "")))
        hint = closest(str(given), opts)
        msg = f"invalid value {given!r}; valid: {', '.join(opts)}"
        msg += f" (did you mean {hint!r}?)" if hint else ""
    elif kind == "union_tag_invalid":
        field = str(ctx.get("discriminator", "type")).strip("'")
        opts = _options(str(ctx.get("expected_tags", "")))
        tag = str(ctx.get("tag"))
        hint = closest(tag, opts)
        loc = (*loc, field)
        msg = f"unknown {field} {tag!r}; valid: {', '.join(opts)}" + (f" (did you mean {hint!r}?)" if hint else "")
    elif kind == "union_tag_not_found":
        field = str(ctx.get("discriminator", "type")).strip("'")
        loc = (*loc, field)
        msg = "required key is missing"
    elif kind == "missing":
        msg = "required key is missing"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif not isinstance(given, dict | list):
        msg = f"{msg}, got {_short(given)}"
    else:
        msg = f"{msg}, got a {'mapping' if isinstance(given, dict) else 'list'}"
    key = ".".join(loc) or "(document)"
    return one_line(f"{source}:{_line_for(loc, lines)}: {key}: {msg}")


def format_errors(err: ValidationError, model: type[BaseModel], lines: dict[tuple[str, ...], int], source: str) -> str:
    """One ``FILE:LINE: key: message`` line per pydantic error."""
    out: list[str] = []
    for e in err.errors(include_url=False):
        line = format_error(e, model, lines, source)
        if line not in out:
            out.append(line)
    return "\n".join(out)


def validate(
    model: type[M],
    data: Any,
    lines: dict[tuple[str, ...], int],
    source: str,
    *,
    context: dict[str, Any] | None = None,
) -> M:
    """Validate ``data`` into ``model``; any error becomes a :class:`RecipeError` naming file, line and key.

    Args:
        model: the pydantic model (``extra="forbid"``).
        data: the parsed document.
        lines: key path -> line, from :func:`load_yaml`.
        source: the file name used in messages.
        context: passed to pydantic validators (``ValidationInfo.context``).
    """
    if not isinstance(data, dict):
        raise RecipeError(f"{source}:1: (document): expected a mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as err:
        raise RecipeError(format_errors(err, model, lines, source)) from None


def read_text(path: str | Path) -> str:
    """A recipe or target file's text; a missing or unreadable file is a :class:`RecipeError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{p}: cannot read ({exc})") from None
    return text


def load_file(model: type[M], path: str | Path) -> M:
    """Read, parse and validate one YAML file."""
    p = Path(path)
    text = read_text(p)
    data, lines = load_yaml(text, str(p))
    return validate(model, data, lines, str(p))
