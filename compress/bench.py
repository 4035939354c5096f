"""Benchmarks: machine peak, training throughput per precision / layout, input pipeline speed.

Each benchmark writes a tidy CSV under ``results/bench/`` with the machine description and the load
average in columns, so numbers taken on a busy machine are recognisable as such. Benchmarks time;
tests do not.
"""

from __future__ import annotations

import csv
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

BENCH_DIR = Path("results/bench")


def machine() -> dict[str, Any]:
    """What the numbers were measured on (``cpu``: model name and vector extensions, see
    :func:`compress.deploy.cpu_name`)."""
    from compress.deploy import cpu_name

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def _time(fn: Callable[[], Any], *, warmup: int, reps: int) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def matmul_peak(threads: int) -> dict[str, float]:
    """GFLOP/s of a square matmul in fp32 and bf16 (see :func:`compress.deploy.matmul_peak`)."""
    from compress.deploy import matmul_peak as measure

    return {k: v.gflops for k, v in measure(threads=threads).items()}


@dataclass(frozen=True)
class TrainSpeed:
    model: str
    setting: str
    patch: int
    batch: int
    threads: int
    ms_per_step: float
    pixels_per_s: float
    gmacs_per_s: float
    fraction_of_fp32_peak: float
    fraction_of_bf16_peak: float
    load_avg: float
    note: str = ""


def _train_step_fn(model: nn.Module, setting: str, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    bf16 = "bf16" in setting
    if "channels_last" in setting:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
        y = y.contiguous(memory_format=torch.channels_last)
    fwd: Callable[[torch.Tensor], torch.Tensor] = model
    if "compile" in setting:
        fwd = torch.compile(model)  # type: ignore[assignment]
    opt = torch.optim.Adam(model.parameters(), 1e-4)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = fwd(x)
        loss = nn.functional.mse_loss(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def training_speed(
    models: Iterable[str], settings: Iterable[str], patches: Iterable[int], *, batch: int = 16, threads: int = 2,
    reps: int = 5, peak: dict[str, float] | None = None,
) -> list[TrainSpeed]:
    """Forward + backward + Adam step throughput; MAC/s counts 3x the forward MACs (fwd + 2 for backward)."""
    from compress.cost import profile_frame
    from compress.nets import build_model

    torch.set_num_threads(threads)
    peak = peak or matmul_peak(threads)
    rows = []
    too_slow: dict[tuple[str, str], str] = {}  # (model, setting) -> why larger patches are not measured
    for name in models:
        fp32_s: float | None = None
        for p in patches:
            for setting in settings:
                if (name, setting) in too_slow:
                    nan = float("nan")
                    rows.append(TrainSpeed(name, setting, p, batch, threads, nan, nan, nan, nan, nan, load_avg(),
                                           too_slow[(name, setting)]))
                    print(f"{name:10s} {setting:22s} p{p:<3d} skipped: {too_slow[(name, setting)]}", flush=True)
                    continue
                torch.manual_seed(0)
                model = build_model(name)
                ch = 3
                x = torch.rand(batch, ch, p, p)
                y = torch.rand(batch, ch, p, p)
                step = _train_step_fn(model, setting, x, y)
                try:
                    t0 = time.perf_counter()
                    step()  # first step: compiles / warms up; a very slow setting (bf16 without native bf16
                    first = time.perf_counter() - t0  # units) is measured once more, not reps times
                    slow = first > 5.0 and "compile" not in setting
                    s = _time(step, warmup=0 if slow else 1, reps=1 if slow else reps)
                except Exception as exc:  # torch.compile may be unavailable (no compiler): record, go on
                    print(f"{name} {setting} p{p}: failed ({str(exc).splitlines()[0][:120]})")
                    continue
                macs = profile_frame(model, ch, p, p).macs_true * batch * 3
                gmacs = macs / s / 1e9
                if setting == "fp32":
                    fp32_s = s
                elif fp32_s is not None and s > 10 * fp32_s:
                    too_slow[(name, setting)] = f"{s / fp32_s:.0f}x slower than fp32 at patch {p}: larger not run"

                rows.append(
                    TrainSpeed(
                        name, setting, p, batch, threads, s * 1e3, batch * p * p / s, gmacs,
                        2 * gmacs / peak["fp32"], 2 * gmacs / peak["bf16"], load_avg(),
                    )
                )
                print(f"{name:10s} {setting:22s} p{p:<3d} {s * 1e3:8.1f} ms/step {batch * p * p / s / 1e3:8.1f} kpx/s "
                      f"{gmacs:6.1f} GMAC/s  load {load_avg()}", flush=True)
    return rows


def loader_speed(images_dir: str | Path, *, patch: int = 24, batch: int = 16, quality: int = 10, seconds: float = 20.0,
                 limit: int | None = None) -> dict[str, float]:
    """Patches/s of the reference loader (decode per patch) and of :class:`PatchBatches`, one process each."""
    import random

    from compress.data.patches import PatchBatches, PatchConfig, ReferenceLoader, list_images, load_training_images

    files = list_images(images_dir)[:limit]
    random.seed(0)
    ref = ReferenceLoader(files, patch, quality, augment=True)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ref[n % len(ref)]
        n += 1
    ref_rate = n / (time.perf_counter() - t0)
    t_setup = time.perf_counter()
    fast = PatchBatches(load_training_images(images_dir, limit=limit),
                        PatchConfig(patch, batch, (quality,), "rgb", True, 0))
    setup_s = time.perf_counter() - t_setup
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fast[n]
        n += 1
    fast_rate = n * batch / (time.perf_counter() - t0)
    return {
        "reference_patches_per_s": ref_rate, "fast_patches_per_s": fast_rate, "ratio": fast_rate / ref_rate,
        "fast_setup_s": setup_s, "images": float(len(files)), "patch": float(patch), "load_avg": load_avg(),
    }


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = machine()
    rows = [{**r, **{f"machine_{k}": v for k, v in m.items()}, "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
            for r in rows]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def run_training_bench(out: Path = BENCH_DIR, *, quick: bool = False) -> Path:
    threads = min(2, os.cpu_count() or 1)
    peak = matmul_peak(threads)
    print(f"matmul peak on {threads} threads: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    models = ["arcnn", "fast_arcnn"] if quick else ["arcnn", "fast_arcnn", "rdn_s", "idcn_s"]
    settings = ["fp32", "channels_last", "bf16", "channels_last+bf16", "compile"]
    patches = [48] if quick else [24, 48, 96]
    dicts: list[dict[str, Any]] = []
    path = out / "train_speed.csv"
    for name in models:  # the table is rewritten after each model: an interrupted run keeps what it measured
        rows = training_speed([name], settings, patches, threads=threads, peak=peak, reps=3)
        dicts += [{**asdict(r), "peak_fp32_gflops": peak["fp32"], "peak_bf16_gflops": peak["bf16"]} for r in rows]
        write_csv(path, dicts)
    return path


def evaluation_time(
    models: Iterable[str], *, dataset: str = "live1", quality: int = 10, data_root: str | None = None,
    threads: int = 2, limit: int | None = None,
) -> list[dict[str, Any]]:
    """Wall time of ``compress evaluate`` (whole pipeline: JPEG, inference, all three metrics) per model.

    Weights are the architectures' initial ones: the time does not depend on their values.
    """
    from compress.evaluate import evaluate_model
    from compress.nets import MODELS, build_model

    torch.set_num_threads(threads)
    rows = []
    for name in ["jpeg", *models]:
        model = None if name == "jpeg" else build_model(name, MODELS.get(name).default_channels).eval()
        protocol = "idcn-rgb" if name == "jpeg" or MODELS.get(name).default_channels == 3 else "arcnn-y"
        la = load_avg()
        t0 = time.perf_counter()
        res = evaluate_model(model, dataset, [quality], protocol, data_root=data_root, limit=limit, progress=False,
                             model_name=name)
        s = time.perf_counter() - t0
        rows.append({"model": name, "dataset": dataset, "quality": quality, "protocol": protocol,
                     "n_images": res[0].n_images, "seconds": round(s, 2),
                     "seconds_per_image": round(s / res[0].n_images, 3), "threads": threads, "load_avg": la})
        print(f"evaluate {name:10s} {dataset} q{quality}: {s:7.1f} s ({s / res[0].n_images:.2f} s/image), "
              f"load {la}", flush=True)
    return rows
