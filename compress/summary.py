"""Seed-averaged comparison of recipes: the tables a study's claims are checked against.

A *condition* is a recipe's variants with the seed taken out of their names (``seed0``, ``seed1`` and
``seed2`` of one recipe are one condition; ``ratio0.5-seed1`` belongs to ``ratio0.5``; ``base``, the point
with no sweep values, runs the recipe's own seeds and joins its ``seedN`` replicates). Conditions of
different recipes whose variants have the same settings but the seeds (cost.csv's ``condition_key``, see
:func:`compress.results.condition_keys`) and the same student checkpoint are one condition too: a recipe
that only adds seeds to another's cell pools with it, under the first name among them (the control's when
it is one); a variant run twice with the same seeds (same ``replicate_key``) counts once. For each
condition and each dataset x JPEG quality x protocol, :func:`summarize` gives the number of seeds,
the mean and standard deviation of PSNR / SSIM / PSNR-B, the JPEG baseline, the parameters and the
true MACs per 720p frame, and the difference to a control condition. Made only from the results
tables (``quality.csv``, ``cost.csv``; ``deployed.csv`` for the scores of a deployment target), like every
plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from compress.errors import DataError
from compress.pareto import condition_of, condition_pools, load_tables

__all__ = ["CLOSE_DB", "MIN_SEEDS", "SUMMARY_COLUMNS", "condition_of", "summarize", "summary_markdown"]

CLOSE_DB = 0.05
"""Differences smaller than this (dB) need :data:`MIN_SEEDS` seeds on both sides to count (issue 10's noise rule)."""
MIN_SEEDS = 3

SUMMARY_COLUMNS: dict[str, str] = {
    "condition": "`<recipe>/<variant name without seedN>`, or `<recipe>` for a recipe's `base` point and its seed "
    "replicates",
    "pooled": "the other recipes' conditions whose seed replicates were pooled into this one (same condition_key "
    "and student checkpoint), `; `-separated; empty when none",
    "dataset": "dataset",
    "quality": "JPEG quality",
    "protocol": "evaluation protocol",
    "seeds": "variants (seed replicates) averaged",
    "psnr": "mean PSNR (dB) over the seeds (torch's, or with --target the deployed graph's)",
    "psnr_sd": "sample standard deviation of PSNR over the seeds (0 for one seed)",
    "ssim": "mean SSIM",
    "psnrb": "mean PSNR-B (dB)",
    "jpeg_psnr": "mean PSNR (dB) of the JPEG input",
    "params": "parameters (cost.csv)",
    "macs_720p": "true MACs per 720p frame (cost.csv macs_true at 720p30)",
    "n_images": "images per score",
    "gain": "psnr - jpeg_psnr (dB)",
    "delta_psnr": "psnr - the control condition's psnr (dB); empty without --control",
    "control_seeds": "seeds of the control condition",
    "trains": "the condition takes optimizer steps (cost.csv train_steps > 0; assumed where unknown); one that does "
    "not (a checkpoint scored as it is) has no seed noise, so its side of a comparison needs no replicates",
    "below_noise": f"the difference is under {CLOSE_DB} dB with fewer than {MIN_SEEDS} seeds on a side that trains: "
    "not a finding",
    "machine": "with --target: the machine(s) whose deployed rows were averaged; else empty",
}
"""The columns of :func:`summarize`'s table (``compress summary --csv``), in order; results/README.md lists them."""


def summarize(results: Sequence[str | Path], control: str | None = None, target: str | None = None,
              machine: str | Sequence[str] | None = None) -> pd.DataFrame:
    """One row per condition x dataset x quality x protocol (see the module docstring).

    ``control`` names the condition that ``delta_psnr`` is measured against: ``RECIPE`` or
    ``RECIPE/CONDITION``. Without it, ``delta_psnr`` is empty.
    ``target``: average the scores the variants' exported graphs got in that target's runtime
    (``deployed.csv``, written by ``compress deployed``) instead of torch's; variants not scored there are
    left out (``seeds`` counts those that are). ``machine``: whose deployed scores (see
    :func:`compress.pareto.load_tables`; default the machine that timed most recently), named in the
    table's ``machine`` column.

    Raises:
        DataError: unreadable results, a control that is not among them, or a target nothing was scored in.
    """
    tables = load_tables(results, machine)
    q = tables.quality.copy()
    missing = [c for c in ("recipe", "variant_name", "psnr", "ssim", "psnrb", "jpeg_psnr", "n_images") if c not in q]
    if missing:
        raise DataError(f"quality tables lack {', '.join(missing)} (written by an older compress run?)")
    if target is not None:
        d = tables.deployed
        scored = sorted(set(d["target"].astype(str))) if len(d) else []
        if target not in scored:
            raise DataError(f"no deployed.csv row for target {target!r} in these results (scored: "
                            f"{', '.join(scored) or 'none'}); run compress deployed RESULTS --target {target}")
        on = ["key", "dataset", "quality", "protocol"]
        d = d[d["target"].astype(str) == target][[*on, "psnr", "ssim", "psnrb"]].drop_duplicates(on, keep="last")
        q = q.drop(columns=["psnr", "ssim", "psnrb"]).merge(d, on=on, how="inner")
    q["condition"] = [
        f"{r}/{c}" if c else str(r) for r, c in zip(q["recipe"], q["variant_name"].map(condition_of), strict=True)
    ]
    cost_cols = ["key", "params", "macs_true", *(c for c in ("replicate_key", "train_steps") if c in tables.cost)]
    cost = tables.cost[tables.cost["resolution"] == "720p30"][cost_cols]
    q = q.merge(cost, on="key", how="left")
    q, pooled = _pool_replicates(q, condition_pools(tables, q["key"]), control)
    keys = ["condition", "dataset", "quality", "protocol"]
    steps = pd.to_numeric(q["train_steps"], errors="coerce") if "train_steps" in q else pd.Series(float("nan"), q.index)
    q["_trains"] = steps.isna() | steps.gt(0)
    g = q.groupby(keys, sort=True)
    out = g.agg(
        seeds=("variant", "nunique"),
        psnr=("psnr", "mean"),
        psnr_sd=("psnr", "std"),
        ssim=("ssim", "mean"),
        psnrb=("psnrb", "mean"),
        jpeg_psnr=("jpeg_psnr", "mean"),
        params=("params", "max"),
        macs_720p=("macs_true", "max"),
        n_images=("n_images", "max"),
        trains=("_trains", "any"),
    ).reset_index()
    out["pooled"] = [pooled.get(c, "") for c in out["condition"]]
    out["psnr_sd"] = out["psnr_sd"].fillna(0.0)
    out["gain"] = out["psnr"] - out["jpeg_psnr"]
    out["delta_psnr"] = float("nan")
    if control is not None:
        if control not in set(out["condition"]):
            raise DataError(
                f"control {control!r} is not among the conditions: {', '.join(sorted(set(out['condition'])))}"
            )
        ref = out[out["condition"] == control].set_index(["dataset", "quality", "protocol"])["psnr"]
        idx = pd.MultiIndex.from_frame(out[["dataset", "quality", "protocol"]])
        out["delta_psnr"] = out["psnr"].to_numpy() - ref.reindex(idx).to_numpy()
        ref_seeds = out[out["condition"] == control].set_index(["dataset", "quality", "protocol"])["seeds"]
        out["control_seeds"] = ref_seeds.reindex(idx).to_numpy()
        ref_trains = out[out["condition"] == control].set_index(["dataset", "quality", "protocol"])["trains"]
        control_trains = ref_trains.reindex(idx).fillna(True).astype(bool).to_numpy()
    else:
        out["control_seeds"] = float("nan")
        control_trains = True
    # the noise rule: a difference under CLOSE_DB from fewer than MIN_SEEDS seeds on a side that trains (a
    # checkpoint scored as it is has no seed noise) is not a finding
    out["below_noise"] = (
        out["delta_psnr"].abs().lt(CLOSE_DB)
        & ((out["seeds"].lt(MIN_SEEDS) & out["trains"]) | (out["control_seeds"].lt(MIN_SEEDS) & control_trains))
        & (out["condition"] != control)
    )
    out["machine"] = tables.machine if target is not None else ""
    return out[list(SUMMARY_COLUMNS)]


def _pool_replicates(q: pd.DataFrame, pools: pd.Series, control: str | None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Give the variants that are seed replicates of one another (the same ``pools`` value,
    :func:`compress.pareto.condition_pools`: ``condition_key`` and student checkpoint) one condition name,
    and drop the rows of a variant that repeats another's run (same ``replicate_key``). Returns the rows
    and, per condition name, the other names pooled into it.

    A pool is named by its first name in the order the results were given (the control's when it is
    one). Variants without a key (tables from before the column) keep their name. Where one name would
    cover two pools (variant names cut short, or a recipe whose seed replicates differ in more than the
    seed), each keyed pool gets ``[<first 8 hex of its condition_key>]`` after it.
    """
    own = q["condition"].astype(str)
    pool = ("k:" + pools.astype(str)).where(pools.notna(), "n:" + own)
    labels: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for p, names in own.groupby(pool, sort=False):
        order = [str(n) for n in dict.fromkeys(names)]  # first appearance: the order the results were given in
        labels[str(p)] = control if control is not None and control in order else order[0]
        members[str(p)] = order
    by_label: dict[str, list[str]] = {}
    for p, label in labels.items():
        by_label.setdefault(label, []).append(p)
    for label, pools in by_label.items():
        if len(pools) > 1:
            for p in pools:
                if p.startswith("k:"):
                    labels[p] = f"{label} [{p[2:10]}]"
    pooled = {labels[p]: "; ".join(n for n in names if n != labels[p].split(" [")[0])
              for p, names in members.items() if len(names) > 1}
    q["condition"] = pool.map(labels)
    if "replicate_key" in q:  # a run repeated: keep the copy in the condition's own recipe, else the first
        rep = q["replicate_key"]
        keyed = rep.notna() & rep.astype(str).ne("")
        order = q[keyed].assign(_other=own[keyed].ne(q.loc[keyed, "condition"])).sort_values("_other", kind="stable")
        first = order.groupby(["condition", order["replicate_key"]], sort=False)["variant"].transform("first")
        repeat = pd.Series(False, index=q.index)
        repeat[first.index] = order["variant"].ne(first)
        q = q[~repeat]
    return q, pooled


def summary_markdown(table: pd.DataFrame, control: str | None = None, target: str | None = None) -> str:
    """:func:`summarize`'s table as markdown, one section per dataset x quality x protocol."""
    lines: list[str] = []
    scored = f", as deployed on {target}" if target else ""
    machine = str(table["machine"].iloc[0]) if target and "machine" in table and len(table) else ""
    scored += f" ({machine})" if machine else ""
    for (dataset, quality, protocol), part in table.groupby(["dataset", "quality", "protocol"], sort=True):
        lines += [
            f"### {dataset}, q{quality}, {protocol}{scored} (JPEG {part['jpeg_psnr'].iloc[0]:.2f} dB)",
            "",
            "| condition | seeds | PSNR (dB) | SSIM | PSNR-B | gain over JPEG | "
            + (f"vs {control} | " if control else "")
            + "params | GMACs / 720p frame |",
            "|---|---|---|---|---|---|" + ("---|" if control else "") + "---|---|",
        ]
        for r in part.itertuples(index=False):
            sd = f" ± {r.psnr_sd:.3f}" if r.seeds > 1 else ""
            flag = " †" if r.below_noise else ""
            delta = (f" {r.delta_psnr:+.3f}{flag} |" if pd.notna(r.delta_psnr) else " |") if control else ""
            name = f"{r.condition} (+ {r.pooled})" if getattr(r, "pooled", "") else r.condition
            lines.append(
                f"| {name} | {r.seeds} | {r.psnr:.3f}{sd} | {r.ssim:.4f} | {r.psnrb:.2f} | {r.gain:+.3f} |"
                f"{delta} {int(r.params):,} | {r.macs_720p / 1e9:.1f} |"
            )
        lines.append("")
    if control and table["below_noise"].any():
        lines += [
            f"† closer than {CLOSE_DB} dB to the control with fewer than {MIN_SEEDS} seeds on a side that trains: "
            "within the noise of a single run, not a finding (run more seeds: the recipes' `seed` sweeps; a "
            "recipe that only adds seeds to a cell is pooled with it).",
            "",
        ]
    return "\n".join(lines)
