"""Seed-averaged comparison of recipes: the tables a study's claims are checked against.

A *condition* is a recipe's variants with the seed taken out of their names (``seed0``, ``seed1`` and
``seed2`` of one recipe are one condition; ``ratio0.5-seed1`` belongs to ``ratio0.5``; ``base``, the point
with no sweep values, runs the recipe's own seeds and joins its ``seedN`` replicates). For each
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
from compress.pareto import condition_of, load_tables

__all__ = ["CLOSE_DB", "MIN_SEEDS", "SUMMARY_COLUMNS", "condition_of", "summarize", "summary_markdown"]

CLOSE_DB = 0.05
"""Differences smaller than this (dB) need :data:`MIN_SEEDS` seeds on both sides to count (issue 10's noise rule)."""
MIN_SEEDS = 3

SUMMARY_COLUMNS: dict[str, str] = {
    "condition": "`<recipe>/<variant name without seedN>`, or `<recipe>` for a recipe's `base` point and its seed "
    "replicates",
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
    "below_noise": f"the difference is under {CLOSE_DB} dB with fewer than {MIN_SEEDS} seeds on a side: not a finding",
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
    cost = tables.cost[tables.cost["resolution"] == "720p30"][["key", "params", "macs_true"]]
    q = q.merge(cost, on="key", how="left")
    keys = ["condition", "dataset", "quality", "protocol"]
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
    ).reset_index()
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
    else:
        out["control_seeds"] = float("nan")
    # the noise rule: a difference under CLOSE_DB from fewer than MIN_SEEDS seeds on either side is not a finding
    out["below_noise"] = (
        out["delta_psnr"].abs().lt(CLOSE_DB)
        & (out["seeds"].lt(MIN_SEEDS) | out["control_seeds"].lt(MIN_SEEDS))
        & (out["condition"] != control)
    )
    out["machine"] = tables.machine if target is not None else ""
    return out[list(SUMMARY_COLUMNS)]


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
            lines.append(
                f"| {r.condition} | {r.seeds} | {r.psnr:.3f}{sd} | {r.ssim:.4f} | {r.psnrb:.2f} | {r.gain:+.3f} |"
                f"{delta} {int(r.params):,} | {r.macs_720p / 1e9:.1f} |"
            )
        lines.append("")
    if control and table["below_noise"].any():
        lines += [
            f"† closer than {CLOSE_DB} dB to the control with fewer than {MIN_SEEDS} seeds on one side: within "
            "the noise of a single run, not a finding (run more seeds: the recipes' `seed` sweeps).",
            "",
        ]
    return "\n".join(lines)
