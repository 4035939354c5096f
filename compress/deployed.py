"""Deployed quality: every variant's exported graph scored in the runtime of each measured target.

The quality table (``quality.csv``) scores the torch model; an INT8 graph in onnxruntime or OpenVINO
can lose more than its fake-quantized torch twin (kernels round and saturate differently), and a
front that promises torch's PSNR at the runtime's latency would overstate what a user deploys. This
module runs ``<variant>/model.onnx`` through :func:`compress.deploy.runtime_model` on each measured
target the variant fits (the target's precision for its bits, as the latency measurement does) and
upserts ``results/<recipe>/deployed.csv``: one row per variant x target x dataset x JPEG quality x
protocol, with the torch score beside it. :mod:`compress.pareto` and :mod:`compress.speedgoal` use
these rows for a target when present, so fronts and the speed goal judge what is deployed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from compress.errors import CompressError
from compress.results import DEPLOYED_COLUMNS, DEPLOYED_FILE, DEPLOYED_KEY, append_rows, now_iso
from compress.targets import Target


def _torch_scores(root: Path, dataset: str, quality: int, protocol: str) -> dict[str, float]:
    import pandas as pd

    path = root / "quality.csv"
    if not path.is_file():
        return {}
    q = pd.read_csv(path)
    q = q[(q["dataset"] == dataset) & (q["quality"] == quality) & (q["protocol"] == protocol)]
    return {str(v): float(p) for v, p in zip(q["variant"], q["psnr"], strict=True)}


def _variant_qualities(root: Path) -> dict[str, set[int]]:
    """Variant -> the JPEG qualities its recipe evaluates it at (``quality.csv``; empty without the table)."""
    import pandas as pd

    path = root / "quality.csv"
    if not path.is_file():
        return {}
    q = pd.read_csv(path, usecols=["variant", "quality"])
    return {str(v): {int(x) for x in g["quality"]} for v, g in q.groupby("variant")}


def score_results(
    results_dir: str | Path,
    targets: Sequence[Target],
    *,
    dataset: str = "live1",
    quality: int = 10,
    protocol: str = "idcn-rgb",
    threads: int = 2,
    only: Sequence[str] | None = None,
    skip_done: bool = False,
    data_root: str | Path | None = None,
    limit: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Score each variant's ONNX graph in every measured target it can run; upsert ``deployed.csv``.

    ``only`` keeps the variants whose id or readable name is listed. With ``skip_done`` a variant x
    target x selection already scored for the same ONNX file (SHA-256) is not scored again. Variants
    whose ONNX file is missing (not committed: off every front) are skipped with a message.

    Returns:
        The path of ``deployed.csv``.

    Raises:
        CompressError: no cost table, no measured target, or nothing left to score.
    """
    import pandas as pd

    from compress.deploy import cpu_name, machine_rows, runtime_model, sha256
    from compress.evaluate import evaluate_model

    root = Path(results_dir)
    cost_path = root / "cost.csv"
    if not cost_path.is_file():
        raise CompressError(f"{cost_path}: no cost table (run the recipe first)")
    measured = [t for t in targets if t.measured]
    if not measured:
        raise CompressError("no measured target given (analytic targets have no runtime to score in)")
    cost = pd.read_csv(cost_path).drop_duplicates("variant")
    if only:
        wanted = set(only)
        cost = cost[cost["variant"].astype(str).isin(wanted) | cost["variant_name"].astype(str).isin(wanted)]
        if not len(cost):
            raise CompressError(f"{root}: no variant named {', '.join(sorted(wanted))}")
    out = root / DEPLOYED_FILE
    cpu = cpu_name()
    done: set[tuple[str, ...]] = set()
    if skip_done and out.is_file():
        old = pd.read_csv(out)
        old = machine_rows(old, cpu)
        done = {tuple(map(str, r)) for r in old[["variant", "target", "dataset", "quality", "protocol",
                                                 "onnx_sha256"]].itertuples(index=False)}
    torch_psnr = _torch_scores(root, dataset, quality, protocol)
    scored_at = _variant_qualities(root)
    for row in cost.itertuples(index=False):
        variant = str(row.variant)
        if variant in scored_at and quality not in scored_at[variant]:
            log(f"{variant}: made for q{'/'.join(map(str, sorted(scored_at[variant])))}, not q{quality} "
                "(models are scored at the qualities they were trained for): skipped")
            continue
        onnx = Path(str(row.onnx_path))
        onnx = onnx if onnx.is_absolute() else root / onnx
        if not onnx.is_file():
            log(f"{variant}: no {onnx} (weights and ONNX are committed for front variants only): skipped")
            continue
        digest = sha256(onnx)
        for t in measured:
            prec = t.precision_for(int(row.weight_bits), int(row.act_bits))
            if prec is None:
                continue
            if (variant, t.name, dataset, str(quality), protocol, digest) in done:
                continue
            model = runtime_model(onnx, t.runtime, precision=prec, threads=threads, io=t.io)
            res = evaluate_model(model, dataset, [quality], protocol, data_root=data_root, limit=limit,
                                 progress=progress, model_name=f"{variant}@{t.name}")[0]
            ref = torch_psnr.get(variant, float("nan"))
            rec: dict[str, Any] = {
                "recipe": str(row.recipe), "variant": variant, "variant_name": str(row.variant_name),
                "target": t.name, "runtime": t.runtime.value, "precision": model.precision,
                "dataset": res.dataset, "quality": quality, "protocol": protocol, "n_images": res.n_images,
                "psnr": res.psnr, "ssim": res.ssim, "psnrb": res.psnrb, "jpeg_psnr": res.jpeg_psnr,
                "torch_psnr": ref, "delta_psnr": res.psnr - ref, "threads": threads,
                "onnx_path": str(row.onnx_path), "onnx_sha256": digest,
                "runtime_version": model.version, "cpu": cpu, "timestamp": now_iso(),
            }
            append_rows(out, [rec], DEPLOYED_KEY, list(DEPLOYED_COLUMNS))
            log(f"{variant} @ {t.name} ({model.precision}): {res.dataset} q{quality} PSNR {res.psnr:.4f} "
                f"(torch {ref:.4f}, {res.psnr - ref:+.4f} dB)")
    if not out.is_file():
        raise CompressError(f"{root}: no variant could be scored (no ONNX files, or no target runs them)")
    return out
