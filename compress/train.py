"""The training loop (also used by fine-tuning, distillation and QAT).

One loop for every model: Adam, warm-up + cosine learning rate, gradient clipping, L1 or L2 loss,
optional channels_last / bf16 autocast, a checkpoint every N steps and on Ctrl-C, exact resume,
validation every N steps with best-checkpoint tracking, a tqdm bar, a CSV log and a PNG curve.

Exact resume: batch ``i`` is a pure function of ``(seed, i)`` (see :mod:`compress.data.patches`),
the learning rate a function of the step, and the optimizer state is saved with the weights, so a
run stopped at step ``k`` and resumed ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compress import distributed
from compress.checkpoint import EXTRA_PREFIX, read_checkpoint, save_checkpoint
from compress.data.patches import PatchBatches, PatchConfig, load_training_images
from compress.errors import CheckpointError, ConfigError, TrainingError
from compress.fsio import atomic_write_bytes
from compress.nets import build_model, count_params

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (saved as ``config.json`` beside the checkpoints)."""

    arch: str = "arcnn"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    images_dir: str = ""
    outputs_dir: str = "out"
    color: str = "rgb"
    qualities: tuple[int, ...] = (10,)
    patch_size: int = 48
    batch_size: int = 16
    steps: int = 2000
    lr: float = 1e-3
    min_lr_ratio: float = 0.01
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    loss: str = "l2"
    init: str = "identity"
    init_from: str | None = None
    threads: int = 2
    workers: int = 0
    seed: int = 123
    augment: bool = True
    precision: str = "fp32"
    channels_last: bool = False
    val_dataset: str = "bsds500_val"
    val_limit: int | None = 20
    val_every: int = 250
    ckpt_every: int = 250
    val_precision: str = "fp32"
    weights_dtype: str = "fp32"
    data_root: str | None = None
    image_limit: int | None = None

    def __post_init__(self) -> None:
        problems = config_problems(self)
        if problems:
            raise ConfigError("invalid training settings: " + "; ".join(problems))

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1


# Settings a resumed run may change: where the data and outputs live and how many threads run (they
# differ between machines), and when and how the run is checked (validation cadence and precision,
# checkpoint cadence), and the dtype best.safetensors stores its parameters in, which never change the weights
# it computes. The best checkpoint of a resumed run is the best of the validations both parts made.
RESUME_FREE = frozenset({"outputs_dir", "threads", "workers", "images_dir", "data_root",
                         "val_every", "ckpt_every", "val_precision", "weights_dtype"})


#: ``weights_dtype``: how best.safetensors (the shipped weights) stores the parameters (``None``: as trained);
#: last.safetensors (the resume state) always keeps fp32
WEIGHTS_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def native_bf16() -> bool:
    """Whether bf16 autocast is a fast path here: a GPU, or a CPU with AVX-512 BF16 or AMX (on AVX2-only
    CPUs autocast emulates bf16 and runs 10x slower than fp32: results/bench/train_speed.csv)."""
    if torch.cuda.is_available():
        return True
    from compress.deploy import cpu_isa

    isa = cpu_isa().split("+")
    return "bf16" in isa or "amx" in isa


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16`, else ``fp32``; ``fp32`` / ``bf16`` unchanged.

    bf16 autocast (with the fp32 master weights, Adam state and loss) ended within 0.002 dB of fp32 at equal
    steps (README, Training speed), so ``auto`` picks the fastest setting that keeps quality. It is resolved
    before a run starts: ``config.json`` and the model card record what ran.
    """
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


def config_problems(cfg: TrainConfig) -> list[str]:
    """Every out-of-range or unknown value of ``cfg`` (flags use the same names with dashes), or ``[]``."""
    out: list[str] = []

    def need(ok: bool, msg: str) -> None:
        if not ok:
            out.append(msg)

    need(8 <= cfg.patch_size <= 512, f"patch_size must be in 8..512, got {cfg.patch_size}")
    need(cfg.batch_size >= 1, f"batch_size must be at least 1, got {cfg.batch_size}")
    need(cfg.steps >= 1, f"steps must be at least 1, got {cfg.steps}")
    need(math.isfinite(cfg.lr) and 0 < cfg.lr <= 1, f"lr must be in (0, 1], got {cfg.lr}")
    need(0 <= cfg.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {cfg.min_lr_ratio}")
    need(cfg.warmup_steps >= 0, f"warmup_steps must be >= 0, got {cfg.warmup_steps}")
    need(cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}")
    need(cfg.grad_clip >= 0, f"grad_clip must be >= 0, got {cfg.grad_clip}")
    need(bool(cfg.qualities), "give at least one JPEG quality")
    bad_q = [q for q in cfg.qualities if not 1 <= q <= 100]
    need(not bad_q, f"JPEG quality must be in 1..100, got {', '.join(map(str, bad_q))}")
    need(cfg.color in ("rgb", "y"), f"unknown color {cfg.color!r}; valid: rgb, y")
    need(cfg.loss in ("l1", "l2"), f"unknown loss {cfg.loss!r}; valid: l1, l2")
    need(cfg.init in ("reference", "identity", "kaiming"),
         f"unknown init {cfg.init!r}; valid: reference, identity, kaiming")
    need(cfg.precision in ("fp32", "bf16"), f"unknown precision {cfg.precision!r}; valid: fp32, bf16")
    need(cfg.threads >= 1, f"threads must be at least 1, got {cfg.threads}")
    need(cfg.workers >= 0, f"workers must be >= 0, got {cfg.workers}")
    need(cfg.val_precision in ("fp32", "bf16"),
         f"unknown val_precision {cfg.val_precision!r}; valid: fp32, bf16")
    need(cfg.weights_dtype in WEIGHTS_DTYPES,
         f"unknown weights_dtype {cfg.weights_dtype!r}; valid: {', '.join(WEIGHTS_DTYPES)}")
    need(cfg.val_every >= 1, f"val_every must be at least 1, got {cfg.val_every}")
    need(cfg.ckpt_every >= 1, f"ckpt_every must be at least 1, got {cfg.ckpt_every}")
    for key in ("val_limit", "image_limit"):
        v = getattr(cfg, key)
        need(v is None or v >= 1, f"{key} must be at least 1, got {v}")
    return out


# ---------------------------------------------------------------------------------------------
# initialisation


def init_identity_(model: nn.Module) -> bool:
    """Make a conv chain (ARCNN, or Fast ARCNN's stride-s encoder and deconvolution) start as the identity map.

    ARCNN (every conv stride 1): the first ``C`` channels of every conv carry the input through a
    centre tap of 1. Fast ARCNN (first conv stride ``s``, last a ``ConvTranspose2d`` of stride ``s``):
    the first conv is a space-to-depth, its ``C * s * s`` first channels take the pixel at offset
    ``(a, b)`` of each ``s x s`` cell; the middle convs carry them through centre taps, and the
    deconvolution puts each back at its offset (depth-to-space). Inputs are in [0, 1], so PReLU/ReLU
    pass them unchanged; the other channels get small He-initialised weights and the last layer reads
    them through zero weights. The network starts at the JPEG baseline and learns the correction, which
    is what residual learning buys, with the architecture and its state-dict unchanged. Returns False
    (model untouched) if the model is not such a chain.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    if not convs or any(m.groups != 1 or m.dilation != (1, 1) for m in convs):
        return False
    first, last, middle = convs[0], convs[-1], convs[1:-1]
    s = first.stride[0]
    if first.stride != (s, s) or isinstance(first, nn.ConvTranspose2d) or any(
        isinstance(m, nn.ConvTranspose2d) or m.stride != (1, 1) for m in middle
    ):
        return False
    if s == 1:
        if isinstance(last, nn.ConvTranspose2d) or last.stride != (1, 1):
            return False
    elif not (isinstance(last, nn.ConvTranspose2d) and last.stride == (s, s)):
        return False
    c = first.in_channels
    carried = c * s * s  # channels that carry the input (space-to-depth for s > 1)
    if last.out_channels != c or any(m.out_channels < carried for m in convs[:-1]):
        return False

    def centred(m: nn.Conv2d | nn.ConvTranspose2d) -> bool:
        return tuple(m.padding) == (m.kernel_size[0] // 2, m.kernel_size[1] // 2)

    # tap (p + a) of the first conv reads pixel s*i + a; tap (p + a) of the deconvolution writes it back there
    ends_fit = all(not isinstance(m.padding, str) and m.padding[0] + s <= m.kernel_size[0]
                   and m.padding[1] + s <= m.kernel_size[1] for m in (first, last))
    if not ends_fit or not all(centred(m) for m in middle) or (s == 1 and not all(centred(m) for m in convs)):
        return False
    phases = [(a, b) for a in range(s) for b in range(s)]
    with torch.no_grad():
        for m in convs:
            nn.init.kaiming_normal_(m.weight, a=0.25, nonlinearity="leaky_relu")
            m.weight.mul_(0.1)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            kh, kw = m.kernel_size
            ph, pw = (int(v) for v in m.padding)  # ints: a string padding ('same') was refused above
            if m is last:
                m.weight.zero_()  # ConvTranspose2d weight is [in, out, kh, kw]; Conv2d [out, in, kh, kw]
            else:
                m.weight[:carried] = 0.0
            for ch in range(c):
                for p, (a, b) in enumerate(phases):
                    k = ch * s * s + p  # the carried channel of colour ch at offset (a, b)
                    if m is first:
                        m.weight[k, ch, ph + a, pw + b] = 1.0
                    elif m is last and isinstance(m, nn.ConvTranspose2d):
                        m.weight[k, ch, ph + a, pw + b] = 1.0
                    elif m is last:
                        m.weight[ch, k, ph, pw] = 1.0
                    else:
                        m.weight[k, k, kh // 2, kw // 2] = 1.0
    return True


def init_model_(model: nn.Module, how: str) -> str:
    """Apply ``how`` (``reference`` keeps the constructor's, ``identity``, ``kaiming``); returns what was done."""
    if how == "reference":
        return "reference"
    if how == "identity" and init_identity_(model):
        return "identity"
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and m.weight.requires_grad:
            nn.init.kaiming_normal_(m.weight, a=0.25, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return "kaiming"


def load_init_from_(model: nn.Module, cfg: TrainConfig) -> str:
    """Start from the weights of a trained checkpoint (``init_from``: a warm restart with a new schedule); it
    must hold the same architecture. Returns the init label stored in the checkpoint metadata."""
    path = Path(str(cfg.init_from))
    if not path.is_file():
        raise CheckpointError(f"init_from: no checkpoint at {path}")
    tensors, meta = read_checkpoint(path)
    if meta.get("arch") not in (None, cfg.arch):
        raise CheckpointError(f"init_from: {path} holds {meta.get('arch')!r}, this run trains {cfg.arch!r}")
    try:
        model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"init_from: {path} does not fit {cfg.arch}: {str(exc).splitlines()[0]}") from None
    return f"from {path.as_posix()}"


# ---------------------------------------------------------------------------------------------
# schedule, loss


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio`` at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    t = min(1.0, t)
    lo = cfg.lr * cfg.min_lr_ratio
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * t))


def pixel_loss(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if kind == "l2":
        return nn.functional.mse_loss
    if kind == "l1":
        return nn.functional.l1_loss
    raise TrainingError(f"unknown loss {kind!r}; valid: l1, l2")


def default_loss(cfg: TrainConfig) -> LossFn:
    crit = pixel_loss(cfg.loss)

    def fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return crit(out.float(), y)

    return fn


# ---------------------------------------------------------------------------------------------
# checkpoint state


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"_opt.{pid}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
    return out


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if not key.startswith("_opt."):
            continue
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)


@dataclass
class RunState:
    step: int = 0
    best_psnr: float = -math.inf
    best_step: int = -1
    wall_s: float = 0.0


# ---------------------------------------------------------------------------------------------
# validation


class Validator:
    """PSNR on a fixed list of (reference, JPEG) pairs, under the protocol that fits the colour."""

    def __init__(self, cfg: TrainConfig) -> None:
        from compress.data.datasets import open_dataset
        from compress.protocols import get_protocol

        self.protocol = get_protocol("idcn-rgb" if cfg.color == "rgb" else "arcnn-y")
        ds = open_dataset(cfg.val_dataset, data_root=cfg.data_root, limit=cfg.val_limit)
        q = cfg.qualities[0]
        self.items = [self.protocol.degrade(ds.load(item), q) for item in ds]
        self.quality = q
        self.bf16 = cfg.val_precision == "bf16"
        self.channels_last = cfg.channels_last  # the training model's layout (validation does not change it)
        self.name = f"{cfg.val_dataset}[{len(self.items)}] q{q} {self.protocol.name}" + (" bf16" if self.bf16 else "")

    def __call__(self, model: nn.Module) -> float:
        from compress.inference import Bf16Autocast, restore

        was_training = model.training
        dev = _device_of(model)  # restore() moves the model: keep it where training has it
        run = Bf16Autocast(model, channels_last=self.channels_last) if self.bf16 else model
        scores = [
            self.protocol.score(ref, self.protocol.finalize(restore(run, jpg, device=dev)), which=("psnr",)).psnr
            for ref, jpg in self.items
        ]
        model.train(was_training)
        return float(np.mean(scores))


# ---------------------------------------------------------------------------------------------
# the loop


class Trainer:
    """Runs one training job described by a :class:`TrainConfig`.

    ``model``, ``loss_fn`` and ``extra_params`` let fine-tuning, distillation and QAT reuse the loop
    with a model that is not built from the registry (pruned, quantized) and a loss of their own.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        model: nn.Module | None = None,
        loss_fn: LossFn | None = None,
        extra_params: list[nn.Parameter] | None = None,
        validator: Callable[[nn.Module], float] | None = None,
        save_fn: Callable[[Path, nn.Module, dict[str, Any], dict[str, torch.Tensor]], None] | None = None,
        progress: bool = True,
    ) -> None:
        self.cfg = cfg
        self.out = Path(cfg.outputs_dir)
        torch.manual_seed(cfg.seed)
        if model is None:
            model = build_model(cfg.arch, cfg.channels, **cfg.arch_kwargs)
            self.init_used = init_model_(model, cfg.init)
            if cfg.init_from:
                self.init_used = load_init_from_(model, cfg)
        else:
            self.init_used = "given"
        if distributed.is_distributed() and extra_params:
            raise TrainingError("distributed training does not synchronise extra parameters (distillation hints)")
        self.device = distributed.device()
        self.main = distributed.rank() == 0  # only rank 0 validates, logs and writes files
        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.loss_fn = loss_fn or default_loss(cfg)
        params = [p for p in self.model.parameters() if p.requires_grad] + list(extra_params or [])
        self.opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.validator = validator
        self.save_fn = save_fn
        self.progress = progress
        self.state = RunState()
        self._patches: PatchBatches | None = None
        self.on_step: Callable[[Trainer], None] | None = None  # called after every step (benchmarks, snapshots)

    # -- persistence -------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "train_config": asdict(self.cfg),
            "step": self.state.step,
            "init": self.init_used,
            "color": self.cfg.color,
            "qualities": list(self.cfg.qualities),
            "wall_s": round(self.state.wall_s, 1),
        }

    def _save(self, name: str, *, with_optimizer: bool) -> None:
        if not self.main:
            return
        extra = self.resume_tensors() if with_optimizer else {}
        path = self.out / name
        if self.save_fn is not None:
            self.save_fn(path, self.model, self._meta(), extra)
        else:
            save_checkpoint(
                path,
                self.model,
                arch=self.cfg.arch,
                channels=self.cfg.channels,
                arch_kwargs=self.cfg.arch_kwargs,
                extra_tensors=extra,
                metadata=self._meta(),
                # the shipped weights (best) in weights_dtype; the resume state (last) exact, in fp32
                param_dtype=None if with_optimizer else WEIGHTS_DTYPES[self.cfg.weights_dtype],
            )
        st = asdict(self.state)
        atomic_write_bytes(self.out / "state.json", json.dumps(st, indent=1).encode())

    def resume_tensors(self) -> dict[str, torch.Tensor]:
        """What ``last.safetensors`` holds besides the model to resume exactly: the optimizer's state."""
        return _optimizer_tensors(self.opt)

    def load_resume_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`resume_tensors` saved (``try_resume``, after the model's weights)."""
        _load_optimizer(self.opt, tensors)

    def checkpoint(self) -> None:
        self._save("last.safetensors", with_optimizer=True)

    def try_resume(self) -> bool:
        last = self.out / "last.safetensors"
        if not last.is_file():
            return False
        tensors, meta = read_checkpoint(last)
        saved_cfg = json.loads(meta.get("train_config", "{}"))
        mine = json.loads(json.dumps(asdict(self.cfg)))
        # a setting added after the run started is read at its default (what the run used)
        defaults = json.loads(json.dumps(asdict(TrainConfig())))
        diff = sorted(k for k in mine if k not in RESUME_FREE and saved_cfg.get(k, defaults.get(k)) != mine[k])
        if diff:
            raise CheckpointError(f"{last}: cannot resume, the run was started with other settings: {', '.join(diff)}")
        model_state = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
        self.model.load_state_dict(model_state, strict=True)
        self.load_resume_tensors({k.removeprefix(EXTRA_PREFIX): v for k, v in tensors.items()
                                  if k.startswith(EXTRA_PREFIX)})
        st = json.loads((self.out / "state.json").read_text())
        self.state = RunState(**st)
        self.init_used = meta.get("init", self.init_used)
        return True

    # -- logging -----------------------------------------------------------------------------
    def _log(self, row: dict[str, Any]) -> None:
        if not self.main:
            return
        path = self.out / "log.csv"
        new = not path.exists()
        with path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    # -- main --------------------------------------------------------------------------------
    def training_images(self) -> list[np.ndarray]:
        """The decoded training images (the folder ``cfg.images_dir``); subclasses feed others."""
        return load_training_images(self.cfg.images_dir, limit=self.cfg.image_limit)

    def patch_batches(self) -> PatchBatches:
        """The training pairs, built once: bad or too small images raise :class:`DataError` here."""
        if self._patches is None:
            c = self.cfg
            pcfg = PatchConfig(c.patch_size, c.batch_size, c.qualities, c.color, c.augment, c.seed)
            self._patches = PatchBatches(self.training_images(), pcfg)
        return self._patches

    def batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cfg = self.cfg
        ds = self.patch_batches()
        loader = torch.utils.data.DataLoader(
            ds, batch_size=None, sampler=range(start, cfg.steps), num_workers=cfg.workers,
            persistent_workers=False, prefetch_factor=4 if cfg.workers else None,
        )
        yield from loader

    def fit(self, *, resume: bool = False) -> RunState:
        cfg = self.cfg
        torch.set_num_threads(cfg.threads)
        distributed.check_batch(cfg.batch_size)
        if resume:
            self.try_resume()
        elif (self.out / "last.safetensors").exists():
            raise CheckpointError(
                f"{self.out}: already holds a run; pass --resume to continue it or pick another folder"
            )
        start = self.state.step
        if start >= cfg.steps:
            return self.state
        self.patch_batches()  # missing, unreadable or too small images fail before anything is written
        self.out.mkdir(parents=True, exist_ok=True)
        if self.main:
            atomic_write_bytes(self.out / "config.json", json.dumps(asdict(cfg), indent=1).encode())
        self.model.train()
        net = distributed.wrap(self.model)  # DDP under a process group; checkpoints keep the unwrapped model
        interrupted = False

        def on_sigint(signum: int, frame: Any) -> None:
            nonlocal interrupted
            interrupted = True

        old = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
        bar = _bar(cfg.steps, start, self.progress and self.main, desc=f"train {cfg.arch}")
        t_last = time.perf_counter()
        run_loss = 0.0
        n_loss = 0
        autocast = cfg.precision == "bf16"
        try:
            for x, y in self.batches(start):
                step = self.state.step
                x, y = distributed.shard(x).to(self.device), distributed.shard(y).to(self.device)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                for g in self.opt.param_groups:
                    g["lr"] = lr_at(cfg, step)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                    out = net(x)
                loss = self.loss_fn(self.model, x, y, out)
                loss_all = distributed.mean(loss.detach())  # the global loss: all ranks stop together on NaN
                if not torch.isfinite(loss_all):
                    kept = (
                        f"the last good checkpoint is kept in {self.out}"
                        if (self.out / "last.safetensors").exists()
                        else "no checkpoint was written yet (check the input weights, lr and data)"
                    )
                    raise TrainingError(f"non-finite loss ({loss.item()}) at step {step}; {kept}")
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(
                        [p for g in self.opt.param_groups for p in g["params"]], cfg.grad_clip
                    )
                self.opt.step()
                now = time.perf_counter()
                self.state.wall_s += now - t_last
                t_last = now
                self.state.step = step + 1
                loss_val = float(loss_all)
                run_loss += loss_val
                n_loss += 1
                bar.update(1)
                done = self.state.step == cfg.steps
                if self.main and self.validator is not None and (self.state.step % cfg.val_every == 0 or done):
                    t_val = time.perf_counter()
                    psnr = self.validator(self.model)
                    t_last += time.perf_counter() - t_val  # validation is not training time
                    if psnr > self.state.best_psnr:
                        self.state.best_psnr, self.state.best_step = psnr, self.state.step
                        self._save("best.safetensors", with_optimizer=False)
                    self._log(
                        {"step": self.state.step, "wall_s": round(self.state.wall_s, 2), "lr": lr_at(cfg, step),
                         "loss": run_loss / max(1, n_loss), "val_psnr": round(psnr, 4)}
                    )
                    run_loss, n_loss = 0.0, 0
                    bar.set_postfix(loss=f"{loss_val:.5f}", val=f"{psnr:.3f}", best=f"{self.state.best_psnr:.3f}")
                elif self.state.step % 10 == 0:
                    validated = self.validator is not None and self.state.best_step >= 0
                    shown = {"best": f"{self.state.best_psnr:.3f}"} if validated else {}
                    bar.set_postfix(loss=f"{loss_val:.5f}", **shown)
                stop = distributed.any_rank(interrupted)  # one rank may see Ctrl-C a step before the others
                if self.state.step % cfg.ckpt_every == 0 or done or stop:
                    self.checkpoint()
                if self.on_step is not None:
                    self.on_step(self)
                if stop:
                    break
        finally:
            bar.close()
            if old is not None:
                signal.signal(signal.SIGINT, old)
        if self.validator is None and not interrupted:
            self._save("best.safetensors", with_optimizer=False)
        if self.main:
            plot_curve(self.out)
        if interrupted:
            raise KeyboardInterrupt
        return self.state


def _device_of(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters are (the CPU for a model without any)."""
    return next(model.parameters(), torch.empty(0)).device


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, dynamic_ncols=True, smoothing=0.05)


def plot_curve(out: Path) -> Path | None:
    """Loss and validation PSNR against steps and wall time, from ``log.csv``."""
    log = out / "log.csv"
    if not log.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(log)
    if df.empty:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(df["step"], df["loss"], color="tab:blue")
    a1.set_xlabel("step")
    a1.set_ylabel("training loss")
    a1.set_yscale("log")
    a2.plot(df["wall_s"] / 60, df["val_psnr"], marker="o", color="tab:red")
    a2.set_xlabel("wall time (min)")
    a2.set_ylabel("validation PSNR (dB)")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.suptitle(out.name)
    fig.tight_layout()
    path = out / "curve.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, validate: bool = True) -> Trainer:
    """Build the model, train it per ``cfg`` and return the trainer (weights in ``cfg.outputs_dir``)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(cfg.threads))
    validator = Validator(cfg) if validate and cfg.val_dataset and distributed.rank() == 0 else None
    trainer = Trainer(cfg, validator=validator, progress=progress)
    trainer.fit(resume=resume)
    return trainer


def steps_for_epochs(num_epochs: int, n_images: int, batch_size: int) -> int:
    """The reference's epoch: one patch per image, ``drop_last`` batches."""
    return max(1, num_epochs * (n_images // batch_size))


__all__ = [
    "RunState", "TrainConfig", "Trainer", "Validator", "count_params", "init_model_", "lr_at", "plot_curve",
    "replace", "steps_for_epochs", "train",
]
