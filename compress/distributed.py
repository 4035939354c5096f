"""Data-parallel training over processes: the process group, this process's rank, its slice of a batch.

``compress train --distributed`` runs under ``torchrun``, which starts one process per rank and
describes the group in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``)::

    torchrun --nproc-per-node 2 -m compress train --distributed --recipe recipes/train-rdn-q10.yaml

:class:`compress.train.Trainer` asks this module what to do: without a process group every function
answers as for one process (rank 0 of 1, nothing to reduce), so single-process training is unchanged.
With one, the trainer wraps its model in ``DistributedDataParallel`` and each rank trains on its
contiguous slice of the same deterministic batch: ``batch_size`` stays the global batch, and because
DDP averages gradients over equal slices, a step equals the single-process step up to float rounding.
Only rank 0 validates, logs and writes checkpoints (from the unwrapped module, so they load in one
process).

Backends: ``nccl`` when CUDA is available (one GPU per rank, ``cuda:LOCAL_RANK``), else ``gloo`` on CPU.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from compress.errors import CompressError, TrainingError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def default_backend() -> str:
    """``nccl`` when CUDA is available, else ``gloo``."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_from_env(backend: str | None = None) -> None:
    """Join the process group ``torchrun`` describes in the environment.

    Raises:
        CompressError: not started by torchrun (the message shows how to start it).
    """
    import torch.distributed as dist

    missing = [v for v in TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise CompressError(
            f"--distributed runs under torchrun ({', '.join(missing)} not set): "
            "torchrun --nproc-per-node N -m compress train --distributed ..."
        )
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)


def shutdown() -> None:
    """Leave the process group, if this process is in one."""
    import torch.distributed as dist

    if is_distributed():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether a process group is up."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    import torch.distributed as dist

    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Processes in the group (1 without one)."""
    import torch.distributed as dist

    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's index on its node (``LOCAL_RANK``, set by torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_world_size() -> int:
    """Processes on this node (``LOCAL_WORLD_SIZE``, set by torchrun; 1 otherwise)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def device() -> torch.device:
    """Where this rank trains: its GPU under nccl, else the CPU."""
    import torch.distributed as dist

    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def check_batch(batch_size: int) -> None:
    """The global batch must split into equal slices (unequal ones would weight samples unevenly).

    Raises:
        TrainingError: ``batch_size`` is not a multiple of the world size.
    """
    n = world_size()
    if batch_size % n:
        raise TrainingError(f"batch size {batch_size} does not split over {n} processes; use a multiple of {n}")


def shard(t: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (the batch itself in one process)."""
    n = world_size()
    return t if n == 1 else t.tensor_split(n)[rank()]


def wrap(model: nn.Module) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` under a process group, else ``model`` itself."""
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    dev = device()
    return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over the ranks (itself in one process): every rank sees the same loss."""
    import torch.distributed as dist

    if not is_distributed():
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / world_size()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (e.g. Ctrl-C seen by one rank first)."""
    import torch.distributed as dist

    if not is_distributed():
        return flag
    t = torch.tensor([float(flag)], device=device())
    dist.all_reduce(t)
    return bool(t.item() > 0)
