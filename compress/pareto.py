"""Pareto fronts per hardware target, from the results tables only; PNG / SVG / one-file HTML plots.

Inputs are the tidy tables the recipe engine writes under ``results/<recipe>/``:

* ``quality.csv``: one row per variant x dataset x quality x protocol (``psnr``, ``ssim``, ``psnrb`` and
  the JPEG baselines ``jpeg_psnr`` ...);
* ``cost.csv``: one row per variant x resolution (``params``, ``tflops``, ``tflops_true``, ``memory_mb``,
  ``peak_activation_mb``, ``weight_bits``, ``act_bits``, ``model_bytes`` ...);
* ``latency.csv`` (optional, :mod:`compress.deploy`): one row per variant x target x resolution; variants
  with the same ``graph_signature`` get the median of their measurements (:func:`latency_at`);
* ``deployed.csv`` (optional, :mod:`compress.deployed`): the quality of each variant's exported graph in a
  target's runtime, which replaces the torch score on that target's front.

A variant is a candidate for a target when the target can run its precision
(:meth:`~compress.targets.Target.can_run`) and it meets every budget the target sets; the front is the
set of candidates that no other candidate dominates (cost down, quality up). Byte budgets are charged at the
precision the variant runs at on the target (``weights_mb_at_precision``, ``activations_mb_at_precision`` in
``points.csv``; see :mod:`compress.targets`), not at the ONNX file's size. **Ties:** a point
dominates another only when it is at least as good on both axes and strictly better on one, so
identical points are either all on the front or all off it.

Reference points (``compress/data/published.csv``) are drawn as "published, not re-measured", with their
own marker, never part of a front, and only where the x axis means the same for them (params, or the
published-convention TFLOPS / MB of the brief at a resolution).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from compress.errors import CompressError, DataError
from compress.targets import (
    Convention,
    Precision,
    Resolution,
    Target,
    activations_mb_at,
    get_target,
    get_targets,
    weights_mb_at,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

QUALITY_KEY = ("dataset", "quality", "protocol")
REQUIRED_QUALITY = ("variant", "dataset", "quality", "protocol")
REQUIRED_COST = ("variant", "resolution", "weight_bits", "act_bits")


class CostAxis(StrEnum):
    """The x axis: a cost column (``auto``: measured latency where there is some, else true TFLOPS)."""

    auto = "auto"
    params = "params"
    tflops = "tflops"
    tflops_true = "tflops_true"
    memory_mb = "memory_mb"
    peak_activation_mb = "peak_activation_mb"
    latency_ms = "latency_ms"
    model_bytes = "model_bytes"


class LatencyPer(StrEnum):
    """Whose measurement a variant's latency is: its own, or the median over variants of the same graph."""

    variant = "variant"
    architecture = "architecture"


class Seeds(StrEnum):
    """How the seed replicates of one condition appear: ``mean`` (one point at the mean of their scores) or
    ``each`` (every seed its own point)."""

    mean = "mean"
    each = "each"


_SEED = re.compile(r"(^|-)seed\d+(?=-|$)")


def condition_of(variant_name: str) -> str:
    """The variant's name without its seed tokens ('' when the seed was all that was swept, and for ``base``,
    the recipe's own settings: its seed replicates are ``seed124``... with nothing else changed)."""
    condition = _SEED.sub("", str(variant_name)).strip("-")
    return "" if condition == "base" else condition


def seed_source(sources: pd.Series) -> str:
    """Which score source a condition's seed mean uses: the commonest of ``sources`` (``torch`` or a
    runtime's), the runtime's on a tie (it is what ships). Scores from two sources are never averaged."""
    counts = sources.astype(str).value_counts()
    top = counts[counts == counts.max()].index
    return str(sorted(top, key=lambda s: (s.startswith("torch"), s))[0])


def seeds_label(condition: str, n_scored: int, n_run: int) -> str:
    """``<condition> (mean of N seeds)``, or ``(1 of N seeds)`` when only one replicate has a score from
    the source used (e.g. the only one scored in the target's runtime)."""
    name = condition or "base"
    if n_scored == n_run:
        return f"{name} (mean of {n_run} seeds)"
    return f"{name} (mean of {n_scored} of {n_run} seeds)" if n_scored > 1 else f"{name} ({n_scored} of {n_run} seeds)"


class QualityFrom(StrEnum):
    """Where a target's quality comes from: ``deployed`` (the runtime's score in deployed.csv where there
    is one, else torch's) or ``torch`` (quality.csv only)."""

    deployed = "deployed"
    torch = "torch"


class QualityAxis(StrEnum):
    """The y axis: a quality column, or its gain over the JPEG input (``*_gain``)."""

    psnr = "psnr"
    ssim = "ssim"
    psnrb = "psnrb"
    psnr_gain = "psnr_gain"
    ssim_gain = "ssim_gain"
    psnrb_gain = "psnrb_gain"


#: Cost axes that depend on the frame size.
PER_RESOLUTION = frozenset({CostAxis.tflops, CostAxis.tflops_true, CostAxis.memory_mb, CostAxis.peak_activation_mb,
                            CostAxis.latency_ms})
AXIS_LABEL = {
    CostAxis.params: "parameters",
    CostAxis.tflops: "TFLOPS (published convention: thop MACs x fps)",
    CostAxis.tflops_true: "TFLOPS (true MACs x fps)",
    CostAxis.memory_mb: "memory, MB (torchsummary convention)",
    CostAxis.peak_activation_mb: "peak activations, MB",
    CostAxis.latency_ms: "measured latency, ms / frame (median)",
    CostAxis.model_bytes: "model size, bytes",
}
#: Columns never shown as a variant's "settings" in hover text.
METRIC_COLUMNS = frozenset({
    "variant", "resolution", "dataset", "quality", "protocol", "psnr", "ssim", "psnrb", "jpeg_psnr", "jpeg_ssim",
    "jpeg_psnrb", "params", "macs", "macs_true", "tflops", "tflops_true", "memory_mb", "peak_activation_mb",
    "model_bytes", "weight_bits", "act_bits", "results",
})
#: Float precisions a float (W>8 or A>8) variant may be down-cast to; its torch score is then fp32's.
DOWNCAST = frozenset({Precision.bf16, Precision.fp16})


@dataclass(frozen=True)
class Selection:
    """Which quality rows a front compares: one dataset, JPEG quality and protocol."""

    dataset: str
    quality: int
    protocol: str

    def slug(self) -> str:
        """A folder-safe name, e.g. ``live1-q10-idcn-rgb``."""
        return f"{self.dataset}-q{self.quality}-{self.protocol}"

    def label(self) -> str:
        return f"{self.dataset}, q{self.quality}, {self.protocol}"


@dataclass(frozen=True)
class Axis:
    """A resolved x axis: column plus the resolution it is read at (None when it has none)."""

    cost: CostAxis
    resolution: str | None

    def label(self) -> str:
        at = f" at {self.resolution}" if self.resolution else ""
        return AXIS_LABEL[self.cost] + at


@dataclass(frozen=True)
class Tables:
    """The results tables of one or more results folders, a ``results`` column naming the folder."""

    quality: pd.DataFrame
    cost: pd.DataFrame
    latency: pd.DataFrame
    deployed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["key", "variant", "target"]))
    machine: str = ""
    """the machine whose ``latency.csv`` / ``deployed.csv`` rows these are (``cpu`` column; several joined by
    `` + ``); empty: all rows"""
    shippable: frozenset[str] = frozenset()
    """keys of the variants whose ``model.onnx`` is in their results folder (weights and graphs are committed
    for front members only): a condition's seed mean is shipped as one of these where it has any"""

    def selections(self) -> list[Selection]:
        """Every dataset x quality x protocol in the quality table."""
        combos = self.quality[list(QUALITY_KEY)].drop_duplicates().sort_values(list(QUALITY_KEY))
        return [Selection(str(d), int(q), str(p)) for d, q, p in combos.itertuples(index=False)]

    def coverage(self, selection: Selection) -> tuple[int, int]:
        """How many variants are scored on the selection's dataset, of those scored at its quality and
        protocol on any dataset (a set added later, e.g. by ``compress rescore``, may cover only some)."""
        q = self.quality
        at = q[(q["quality"] == selection.quality) & (q["protocol"] == selection.protocol)]
        return int(at.loc[at["dataset"] == selection.dataset, "key"].nunique()), int(at["key"].nunique())


def coverage_note(tables: Tables, selection: Selection) -> str:
    """`` (scored for n of the N variants at q..)`` where the selection's dataset covers only some of the
    variants its quality and protocol have elsewhere, else empty: a front drawn among a subset says so."""
    return _coverage_text(selection, *tables.coverage(selection))


def _coverage_text(selection: Selection, n: int, total: int) -> str:
    return f" (scored for {n} of the {total} variants at q{selection.quality})" if n < total else ""


# ---------------------------------------------------------------------------------------------
# reading


def _read(path: Path, required: Sequence[str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot read the table ({exc})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing columns {', '.join(missing)}; has {', '.join(map(str, df.columns))}")
    return df


LATEST_MACHINE = "latest"
ALL_MACHINES = "all"


def machines(table: pd.DataFrame) -> list[str]:
    """The machines (``cpu`` column) of a latency (or deployed) table, the most recently measured last."""
    if not len(table) or "cpu" not in table.columns:
        return []
    when = pd.to_datetime(table.get("timestamp", pd.Series(pd.NaT, index=table.index)), utc=True,
                          errors="coerce", format="ISO8601")
    last = pd.DataFrame({"cpu": table["cpu"].astype(str), "when": when}).groupby("cpu")["when"].max()
    return list(last.sort_values(kind="stable").index)


def _pick_machine(table: pd.DataFrame, machine: str | Sequence[str] | None) -> list[str]:
    """Resolve ``machine``: ``latest`` (default) = the machine that measured most recently, ``all`` = no filter
    (an empty list), one ``cpu`` value, or several (see :func:`load_tables`)."""
    known = machines(table)
    wanted: list[str | None] = [machine] if machine is None or isinstance(machine, str) else list(machine)
    wanted = wanted or [None]
    if len(wanted) == 1 and wanted[0] in (None, LATEST_MACHINE):
        return known[-1:]
    if len(wanted) == 1 and wanted[0] == ALL_MACHINES:
        return []
    for m in wanted:
        if m in (None, LATEST_MACHINE, ALL_MACHINES):
            raise DataError(f"{m or LATEST_MACHINE!r} cannot be combined with other machines")
        if m not in known:
            raise DataError(f"nothing was measured on {m!r}; machines: {', '.join(known) or 'none'} "
                            f"(or {LATEST_MACHINE!r}, {ALL_MACHINES!r})")
    return [str(m) for m in dict.fromkeys(wanted)]


#: What identifies one measurement in ``latency.csv`` / ``deployed.csv`` apart from the machine.
_MEASUREMENT_KEY = {"latency": ("results", "variant", "target", "resolution"),
                    "deployed": ("results", "variant", "target", "dataset", "quality", "protocol")}


def _machine_filter(df: pd.DataFrame, picked: list[str], kind: str) -> pd.DataFrame:
    """``df``'s rows of the ``picked`` machines; where several measured the same thing, the first-named one's."""
    if not picked or not len(df) or "cpu" not in df.columns:
        return df
    rank = df["cpu"].astype(str).map({m: i for i, m in enumerate(picked)})
    out = df[rank.notna()].assign(_rank=rank[rank.notna()])
    on = [c for c in _MEASUREMENT_KEY[kind] if c in out.columns]
    out = out.sort_values("_rank", kind="stable").drop_duplicates(on, keep="first").sort_index()
    return out.drop(columns="_rank").reset_index(drop=True)


def load_tables(results: Sequence[str | Path], machine: str | Sequence[str] | None = None) -> Tables:
    """Read ``quality.csv``, ``cost.csv`` and (if present) ``latency.csv`` of each results folder.

    A variant name is made unique across folders as ``<folder>/<variant>`` when two folders share it.

    ``machine`` keeps the ``latency.csv`` and ``deployed.csv`` rows of one machine (their ``cpu`` column:
    the processor and its vector extensions), since a latency or an INT8 score measured on one CPU says
    little about another: ``latest`` (default) is the machine that timed most recently, ``all`` keeps
    every row (the medians then mix machines), any other value one ``cpu`` exactly. Several ``cpu`` values
    (a sequence) pool machines the caller knows to be alike (one CPU model whose key changed with a
    ``compress`` upgrade; INT8 scores, which depend on the kernels, not the speed): a variant measured on
    more than one of them keeps the row of the first named.

    Raises:
        DataError: a folder without the two required tables, a table missing a required column, or a
            ``machine`` that timed nothing here.
    """
    qs, cs, ls, ds = [], [], [], []
    for r in results:
        root = Path(r)
        for name in ("quality.csv", "cost.csv"):
            if not (root / name).is_file():
                raise DataError(f"{root}: no {name} (is this a results folder? run the recipe first)")
        q = _read(root / "quality.csv", REQUIRED_QUALITY)
        c = _read(root / "cost.csv", REQUIRED_COST)
        lat = _read(root / "latency.csv", ("variant", "target", "resolution", "ms_median")) \
            if (root / "latency.csv").is_file() else pd.DataFrame(columns=["variant", "target", "resolution"])
        dep = _read(root / "deployed.csv", ("variant", "target", "dataset", "quality", "protocol", "psnr")) \
            if (root / "deployed.csv").is_file() else pd.DataFrame(columns=["variant", "target"])
        for df in (q, c, lat, dep):
            df["results"] = root.name
        qs.append(q)
        cs.append(c)
        ls.append(lat)
        ds.append(dep)
    quality = pd.concat(qs, ignore_index=True)
    cost = pd.concat(cs, ignore_index=True)
    latency = pd.concat([x for x in ls if len(x)], ignore_index=True) if any(len(x) for x in ls) else ls[0]
    deployed = pd.concat([x for x in ds if len(x)], ignore_index=True) if any(len(x) for x in ds) else ds[0]
    folders = cost.groupby("variant")["results"].nunique()
    shared = set(folders[folders > 1].index)
    for df in (quality, cost, latency, deployed):
        if len(df):
            df["key"] = [f"{r}/{v}" if v in shared else str(v) for r, v in zip(df["results"], df["variant"],
                                                                                    strict=True)]
        else:
            df["key"] = pd.Series(dtype=str)
    quality["quality"] = quality["quality"].astype(int)
    # the machines that timed; where nothing was timed, those that scored deployed graphs
    if machine is not None and not isinstance(machine, str) and len(machine) == 1:
        machine = machine[0]  # --machine given once
    timed = latency if len(latency) and "cpu" in latency.columns else deployed
    measured = pd.concat([timed, deployed], ignore_index=True) if timed is latency and len(deployed) else timed
    picked = _pick_machine(timed, machine) if machine in (None, LATEST_MACHINE) else _pick_machine(measured, machine)
    latency = _machine_filter(latency, picked, "latency")
    deployed = _machine_filter(deployed, picked, "deployed")
    shippable = frozenset(
        str(k) for k, r, v in zip(cost["key"], cost["results"], cost["variant"], strict=True)
        if any((Path(root) / str(v) / "model.onnx").is_file() for root in results if Path(root).name == r)
    )
    return Tables(quality, cost, latency, deployed, machine=" + ".join(picked), shippable=shippable)


def published_points() -> pd.DataFrame:
    """The published reference numbers (``compress/data/published.csv``), with their ``source``."""
    with resources.files("compress.data").joinpath("published.csv").open("r", encoding="utf-8") as f:
        df = pd.read_csv(f)
    df["quality"] = pd.to_numeric(df["quality"], errors="coerce")
    return df


def resolve_selection(tables: Tables, dataset: str | None, quality: int | None, protocol: str | None) -> Selection:
    """Fill unset parts of the selection when the table has only one choice; otherwise name the choices."""
    q = tables.quality
    picked: dict[str, Any] = {"dataset": dataset, "quality": quality, "protocol": protocol}
    for col in QUALITY_KEY:
        if picked[col] is not None:
            if picked[col] not in set(q[col]):
                raise DataError(f"no quality rows with {col} {picked[col]!r}; present: "
                                f"{', '.join(map(str, sorted(set(q[col]))))}")
            q = q[q[col] == picked[col]]
    for col in QUALITY_KEY:
        if picked[col] is None:
            vals = sorted(set(q[col]))
            if len(vals) != 1:
                raise DataError(f"several {col} values in the quality table ({', '.join(map(str, vals))}): "
                                f"choose one with --{col}")
            picked[col] = vals[0]
            q = q[q[col] == vals[0]]
    return Selection(str(picked["dataset"]), int(picked["quality"]), str(picked["protocol"]))


# ---------------------------------------------------------------------------------------------
# the front


def pareto_mask(cost: Sequence[float] | np.ndarray, quality: Sequence[float] | np.ndarray) -> np.ndarray:
    """True for the points no other point dominates (lower cost and higher quality are better).

    ``a`` dominates ``b`` when ``cost[a] <= cost[b]``, ``quality[a] >= quality[b]`` and one of them is
    strict; equal points never dominate each other, so ties are kept together. NaN points are never on
    the front and never dominate.
    """
    x = np.asarray(cost, dtype=float)
    y = np.asarray(quality, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    xi, yi = x[ok][:, None], y[ok][:, None]
    dom = (xi <= x[ok][None, :]) & (yi >= y[ok][None, :]) & ((xi < x[ok][None, :]) | (yi > y[ok][None, :]))
    mask = np.zeros(len(x), dtype=bool)
    mask[np.flatnonzero(ok)] = ~dom.any(axis=0)
    return mask


def resolve_axis(cost: CostAxis | str, target: Target, tables: Tables, resolution: str) -> Axis:
    """The x axis for a target; ``auto`` is measured latency at ``resolution`` when this target has any, else
    true TFLOPS (at the target's compute-budget resolution when it has one)."""
    c = CostAxis(cost)
    if c is CostAxis.auto:
        lat = tables.latency
        has_latency = len(lat) and ((lat["target"] == target.name) & (lat["resolution"] == resolution)).any()
        if target.measured and has_latency:
            return Axis(CostAxis.latency_ms, resolution)
        budget = target.budgets.compute
        return Axis(CostAxis.tflops_true, budget.resolution.value if budget else resolution)
    return Axis(c, resolution if c in PER_RESOLUTION else None)


def _cost_at(tables: Tables, res: str, col: str) -> pd.Series:
    c = tables.cost
    rows = c[c["resolution"] == res]
    if col not in c.columns:
        return pd.Series(dtype=float)
    return rows.drop_duplicates("key").set_index("key")[col].astype(float)


def _cost_any(tables: Tables, col: str) -> pd.Series:
    """A resolution-independent cost column (e.g. ``model_bytes``) by variant key."""
    c = tables.cost
    if col not in c.columns:
        return pd.Series(dtype=float)
    return c.drop_duplicates("key").set_index("key")[col].astype(float)


class LatencyLookup(NamedTuple):
    """Latencies of one target x resolution by variant key (see :func:`latency_at`)."""

    ms: pd.Series
    """median ms per frame"""
    count: pd.Series
    """how many measured variants the value is the median of"""
    measured: pd.Series
    """True where the variant's own measurement is among them; False where it was not timed itself and
    takes the measurements of variants with the same graph (``graph_signature`` in cost.csv)"""


def graph_signatures(tables: Tables) -> pd.Series:
    """Each variant's ``graph_signature`` by key: its latency rows' (the file that was timed), else cost.csv's
    (written when the variant ran)."""
    parts = []
    for df in (tables.latency, tables.cost):
        if len(df) and "graph_signature" in df.columns:
            s = df[["key", "graph_signature"]].dropna()
            parts.append(s[s["graph_signature"].astype(str) != ""])
    if not parts:
        return pd.Series(dtype=str)
    both = pd.concat(parts, ignore_index=True).drop_duplicates("key", keep="first")
    return both.set_index("key")["graph_signature"].astype(str)


def latency_at(tables: Tables, target: str, res: str, per: LatencyPer = LatencyPer.architecture
               ) -> LatencyLookup:
    """Measured ms per frame by variant key, how many measured variants each value is the median of, and
    whether the variant itself was timed.

    ``per=architecture``: variants whose graphs share a ``graph_signature`` (the same structure: seeds of
    one condition, or one prune ratio ranked by two criteria) all get the median of their measurements,
    so run-to-run noise on a shared machine does not decide which seed sits on a front; a variant that
    was not timed itself but has the signature of timed ones gets their median too (``measured`` False),
    since the runtime's cost depends on the graph's structure, not its weight values. Rows without a
    signature keep their own value. ``per=variant``: each timed variant its own measurement only.
    """
    lat = tables.latency
    empty = pd.Series(dtype=float)
    if not len(lat):
        return LatencyLookup(empty, pd.Series(dtype=int), pd.Series(dtype=bool))
    rows = lat[(lat["target"] == target) & (lat["resolution"] == res)].drop_duplicates("key", keep="last")
    ms = rows.set_index("key")["ms_median"].astype(float)
    count = pd.Series(1, index=ms.index)
    measured = pd.Series(True, index=ms.index)
    if per is LatencyPer.architecture:
        sigs = graph_signatures(tables)
        sig = ms.index.to_series().map(sigs)
        has = sig.notna()
        if has.any():
            grouped = ms[has].groupby(sig[has])
            median, size = grouped.median(), grouped.size()
            ms[has] = sig[has].map(median)
            count[has] = sig[has].map(size).astype(int)
            extra = sigs[sigs.isin(median.index) & ~sigs.index.isin(ms.index)]
            if len(extra):
                ms = pd.concat([ms, extra.map(median).astype(float)])
                count = pd.concat([count, extra.map(size).astype(int)])
                measured = pd.concat([measured, pd.Series(False, index=extra.index)])
    return LatencyLookup(ms, count, measured)


def deployed_at(tables: Tables, target: str, selection: Selection) -> pd.DataFrame:
    """``deployed.csv`` rows of one target and selection, by variant key."""
    d = tables.deployed
    if not len(d) or "dataset" not in d.columns:
        return pd.DataFrame()
    rows = d[(d["target"] == target) & (d["dataset"] == selection.dataset)
             & (d["quality"].astype(int) == selection.quality) & (d["protocol"] == selection.protocol)]
    return rows.drop_duplicates("key", keep="last").set_index("key")


def _point_labels(pts: pd.DataFrame) -> list[str]:
    """What a plot writes beside each point: ``<recipe>/<variant name>`` when the points come from several
    results folders, else the variant name; the full id where a name is not unique."""
    names = pts["variant_name"].astype(str)
    several = pts["results"].nunique() > 1
    labels = [f"{r}/{n}" if several else n for r, n in zip(pts["results"], names, strict=True)]
    counts = pd.Series(labels).value_counts()
    return [lab if counts[lab] == 1 else (f"{r}/{v}" if several else str(v))
            for lab, r, v in zip(labels, pts["results"], pts["variant"], strict=True)]


def _settings(frame: pd.DataFrame) -> pd.Series:
    """``k=v; ...`` of the columns that vary between variants (the settings), metric columns excluded."""
    cols = [c for c in frame.columns if c not in METRIC_COLUMNS and c != "key" and frame[c].nunique(dropna=False) > 1]
    cols = [c for c in cols if not c.startswith(("jpeg_", "ms_"))]
    return frame.apply(lambda r: "; ".join(f"{c}={r[c]}" for c in cols), axis=1) if cols else \
        pd.Series([""] * len(frame), index=frame.index)


def target_points(
    tables: Tables, target: Target, selection: Selection, *, x: CostAxis | str = CostAxis.auto,
    y: QualityAxis | str = QualityAxis.psnr, resolution: str = Resolution.p720.value,
    quality_from: QualityFrom | str = QualityFrom.deployed, latency_per: LatencyPer | str = LatencyPer.architecture,
    seeds: Seeds | str = Seeds.mean,
) -> tuple[pd.DataFrame, Axis]:
    """Every variant (or condition) of the selection as a point for ``target``: x, y, whether it is eligible
    and why not.

    ``quality_from=deployed``: a variant scored in this target's runtime (``deployed.csv``) gets that
    score as y, and ``y_from`` says so (``onnxruntime int8``); the others keep their torch score
    (``y_from`` = ``torch``). ``latency_per``: see :func:`latency_at`; ``x_n`` counts the measurements
    behind a latency, and ``x_timed`` is False for a variant that takes the latency of its graph without
    being timed itself (NA on other axes).
    ``seeds=mean``: the seed replicates of one condition (:func:`condition_of`: the variant name without its
    ``seedN`` tokens, within one results folder) become one point at the mean of their scores (``seeds`` says
    how many, ``y_sd`` their standard deviation, ``members`` their keys) and the median of their costs; its
    ``key`` is the replicate whose score is nearest the mean (the artifact to ship; among those whose ONNX is in
    the folder, :attr:`Tables.shippable`, where any is). A front then compares
    conditions, not lucky seeds. ``each``: every variant its own point.

    Returns:
        The points (columns ``key, variant, results, label, x, x_n, x_timed, y, y_from, seeds, y_sd, members,
        precision, eligible, reason, on_front, settings``, bits and params) and the resolved x axis.
    """
    yq = QualityAxis(y)
    axis = resolve_axis(x, target, tables, resolution)
    q = tables.quality
    q = q[(q["dataset"] == selection.dataset) & (q["quality"] == selection.quality)
          & (q["protocol"] == selection.protocol)]
    dup = q["key"][q["key"].duplicated()]
    if len(dup):
        raise DataError(f"several quality rows for variant(s) {', '.join(sorted(set(dup)))} at {selection.label()}")
    base = yq.value.removesuffix("_gain")
    if base not in q.columns or (yq.value.endswith("_gain") and f"jpeg_{base}" not in q.columns):
        raise DataError(f"the quality table has no {base!r} column (and jpeg_{base} for gains)")
    yv = q[base] - q[f"jpeg_{base}"] if yq.value.endswith("_gain") else q[base]
    cost_any = tables.cost.drop_duplicates("key").set_index("key")
    pts = pd.DataFrame({"key": q["key"].to_numpy(), "variant": q["variant"].to_numpy(),
                        "results": q["results"].to_numpy(), "y": yv.astype(float).to_numpy()})
    pts["variant_name"] = (q["variant_name"] if "variant_name" in q.columns else q["variant"]).astype(str).to_numpy()
    pts["y_from"] = "torch"
    dep = deployed_at(tables, target.name, selection) if QualityFrom(quality_from) is QualityFrom.deployed \
        else pd.DataFrame()
    if len(dep) and base in dep.columns:
        jpeg = q.set_index("key")[f"jpeg_{base}"] if yq.value.endswith("_gain") else None
        hit = pts["key"].isin(dep.index)
        keys = pts.loc[hit, "key"]
        val = dep.loc[keys, base].astype(float).to_numpy()
        if jpeg is not None:
            val = val - jpeg.loc[keys].astype(float).to_numpy()
        pts.loc[hit, "y"] = val
        pts.loc[hit, "y_from"] = [f"{dep.at[k, 'runtime']} {dep.at[k, 'precision']}" for k in keys]
    pts["label"] = _point_labels(pts)
    known = pts["key"].isin(cost_any.index)
    pts["weight_bits"] = pts["key"].map(cost_any["weight_bits"]).astype("Int64")
    pts["act_bits"] = pts["key"].map(cost_any["act_bits"]).astype("Int64")
    for col in ("params", "model_bytes"):
        if col in cost_any.columns:
            pts[col] = pts["key"].map(cost_any[col])
    pts["x_n"] = 1
    pts["x_timed"] = pd.Series(pd.NA, index=pts.index, dtype="boolean")
    if axis.cost is CostAxis.latency_ms:
        lk = latency_at(tables, target.name, str(axis.resolution), LatencyPer(latency_per))
        pts["x"] = pts["key"].map(lk.ms)
        pts["x_n"] = pts["key"].map(lk.count).fillna(0).astype(int)
        pts["x_timed"] = pts["key"].map(lk.measured).astype("boolean")
    elif axis.resolution is None:
        pts["x"] = pts["key"].map(cost_any[axis.cost.value]) if axis.cost.value in cost_any.columns else np.nan
    else:
        pts["x"] = pts["key"].map(_cost_at(tables, axis.resolution, axis.cost.value))
    pts["x"] = pts["x"].astype(float)
    reasons: list[str] = []
    precisions: list[str] = []
    figures: list[tuple[float, float]] = []
    no_x = f"no {axis.cost.value}" + (f" at {axis.resolution}" if axis.resolution else "")
    for i, row in pts.iterrows():
        why: list[str] = []
        prec = None
        if not known[i]:
            why.append("not in cost.csv")
            figures.append((math.nan, math.nan))
        else:
            prec = target.precision_for(int(row["weight_bits"]), int(row["act_bits"]))
            if prec is None:
                why.append(f"W{row['weight_bits']}A{row['act_bits']} needs a precision the target lacks "
                           f"({', '.join(p.value for p in target.precisions)})")
            charged = budget_figures(tables, target, str(row["key"]), prec or Precision.fp32)
            why += _budget_failures(tables, target, str(row["key"]), LatencyPer(latency_per), prec, charged)
            figures.append(charged if prec else (math.nan, math.nan))
            float_model = int(row["weight_bits"]) > 8 or int(row["act_bits"]) > 8
            if prec in DOWNCAST and float_model and pts.at[i, "y_from"] == "torch":
                pts.at[i, "y_from"] = f"torch fp32 (runs at {prec.value}; no {prec.value} score)"
        if not math.isfinite(row["x"]):
            why.append(no_x)
        if not math.isfinite(row["y"]):
            why.append(f"no {yq.value}")
        reasons.append("; ".join(why))
        precisions.append(prec.value if prec else "")
    pts["precision"] = precisions
    pts["weights_mb_at_precision"] = [w for w, _ in figures]
    pts["activations_mb_at_precision"] = [a for _, a in figures]
    pts["reason"] = reasons
    pts["eligible"] = pts["reason"] == ""
    # not timed and nothing else wrong: a seed replicate of a timed condition takes the condition's latency
    pts["_untimed_only"] = [not math.isfinite(x) and bool(r) and all(
        part == no_x or part.startswith("latency not measured") for part in r.split("; "))
        for x, r in zip(pts["x"], reasons, strict=True)]
    extra = tables.cost.drop_duplicates("key").set_index("key")
    pts["settings"] = pts["key"].map(_settings(extra.reset_index()).set_axis(extra.index))
    pts["settings"] = pts["settings"].fillna("")
    pts["seeds"] = np.isfinite(pts["y"].to_numpy()).astype(int)
    pts["y_sd"] = np.nan
    pts["members"] = pts["key"]
    if Seeds(seeds) is Seeds.mean:
        # every variant at this quality and protocol, whichever sets scored it: a condition's replicates
        every = tables.quality[(tables.quality["quality"] == selection.quality)
                               & (tables.quality["protocol"] == selection.protocol)].drop_duplicates("key")
        every_names = every["variant_name"] if "variant_name" in every.columns else every["variant"]
        replicates = _condition_groups(every["results"], every_names, condition_pools(tables, every["key"]))
        pts = _merge_seeds(pts, q["variant_name"] if "variant_name" in q.columns else q["variant"], tables.shippable,
                           pools=condition_pools(tables, pts["key"]), replicates=replicates.value_counts())
    if len(target.precisions) > 1:  # the plot says which of the target's precisions each point runs at
        pts["label"] = [f"{lab} @{p}" if p else str(lab) for lab, p in zip(pts["label"], pts["precision"], strict=True)]
    pts = pts.drop(columns="_untimed_only")
    pts["on_front"] = False
    elig = pts["eligible"].to_numpy()
    if elig.any():
        pts.loc[elig, "on_front"] = pareto_mask(pts.loc[elig, "x"].to_numpy(), pts.loc[elig, "y"].to_numpy())
    return pts.sort_values(["x", "y"], ascending=[True, False], na_position="last").reset_index(drop=True), axis


def condition_pools(tables: Tables, keys: pd.Series) -> pd.Series:
    """For each variant key, the condition it is a seed replicate of across results folders: its
    ``condition_key`` (cost.csv, :func:`compress.results.condition_keys`) with its student checkpoint's
    digest; NaN where the tables predate the column. Aligned with ``keys``' index."""
    cost, quality = tables.cost, tables.quality
    if "condition_key" not in cost.columns or "student_checkpoint" not in quality.columns:
        return pd.Series(np.nan, index=keys.index, dtype=object)
    ck = cost.dropna(subset=["condition_key"]).drop_duplicates("key").set_index("key")["condition_key"].astype(str)
    sc = quality.drop_duplicates("key").set_index("key")["student_checkpoint"].astype(str)
    return pd.Series([f"{ck[k]}|{sc.get(k, '')}" if k in ck.index and ck[k] else np.nan for k in keys],
                     index=keys.index, dtype=object)


def _condition_groups(results: pd.Series, names: pd.Series, pools: pd.Series | None) -> pd.Series:
    """The seed-condition id of each variant (see :func:`_merge_seeds`): its pool where it has one, else its
    results folder and name without the seed."""
    group = results.astype(str) + "\0" + pd.Series([condition_of(n) for n in names.astype(str)], index=names.index)
    return group if pools is None else pools.astype(object).where(pools.notna(), "n:" + group)


def _merge_seeds(pts: pd.DataFrame, names: pd.Series, shippable: frozenset[str] = frozenset(),
                 pools: pd.Series | None = None, replicates: pd.Series | None = None) -> pd.DataFrame:
    """One point per condition (see :func:`target_points`, ``seeds=mean``), shipped as the replicate nearest
    the mean among those in ``shippable`` (whose ONNX is there) where there are any.

    A condition is a results folder's variants with the seed taken out of their names, or, where ``pools``
    (:func:`condition_pools`) gives one, every variant with the same settings but the seed, whichever folder
    it is in (a recipe that only adds seeds to another's cell joins it; two settings whose names were cut to
    one stay apart). It is labelled by its first member. Only the scores of the commonest source among the
    replicates are averaged (a runtime's scores are never mixed with torch's); a condition is eligible when
    every replicate is, else it takes the first reason. ``replicates``: how many variants each condition id
    has at this quality on any data set (:func:`_condition_groups`), so that a set scored for some of them
    says "(mean of 2 of 3 seeds)".
    """
    pts = pts.assign(condition=[condition_of(n) for n in names.astype(str)])
    group = _condition_groups(pts["results"], pd.Series(names.to_numpy(), index=pts.index), pools)
    rows = []
    for gid, g in pts.groupby(group, sort=False):
        n_run = max(len(g), int(replicates.get(gid, 0))) if replicates is not None else len(g)
        if n_run > len(g) == 1:  # one replicate scored here, of several run: its label says so
            g = g.copy()
            g["label"] = g["label"].astype(str) + f" (1 of {n_run} seeds)"
        if len(g) == 1:
            rows.append(g.iloc[0])
            continue
        same = g[g["y_from"] == seed_source(g["y_from"])]
        ys = same["y"][np.isfinite(same["y"].to_numpy(dtype=float))]
        mean = float(ys.mean()) if len(ys) else math.nan
        ship = ys[g.loc[ys.index, "key"].isin(shippable)] if shippable else ys
        near = ship if len(ship) else ys
        row = g.loc[(near - mean).abs().idxmin() if len(near) else g.index[0]].copy()
        row["y"] = mean
        row["y_sd"] = float(ys.std(ddof=1)) if len(ys) > 1 else math.nan
        row["seeds"] = len(ys)
        row["members"] = ";".join(g["key"].astype(str))
        xs = g["x"][np.isfinite(g["x"].to_numpy(dtype=float))]
        row["x"] = float(xs.median()) if len(xs) else math.nan
        row["x_n"] = int(g["x_n"].max())
        # a replicate whose graph was never timed (another export of the same architecture) is judged by the
        # condition's latency, the median of its timed replicates; any other reason still rules the point out
        bad = g[~g["eligible"] & ~(g["_untimed_only"] & bool(len(xs)))] if "_untimed_only" in g else g[~g["eligible"]]
        if len(bad):
            row["eligible"] = False
            row["reason"] = str(bad["reason"].iloc[0])
        else:
            row["eligible"] = True
            row["reason"] = ""
        first = g.iloc[0]  # the condition's name: its first member's (the sweep's cell, not an added seed)
        prefix = f"{first['results']}/" if str(row["label"]).startswith(f"{row['results']}/") else ""
        row["label"] = prefix + seeds_label(str(first["condition"]), len(ys), n_run)
        rows.append(row)
    return pd.DataFrame(rows).drop(columns="condition").reset_index(drop=True).infer_objects()


def budget_figures(tables: Tables, target: Target, key: str, precision: Precision | str) -> tuple[float, float]:
    """What a variant is charged against the target's byte budgets when it runs at ``precision``: weights MiB
    (``params`` x its bytes, :func:`compress.targets.weights_mb_at`; NaN without ``params``) and activation MiB
    at the activation budget's resolution (the fp32 ``peak_activation_mb`` scaled,
    :func:`compress.targets.activations_mb_at`; NaN without such a budget or the cost column)."""
    params = _cost_any(tables, "params").get(key, np.nan)
    w = weights_mb_at(params, precision) if math.isfinite(params) else math.nan
    act = math.nan
    if target.budgets.activations is not None:
        peak = _cost_at(tables, target.budgets.activations.resolution.value, "peak_activation_mb").get(key, np.nan)
        act = activations_mb_at(peak, precision) if math.isfinite(peak) else math.nan
    return w, act


def _budget_failures(tables: Tables, target: Target, key: str, latency_per: LatencyPer = LatencyPer.architecture,
                     precision: Precision | None = None, charged: tuple[float, float] | None = None) -> list[str]:
    """Why a variant breaks the target's budgets (empty when it meets them all, or there are none). Byte budgets
    are charged at ``precision`` (:func:`budget_figures`, or ``charged`` where the caller has it); None (the
    target cannot run the variant at all): at fp32, as profiled."""
    b = target.budgets
    out: list[str] = []
    prec = precision or Precision.fp32
    weights_mb, activations_mb = charged if charged is not None else budget_figures(tables, target, key, prec)
    if b.compute is not None:
        col = "tflops_true" if b.compute.convention is Convention.true else "tflops"
        v = _cost_at(tables, b.compute.resolution.value, col).get(key, np.nan)
        if not math.isfinite(v):
            out.append(f"no {col} at {b.compute.resolution.value}")
        elif v > b.compute.max_tflops:
            out.append(f"{col} {v:.3g} > {b.compute.max_tflops:g} at {b.compute.resolution.value}")
    if b.activations is not None:
        if not math.isfinite(activations_mb):
            out.append(f"no peak_activation_mb at {b.activations.resolution.value}")
        elif activations_mb > b.activations.max_mb:
            out.append(f"activations {activations_mb:.4g} MB at {prec.value} > {b.activations.max_mb:g} MB at "
                       f"{b.activations.resolution.value}")
    if b.latency is not None:
        v = latency_at(tables, target.name, b.latency.resolution.value, latency_per).ms.get(key, np.nan)
        if not math.isfinite(v):
            out.append(f"latency not measured on {target.name} at {b.latency.resolution.value}")
        elif v > b.latency.max_ms:
            out.append(f"latency {v:.4g} ms > {b.latency.max_ms:g} ms at {b.latency.resolution.value}")
    if b.weights_mb is not None:
        if not math.isfinite(weights_mb):
            out.append("no params")
        elif weights_mb > b.weights_mb:
            out.append(f"weights {weights_mb:.3g} MB at {prec.value} > {b.weights_mb:g} MB")
    return out


def reference_points(selection: Selection, axis: Axis, y: QualityAxis | str) -> pd.DataFrame:
    """Published points for this selection whose x means the same as ours; columns ``method, x, y, source``.

    Only ``params`` (any resolution) and the published-convention ``tflops`` / ``memory_mb`` at a
    resolution are known for published models; any other axis gives no reference points.
    """
    pub = published_points()
    yq = QualityAxis(y)
    rows = pub[(pub["dataset"] == selection.dataset) & (pub["quality"] == selection.quality)
               & (pub["protocol"] == selection.protocol)].copy()
    if axis.cost is CostAxis.params:
        rows["x"] = rows["params"]
    elif axis.cost in (CostAxis.tflops, CostAxis.memory_mb) and f"{axis.cost.value}_{axis.resolution}" in rows:
        rows["x"] = rows[f"{axis.cost.value}_{axis.resolution}"]
    else:
        return pd.DataFrame(columns=["method", "x", "y", "source"])
    base = yq.value.removesuffix("_gain")
    if yq.value.endswith("_gain"):
        jpeg = pub[(pub["method"] == "JPEG") & (pub["protocol"] == selection.protocol)
                   & (pub["dataset"] == selection.dataset) & (pub["quality"] == selection.quality)]
        rows["y"] = rows[base] - (float(jpeg[base].iloc[0]) if len(jpeg) else np.nan)
    else:
        rows["y"] = rows[base]
    rows = rows[np.isfinite(rows["x"].astype(float)) & np.isfinite(rows["y"].astype(float))]
    return rows[["method", "x", "y", "source"]].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# plots (from the point tables only)


def _front_line(front: pd.DataFrame) -> tuple[list[float], list[float]]:
    """The front as a step line: best quality reachable at each cost (steps after each point)."""
    f = front.sort_values(["x", "y"])
    return f["x"].astype(float).tolist(), f["y"].astype(float).tolist()


def _labels(points: pd.DataFrame) -> list[str]:
    """One label per position: coincident points (ties) share one label listing them all."""
    out = [""] * len(points)
    seen: dict[tuple[float, float], int] = {}
    names = points["label"] if "label" in points.columns else points["key"]
    for i, (k, x, y) in enumerate(zip(names, points["x"], points["y"], strict=True)):
        pos = (float(x), float(y))
        if pos in seen:
            out[seen[pos]] += f", {k}"
        else:
            seen[pos] = i
            out[i] = str(k)
    return out


def _label_offsets(points: pd.DataFrame, *, near_x: float = 0.06, near_y: float = 0.03) -> list[float]:
    """Vertical label offsets (points) that stack the labels of points close together on the (log x) plot
    instead of printing them over each other: 3, -6, -15, ... for the 1st, 2nd, 3rd label of a cluster."""
    if not len(points):
        return []
    lx = np.log10(points["x"].astype(float).clip(lower=1e-12).to_numpy())
    y = points["y"].astype(float).to_numpy()
    sx = max(float(np.ptp(lx)), 1e-9)
    sy = max(float(np.ptp(y)), 1e-9)
    placed: list[tuple[float, float]] = []
    out = [3.0] * len(y)
    for i in np.argsort(-y, kind="stable"):  # from the top down: a lower point's label goes below
        xi, yi = lx[i] / sx, y[i] / sy
        k = sum(1 for px, py in placed if abs(px - xi) < near_x and abs(py - yi) < near_y)
        placed.append((xi, yi))
        out[i] = 3.0 - 9.0 * k
    return out


def _short_number(v: float, _pos: object = None) -> str:
    """A tick label: 0.2, 5, 30, 200k, 1.5M (no scientific notation, which crowds a log axis)."""
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def _plain_log_ticks(ax: Any) -> None:
    """Label a log x axis at 1, 2 and 5 times each power of ten, in plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.xaxis.set_major_formatter(FuncFormatter(_short_number))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    ax.xaxis.set_minor_formatter(FuncFormatter(_short_number))


def _budget_x(target: Target, axis: Axis) -> float | None:
    b = target.budgets
    if b.compute and axis.cost.value == ("tflops_true" if b.compute.convention is Convention.true else "tflops") \
            and axis.resolution == b.compute.resolution.value:
        return b.compute.max_tflops
    if b.latency and axis.cost is CostAxis.latency_ms and axis.resolution == b.latency.resolution.value:
        return b.latency.max_ms
    # no line for the byte budgets: the peak_activation_mb (fp32) and model_bytes (ONNX file) axes are not what
    # the budgets charge (bytes at the precision run, weights_mb_at_precision / activations_mb_at_precision)
    return None


#: the y range (dB) a front plot keeps when some points lie far below the rest (see :func:`_zoom_floor`)
ZOOM_DB = 2.0


def _zoom_floor(shown: pd.DataFrame, refs: pd.DataFrame) -> float:
    """The lowest quality a front plot shows on its y axis: ``-inf`` (everything) unless the points span more
    than ``1.5 * ZOOM_DB``; then the best point minus ``ZOOM_DB``, lowered to keep every front point and
    every published point visible."""
    if len(shown) < 3:
        return -np.inf
    ys = shown["y"].astype(float)
    if float(ys.max() - ys.min()) <= 1.5 * ZOOM_DB:
        return -np.inf
    cut = float(ys.max()) - ZOOM_DB
    keep = [shown.loc[shown["on_front"].astype(bool), "y"].astype(float)]
    if len(refs):
        keep.append(refs["y"].astype(float))
    for k in keep:
        if len(k):
            cut = min(cut, float(k.min()))
    return cut


MAX_STATIC_LABELS = 15
"""Above this many points a static front plot labels only its front members."""


def plot_front(points: pd.DataFrame, refs: pd.DataFrame, *, target: Target, axis: Axis, y: str,
               selection: Selection, machine: str = "", coverage: str = "") -> Figure:
    """A matplotlib figure (Agg canvas, no display), the front as a step line; every variant is labelled when
    there are at most :data:`MAX_STATIC_LABELS`, else the front members only."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    shown = points[np.isfinite(points["x"]) & np.isfinite(points["y"]) & (points["x"] > 0)]
    # a few far-off points (e.g. untuned 4-bit variants 5 dB down) would squeeze the rest into a line: keep the
    # y axis on the top ZOOM_DB dB (front points and published points always inside) and mark the others
    # at its lower edge with their value
    cut = _zoom_floor(shown, refs)
    below = shown[shown["y"] < cut]
    shown = shown[shown["y"] >= cut]
    off = shown[~shown["eligible"]]
    elig = shown[shown["eligible"] & ~shown["on_front"]]
    front = shown[shown["on_front"]]
    if len(off):
        ax.scatter(off["x"], off["y"], marker="x", color="0.6", label="outside the target's budgets / precisions")
    if len(elig):
        ax.scatter(elig["x"], elig["y"], marker="o", color="tab:blue", alpha=0.6, label="measured variant")
    if len(front):
        fx, fy = _front_line(front)
        ax.step(fx, fy, where="post", color="tab:red", lw=1.5, label="Pareto front")
        ax.scatter(fx, fy, marker="o", color="tab:red", zorder=3)
    # a crowded plot labels its front members only (the rest overlap into an unreadable blot); the HTML page's
    # hover names every point
    crowded = len(shown) > MAX_STATIC_LABELS
    named = shown[shown["on_front"].astype(bool)] if crowded else shown
    movable = []
    for r, label, dy in zip(named.itertuples(), _labels(named), _label_offsets(named), strict=True):
        if not label:
            continue
        movable.append(ax.annotate(label, (r.x, r.y), textcoords="offset points", xytext=(4, dy), fontsize=7,
                                   color="0.4" if not r.eligible else "black",
                                   arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.6"}))
    if len(refs):
        ax.scatter(refs["x"], refs["y"], marker="*", s=90, facecolors="none", edgecolors="tab:green",
                   label="published, not re-measured")
        for r in refs.itertuples():
            ax.annotate(str(r.method), (r.x, r.y), textcoords="offset points", xytext=(4, -9), fontsize=7,
                        color="tab:green", style="italic")
    if len(below):
        top = max(float(shown["y"].max()) if len(shown) else cut, float(refs["y"].max()) if len(refs) else cut)
        pad = 0.05 * (top - cut)
        edge = cut - pad
        ax.set_ylim(edge - pad, top + pad)
        ax.scatter(below["x"], [edge] * len(below), marker="v", color="0.5",
                   label=f"below {cut:.2f} (value in the label)")
        for r, label in zip(below.itertuples(), _labels(below), strict=True):
            if label:
                ax.annotate(f"{label}: {r.y:.2f}", (r.x, edge), textcoords="offset points", xytext=(4, 3),
                            fontsize=7, color="0.4")
    bx = _budget_x(target, axis)
    if bx is not None:
        ax.axvline(bx, color="tab:orange", ls="--", lw=1, label=f"budget {bx:g}")
    if len(shown) or len(refs) or len(below):
        ax.set_xscale("log")
        _plain_log_ticks(ax)
    shared = "x_n" in points.columns and bool((points["x_n"] > 1).any())
    inherited = "x_timed" in shown.columns and bool((shown["x_timed"] == False).fillna(False).any())  # noqa: E712
    note = ""
    if axis.cost is CostAxis.latency_ms and inherited:
        note = "\n(variants with the same graph share the median of their measurements; some were not timed themselves)"
    elif axis.cost is CostAxis.latency_ms and shared:
        note = "\n(variants with the same graph share the median of their measurements)"
    if crowded:
        note += f"\n(labels: the front only; fronts.html names all {len(shown)} points on hover)"
    if axis.cost is CostAxis.latency_ms and machine:
        note = "\non " + "\n+ ".join(machine.split(" + ")) + note  # pooled machines: one per line
    ax.set_xlabel(axis.label() + note)
    ax.set_ylabel(f"{y} (dB)" if "psnr" in y else y)
    ax.set_title(f"{target.label()}: {selection.label()}{coverage}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    if not len(shown):
        ax.text(0.5, 0.5, "no variant can be placed on this axis", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    _declutter(fig, movable)
    return fig


def _declutter(fig: Figure, labels: list[Any], *, step: float = 9.0, tries: int = 12) -> None:
    """Move point labels down, ``step`` points at a time, until none overlaps a label placed before it (the
    highest point's first; the published points' and other texts stay where they are and are avoided too);
    a moved label keeps a thin leader line to its point, an unmoved one none."""
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    moving = {id(a) for a in labels}
    placed = [text_box(t, renderer) for t in ax.texts if id(t) not in moving]
    for a in sorted(labels, key=lambda a: -float(a.xy[1])):
        for _ in range(tries):
            box = text_box(a, renderer)
            if not any(box.overlaps(p) for p in placed):
                break
            a.xyann = (a.xyann[0], a.xyann[1] - step)
        placed.append(text_box(a, renderer))
        if a.arrow_patch is not None:
            a.arrow_patch.set_visible(a.xyann[1] < 0)


def text_box(text: Any, renderer: Any) -> Any:
    """The display-space box of a text or an annotation's text alone (an annotation's own extent includes its
    leader line)."""
    from matplotlib.text import Annotation, Text

    if isinstance(text, Annotation):
        text.update_positions(renderer)
    return Text.get_window_extent(text, renderer)


def _hover(points: pd.DataFrame) -> list[list[str]]:
    def measured(r: pd.Series) -> str:
        n = int(r.get("x_n", 1) or 1)
        frm = str(r.get("y_from", "torch") or "torch")
        x = f"x: median of {n} variants with this graph; " if n > 1 else ""
        timed = r.get("x_timed")
        if timed is not None and not pd.isna(timed) and not bool(timed):
            x = f"x: not timed itself, the median of {n} timed variant(s) with this graph; "
        n_seeds = int(r.get("seeds", 1) or 1)
        sd = r.get("y_sd")
        seeds = f"; the mean of {n_seeds} seeds (sd {float(sd):.3f})" if n_seeds > 1 and pd.notna(sd) else ""
        return f"{x}quality scored in {frm}{seeds}"

    def precision(r: pd.Series) -> str:
        prec = str(r["precision"] or "-")
        charged = [f"{what} {float(v):.4g} MB" for what, v in (("weights", r.get("weights_mb_at_precision")),
                                                                 ("activations", r.get("activations_mb_at_precision")))
                   if v is not None and pd.notna(v)]
        return f"{prec} ({', '.join(charged)} at {prec})" if charged and prec != "-" else prec

    label = "label" if "label" in points.columns else "key"
    return [[f"{r[label]} ({r['key']})" if r[label] != r["key"] else str(r["key"]), precision(r),
             str(r["settings"] or "-"), str(r["reason"] or "eligible"), measured(r)]
            for _, r in points.iterrows()]


Panel = tuple[Target, Axis, pd.DataFrame, pd.DataFrame]
"""One target's front for one selection: the target, its x axis, its points and the published points."""

HOVER = ("<b>%{customdata[0]}</b><br>x=%{x:.4g}<br>y=%{y:.4f}<br>precision: %{customdata[1]}"
         "<br>settings: %{customdata[2]}<br>%{customdata[4]}<br>%{customdata[3]}<extra></extra>")


def _add_panel(fig: Any, pts: pd.DataFrame, refs: pd.DataFrame, visible: bool) -> tuple[int, int]:
    """Add one panel's traces (outside / measured / front markers, the front line, the published points) to
    ``fig``; returns the span of their indices."""
    import plotly.graph_objects as go

    start = len(fig.data)
    shown = pts[np.isfinite(pts["x"]) & np.isfinite(pts["y"]) & (pts["x"] > 0)]
    for label, sel, style in (
        ("outside budgets / precisions", ~shown["eligible"], {"symbol": "x", "color": "#999"}),
        ("measured variant", shown["eligible"] & ~shown["on_front"], {"color": "#1f77b4"}),
        ("on the Pareto front", shown["on_front"], {"color": "#d62728", "size": 10}),
    ):
        part = shown[sel]
        fig.add_trace(go.Scatter(
            x=part["x"], y=part["y"], mode="markers+text", text=_labels(part), textposition="top right",
            textfont={"size": 9}, marker=style, name=label, customdata=_hover(part), hovertemplate=HOVER,
            visible=visible, legendgroup=label,
        ))
    fx, fy = _front_line(shown[shown["on_front"]])
    fig.add_trace(go.Scatter(x=fx, y=fy, mode="lines", line={"shape": "hv", "color": "#d62728"},
                             name="Pareto front", hoverinfo="skip", visible=visible))
    fig.add_trace(go.Scatter(
        x=refs["x"], y=refs["y"], mode="markers+text", text=refs["method"], textposition="bottom right",
        textfont={"size": 9, "color": "#2ca02c"}, name="published, not re-measured",
        marker={"symbol": "star-open", "size": 12, "color": "#2ca02c"},
        customdata=[[str(m), str(s)] for m, s in zip(refs["method"], refs["source"], strict=True)],
        hovertemplate="<b>%{customdata[0]}</b> (published, not re-measured)<br>x=%{x:.4g}<br>y=%{y:.4f}"
                      "<br>%{customdata[1]}<extra></extra>", visible=visible,
    ))
    return start, len(fig.data)


def plotly_figure(panels: Sequence[Panel], *, y: str, selection: Selection, coverage: str = "") -> Any:
    """One plotly figure with a dropdown that switches between targets (one panel per target)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    spans = [_add_panel(fig, pts, refs, k == 0) for k, (_t, _a, pts, refs) in enumerate(panels)]
    buttons = []
    sel_label = selection.label() + coverage
    for k, (target, axis, _pts, _refs) in enumerate(panels):
        mask = [spans[k][0] <= i < spans[k][1] for i in range(len(fig.data))]
        buttons.append({"label": target.label(), "method": "update",
                        "args": [{"visible": mask}, {"title.text": f"{target.label()}: {sel_label}",
                                                     "xaxis.title.text": axis.label()}]})
    first_t, first_axis = (panels[0][0], panels[0][1]) if panels else (None, None)
    fig.update_layout(
        title={"text": f"{first_t.label()}: {sel_label}" if first_t else sel_label},
        xaxis={"type": "log", "title": {"text": first_axis.label() if first_axis else ""}},
        yaxis={"title": {"text": y}}, template="plotly_white", hovermode="closest",
        updatemenus=[{"buttons": buttons, "direction": "down", "x": 0.0, "xanchor": "left", "y": 1.15,
                      "yanchor": "top", "showactive": True}],
        margin={"t": 110},
    )
    return fig


# The data-set and target selectors of the combined page: plain <select>s that show one panel's traces.
# Opening the page with #<selection>/<target> (e.g. #live1-q10-idcn-rgb/cpu-ov-int8) shows that panel.
_INDEX_JS = """
(function () {
  var gd = document.getElementById('{plot_id}'), V = %s;
  var bar = document.createElement('div');
  bar.id = 'compress-selectors';
  bar.style.cssText = 'font: 14px sans-serif; margin: 8px 0 0 60px';
  function pick(label, names) {
    var l = document.createElement('label'), s = document.createElement('select');
    l.textContent = label + ' ';
    l.style.marginRight = '24px';
    names.forEach(function (n, i) {
      var o = document.createElement('option'); o.value = String(i); o.textContent = n; s.appendChild(o);
    });
    l.appendChild(s); bar.appendChild(l); return s;
  }
  var sel = pick('data set:', V.selections), tgt = pick('target:', V.targets);
  function show() {
    var s = +sel.value, t = +tgt.value, span = V.spans[s][t], mask = [];
    for (var i = 0; i < V.n; i++) { mask.push(i >= span[0] && i < span[1]); }
    history.replaceState(null, '', '#' + V.slugs[s] + '/' + V.names[t]);
    return Plotly.update(gd, {visible: mask}, {'title.text': V.titles[s][t], 'xaxis.title.text': V.xlabels[s][t],
                                               'xaxis.autorange': true, 'yaxis.autorange': true});
  }
  var want = decodeURIComponent(location.hash.slice(1)).split('/');
  if (V.slugs.indexOf(want[0]) >= 0) { sel.value = String(V.slugs.indexOf(want[0])); }
  if (want.length > 1 && V.names.indexOf(want[1]) >= 0) { tgt.value = String(V.names.indexOf(want[1])); }
  sel.addEventListener('change', show);
  tgt.addEventListener('change', show);
  gd.parentNode.insertBefore(bar, gd);
  window.compressShow = function (s, t) { sel.value = String(s); tgt.value = String(t); return show(); };
  if (sel.value !== '0' || tgt.value !== '0') { show(); }
})();
"""


def index_figure(pages: Sequence[tuple[Selection, str, Sequence[Panel]]], *, y: str) -> tuple[Any, str]:
    """One plotly figure holding every selection's panels (``pages``: selection, coverage note, one panel per
    target, the same targets in each) and the script of its two selectors (data set x quality x protocol,
    and target): one copy of plotly.js for all the fronts of a folder.

    Returns:
        The figure (the first selection's first target shown) and the ``post_script`` for ``write_html``.
    """
    import json

    import plotly.graph_objects as go

    if not pages or not pages[0][2]:
        raise CompressError("no fronts to draw")
    targets = [t for t, _a, _p, _r in pages[0][2]]
    fig = go.Figure()
    spans, titles, xlabels = [], [], []
    for k, (sel, coverage, panels) in enumerate(pages):
        if [t.name for t, _a, _p, _r in panels] != [t.name for t in targets]:
            raise CompressError(f"{sel.slug()}: its targets differ from {pages[0][0].slug()}'s")
        spans.append([_add_panel(fig, pts, refs, k == 0 and j == 0) for j, (_t, _a, pts, refs) in enumerate(panels)])
        titles.append([f"{t.label()}: {sel.label()}{coverage}" for t, _a, _p, _r in panels])
        xlabels.append([a.label() for _t, a, _p, _r in panels])
    fig.update_layout(
        title={"text": titles[0][0]}, xaxis={"type": "log", "title": {"text": xlabels[0][0]}},
        yaxis={"title": {"text": y}}, template="plotly_white", hovermode="closest", margin={"t": 80},
    )
    view = {"selections": [sel.label() + cov for sel, cov, _p in pages], "slugs": [sel.slug() for sel, _c, _p in pages],
            "targets": [t.label() for t in targets], "names": [t.name for t in targets], "spans": spans,
            "titles": titles, "xlabels": xlabels, "n": len(fig.data)}
    return fig, _INDEX_JS % json.dumps(view, sort_keys=True)


def write_index_html(pages: Sequence[tuple[Selection, str, Sequence[Panel]]], path: str | Path, *, y: str) -> Path:
    """The combined page of :func:`index_figure`: one self-contained file (plotly.js inline, no CDN)."""
    fig, script = index_figure(pages, y=y)
    p = Path(path)
    fig.write_html(str(p), include_plotlyjs=True, full_html=True, div_id="compress-fronts", post_script=script)
    return p


# ---------------------------------------------------------------------------------------------
# writing


def write_fronts(
    tables: Tables, targets: Sequence[Target], selection: Selection, out_dir: str | Path, *,
    x: CostAxis | str = CostAxis.auto, y: QualityAxis | str = QualityAxis.psnr,
    resolution: str = Resolution.p720.value, quality_from: QualityFrom | str = QualityFrom.deployed,
    latency_per: LatencyPer | str = LatencyPer.architecture, seeds: Seeds | str = Seeds.mean, html: bool = True,
) -> list[Path]:
    """Fronts of every target for one selection: ``front.csv``, ``points.csv``, ``front-<target>.png/.svg``
    and (``html``) one self-contained ``fronts.html`` (plotly.js inline) with a target selector.
    ``quality_from``, ``latency_per`` and ``seeds``: see :func:`target_points`.

    Returns:
        The files written.
    """
    return _write_selection(tables, targets, selection, out_dir, x=x, y=y, resolution=resolution,
                            quality_from=quality_from, latency_per=latency_per, seeds=seeds, html=html)[0]


def _write_selection(
    tables: Tables, targets: Sequence[Target], selection: Selection, out_dir: str | Path, *,
    x: CostAxis | str, y: QualityAxis | str, resolution: str, quality_from: QualityFrom | str,
    latency_per: LatencyPer | str, seeds: Seeds | str, html: bool,
) -> tuple[list[Path], list[Panel], str]:
    """:func:`write_fronts`, also returning the panels drawn and the selection's coverage note."""
    from matplotlib import rc_context

    if not targets:
        raise CompressError("no targets given")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    yq = QualityAxis(y)
    scored, at_quality = tables.coverage(selection)
    coverage = _coverage_text(selection, scored, at_quality)
    panels: list[Panel] = []
    tables_out = []
    written: list[Path] = []
    for t in targets:
        pts, axis = target_points(tables, t, selection, x=x, y=yq, resolution=resolution, quality_from=quality_from,
                                  latency_per=latency_per, seeds=seeds)
        refs = reference_points(selection, axis, yq)
        panels.append((t, axis, pts, refs))
        meta = {"target": t.name, "illustrative": t.illustrative, "cost_axis": axis.cost.value,
                "machine": tables.machine if axis.cost is CostAxis.latency_ms else "",
                "resolution": axis.resolution or "", "quality_axis": yq.value, "dataset": selection.dataset,
                "quality": selection.quality, "protocol": selection.protocol, "variants_scored": scored,
                "variants_at_quality": at_quality}
        tables_out.append(pts.assign(**meta))
        fig = plot_front(pts, refs, target=t, axis=axis, y=yq.value, selection=selection, machine=tables.machine,
                         coverage=coverage)
        for ext in ("png", "svg"):
            p = out / f"front-{t.name}.{ext}"
            # no date in the SVG and fixed element ids: the same tables give the same bytes (no diff churn)
            with rc_context({"svg.hashsalt": "compress"}):
                fig.savefig(p, metadata={"Date": None} if ext == "svg" else None)
            written.append(p)
    allpts = pd.concat(tables_out, ignore_index=True)
    lead = ["target", "illustrative", "machine", "dataset", "quality", "protocol", "variants_scored",
            "variants_at_quality", "cost_axis", "resolution", "quality_axis"]
    allpts = allpts[lead + [c for c in allpts.columns if c not in lead]]
    front = allpts[allpts["on_front"]].drop(columns=["on_front", "eligible", "reason"])
    for name, df in (("front.csv", front), ("points.csv", allpts)):
        df.to_csv(out / name, index=False)
        written.append(out / name)
    if html:
        fig = plotly_figure(panels, y=yq.value, selection=selection, coverage=coverage)
        page = out / "fronts.html"
        fig.write_html(str(page), include_plotlyjs=True, full_html=True, div_id="compress-fronts")  # fixed id
        written.append(page)
    return written, panels, coverage


def export_fronts(
    results_dir: str | Path | Sequence[str | Path], targets: Iterable[Target | str] | None, out_dir: str | Path, *,
    y: QualityAxis | str = QualityAxis.psnr, resolution: str = Resolution.p720.value,
    quality_from: QualityFrom | str = QualityFrom.deployed, latency_per: LatencyPer | str = LatencyPer.architecture,
    machine: str | Sequence[str] | None = None, seeds: Seeds | str = Seeds.mean, min_variants: int = 1,
    log: Callable[[str], None] | None = None, x: CostAxis | str = CostAxis.auto, dataset: str | None = None,
    quality: int | None = None, protocol: str | None = None,
) -> list[Path]:
    """Fronts for every target (default: all shipped) and every dataset x quality x protocol of the results.

    ``machine``: whose latency and deployed rows (see :func:`load_tables`; default the latest).
    ``min_variants``: skip a selection scored for fewer variants than this (a set only a few variants were
    rescored on, or a single baseline, makes a front that compares nothing); ``log`` names each skipped one.
    ``dataset``, ``quality``, ``protocol``: only the selections with these (None: any).

    Writes ``<out_dir>/<dataset>-q<quality>-<protocol>/`` per selection (see :func:`write_fronts`; no
    ``fronts.html`` there), on the x axis ``x`` (default ``auto``, per target: measured latency where
    measured, else true TFLOPS), and one self-contained ``<out_dir>/fronts.html`` with every selection's
    fronts and two selectors, data set and target (:func:`index_figure`): one copy of plotly.js (4.8 MB)
    for all of them.

    Returns:
        Every file written.
    """
    dirs = [results_dir] if isinstance(results_dir, str | Path) else list(results_dir)
    tables = load_tables(dirs, machine)
    ts = get_targets(None) if targets is None else [t if isinstance(t, Target) else get_target(t) for t in targets]
    written: list[Path] = []
    pages: list[tuple[Selection, str, Sequence[Panel]]] = []
    # LIVE1 (the brief's table) first, then the other sets; each by quality
    for sel in sorted(tables.selections(), key=lambda s: (s.dataset != "live1", s.dataset, s.quality, s.protocol)):
        if any(want is not None and want != got for want, got in
               ((dataset, sel.dataset), (quality, sel.quality), (protocol, sel.protocol))):
            continue
        q = tables.quality
        n = q[(q["dataset"] == sel.dataset) & (q["quality"] == sel.quality) & (q["protocol"] == sel.protocol)]
        if n["key"].nunique() < min_variants:
            if log is not None:
                log(f"skipped {sel.slug()}: {n['key'].nunique()} variant(s) scored, fewer than {min_variants}")
            continue
        files, panels, coverage = _write_selection(
            tables, ts, sel, Path(out_dir) / sel.slug(), x=x, y=y, resolution=resolution,
            quality_from=quality_from, latency_per=latency_per, seeds=seeds, html=False)
        written += files
        pages.append((sel, coverage, panels))
    if pages:
        written.append(write_index_html(pages, Path(out_dir) / "fronts.html", y=QualityAxis(y).value))
    return written
