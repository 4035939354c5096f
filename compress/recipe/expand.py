"""Load a compression recipe completely (schema, cross-checks, sweep) before any model is touched.

:func:`load_recipe` reads one YAML file, validates it into a :class:`~compress.recipe.schema.Recipe`,
runs the checks one key cannot do alone (a distill stage's teacher is declared, layer names exist,
stage order makes sense, checkpoint files exist) and expands the sweep into :class:`Variant` objects,
each validated on its own: a sweep value that breaks the recipe is reported at the line of that value.

A variant's id is a short readable name built from its sweep values plus the first 8 hex digits of
the SHA-256 of its resolved recipe (canonical JSON), so ids are stable across runs and machines.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.errors import RecipeError
from compress.recipe.loader import format_error, load_yaml, one_line, read_text, validate
from compress.recipe.schema import (
    Backend,
    DistillStage,
    ExportFormat,
    ExportStage,
    MissingPolicy,
    PruneLayersStage,
    PruneStage,
    QuantizeStage,
    Recipe,
    Student,
    Sweep,
    SweepMode,
    Teacher,
)
from compress.registry import unknown_message

MODELS_DIR = "models"
CHECKPOINT_NAME = "best.safetensors"

Loc = tuple[str, ...]


@dataclass(frozen=True)
class Variant:
    """One point of a recipe's sweep: the resolved recipe (no sweep) and where its values came from.

    Attributes:
        recipe: the resolved recipe this variant runs.
        overrides: dotted key path -> value set by the sweep (empty without a sweep).
        name: readable part of the id (``ratio0.5-l1``, or ``base`` without a sweep).
        recipe_hash: SHA-256 of the resolved recipe's canonical JSON.
        source: the recipe file.
    """

    recipe: Recipe
    overrides: dict[str, Any]
    name: str
    recipe_hash: str
    source: str

    @property
    def id(self) -> str:
        """``<name>-<first 8 hex digits of the recipe hash>``: stable, readable, unique per resolved recipe."""
        return f"{self.name}-{self.recipe_hash[:8]}"

    def resolved(self) -> dict[str, Any]:
        """The resolved recipe as plain JSON-able data."""
        return resolved_dict(self.recipe)


@dataclass(frozen=True)
class RecipeFile:
    """A validated recipe file and its variants."""

    path: str
    recipe: Recipe
    variants: tuple[Variant, ...]


# ---------------------------------------------------------------------------------------------
# hashing and names


def resolved_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe without its sweep, as JSON-able data (enums as strings, tuples as lists)."""
    return recipe.without_sweep().model_dump(mode="json", exclude={"sweep"})


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace: the text that is hashed."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


#: Stage keys added after variants were already run, with a default that does what the code did before
#: them: at that default they are left out of the hash, so adding them kept every earlier variant's id
#: and cache key. (A key whose default changed behaviour, such as quantize.overflow_fix, is hashed.)
HASH_NEUTRAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "quantize": {"keep_float": [], "parent_l2": 0.0, "precision": "fp32", "channels_last": False,
                 "act_mode": "symmetric", "conv_output": False},
    "finetune": {"precision": "fp32", "channels_last": False},
    "distill": {"precision": "fp32", "channels_last": False},
    "export": {"subpixel": False},
}


def hashed_dict(recipe: Recipe) -> dict[str, Any]:
    """:func:`resolved_dict` less the :data:`HASH_NEUTRAL_DEFAULTS` keys that are at their default."""
    doc = resolved_dict(recipe)
    for stage in doc.get("stages", []):
        for key, default in HASH_NEUTRAL_DEFAULTS.get(stage.get("type", ""), {}).items():
            if key in stage and stage[key] == default:
                del stage[key]
    return doc


def recipe_hash(recipe: Recipe) -> str:
    """SHA-256 hex digest of the resolved recipe (see :func:`hashed_dict`)."""
    return hashlib.sha256(canonical_json(hashed_dict(recipe)).encode()).hexdigest()


def _value_token(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int | str):
        return str(value)
    return _list_token(value) or hashlib.sha256(canonical_json(value).encode()).hexdigest()[:6]


def _list_token(value: Any) -> str | None:
    """``a+b`` for a short list of plain numbers / words (``keep_float: [last]`` -> ``last``; ``[]`` -> ``none``),
    else None."""
    if isinstance(value, list | tuple) and not value:
        return "none"
    if not isinstance(value, list | tuple) or len(value) > 4 \
            or not all(isinstance(v, int | float | str) and not isinstance(v, bool) for v in value):
        return None
    joined = "+".join(_value_token(v) for v in value)
    return joined if len(joined) <= 24 else None


SHORT_KEYS = {"weight_bits": "w", "act_bits": "a", "iterative_steps": "it", "target_macs": "macs", "parent_l2": "kd"}
"""Short forms of long swept keys in variant names (``w4-a8``)."""


def variant_name(overrides: dict[str, Any]) -> str:
    """A short file-safe name from sweep values: numbers keep their key (``ratio0.5``, ``w4``), words stand alone."""
    if not overrides:
        return "base"
    parts = []
    for path, value in overrides.items():
        token = _value_token(value)
        leaf = path.rsplit(".", 1)[-1]
        if isinstance(value, int | float):  # bool is an int: on/off also keeps its key
            token = f"{SHORT_KEYS.get(leaf, leaf)}{token}"
        elif _list_token(value) is not None:  # a short list keeps its key too: keep_float_last
            token = f"{leaf}_{token}"
        parts.append(re.sub(r"[^A-Za-z0-9_.]+", "_", token))
    return "-".join(parts)[:60].strip("-_.") or "variant"


# ---------------------------------------------------------------------------------------------
# sweep


def _split(path: str) -> list[str]:
    return [p for p in path.split(".")]


def set_path(data: Any, path: str, value: Any) -> None:
    """Set ``value`` at dotted ``path`` in nested dicts/lists; the last key may be new, the others must exist.

    Raises:
        KeyError: the message says which part of the path does not exist.
    """
    parts = _split(path)
    if any(not p for p in parts):
        raise KeyError(f"malformed key path {path!r}")
    cur = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            if not (part.isascii() and part.isdigit()) or int(part) >= len(cur):  # not "²"
                raise KeyError(f"{'.'.join(parts[: i + 1])}: no item {part} (the list has {len(cur)})")
            if last:
                cur[int(part)] = value
            else:
                cur = cur[int(part)]
        elif isinstance(cur, dict):
            if last:
                cur[part] = value
            elif part not in cur:
                hint = unknown_message("key", part, tuple(str(k) for k in cur))
                raise KeyError(f"{'.'.join(parts[: i + 1])}: {hint}")
            else:
                cur = cur[part]
        else:
            raise KeyError(f"{'.'.join(parts[:i])} is a value, not a mapping or list")


MAX_VARIANTS = 1000
"""Most variants one recipe may expand to (each is validated, and each is a training run)."""


def sweep_size(sweep: Sweep) -> int:
    """How many points a validated sweep has, without expanding it."""
    if sweep.points:
        return len(sweep.points)
    lengths = [len(v) for v in sweep.axes.values()]
    if sweep.mode is SweepMode.zip:
        return lengths[0] if lengths else 0
    return math.prod(lengths)


def sweep_points(sweep: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Loc]]]:
    """The sweep's points: ``({path: value}, {path: key path of the value in the document})``."""
    axes: dict[str, list[Any]] = sweep.get("axes") or {}
    points: list[dict[str, Any]] = list(sweep.get("points") or [])
    if points:
        return [
            (dict(p), {k: ("sweep", "points", str(i), k) for k in p}) for i, p in enumerate(points)
        ]
    keys = list(axes)
    if str(sweep.get("mode", SweepMode.grid.value)) == SweepMode.zip.value:
        combos: Iterable[tuple[int, ...]] = zip(*(range(len(axes[k])) for k in keys), strict=True)
    else:
        combos = itertools.product(*(range(len(axes[k])) for k in keys))
    out: list[tuple[dict[str, Any], dict[str, Loc]]] = []
    for idx in combos:
        out.append(
            (
                {k: axes[k][i] for k, i in zip(keys, idx, strict=True)},
                {k: ("sweep", "axes", k, str(i)) for k, i in zip(keys, idx, strict=True)},
            )
        )
    return out


def _variant_lines(lines: dict[Loc, int], origin: dict[str, Loc]) -> dict[Loc, int]:
    """Lines for a variant document: a swept key (and anything below it) points at its sweep value."""
    out = {k: v for k, v in lines.items() if k[:1] != ("sweep",)}
    for path, src in origin.items():
        target = tuple(_split(path))
        line = lines.get(src)
        if line is None:
            continue
        for k in [k for k in out if k[: len(target)] == target]:
            out[k] = line
        out[target] = line
    return out


# ---------------------------------------------------------------------------------------------
# cross-checks


def _meta_model(arch: str, channels: int, kwargs: dict[str, Any]) -> Any:
    """Build ``arch`` on the meta device (no memory, no init cost) to look up its module names."""
    import torch

    from compress.nets import build_model

    with torch.device("meta"):
        return build_model(arch, channels, **kwargs)


_NAMES: dict[tuple[str, int, str], tuple[str, ...]] = {}


def module_names(arch: str, channels: int, kwargs: dict[str, Any]) -> tuple[str, ...]:
    """Names of ``arch``'s modules (built on the meta device once per architecture and options, then cached).

    A sweep validates every variant: without the cache each one would rebuild the same teacher.
    """
    key = (arch, channels, json.dumps(kwargs, sort_keys=True, default=repr))
    if key not in _NAMES:
        if len(_NAMES) > 256:
            _NAMES.clear()
        _NAMES[key] = tuple(n for n, _ in _meta_model(arch, channels, kwargs).named_modules() if n)
    return _NAMES[key]


def _removable(spec: Student, channels: int) -> list[str]:
    """The student's removable layers (:func:`compress.stages.prune_layers.removable_layers`), on the meta device."""
    from compress.stages.prune_layers import removable_layers

    return list(removable_layers(_meta_model(spec.arch, channels, dict(spec.arch_kwargs))))


def resolve_checkpoint(spec: str, root: Path | None = None) -> Path:
    """A checkpoint path as written in a recipe: a file path, or a models/ name (``arcnn-q10``)."""
    base = Path.cwd() if root is None else root
    p = Path(spec).expanduser()
    if "/" not in spec and "\\" not in spec and not p.suffix:
        p = Path(MODELS_DIR) / spec / CHECKPOINT_NAME
    return p if p.is_absolute() else base / p


def _checkpoint_problems(path: Path, arch: str, channels: int) -> list[str]:
    """What is wrong with a checkpoint file for ``arch`` at ``channels``, from its header alone (no tensors read)."""
    from compress.checkpoint import checkpoint_metadata
    from compress.errors import CheckpointError

    try:
        meta = checkpoint_metadata(path)
    except CheckpointError as exc:
        return [str(exc)]
    out = []
    if meta.get("arch") not in (None, arch):
        out.append(f"{path} holds weights of architecture {meta['arch']!r}, not {arch!r}")
    if meta.get("channels") not in (None, str(channels)):
        out.append(f"{path} holds a {meta['channels']}-channel model; data.color needs {channels} channel(s)")
    return out


def cross_check(recipe: Recipe, *, check_files: bool = True, root: Path | None = None) -> list[tuple[Loc, str]]:
    """Errors that need more than one key: ``[(key path, message)]``, empty when the recipe is consistent."""
    errs: list[tuple[Loc, str]] = []
    channels = recipe.data.channels

    def names_of(who: Loc, spec: Student | Teacher) -> list[str]:
        try:
            return list(module_names(spec.arch, channels, dict(spec.arch_kwargs)))
        except Exception as exc:  # any option value reaches a constructor, and each fails its own way
            errs.append(((*who, "arch_kwargs"), f"cannot build {spec.arch} with these options: {exc}"))
            return []

    student_names = names_of(("student",), recipe.student)
    teacher_names: dict[str, list[str]] = {}
    for tname, t in recipe.teachers.items():
        teacher_names[tname] = names_of(("teachers", tname), t)

    if check_files:
        specs: list[tuple[Loc, Student | Teacher]] = [(("student",), recipe.student)]
        specs += [(("teachers", n), t) for n, t in recipe.teachers.items()]
        for who, spec in specs:
            if spec.checkpoint is None or spec.if_missing is MissingPolicy.init:
                continue
            path = resolve_checkpoint(spec.checkpoint, root)
            if not path.is_file():
                errs.append(
                    ((*who, "checkpoint"), f"checkpoint file not found: {path} (set if_missing: init to start fresh)")
                )
                continue
            errs += [((*who, "checkpoint"), msg) for msg in _checkpoint_problems(path, spec.arch, channels)]

    proto = recipe.data.protocol_name
    from compress.protocols import get_protocol

    if get_protocol(proto).color.value != recipe.data.color.value:
        msg = f"protocol {proto!r} scores another colour than data.color {recipe.data.color}"
        errs.append((("data", "protocol"), msg))

    quantized = False
    removed: set[str] = set()  # named by prune_layers stages
    n_removed = 0  # named or counted
    for i, st in enumerate(recipe.stages):
        at: Loc = ("stages", str(i))
        last = i == len(recipe.stages) - 1
        if isinstance(st, PruneLayersStage):
            if quantized:
                errs.append(((*at, "type"), "prune_layers after quantize: prune the float model, then quantize"))
            if student_names:
                removable = _removable(recipe.student, channels)
                for j, layer in enumerate(st.layers):
                    if layer in removed:
                        errs.append(((*at, "layers", str(j)), f"layer {layer!r} is removed by an earlier stage"))
                    elif layer not in removable:
                        msg = unknown_message("removable layer", layer, removable)
                        errs.append(((*at, "layers", str(j)), msg + " (a removable layer keeps its input's shape)"))
                left = len(removable) - n_removed
                if st.count is not None and st.count > left:
                    msg = f"count {st.count} but the student has {left} removable layer(s) left"
                    errs.append(((*at, "count"), msg))
            removed |= set(st.layers)
            n_removed += st.count or len(st.layers)
        elif isinstance(st, PruneStage):
            if quantized:
                errs.append(((*at, "type"), "prune after quantize: prune the float model, then quantize"))
            for j, layer in enumerate(st.ignored_layers):
                if student_names and layer not in student_names:
                    errs.append(((*at, "ignored_layers", str(j)), unknown_message("layer", layer, student_names)))
        elif isinstance(st, DistillStage):
            if st.teacher not in recipe.teachers:
                names = tuple(recipe.teachers)
                msg = unknown_message("teacher", st.teacher, names) if names else f"unknown teacher {st.teacher!r}"
                errs.append(((*at, "teacher"), msg + ("" if names else "; no teachers: are declared")))
            for j, h in enumerate(st.hints):
                hat = (*at, "hints", str(j))
                if student_names and h.student not in student_names:
                    errs.append(((*hat, "student"), unknown_message("student layer", h.student, student_names)))
                elif h.student in removed:
                    errs.append(((*hat, "student"), f"student layer {h.student!r} is removed by a prune_layers stage"))
                tn = teacher_names.get(st.teacher, [])
                if tn and h.teacher not in tn:
                    errs.append(((*hat, "teacher"), unknown_message("teacher layer", h.teacher, tn)))
        elif isinstance(st, QuantizeStage):
            if quantized:
                errs.append(((*at, "type"), "a second quantize stage: quantize once"))
            quantized = True
            if st.backend is Backend.nncf:
                for key in ("weight_bits", "act_bits"):
                    if getattr(st, key) != 8:
                        errs.append(((*at, key), f"backend nncf quantizes to 8 bits only, got {getattr(st, key)}; "
                                     "use backend: brevitas for 2-7 bits"))
        elif isinstance(st, ExportStage):
            if not last:
                errs.append(((*at, "type"), "export must be the last stage"))
            if st.format is ExportFormat.qdq and not quantized:
                errs.append(((*at, "format"), "qdq export needs a quantize stage before it; use fp32"))
            if st.format is ExportFormat.fp32 and quantized:
                errs.append(((*at, "format"), "the model is quantized: export it as qdq"))
    return errs


def _format_cross(errs: list[tuple[Loc, str]], lines: dict[Loc, int], source: str) -> list[str]:
    out = []
    for loc, msg in errs:
        line = format_error({"loc": loc, "msg": msg, "type": "value_error"}, Recipe, lines, source)
        if line not in out:
            out.append(line)
    return out


# ---------------------------------------------------------------------------------------------
# loading


def _errors_of(exc: RecipeError) -> list[str]:
    return [line for line in str(exc).splitlines() if line]


def parse_recipe(
    text: str, source: str, *, check_files: bool = True, root: Path | None = None
) -> RecipeFile:
    """Validate recipe text and expand its sweep; every problem in the file is in one :class:`RecipeError`."""
    data, lines = load_yaml(text, source)
    if isinstance(data, dict) and data.get("kind") == "train":
        line = lines.get(("kind",), 1)
        raise RecipeError(f"{source}:{line}: kind: a training recipe; run it with: compress train --recipe {source}")
    recipe = validate(Recipe, data, lines, source)
    errors = _format_cross(cross_check(recipe, check_files=check_files, root=root), lines, source)
    if errors:
        raise RecipeError("\n".join(errors))
    variants: list[Variant] = []
    seen: dict[str, str] = {}
    if recipe.sweep is None:
        points: list[tuple[dict[str, Any], dict[str, Loc]]] = [({}, {})]
    elif (n := sweep_size(recipe.sweep)) > MAX_VARIANTS:
        at_sweep: int | str = lines.get(("sweep",), "?")
        raise RecipeError(f"{source}:{at_sweep}: sweep: {n} variants; at most {MAX_VARIANTS} (split the recipe)")
    else:
        points = sweep_points(data["sweep"])
    base = {k: v for k, v in data.items() if k != "sweep"}
    for values, origin in points:
        doc = copy.deepcopy(base)
        vlines = _variant_lines(lines, origin)
        try:
            for path, value in values.items():
                if _split(path)[0] in ("sweep", "name", "kind", "schema_version"):
                    raise KeyError(f"{path}: this key cannot be swept")
                set_path(doc, path, copy.deepcopy(value))
        except KeyError as exc:
            src = origin.get(path, ("sweep",))
            at: int | str = lines.get(src) or lines.get(("sweep",)) or "?"
            msg = one_line(f"{source}:{at}: {'.'.join(src)}: {exc.args[0]}")
            if msg not in errors:
                errors.append(msg)
            continue
        try:
            resolved = validate(Recipe, doc, vlines, source)
        except RecipeError as exc:
            errors += [e for e in _errors_of(exc) if e not in errors]
            continue
        cross = _format_cross(cross_check(resolved, check_files=check_files, root=root), vlines, source)
        if cross:
            errors += [e for e in cross if e not in errors]
            continue
        resolved = resolved.without_sweep()
        digest = recipe_hash(resolved)
        v = Variant(resolved, dict(values), variant_name(values), digest, source)
        if v.id in seen:
            continue  # two sweep points that resolve to the same recipe are one variant
        seen[v.id] = v.name
        variants.append(v)
    if errors:
        raise RecipeError("\n".join(errors))
    return RecipeFile(source, recipe, tuple(variants))


def load_recipe(path: str | Path, *, check_files: bool = True, root: Path | None = None) -> RecipeFile:
    """Read, validate, cross-check and expand one recipe file.

    Args:
        path: the YAML file.
        check_files: check that checkpoint files exist (``compress recipe validate --no-check-files`` skips it).
        root: folder that relative checkpoint paths are resolved against (default: the working directory).

    Raises:
        RecipeError: one ``FILE:LINE: key: message`` line per problem.
    """
    p = Path(path)
    text = read_text(p)
    return parse_recipe(text, str(p), check_files=check_files, root=root)


def load_recipes(
    paths: Sequence[str | Path], *, check_files: bool = True, root: Path | None = None
) -> list[RecipeFile]:
    """Load every recipe; if any is invalid, raise one :class:`RecipeError` listing every error of every file."""
    out: list[RecipeFile] = []
    errors: list[str] = []
    for p in paths:
        try:
            out.append(load_recipe(p, check_files=check_files, root=root))
        except RecipeError as exc:
            errors += _errors_of(exc)
    if errors:
        raise RecipeError("\n".join(errors))
    names: dict[str, str] = {}
    for rf in out:
        if rf.recipe.name in names and names[rf.recipe.name] != rf.path:
            raise RecipeError(f"{rf.path}:1: name: {rf.recipe.name!r} is also the name of {names[rf.recipe.name]}")
        names[rf.recipe.name] = rf.path
    return out
