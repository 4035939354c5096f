"""Scale-out: the local and Ray executors give the sequential table; 2-process DDP equals one process."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from compress.cli import main
from compress.errors import CompressError
from compress.executors import RAY_MISSING, run_variants, threads_per_worker
from compress.results import read_table
from compress.run import RunOptions, run_recipes

# Four variants of one cheap student: prune at four ratios, two fine-tuning steps, export; one embedded image.
SWEEP = """\
name: sweep4
student: {arch: fast_arcnn, checkpoint: models/absent/best.safetensors, if_missing: init, init: kaiming}
data: {train: embedded, train_limit: 1, eval: [embedded], limit: 1, qualities: [10]}
stages:
  - {type: prune, ratio: 0.5, round_to: 4}
  - {type: finetune, steps: 2, batch_size: 2, patch_size: 32}
sweep:
  axes: {stages.0.ratio: [0.2, 0.4, 0.6, 0.8]}
"""

TIMING = {"created", "train_wall_s"}  # the only columns allowed to differ between executors


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "sweep4.yaml"
    path.write_text(SWEEP)
    return path


def _run(recipe: Path, results: Path, **kw: Any) -> list[str]:
    opts = RunOptions(results_dir=results, progress=False, threads=1, **kw)
    return [o.status for o in run_recipes([recipe], options=opts, out=lambda _: None)]


def _tables(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    q = read_table(results / "sweep4" / "quality.csv")
    c = read_table(results / "sweep4" / "cost.csv")
    return q.drop(columns=[k for k in TIMING if k in q]), c.drop(columns=[k for k in TIMING if k in c])


@pytest.fixture(scope="module")
def sequential(recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference: the sweep run one variant after another in this process."""
    results = tmp_path_factory.mktemp("seq") / "results"
    assert _run(recipe, results) == ["ran"] * 4
    return _tables(results)


def _assert_same(got: tuple[pd.DataFrame, pd.DataFrame], want: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    for g, w in zip(got, want, strict=True):
        assert len(w) and g.shape == w.shape
        pd.testing.assert_frame_equal(g, w, check_exact=True)


def test_local_pool_gives_the_sequential_table(recipe: Path, sequential: Any, tmp_path: Path) -> None:
    results = tmp_path / "results"
    assert _run(recipe, results, executor="local", workers=2) == ["ran"] * 4
    _assert_same(_tables(results), sequential)
    assert len(sequential[0]) == 4 and sequential[0]["psnr"].nunique() == 4  # four different models
    assert not list((results / "sweep4").glob(".*.tmp"))


def _ray() -> Any:
    """Ray, or a skip where it is not installed, except under ``nox -s tests`` (COMPRESS_REQUIRE_RAY=1), which
    installs the ``ray`` extra: there a broken install fails instead of skipping quietly."""
    if os.environ.get("COMPRESS_REQUIRE_RAY") == "1":
        import ray

        return ray
    return pytest.importorskip("ray")


def test_ray_gives_the_sequential_table_and_skips_done_variants(recipe: Path, sequential: Any, tmp_path: Path) -> None:
    ray = _ray()
    results = tmp_path / "results"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert _run(recipe, results, executor="ray") == ["ran"] * 4
    finally:
        ray.shutdown()
    _assert_same(_tables(results), sequential)
    # the done markers make it idempotent: nothing is scheduled (Ray is not even started) the second time
    assert _run(recipe, results, executor="ray") == ["skipped"] * 4
    assert not ray.is_initialized()


def test_ray_missing_is_one_line(recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["run", str(recipe), "--executor", "ray", "--results", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"compress: error: {RAY_MISSING}" and "pip install 'compress[ray]'" in err


def _dying_task(variant: Any, opts: Any, threads: int, cwd: str) -> Any:
    """A pool worker's task that kills its process for ratio0.4 and pretends to run the others."""
    import os

    from compress.run import VariantOutcome

    if variant.name == "ratio0.4":
        os._exit(3)
    return VariantOutcome(variant.recipe.name, variant.id, "ran", Path(cwd)), [f"fake {variant.name}"]


def test_local_pool_survives_a_dying_worker(recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed worker breaks the pool; the others run again alone and only the killer fails."""
    import compress.executors as ex
    from compress.recipe.expand import load_recipe

    monkeypatch.setattr(ex, "_isolated_task", lambda: _dying_task)
    variants = load_recipe(recipe, check_files=False).variants
    lines: list[str] = []
    with pytest.raises(CompressError) as err:
        run_variants(variants, RunOptions(results_dir=tmp_path / "r", executor="local", workers=2, threads=1),
                     lines.append)
    msg = str(err.value)
    assert msg.startswith("1 of 4 variant(s) failed") and ex.WORKER_DIED in msg
    assert "ratio0.4" in msg and not any(f"ratio{r}" in msg for r in ("0.2", "0.6", "0.8"))
    for name in ("ratio0.2", "ratio0.6", "ratio0.8"):  # the broken pool's other variants, run again alone
        assert f"fake {name}" in lines
    assert any(line.startswith("a worker process died; running") for line in lines)


def test_sequential_sweep_goes_on_past_a_failed_variant(recipe: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """One variant's CompressError (an export check, a diverged fine-tune) does not stop the others."""
    import compress.run as run_mod
    from compress.recipe.expand import load_recipe
    from compress.run import VariantOutcome

    def fake(variant: Any, opts: Any, out: Any) -> Any:
        if variant.name == "ratio0.4":
            raise CompressError("model.onnx: onnxruntime differs from torch")
        return VariantOutcome(variant.recipe.name, variant.id, "ran", tmp_path)

    monkeypatch.setattr(run_mod, "run_variant", fake)
    variants = load_recipe(recipe, check_files=False).variants
    lines: list[str] = []
    with pytest.raises(CompressError) as err:
        run_variants(variants, RunOptions(results_dir=tmp_path / "r"), lines.append)
    msg = str(err.value)
    assert msg.startswith("1 of 4 variant(s) failed") and "ratio0.4" in msg and "differs from torch" in msg
    assert sum(line.startswith("[") for line in lines) == 4  # every variant was tried
    assert any("failed: model.onnx" in line for line in lines)


def test_threads_are_split_fairly_and_options_checked() -> None:
    assert threads_per_worker(2, cores=2) == 1
    assert threads_per_worker(3, cores=8) == 2
    assert threads_per_worker(4, cores=2) == 1
    assert threads_per_worker(2, threads=4, cores=2) == 4
    with pytest.raises(CompressError, match="--workers needs --executor local or ray"):
        run_variants([], RunOptions(workers=2))
    with pytest.raises(CompressError, match="--address needs --executor ray"):
        run_variants([], RunOptions(executor="local", address="auto"))
    with pytest.raises(CompressError, match=r"unknown executor 'lokal'.*did you mean 'local'"):
        run_variants([], RunOptions(executor="lokal"))


# ---------------------------------------------------------------------------------------------
# DDP


def _train_cfg(images: Path, out: Path) -> Any:
    from compress.train import TrainConfig

    return TrainConfig(
        arch="arcnn", images_dir=str(images), outputs_dir=str(out), patch_size=24, batch_size=4, steps=2,
        warmup_steps=0, lr=1e-4, threads=1, val_dataset="", ckpt_every=1,
    )  # a small lr: Adam moves a weight by up to lr whatever its gradient, so a near-zero gradient's rounding shows


def _ddp_worker(rank: int, world: int, init_file: str, images: str, out: str) -> None:
    """One rank: join a gloo group through a file, train two steps, save this rank's weights for comparison."""
    import torch.distributed as dist
    from safetensors.torch import save_file

    from compress.train import Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        trainer = Trainer(_train_cfg(Path(images), Path(out) / f"rank{rank}"), progress=False)
        trainer.fit()
        state = {k: v.detach().contiguous() for k, v in trainer.model.state_dict().items()}
        save_file(state, str(Path(out) / f"weights{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_equal_one_process(tmp_path: Path) -> None:
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from compress.checkpoint import load_model
    from compress.train import Trainer

    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((96, 72), Image.Resampling.BICUBIC).save(images / f"im{i}.png")
    single = Trainer(_train_cfg(images, tmp_path / "single"), progress=False)
    start = {k: v.clone() for k, v in single.model.state_dict().items()}
    single.fit()
    want = single.model.state_dict()

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "pg"), str(images), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = load_file(str(tmp_path / f"weights{rank}.safetensors"))
        assert got.keys() == want.keys()
        for k, v in want.items():
            torch.testing.assert_close(got[k], v, rtol=0, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    # only rank 0 writes, from the unwrapped module: its checkpoint loads in one process
    assert any(not torch.equal(v, start[k]) for k, v in want.items())  # the steps did change the weights
    assert sorted(p.name for p in (tmp_path / "rank1").iterdir()) == []
    model, _ = load_model(tmp_path / "rank0" / "best.safetensors")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, want[k], rtol=0, atol=1e-6)

