"""Recipes: schema, one clear ``FILE:LINE: key: message`` line per mistake, sweeps, ids, docs, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress.cli import main
from compress.errors import RecipeError
from compress.recipe.docs import RECIPES_DIR, json_schema, recipe_keys_markdown
from compress.recipe.expand import load_recipe, parse_recipe, set_path

REPO = Path(__file__).resolve().parents[1]

BASE = """\
name: demo
student:
  arch: arcnn
teachers:
  big:
    arch: rdn_s
data:
  train: embedded
  eval: [embedded]
stages:
  - type: prune
    ratio: 0.5
  - type: distill
    teacher: big
  - type: quantize
    backend: brevitas
    weight_bits: 8
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def one_error(tmp_path: Path, text: str) -> str:
    """The single error line of an invalid recipe."""
    p = write(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        load_recipe(p, root=tmp_path)
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{p}:"), lines[0]
    return lines[0]


def test_valid_recipe_has_one_variant_with_a_stable_id(tmp_path: Path) -> None:
    a = load_recipe(write(tmp_path, BASE))
    b = load_recipe(write(tmp_path, BASE.replace("name: demo", "name: demo  # same"), "s.yaml"))
    assert len(a.variants) == 1
    assert re.fullmatch(r"base-[0-9a-f]{8}", a.variants[0].id)
    assert a.variants[0].id == b.variants[0].id  # comments do not change the resolved recipe
    c = load_recipe(write(tmp_path, BASE.replace("ratio: 0.5", "ratio: 0.4"), "c.yaml"))
    assert c.variants[0].id != a.variants[0].id


def test_scientific_notation_is_a_float(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, BASE + "  - type: finetune\n    lr: 1e-4\n"))
    assert r.recipe.stages[3].lr == pytest.approx(1e-4)  # type: ignore[union-attr]


# --- one test per mistake -------------------------------------------------------------------------


def test_malformed_yaml(tmp_path: Path) -> None:
    line = one_error(tmp_path, "name: x\nstudent: [arcnn\n")
    assert re.match(r".*r\.yaml:\d+: malformed YAML", line)


def test_unknown_key_names_the_closest(tmp_path: Path) -> None:
    line = one_error(tmp_path, BASE.replace("    ratio: 0.5", "    ration: 0.5\n    ratio: 0.5"))
    assert ":12: stages.0.ration: unknown key" in line and "did you mean 'ratio'" in line


def test_wrong_type(tmp_path: Path) -> None:
    line = one_error(tmp_path, BASE.replace("weight_bits: 8", "weight_bits: eight"))
    assert ":17: stages.2.weight_bits: Input should be a valid integer" in line and "'eight'" in line


def test_ratio_out_of_range(tmp_path: Path) -> None:
    line = one_error(tmp_path, BASE.replace("ratio: 0.5", "ratio: 1.5"))
    assert ":12: stages.0.ratio: Input should be less than 1, got 1.5" in line


def test_bits_zero(tmp_path: Path) -> None:
    line = one_error(tmp_path, BASE.replace("weight_bits: 8", "weight_bits: 0"))
    assert ":17: stages.2.weight_bits: Input should be greater than or equal to 2, got 0" in line


def test_missing_checkpoint(tmp_path: Path) -> None:
    text = BASE.replace("  arch: arcnn\n", "  arch: arcnn\n  checkpoint: models/none/x.safetensors\n")
    line = one_error(tmp_path, text)
    assert ":4: student.checkpoint: checkpoint file not found" in line and "if_missing: init" in line


def test_missing_checkpoint_allowed_with_if_missing_init(tmp_path: Path) -> None:
    text = BASE.replace("  arch: arcnn\n", "  arch: arcnn\n  checkpoint: none-q10\n  if_missing: init\n")
    assert load_recipe(write(tmp_path, text), root=tmp_path).recipe.student.checkpoint == "none-q10"


def test_unknown_teacher(tmp_path: Path) -> None:
    line = one_error(tmp_path, BASE.replace("teacher: big", "teacher: bgi"))
    assert ":14: stages.1.teacher: unknown teacher 'bgi'; valid: big (did you mean 'big'?)" in line


def test_unknown_model(tmp_path: Path) -> None:
    line = one_error(tmp_path, BASE.replace("arch: arcnn", "arch: arcnm"))
    assert ":3: student.arch: unknown model 'arcnm'" in line and "did you mean 'arcnn'" in line


def test_unknown_importance(tmp_path: Path) -> None:
    line = one_error(tmp_path, BASE.replace("    ratio: 0.5", "    ratio: 0.5\n    importance: tayler"))
    assert ":13: stages.0.importance: invalid value 'tayler'; valid: l1, l2, taylor, lamp, random" in line
    assert "did you mean 'taylor'" in line


def test_unknown_backend(tmp_path: Path) -> None:
    line = one_error(tmp_path, BASE.replace("backend: brevitas", "backend: brevitaz"))
    assert ":16: stages.2.backend: invalid value 'brevitaz'; valid: brevitas, nncf" in line


def test_unknown_stage_type(tmp_path: Path) -> None:
    line = one_error(tmp_path, BASE.replace("type: distill", "type: distil"))
    assert ":13: stages.1.type: unknown type 'distil'" in line and "did you mean 'distill'" in line


def test_nncf_is_8_bit_only(tmp_path: Path) -> None:
    text = BASE.replace("backend: brevitas\n    weight_bits: 8", "backend: nncf\n    weight_bits: 4")
    line = one_error(tmp_path, text)
    assert ":17: stages.2.weight_bits: backend nncf quantizes to 8 bits only" in line


def test_unknown_hint_layer(tmp_path: Path) -> None:
    text = BASE.replace("teacher: big\n", "teacher: big\n    hints:\n      - {student: base.1, teacher: sfe3}\n")
    line = one_error(tmp_path, text)
    assert ":16: stages.1.hints.0.teacher: unknown teacher layer 'sfe3'" in line and "'sfe2'" in line


def test_bad_sweep_value_names_its_line(tmp_path: Path) -> None:
    line = one_error(tmp_path, BASE + "sweep:\n  axes:\n    stages.0.ratio: [0.25, 1.5]\n")
    assert ":20: stages.0.ratio: Input should be less than 1, got 1.5" in line


def test_sweep_path_that_does_not_exist(tmp_path: Path) -> None:
    line = one_error(tmp_path, BASE + "sweep:\n  axes:\n    stages.7.ratio: [0.25]\n")
    assert ":20: sweep.axes.stages.7.ratio.0: stages.7: no item 7" in line


def test_every_error_is_reported(tmp_path: Path) -> None:
    p = write(tmp_path, BASE.replace("ratio: 0.5", "ratio: 1.5").replace("weight_bits: 8", "weight_bits: 0"))
    with pytest.raises(RecipeError) as info:
        load_recipe(p)
    assert len(str(info.value).splitlines()) == 2


# --- sweeps ---------------------------------------------------------------------------------------


def test_grid_zip_and_points(tmp_path: Path) -> None:
    grid = BASE + "sweep:\n  axes:\n    stages.0.ratio: [0.25, 0.5, 0.75]\n    stages.0.importance: [l1, taylor]\n"
    variants = load_recipe(write(tmp_path, grid)).variants
    assert len(variants) == 6 and len({v.id for v in variants}) == 6
    assert variants[0].id.startswith("ratio0.25-l1-")
    assert {v.recipe.stages[0].ratio for v in variants} == {0.25, 0.5, 0.75}  # type: ignore[union-attr]
    zip_text = grid.replace("axes:", "mode: zip\n  axes:").replace("[l1, taylor]", "[l1, l2, lamp]")
    zipped = load_recipe(write(tmp_path, zip_text, "z.yaml"))
    assert [v.name for v in zipped.variants] == ["ratio0.25-l1", "ratio0.5-l2", "ratio0.75-lamp"]
    points = BASE + "sweep:\n  points:\n    - {stages.2.weight_bits: 4, stages.2.act_bits: 8}\n"
    points += "    - {stages.2.act_bits: 4}\n"
    pv = load_recipe(write(tmp_path, points, "p.yaml")).variants
    assert [v.name for v in pv] == ["w4-a8", "a4"]
    assert all(v.recipe.sweep is None for v in pv)


def test_zip_needs_equal_lengths(tmp_path: Path) -> None:
    line = one_error(tmp_path, BASE + "sweep:\n  mode: zip\n  axes:\n    stages.0.ratio: [0.25]\n    seed: [1, 2]\n")
    assert "sweep: zip needs axes of equal length" in line


def test_set_path() -> None:
    doc: dict[str, Any] = {"a": [{"b": 1}]}
    set_path(doc, "a.0.c", 2)
    assert doc == {"a": [{"b": 1, "c": 2}]}
    with pytest.raises(KeyError, match="no item 3"):
        set_path(doc, "a.3.b", 1)


# --- shipped recipes, docs, fuzz ------------------------------------------------------------------

SHIPPED = sorted(p for p in RECIPES_DIR.glob("*.yaml") if not p.name.startswith("train-"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_recipes_validate(path: Path) -> None:
    rf = load_recipe(path, check_files=False)
    assert rf.variants


ALL_YAML = sorted(RECIPES_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("path", ALL_YAML, ids=[str(p.relative_to(RECIPES_DIR)) for p in ALL_YAML])
def test_every_shipped_yaml_is_commented(path: Path) -> None:
    """Recipes, training recipes, targets and ablations are read by people: each opens with a comment."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines and lines[0].startswith("#"), f"{path}: start with a comment that says what the file is for"


def test_required_recipes_are_shipped() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"baseline-arcnn", "baseline-fast-arcnn", "prune-arcnn", "prune-distill-arcnn", "qat-arcnn",
            "chain-arcnn", "quick"} <= names


def test_recipe_keys_doc_is_up_to_date() -> None:
    committed = (REPO / "docs" / "recipe-keys.md").read_text()
    assert committed == recipe_keys_markdown(), "regenerate: compress recipe keys --out docs/recipe-keys.md"


def test_json_schema_lists_stage_types() -> None:
    schema = json.loads(json.dumps(json_schema()))
    assert schema["additionalProperties"] is False
    assert {"PruneStage", "DistillStage", "FinetuneStage", "QuantizeStage", "ExportStage"} <= set(schema["$defs"])


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True), st.text(max_size=8))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6),
                                                                                             inner, max_size=3),
                       max_leaves=8)
_paths = st.sampled_from([
    "name", "student", "student.arch", "student.checkpoint", "teachers", "teachers.big", "teachers.big.arch",
    "data", "data.eval", "data.qualities", "data.color", "stages", "stages.0", "stages.0.type", "stages.0.ratio",
    "stages.1.teacher", "stages.1.hints", "stages.2.weight_bits", "stages.2.backend", "sweep", "sweep.axes",
    "sweep.points", "extra",
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(_paths, _values), max_size=3), raw=st.one_of(st.none(), st.text(max_size=40)))
def test_fuzz_recipes_validate_or_raise_recipe_error(edits: list[tuple[str, Any]], raw: str | None) -> None:
    if raw is not None:
        text = raw
    else:
        doc = yaml.safe_load(BASE)
        for path, value in edits:
            try:
                set_path(doc, path, value)
            except KeyError:
                continue
        text = yaml.safe_dump(doc)
    try:
        parse_recipe(text, "fuzz.yaml", check_files=True)
    except RecipeError as exc:
        assert str(exc).startswith("fuzz.yaml:")


def _key_paths(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key path of a parsed document, inner nodes included."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    out: list[str] = []
    for k, v in items:
        path = f"{prefix}{k}"
        out += [path, *_key_paths(v, path + ".")]
    return out


BASE_PATHS = _key_paths(yaml.safe_load(BASE))
WRONG_VALUES: list[Any] = [None, "x", -1, 0, 1.5, float("nan"), True, [], {}, [[1]], {"a": {"b": [None]}}, "1e-4"]


def _parse_edited(edits: list[tuple[str, Any]], drop: str | None = None) -> None:
    """BASE with values set at dotted paths (and one path removed): valid, or one RecipeError naming the file."""
    doc = yaml.safe_load(BASE)
    for path, value in edits:
        set_path(doc, path, value)
    if drop is not None:
        *parents, leaf = drop.split(".")
        holder: Any = doc
        for part in parents:
            holder = holder[int(part)] if isinstance(holder, list) else holder[part]
        del holder[int(leaf) if isinstance(holder, list) else leaf]
    try:
        parse_recipe(yaml.safe_dump(doc), "fuzz.yaml")
    except RecipeError as exc:
        assert all(line.startswith("fuzz.yaml:") for line in str(exc).splitlines()), str(exc)


@pytest.mark.parametrize("path", BASE_PATHS)
def test_wrong_value_at_every_key_is_a_recipe_error(path: str) -> None:
    """Every key of a valid recipe, given every kind of wrong value, or removed: RecipeError or valid, never a crash."""
    assert len(BASE_PATHS) > 15
    for value in WRONG_VALUES:
        _parse_edited([(path, value)])
    _parse_edited([], drop=path)


_key_text = st.one_of(st.sampled_from(["type", "ratio", "arch", "teacher", "stages", "0", "", "sweep", "axes"]),
                      st.text(max_size=5))
_deep_values = st.recursive(
    _scalars | st.just("folder:") | st.sampled_from(["arcnn", "rdn_s", "prune", "distill", "embedded", "l1"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_key_text, inner, max_size=4),
    max_leaves=25,
)
_any_path = st.one_of(
    st.sampled_from(BASE_PATHS),
    st.builds(lambda p, k: f"{p}.{k}" if p else k, st.sampled_from(["", *BASE_PATHS]), _key_text.filter(bool)),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(_any_path, _deep_values), min_size=1, max_size=4))
def test_fuzz_nested_edits_anywhere(edits: list[tuple[str, Any]]) -> None:
    """Deeply nested values at existing and new keys of every level (unknown keys included)."""
    doc = yaml.safe_load(BASE)
    kept = []
    for path, value in edits:
        try:
            set_path(doc, path, value)
        except KeyError:
            continue
        kept.append((path, value))
    _parse_edited(kept)


_YAML_NOISE = st.text(alphabet=list("[]{}:,-&*!?|>'\"#%@`~\n\t .<=0123456789abcxyz\\\x00\x85\ufeff"), max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.tuples(st.integers(0, len(BASE)), st.integers(0, 8), _YAML_NOISE), min_size=1, max_size=4))
def test_fuzz_yaml_text_mutations(cuts: list[tuple[int, int, str]]) -> None:
    """The valid text with spans replaced by YAML punctuation, anchors, tags, tabs, NULs and BOMs."""
    text = BASE
    for at, length, noise in cuts:
        at = min(at, len(text))
        text = text[:at] + noise + text[at + length :]
    try:
        parse_recipe(text, "fuzz.yaml")
    except RecipeError as exc:
        assert all(line.startswith("fuzz.yaml:") for line in str(exc).splitlines()), str(exc)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nstudent: &a [*a]\n", "an alias refers to itself"),
        ("name: x\nstudent: " + "[" * 600 + "]" * 600 + "\n", "nested deeper than"),
        ("name: x\nstudent: " + "{a: " * 40 + "1" + "}" * 40 + "\n", "nested deeper than 32 levels"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)),
         "more than 100000 values"),
        ("name: x\nseed: " + "9" * 5000 + "\n", "fuzz.yaml:2: malformed YAML"),
        ("name: !!python/object/apply:os.system [echo]\n", "name: Input should be a valid string"),
        ("name: !!python/name:os.system\n", "malformed YAML"),
        ("? [a, b]\n: c\n", "a mapping key must be a plain value"),
    ],
    ids=["self-alias", "deep-text", "deep-mapping", "billion-laughs", "huge-int", "python-tag-list", "python-tag",
         "list-key"],
)
def test_hostile_yaml_is_refused_quickly(text: str, message: str) -> None:
    """Documents built to crash or hang a loader: one RecipeError, in well under a second each."""
    import time

    t0 = time.perf_counter()
    with pytest.raises(RecipeError, match=re.escape(message)):
        parse_recipe(text, "fuzz.yaml")
    assert time.perf_counter() - t0 < 5


def test_sweep_size_is_bounded(tmp_path: Path) -> None:
    axes = "".join(f"    stages.{i}.seed: [{', '.join(str(v) for v in range(12))}]\n" for i in (1, 2, 2))
    line = one_error(tmp_path, BASE + "sweep:\n  axes:\n" + axes.replace("stages.2.seed: [", "seed: [", 1))
    assert ":18: sweep: 1728 variants; at most 1000" in line


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, BASE, "good.yaml")
    bad = write(tmp_path, BASE.replace("ratio: 0.5", "ratio: 1.5").replace("weight_bits: 8", "weight_bits: 0"),
                "bad.yaml")
    assert main(["recipe", "validate", str(good)]) == 0
    assert main(["recipe", "validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[1] for line in err] == ["stages.0.ratio", "stages.2.weight_bits"]


def test_cli_schema_and_new(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "schema", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["title"] == "compress recipe"
    out = tmp_path / "mine.yaml"
    assert main(["recipe", "new", "--from", "prune-arcnn", "--name", "mine", "--out", str(out)]) == 0
    rf = load_recipe(out, check_files=False)
    assert rf.recipe.name == "mine" and len(rf.variants) == 6
    assert "# " in out.read_text()  # the template's comments are kept
    assert main(["recipe", "new", "--from", "prune-arcnx"]) == 2
    assert "did you mean 'prune-arcnn'" in capsys.readouterr().err


def test_packaged_templates_are_the_shipped_recipes() -> None:
    """``compress recipe new`` reads templates from the package (an installed compress has no
    checkout); they must be byte copies of the compression recipes in recipes/."""
    from compress.recipe.docs import TEMPLATES_DIR, template_names

    assert template_names() == sorted(p.stem for p in SHIPPED)
    stale = [p.name for p in SHIPPED if (TEMPLATES_DIR / p.name).read_bytes() != p.read_bytes()]
    assert not stale, f"copy {stale} from recipes/ to {TEMPLATES_DIR}"


def test_keys_added_with_a_neutral_default_keep_earlier_hashes() -> None:
    from compress.recipe.expand import parse_recipe

    def vid(extra: str) -> str:
        text = ("name: t\nstudent: {arch: arcnn}\ndata: {train: embedded, eval: [embedded]}\n"
                f"stages:\n  - {{type: quantize, backend: nncf{extra}}}\n")
        return parse_recipe(text, "t.yaml").variants[0].id

    base = vid("")
    assert vid(", keep_float: [], parent_l2: 0.0") == base  # same as before the keys existed
    assert vid(", keep_float: [last]") != base
    assert vid(", parent_l2: 1.0") != base
    assert vid(", overflow_fix: first_layer") != base  # changed behaviour: hashed


def test_stage_precision_is_hash_neutral_at_fp32_and_refused_for_quantize(tmp_path: Path) -> None:
    def vid(stage: str) -> str:
        text = ("name: t\nstudent: {arch: arcnn}\ndata: {train: embedded, eval: [embedded]}\n"
                f"stages:\n  - {stage}\n")
        return parse_recipe(text, "t.yaml").variants[0].id

    base = vid("{type: finetune}")
    assert vid("{type: finetune, precision: fp32, channels_last: false}") == base  # as before the keys existed
    assert vid("{type: finetune, precision: bf16}") != base
    assert vid("{type: finetune, channels_last: true}") != base
    p = tmp_path / "q.yaml"
    p.write_text("name: t\nstudent: {arch: arcnn}\ndata: {train: embedded, eval: [embedded]}\n"
                 "stages:\n  - {type: quantize, backend: nncf, precision: bf16}\n")
    with pytest.raises(RecipeError, match=r"q\.yaml:5: stages\.0: precision: quantize trains in fp32"):
        load_recipe(p, root=tmp_path)


def test_set_path_rejects_non_ascii_digits_as_list_indices() -> None:
    """'²'.isdigit() is True but int('²') fails: such a path part is a KeyError like any missing item."""
    from compress.recipe.expand import set_path

    doc = {"stages": [{"teacher": []}]}
    with pytest.raises(KeyError, match="no item ²"):
        set_path(doc, "stages.0.teacher.²", None)
    with pytest.raises(KeyError, match="no item ٣"):  # an Arabic-Indic 3
        set_path(doc, "stages.٣", 1)
