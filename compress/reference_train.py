"""The brief's reference training loop, re-run here to time it (issue 9's reference curve, measured).

Issue 9 quotes the reference implementation's time-to-quality as measured on another machine. To give a
speed-up "measured on the same machine", this module re-runs that loop as the reference ``main.py``
and ``dataset.py`` of the brief are written, with the project's ``arcnn`` / ``fast_arcnn`` modules (the
reference's layout, parameter names and N(0, 0.001) initialisation):

* one patch per image per epoch: each item decodes its image, optionally rescales (p = 0.5, 0.6-0.9,
  bicubic) and rotates (p = 0.5, 90/180/270), crops a patch and JPEG-compresses the patch alone
  (:class:`compress.data.patches.ReferenceLoader`);
* ``DataLoader(shuffle=True, num_workers=threads, drop_last=True)``, workers started again every epoch;
* ``MSELoss``, Adam at ``lr`` for ``base`` and ``lr * 0.1`` for ``last``, constant, no clipping;
* fp32, the default memory layout, ``torch`` threads left at their default (the cores).

The run is stopped at a wall-time limit (the reference has no such flag: it runs ``num_epochs``), and
the weights are kept at wall-time marks like :func:`compress.ttq.train_with_snapshots`, so the two curves
are read the same way. Only the seed, the data folder and the limit differ from the brief's command.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.bench import load_avg, machine
from compress.errors import ConfigError
from compress.fsio import atomic_write_bytes
from compress.ttq import REFERENCE_RECIPE, RUN_INFO, Snapshot, save_snapshots

__all__ = ["REFERENCE_RECIPE", "ReferenceConfig", "train_reference", "train_reference_run"]


@dataclass(frozen=True)
class ReferenceConfig:
    """The reference command's flags (``--arch --images_dir --jpeg_quality --patch_size --batch_size --lr
    --threads --seed --use_augmentation``) plus the wall-time limit of this re-run."""

    images_dir: str
    arch: str = "arcnn"
    jpeg_quality: int = 10
    patch_size: int = 24
    batch_size: int = 16
    lr: float = 5e-4
    threads: int = 2
    seed: int = 123
    use_augmentation: bool = True
    minutes: float = 30.0

    def as_train_config(self, steps: int) -> Any:
        """The nearest :class:`compress.train.TrainConfig` (for scoring and the ttq.csv columns): constant lr,
        no clipping, the reference initialisation, fp32."""
        from compress.train import TrainConfig

        return TrainConfig(arch=self.arch, images_dir=self.images_dir, qualities=(self.jpeg_quality,),
                           patch_size=self.patch_size, batch_size=self.batch_size, steps=max(steps, 1), lr=self.lr,
                           min_lr_ratio=1.0, warmup_steps=0, grad_clip=0.0, loss="l2", init="reference",
                           threads=max(self.threads, 1), workers=self.threads, seed=self.seed,
                           augment=self.use_augmentation)


def _model(arch: str) -> nn.Module:
    from compress.nets import build_model

    if arch not in ("arcnn", "fast_arcnn"):
        raise ConfigError(f"the reference code trains arcnn or fast_arcnn, not {arch!r}")
    return build_model(arch)


def train_reference(
    cfg: ReferenceConfig, *, marks_s: Sequence[float], progress: bool = True,
) -> tuple[list[Snapshot], dict[str, Any]]:
    """Run the reference loop until ``cfg.minutes``; keep the weights at the first step past each mark and at
    the end. Returns the snapshots and counters (steps, epochs, patches/s, fraction of time spent waiting
    for the loader)."""
    from tqdm import tqdm

    from compress.data.patches import ReferenceLoader, list_images

    marks = sorted(m for m in marks_s if m < 60 * cfg.minutes)
    if any(m <= 0 for m in marks):
        raise ConfigError(f"wall-time marks must be > 0 seconds, got {list(marks_s)}")
    files = list_images(cfg.images_dir)
    if len(files) < cfg.batch_size:
        raise ConfigError(f"{cfg.images_dir}: {len(files)} images, fewer than one batch of {cfg.batch_size}")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = _model(cfg.arch)
    criterion = nn.MSELoss()
    base, last = model.get_submodule("base"), model.get_submodule("last")
    groups: list[dict[str, Any]] = [
        {"params": base.parameters()},
        {"params": last.parameters(), "lr": cfg.lr * 0.1},
    ]
    optimizer = torch.optim.Adam(groups, lr=cfg.lr)
    dataset = ReferenceLoader(files, cfg.patch_size, cfg.jpeg_quality, augment=cfg.use_augmentation)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True,
                                         num_workers=cfg.threads, drop_last=True)
    snaps: list[Snapshot] = []
    pending = list(marks)
    step = epochs = 0
    wait_s = 0.0
    limit_s = 60.0 * cfg.minutes
    bar = tqdm(total=int(limit_s), unit="s", disable=not progress, desc=f"reference {cfg.arch}")

    def keep() -> None:
        snaps.append(Snapshot(time.perf_counter() - t0, step, load_avg(), copy.deepcopy(model.state_dict())))

    done = False
    while not done:
        t_wait = time.perf_counter()
        for inputs, labels in loader:
            wait_s += time.perf_counter() - t_wait
            preds = model(inputs)
            loss = criterion(preds, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            elapsed = time.perf_counter() - t0
            # per step, as the reference's tqdm (which redraws at most every 0.1 s)
            bar.set_postfix(loss=f"{loss.item():.6f}", step=step, refresh=False)
            bar.update(min(int(elapsed), int(limit_s)) - bar.n)
            if pending and elapsed >= pending[0]:
                keep()
                while pending and pending[0] <= elapsed:
                    pending.pop(0)
            if elapsed >= limit_s:
                done = True
                break
            t_wait = time.perf_counter()
        epochs += 1
    bar.close()
    if not snaps or snaps[-1].step != step:
        keep()
    total = time.perf_counter() - t0
    stats = {"steps": step, "epochs": epochs, "seconds": round(total, 1),
             "patches_per_s": round(step * cfg.batch_size / total, 1), "loader_wait_fraction": round(wait_s / total, 4)}
    return snaps, stats


def train_reference_run(
    cfg: ReferenceConfig, run_dir: Path, *, marks_s: Sequence[float], progress: bool = True,
) -> Path:
    """:func:`train_reference` into ``run_dir`` (replaced): ``snapshots/`` and ``ttq_run.json``, the layout
    :func:`compress.ttq.score_runs` reads."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    la0 = load_avg()
    snaps, stats = train_reference(cfg, marks_s=marks_s, progress=progress)
    save_snapshots(run_dir, snaps)
    info = {"recipe": REFERENCE_RECIPE, "reference": asdict(cfg), "stats": stats, "threads": cfg.threads,
            "load_avg_at_start": la0, "measured": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine()}
    atomic_write_bytes(run_dir / RUN_INFO, json.dumps(info, indent=1).encode())
    return run_dir
