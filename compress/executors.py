"""Executors: how the selected variants of a study run.

One registry, three entries (``compress run --executor NAME``):

* ``sequential`` (default): one variant after another in this process.
* ``local``: a pool of ``--workers N`` processes on this machine (``concurrent.futures`` with the
  ``spawn`` start method: no forked torch or OpenMP state). Cores are split fairly: each worker gets
  ``max(1, cores // N)`` torch threads unless ``--threads`` says otherwise.
* ``ray``: each variant is a Ray task (``num_cpus`` = its threads) on the cluster at ``--address``
  (``auto``, ``ray://host:10001``), or on a local one started for the run. Ray is an optional extra
  (``pip install 'compress[ray]'``), imported only here and only when asked for.

Every executor funnels into :func:`compress.run.run_variant`, so what a variant does and where its
results go does not depend on the executor: a worker writes its own rows through
:mod:`compress.results` (under its file lock) and only at the end of the variant, then its
``done.json``. A killed or failed worker therefore leaves no partial row and no done marker, and the
next run (or a Ray retry) redoes exactly the variants without a matching run key. Variants already
done are skipped before anything is scheduled.

With the pool executors one failing variant does not stop the others; the failures are reported
together at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.errors import CompressError
from compress.registry import Registry

if TYPE_CHECKING:
    from compress.recipe.expand import Variant
    from compress.run import RunOptions, VariantOutcome

Out = Callable[[str], None]
Executor = Callable[["Sequence[Variant]", "RunOptions", Out], "list[VariantOutcome]"]

EXECUTORS: Registry[Executor] = Registry("executor")
"""Executor name -> function running a list of variants."""

RAY_MAX_RETRIES = 2
"""Ray re-runs a task this many times after a system failure (worker or node died)."""

RAY_RETRY_EXCEPTIONS: tuple[type[BaseException], ...] = (OSError, TimeoutError)
"""Exceptions raised by a variant that Ray retries: file system hiccups and lock timeouts (a shared
disk under load), not :class:`CompressError`, which would fail again the same way."""

RAY_MISSING = "--executor ray needs Ray, an optional extra: pip install 'compress[ray]'"


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_per_worker(workers: int, threads: int | None = None, cores: int | None = None) -> int:
    """Torch threads for each of ``workers`` concurrent variants: ``threads`` if given, else a fair share of cores."""
    if threads:
        return threads
    return max(1, (cores or available_cores()) // max(1, workers))


def run_variants(variants: Sequence[Variant], opts: RunOptions, out: Out = print) -> list[VariantOutcome]:
    """Run ``variants`` with the executor ``opts.executor`` names (the entry point of :func:`compress.run.run_recipes`).

    Raises:
        CompressError: an unknown executor, options that do not fit it, or failed variants.
    """
    run = EXECUTORS.get(opts.executor)
    if opts.workers is not None and opts.workers < 1:
        raise CompressError(f"--workers must be at least 1, got {opts.workers}")
    if opts.workers is not None and opts.executor == "sequential":
        raise CompressError("--workers needs --executor local or ray")
    if opts.address is not None and opts.executor != "ray":
        raise CompressError("--address needs --executor ray")
    return run(variants, opts, out)


# ---------------------------------------------------------------------------------------------
# sequential


@EXECUTORS.register("sequential")
def run_sequential(variants: Sequence[Variant], opts: RunOptions, out: Out = print) -> list[VariantOutcome]:
    """One variant after another in this process.

    A variant that fails with a :class:`CompressError` (a diverged fine-tune, an export check) is reported
    and the sweep goes on; the run then raises one error naming the failed variants (running the same
    command again runs only those). Any other exception is a bug and stops the run with its traceback.
    """
    from compress.run import describe, run_variant

    outcomes = []
    failed: list[tuple[Variant, CompressError]] = []
    for i, v in enumerate(variants, 1):
        out(f"[{i}/{len(variants)}] {v.recipe.name}/{v.id}: {describe(v)}")
        try:
            o = run_variant(v, opts, out)
        except CompressError as exc:
            out(f"  failed: {exc}")
            failed.append((v, exc))
            continue
        out(_status_line(o))
        outcomes.append(o)
    if len(failed) == 1 and len(variants) == 1:
        raise failed[0][1]
    if failed:
        names = "; ".join(f"{v.recipe.name}/{v.id}: {e}" for v, e in failed)
        raise CompressError(f"{len(failed)} of {len(variants)} variant(s) failed (the others are recorded; running "
                            f"the same command again runs only these): {names}")
    return outcomes


# ---------------------------------------------------------------------------------------------
# what runs in a worker


def _worker_env(threads: int, filters: list[Any]) -> None:
    """Thread settings of a fresh worker process, before torch is imported there, and the parent's warning filters."""
    import warnings

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    # A spawned process starts with the default filters; keep what the command silenced. Nothing has warned
    # here yet, so no registry caches the old filters.
    warnings.filters[:] = filters  # type: ignore[index]
    from compress.sysalloc import tune_malloc

    tune_malloc()


def run_isolated(variant: Variant, opts: RunOptions, threads: int, cwd: str) -> tuple[VariantOutcome, list[str]]:
    """Run one variant in a worker with ``threads`` torch threads; returns its outcome and its log lines.

    ``cwd`` is the driver's working directory: recipes name checkpoints relative to it, and a Ray
    worker does not start there.
    """
    import torch

    from compress.run import run_variant

    os.chdir(cwd)
    torch.set_num_threads(threads)
    lines: list[str] = []
    outcome = run_variant(variant, replace(opts, threads=threads, progress=False), lines.append)
    return outcome, lines


def _status_line(o: VariantOutcome) -> str:
    return f"  {o.status}" + (f" in {o.seconds:.0f} s" if o.status == "ran" else " (done before; --force re-runs)")


def _absolute(opts: RunOptions) -> RunOptions:
    """Options whose paths mean the same in a worker that starts elsewhere."""
    data_root = str(Path(opts.data_root).resolve()) if opts.data_root else None
    return replace(opts, results_dir=opts.results_dir.resolve(), data_root=data_root)


def split_done(variants: Sequence[Variant], opts: RunOptions) -> tuple[list[VariantOutcome], list[Variant]]:
    """(outcomes of variants already done with the same run key, variants left to run)."""
    from compress import results
    from compress.run import VariantOutcome, run_key, variant_dir

    skipped: list[VariantOutcome] = []
    todo: list[Variant] = []
    for v in variants:
        folder = variant_dir(opts.results_dir, v)
        done = results.read_done(folder)
        if not opts.force and done is not None and done.get("run_key") == run_key(v)[0]:
            skipped.append(VariantOutcome(v.recipe.name, v.id, "skipped", folder))
        else:
            todo.append(v)
    return skipped, todo


class _Gather:
    """Collects finished variants, prints them as they come, and reports the failures at the end."""

    def __init__(self, total: int, out: Out) -> None:
        self.total = total
        self.out = out
        self.outcomes: list[VariantOutcome] = []
        self.failed: list[tuple[Variant, BaseException]] = []
        self.count = 0

    def _head(self, v: Variant) -> None:
        from compress.run import describe

        self.count += 1
        self.out(f"[{self.count}/{self.total}] {v.recipe.name}/{v.id}: {describe(v)}")

    def ok(self, v: Variant, outcome: VariantOutcome, lines: Sequence[str]) -> None:
        self._head(v)
        for line in lines:
            self.out(line)
        self.out(_status_line(outcome))
        self.outcomes.append(outcome)

    def error(self, v: Variant, exc: BaseException) -> None:
        self._head(v)
        self.out(f"  failed: {type(exc).__name__}: {exc}")
        self.failed.append((v, exc))

    def finish(self, order: Sequence[Variant]) -> list[VariantOutcome]:
        """The outcomes in the order of ``order``; raises if any variant failed."""
        if self.failed:
            names = "; ".join(f"{v.recipe.name}/{v.id}: {type(e).__name__}: {e}" for v, e in self.failed)
            msg = (f"{len(self.failed)} of {self.total} variant(s) failed (the others are recorded; running the "
                   f"same command again runs only these): {names}")
            bug = next((e for _, e in self.failed if not isinstance(e, CompressError)), None)
            if bug is not None:  # a bug, not an expected failure: keep its traceback
                self.out(f"compress: {msg}")
                raise bug
            raise CompressError(msg)
        rank = {v.id: i for i, v in enumerate(order)}
        return sorted(self.outcomes, key=lambda o: rank[o.variant])


# ---------------------------------------------------------------------------------------------
# local process pool


WORKER_DIED = (
    "its worker process died (killed by the system, e.g. out of memory, or a crash in native code); "
    "it was retried alone and died again"
)


def _isolated_task() -> Callable[..., tuple[VariantOutcome, list[str]]]:
    """What a pool worker runs for a variant (a module attribute, so a test can stand in a worker that dies)."""
    return run_isolated


@EXECUTORS.register("local")
def run_local(variants: Sequence[Variant], opts: RunOptions, out: Out = print) -> list[VariantOutcome]:
    """Variants in a pool of ``opts.workers`` spawned processes (default: one per core).

    A worker that dies (killed for memory, a native crash) breaks the whole pool, and every variant
    still in it fails with :class:`BrokenProcessPool`. Those variants run again, each alone in a fresh
    one-worker pool, so only the one that really kills its worker fails (:data:`WORKER_DIED`); the
    others are recorded as usual.
    """
    import multiprocessing
    import warnings
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    opts = _absolute(opts)
    skipped, todo = split_done(variants, opts)
    for o in skipped:
        out(f"{o.recipe}/{o.variant}:" + _status_line(o))
    if not todo:
        return skipped
    cores = available_cores()
    workers = min(opts.workers or cores, len(todo))
    threads = threads_per_worker(workers, opts.threads, cores)
    out(f"{len(todo)} variant(s) on {workers} local worker(s), {threads} thread(s) each")
    gather = _Gather(len(todo), out)
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    task = _isolated_task()

    def run_pool(batch: Sequence[Variant], n_workers: int, last_try: bool) -> list[Variant]:
        """Run ``batch``; returns the variants whose pool broke (to retry), unless this is their last try."""
        broken: list[Variant] = []
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_worker_env,
                                 initargs=(threads, list(warnings.filters))) as pool:
            pending: dict[Future[tuple[VariantOutcome, list[str]]], Variant] = {
                pool.submit(task, v, opts, threads, os.getcwd()): v for v in batch
            }
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        v = pending.pop(fut)
                        try:
                            outcome, lines = fut.result()
                        except BrokenProcessPool:
                            if last_try:
                                gather.error(v, CompressError(WORKER_DIED))
                            else:
                                broken.append(v)
                        except Exception as exc:  # a failed variant does not stop the others
                            gather.error(v, exc)
                        else:
                            gather.ok(v, outcome, lines)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return broken

    retry = run_pool(todo, workers, last_try=False)
    if retry:
        out(f"a worker process died; running {len(retry)} variant(s) again, one at a time: "
            + ", ".join(v.id for v in retry))
    for v in retry:
        run_pool([v], 1, last_try=True)
    out(f"{len(todo)} variant(s) in {time.perf_counter() - t0:.0f} s")
    return skipped + gather.finish(todo)


# ---------------------------------------------------------------------------------------------
# Ray


def import_ray() -> Any:
    """The ``ray`` module, or one clear :class:`CompressError` line when the extra is not installed."""
    try:
        import ray
    except ImportError:
        raise CompressError(RAY_MISSING) from None
    return ray


def _wants_gpu(variant: Variant) -> bool:
    # Recipes have no device key yet (the engine runs on CPU); one set to cuda asks Ray for a GPU.
    return str(getattr(variant.recipe, "device", "cpu")).startswith("cuda")


@EXECUTORS.register("ray")
def run_ray(variants: Sequence[Variant], opts: RunOptions, out: Out = print) -> list[VariantOutcome]:
    """Each variant a Ray task on the cluster at ``opts.address`` (or a local one started for this run).

    The results folder, the data root and the working directory (recipes, ``models/``) must be at the
    same path on every node (a shared file system). Threads per task: ``opts.threads``, else the
    cluster's CPUs split over ``opts.workers``, else 1; Ray runs as many tasks at once as fit.
    """
    ray = import_ray()
    opts = _absolute(opts)
    skipped, todo = split_done(variants, opts)
    for o in skipped:
        out(f"{o.recipe}/{o.variant}:" + _status_line(o))
    if not todo:
        return skipped
    started = not ray.is_initialized()
    if started:
        if opts.address is None:
            ray.init(include_dashboard=False)
        else:
            ray.init(address=opts.address)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        threads = opts.threads or (threads_per_worker(opts.workers, None, cpus) if opts.workers else 1)
        out(f"{len(todo)} variant(s) as Ray tasks on {cpus} CPU(s), {threads} thread(s) each")
        gather = _Gather(len(todo), out)
        t0 = time.perf_counter()
        task = ray.remote(num_cpus=threads, max_retries=RAY_MAX_RETRIES, retry_exceptions=list(RAY_RETRY_EXCEPTIONS))(
            run_isolated
        )
        refs: dict[Any, Variant] = {}
        for v in todo:
            refs[task.options(num_gpus=1 if _wants_gpu(v) else 0).remote(v, opts, threads, os.getcwd())] = v
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                v = refs.pop(ref)
                try:
                    outcome, lines = ray.get(ref)
                except Exception as exc:
                    gather.error(v, getattr(exc, "cause", None) or exc)  # the variant's exception, not Ray's wrapper
                else:
                    gather.ok(v, outcome, lines)
        out(f"{len(todo)} variant(s) in {time.perf_counter() - t0:.0f} s")
        return skipped + gather.finish(todo)
    finally:
        if started:
            ray.shutdown()
