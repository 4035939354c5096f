"""The speed goal of the deployment study: the fastest variant that keeps a quality floor, per target.

Issue #6 sets it as: on this 2-core CPU, the fastest variant that keeps LIVE1 q10 (``idcn-rgb``) at
>= JPEG + 1.0 dB restores a 1280x720 frame in <= 33 ms. This module reads only the results tables
(``quality.csv`` + ``latency.csv`` of each results folder, see :mod:`compress.pareto`) and answers, per
measured target and resolution:

* the fastest variant at or above the floor, its ms/frame and whether it meets the budget;
* when none qualifies: the fastest variant overall (how fast the target gets at all) and the best
  variant's quality (how far the floor is), so a missed goal reads as a measured front, not a "no".

A variant's PSNR on a target is its score in that target's runtime (``deployed.csv``, see
:mod:`compress.deployed`) where it has one, else the torch score; its ms is the median over the variants
that share its graph structure (see :func:`compress.pareto.latency_at`), as on the fronts. As on the fronts,
the seed replicates of one condition (``seeds=mean``, the default) are one candidate at the mean of their
scores, so a lucky seed does not pass the floor for its condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from compress.errors import DataError
from compress.pareto import (
    Seeds,
    Selection,
    condition_of,
    condition_pools,
    deployed_at,
    latency_at,
    load_tables,
    seed_source,
    seeds_label,
)

#: 30 frames per second.
REAL_TIME_MS = 1000.0 / 30.0


@dataclass(frozen=True)
class Goal:
    """The quality floor (gain over the JPEG input on one selection) and the per-frame budget."""

    dataset: str = "live1"
    quality: int = 10
    protocol: str = "idcn-rgb"
    min_gain_db: float = 1.0
    budget_ms: float = REAL_TIME_MS


def speed_goal(results: Sequence[str | Path], goal: Goal = Goal(), machine: str | Sequence[str] | None = None,
               seeds: Seeds | str = Seeds.mean) -> pd.DataFrame:
    """One row per target x resolution that has latency rows: the answer to the speed goal there.

    Columns: ``target``, ``resolution``, ``floor_psnr`` (JPEG + gain), ``variant`` / ``psnr`` / ``ms``
    (fastest qualifying variant; empty when none), ``met`` (it exists and ``ms <= budget_ms``),
    ``fastest_variant`` / ``fastest_psnr`` / ``fastest_ms`` (fastest of all), ``best_variant`` /
    ``best_psnr`` / ``best_ms`` (highest PSNR among the timed ones), ``short_db`` (floor - best PSNR when
    nothing qualifies, else 0), ``distance_of`` (``qualifying``, or ``best`` when nothing qualifies: the variant
    the two distance columns measure), ``ms_over_budget`` (its ms - budget_ms; negative: inside the budget) and
    ``x_budget`` (its ms / budget_ms), ``fastest_gmac_per_s`` (true GMACs per second the runtime sustains on the
    fastest variant) and ``gmac_in_budget`` (the GMACs per frame that rate fits in the budget: how small a
    model would have to be), ``n_timed`` (variants timed themselves), ``n_with_latency`` (those plus the
    untimed variants that share a timed graph and take its median), ``n_deployed`` (how many of those have
    a runtime score), ``machine`` (whose latency and deployed rows: see :func:`compress.pareto.load_tables`,
    default the machine that timed most recently) and the goal's settings.

    ``seeds=mean``: variants whose names differ only in ``seedN`` tokens (one condition, one results folder:
    :func:`compress.pareto.condition_of`) are one candidate named ``<condition> (mean of N seeds)``, at the
    mean of their PSNRs (one score source only, :func:`compress.pareto.seed_source`: a runtime's scores are
    not mixed with torch's; ``(1 of N seeds)`` when one replicate alone has the runtime's score)
    and the median of their ms; the ``seeds`` and ``psnr_sd`` columns (``best_seeds`` for the best one) say
    how many replicates the pick averages and how far apart they lie. ``each``: every variant its own
    candidate.

    Raises:
        DataError: no quality rows for the goal's selection, or no latency rows at all.
    """
    t = load_tables(results, machine)
    q = t.quality
    q = q[(q["dataset"] == goal.dataset) & (q["quality"] == goal.quality) & (q["protocol"] == goal.protocol)]
    if not len(q):
        raise DataError(f"no quality rows for {goal.dataset} q{goal.quality} {goal.protocol} in "
                        f"{', '.join(map(str, results))}")
    if not len(t.latency):
        raise DataError(f"no latency.csv rows in {', '.join(map(str, results))} (run compress latency / "
                        "deploy.measure_results first)")
    scores = q.drop_duplicates("key", keep="last").set_index("key")
    floor = float(scores["jpeg_psnr"].median()) + goal.min_gain_db
    lat = t.latency.drop_duplicates(["key", "target", "resolution"], keep="last")
    rows = []
    for (target, res), _part in lat.groupby(["target", "resolution"], sort=True):
        # every scored variant with a latency here: its own, or (not timed itself) its graph's median
        lk = latency_at(t, str(target), str(res))
        keys = [k for k in lk.ms.index if k in scores.index]
        if not keys:
            continue
        timed = pd.DataFrame({"key": keys, "results": [scores.at[k, "results"] for k in keys],
                              "variant": [scores.at[k, "variant"] for k in keys]})
        # what the target runs: its runtime's score where deployed.csv has one, the median latency of the graph
        dep = deployed_at(t, str(target), Selection(goal.dataset, goal.quality, goal.protocol))
        timed["psnr"] = [float(dep.at[k, "psnr"]) if k in dep.index else float(scores.at[k, "psnr"])
                         for k in timed["key"]]
        timed["psnr_from"] = ["deployed" if k in dep.index else "torch" for k in timed["key"]]
        several = t.quality["results"].nunique() > 1
        timed["name"] = [f"{r}/{v}" if several else str(v) for r, v in zip(timed["results"], timed["variant"],
                                                                             strict=True)]
        timed["ms"] = timed["key"].map(lk.ms).astype(float)
        names = scores["variant_name"] if "variant_name" in scores.columns else scores["variant"]
        timed["condition"] = [condition_of(str(names.at[k])) for k in timed["key"]]
        timed["n_timed"] = timed["key"].map(lk.measured).astype(int)
        timed["n_deployed"] = timed["key"].isin(dep.index).astype(int)
        timed["members"] = 1
        timed["pool"] = condition_pools(t, timed["key"])
        timed = _merge_seeds(timed, several) if Seeds(seeds) is Seeds.mean else \
            timed.assign(seeds=1, psnr_sd=float("nan"))
        # equal times (variants of one graph share a median): the better variant is the answer
        by_speed = timed.sort_values(["ms", "psnr"], ascending=[True, False])
        fastest = by_speed.iloc[0]
        # what the runtime sustains on its fastest variant, and the model size that would fit the budget
        macs = t.cost[t.cost["resolution"] == res].drop_duplicates("key").set_index("key")
        fastest_macs = float(macs["macs_true"].get(fastest["key"], float("nan"))) if "macs_true" in macs else \
            float("nan")
        gmacs_s = fastest_macs / 1e9 / (float(fastest["ms"]) / 1e3)
        best = timed.sort_values(["psnr", "ms"], ascending=[False, True]).iloc[0]
        ok = timed[timed["psnr"] >= floor]
        pick = by_speed[by_speed["psnr"] >= floor].iloc[0] if len(ok) else None
        # how far the goal is: the qualifying variant's ms, or (none qualifies) the best variant's
        ref_ms = float(pick["ms"]) if pick is not None else float(best["ms"])
        rows.append({
            "target": target, "resolution": res, "floor_psnr": round(floor, 4),
            "variant": pick["name"] if pick is not None else "",
            "psnr": float(pick["psnr"]) if pick is not None else float("nan"),
            "ms": float(pick["ms"]) if pick is not None else float("nan"),
            "seeds": int(pick["seeds"]) if pick is not None else 0,
            "psnr_sd": float(pick["psnr_sd"]) if pick is not None else float("nan"),
            "met": bool(pick is not None and float(pick["ms"]) <= goal.budget_ms),
            "fastest_variant": fastest["name"], "fastest_psnr": float(fastest["psnr"]),
            "fastest_ms": float(fastest["ms"]),
            "best_variant": best["name"], "best_psnr": float(best["psnr"]), "best_ms": float(best["ms"]),
            "best_seeds": int(best["seeds"]),
            "short_db": 0.0 if pick is not None else round(floor - float(best["psnr"]), 4),
            "distance_of": "qualifying" if pick is not None else "best",
            "ms_over_budget": ref_ms - goal.budget_ms, "x_budget": ref_ms / goal.budget_ms,
            "fastest_gmac_per_s": gmacs_s, "gmac_in_budget": gmacs_s * goal.budget_ms / 1e3,
            "n_timed": int(timed["n_timed"].sum()), "n_with_latency": int(timed["members"].sum()),
            "n_deployed": int(timed["n_deployed"].sum()), "machine": t.machine, "seed_mode": Seeds(seeds).value,
            **{f"goal_{k}": v for k, v in asdict(goal).items()},
        })
    return pd.DataFrame(rows)


def _merge_seeds(timed: pd.DataFrame, several: bool) -> pd.DataFrame:
    """One candidate per condition (see :func:`speed_goal`, ``seeds=mean``): a results folder's variants with
    the seed taken out of their names, or, where the ``pool`` column (:func:`compress.pareto.condition_pools`)
    has one, the seed replicates of one setting in any folder, named by the first."""
    rows = []
    group = timed["results"].astype(str) + "\0" + timed["condition"].astype(str)
    if "pool" in timed:
        group = timed["pool"].astype(object).where(timed["pool"].notna(), "n:" + group)
    for _, g in timed.groupby(group, sort=False):
        res, cond = str(g["results"].iloc[0]), str(g["condition"].iloc[0])
        if len(g) == 1:
            rows.append(g.iloc[0].to_dict() | {"seeds": 1, "psnr_sd": float("nan")})
            continue
        same = g[g["psnr_from"] == seed_source(g["psnr_from"])]
        mean = float(same["psnr"].mean())
        rep = same.loc[(same["psnr"] - mean).abs().idxmin()]  # the replicate to ship: nearest the mean
        label = seeds_label(str(cond), len(same), len(g))
        rows.append(rep.to_dict() | {
            "psnr": mean, "psnr_sd": float(same["psnr"].std(ddof=1)), "seeds": len(same),
            "ms": float(g["ms"].median()), "name": f"{res}/{label}" if several else label,
            "n_timed": int(g["n_timed"].sum()), "n_deployed": int(g["n_deployed"].sum()), "members": len(g),
        })
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame, fronts: str | Path | None = None) -> str:
    """The speed-goal table as markdown (ms rounded to 0.1, PSNR to 0.001). ``fronts``: the folder of the
    Pareto fronts made from the same tables (``compress pareto ... --out FRONTS``); the report names the
    goal's selection in it (``FRONTS/<dataset>-q<quality>-<protocol>/``)."""
    if not len(table):
        return "(no timed variants)\n"
    g = table.iloc[0]
    lines = [
        f"Goal: fastest variant with {g['goal_dataset']} q{g['goal_quality']} ({g['goal_protocol']}) PSNR >= "
        f"{g['floor_psnr']:.2f} dB (JPEG + {g['goal_min_gain_db']:.1f}) within {g['goal_budget_ms']:.1f} ms/frame.",
        "",
        f"Latency measured on: {g.get('machine', '') or 'every machine in the tables'}.",
        "",
    ]
    if fronts is not None:
        sel = Selection(str(g["goal_dataset"]), int(g["goal_quality"]), str(g["goal_protocol"])).slug()
        root = Path(fronts).as_posix().rstrip("/")
        folder = f"{root}/{sel}/"
        # compress pareto --dataset writes fronts.html in the selection's folder, --all one page beside them
        page = (", `fronts.html`" if Path(folder, "fronts.html").is_file() else
                f"; interactive: `{root}/fronts.html#{sel}`" if Path(root, "fronts.html").is_file() else "")
        lines += [f"The measured fronts (ms/frame vs PSNR per target) from the same tables and machine(s): "
                  f"`{folder}` (`front-<target>.png` / `.svg`, `front.csv`, `points.csv`{page}).", ""]
    lines += [
        "| target | resolution | qualifying variant | PSNR | ms | met | over budget (ms) | x budget | fastest variant "
        "| its PSNR | ms | best PSNR (ms) | short by (dB) | GMAC/s on the fastest | GMAC/frame in budget |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        pick = f"{r.variant} | {r.psnr:.3f} | {r.ms:.1f}" if r.variant else "none | |"
        of = "" if r.distance_of == "qualifying" else " (best)"
        lines.append(f"| {r.target} | {r.resolution} | {pick} | {'yes' if r.met else 'no'} | "
                     f"{r.ms_over_budget:+.1f}{of} | {r.x_budget:.2f}{of} | {r.fastest_variant} | "
                     f"{r.fastest_psnr:.3f} | {r.fastest_ms:.1f} | {r.best_psnr:.3f} ({r.best_ms:.1f}) | "
                     f"{r.short_db:.3f} | {r.fastest_gmac_per_s:.1f} | {r.gmac_in_budget:.2f} |")
    lines += ["", "PSNR is the target runtime's own score where `deployed.csv` has one (else torch's); ms is the "
              "median over the variants that share a graph structure. A condition run with several seeds is one "
              "candidate at the mean of their PSNRs (named '(mean of N seeds)'; '(1 of N seeds)' where one replicate "
              "alone was scored in the runtime). Over budget (ms) = ms - budget (negative: inside it) and x budget = "
              "ms / budget, of the qualifying variant, or of the best one '(best)' where none qualifies. "
              "GMAC/frame in budget = the true "
              "MACs the runtime sustains on its fastest variant x the budget: the size a model must shrink to (at that "
              "efficiency) to run in real time."]
    return "\n".join(lines) + "\n"


def write_speed_goal(results: Sequence[str | Path], out_dir: str | Path, goal: Goal = Goal(),
                     machine: str | Sequence[str] | None = None, seeds: Seeds | str = Seeds.mean,
                     fronts: str | Path | None = None) -> list[Path]:
    """Write ``speed_goal.csv`` and ``speed_goal.md`` into ``out_dir``; return both paths. ``fronts``: see
    :func:`to_markdown`."""
    table = speed_goal(results, goal, machine, seeds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv, md = out / "speed_goal.csv", out / "speed_goal.md"
    table.to_csv(csv, index=False)
    md.write_text(to_markdown(table, fronts), encoding="utf-8")
    return [csv, md]
