"""``compress train``: the brief's training command (its flags, both spellings), or a training recipe."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "train",
        help="train a model (ARCNN, Fast ARCNN, teachers) on JPEG-degraded patches",
        description="Train on BSDS500 (or any image folder) with JPEG degradation. Flags follow the brief's "
        "main.py (--images_dir and --images-dir both work). --recipe FILE reads the same settings from a "
        "recipes/train-*.yaml file; flags given beside it override it.",
    )
    p.add_argument("--recipe", help="a training recipe (recipes/train-*.yaml)")
    p.add_argument("--arch", help="model name: arcnn, fast_arcnn (ARCNN, FastARCNN accepted), rdn_s, idcn_s, ...")
    p.add_argument("--images-dir", help="folder of training images")
    p.add_argument("--dataset", help="registered training dataset instead of --images-dir (e.g. bsds500_train)")
    p.add_argument("--outputs-dir", help="where checkpoints, log.csv and curve.png go")
    p.add_argument("--jpeg-quality", type=int, nargs="+", help="JPEG quality (several: quality-blind training)")
    p.add_argument("--patch-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--num-epochs", type=int, help="reference epochs: one patch per image each (sets --steps)")
    p.add_argument("--steps", type=int, help="optimizer steps (overrides --num-epochs)")
    p.add_argument("--lr", type=float)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--workers", type=int, default=0, help="loader worker processes (batches are the same for any)")
    p.add_argument("--seed", type=int)
    p.add_argument("--use-augmentation", action="store_true", default=None, help="rescale, rot90 and flips")
    p.add_argument("--use-fast-loader", action="store_true", help="accepted for compatibility; always fast")
    p.add_argument("--color", choices=["rgb", "y"])
    p.add_argument("--loss", choices=["l1", "l2"])
    p.add_argument("--init", choices=["reference", "identity", "kaiming"])
    p.add_argument("--init-from", metavar="CKPT", help="start from this checkpoint's weights (same arch): a warm "
                   "restart with this run's schedule")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"],
                   help="bf16 autocast or fp32; auto (the default without --recipe) = bf16 where the CPU has native "
                   "bf16 (AVX-512 BF16, AMX) or on a GPU (with channels_last), else fp32. A recipe's own setting "
                   "wins over the default")
    p.add_argument("--val-dataset", help="validation set (default bsds500_val)")
    p.add_argument("--val-limit", type=int, help="first N validation images")
    p.add_argument("--val-every", type=int)
    p.add_argument("--val-precision", choices=["fp32", "bf16"],
                   help="validation in fp32 (default) or bf16 autocast + channels_last (faster for large models)")
    p.add_argument("--weights-dtype", choices=["fp32", "bf16"],
                   help="parameters of best.safetensors in fp32 (default) or bf16 (half the file; the resume state "
                   "last.safetensors stays fp32)")
    p.add_argument("--ckpt-every", type=int)
    p.add_argument("--data-root", help="data root (default: $COMPRESS_DATA)")
    p.add_argument("--resume", action="store_true", help="continue the run in --outputs-dir exactly")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes torchrun starts (gloo on CPU, nccl on GPU); --batch-size "
                   "stays the global batch; only rank 0 validates and writes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from compress.checkpoint import normalize_arch
    from compress.data.datasets import dataset_folder, get_spec
    from compress.errors import CompressError
    from compress.train import TrainConfig, resolve_precision, steps_for_epochs, train

    base: dict[str, object] = {}
    if args.recipe:
        from compress.recipe.train_recipe import load_train_recipe, recipe_settings

        r = load_train_recipe(args.recipe)
        base = recipe_settings(r)
        train_set = r.data.train
    else:
        train_set = args.dataset or "bsds500_train"
    if args.arch:
        base["arch"] = normalize_arch(args.arch)
    if "arch" not in base:
        raise CompressError("give --arch or --recipe")
    if args.images_dir:
        images_dir = args.images_dir
    else:
        if train_set.startswith("folder:"):
            images_dir = train_set.removeprefix("folder:")
        else:
            images_dir = str(dataset_folder(get_spec(train_set), args.data_root))
    overrides = {
        "outputs_dir": args.outputs_dir, "qualities": tuple(args.jpeg_quality) if args.jpeg_quality else None,
        "patch_size": args.patch_size, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "color": args.color, "loss": args.loss, "init": args.init, "init_from": args.init_from,
        "precision": args.precision,
        "val_dataset": args.val_dataset, "val_limit": args.val_limit, "val_every": args.val_every,
        "val_precision": args.val_precision, "weights_dtype": args.weights_dtype,
        "ckpt_every": args.ckpt_every, "augment": args.use_augmentation,
    }
    base.update({k: v for k, v in overrides.items() if v is not None})
    if args.steps is not None:
        base["steps"] = args.steps
    elif args.num_epochs is not None:
        from compress.data.patches import list_images

        if args.num_epochs < 1:
            raise CompressError(f"--num-epochs must be at least 1, got {args.num_epochs}")

        n = len(list_images(images_dir))
        base["steps"] = steps_for_epochs(args.num_epochs, n, int(base.get("batch_size", 16)))  # type: ignore[call-overload]
    if not args.recipe and args.use_augmentation is None:
        base["augment"] = False
    if not args.recipe and args.precision in (None, "auto") and resolve_precision("auto") == "bf16":
        base["channels_last"] = True  # with bf16 the fastest layout measured (results/bench/avx512-bf16)
    if not args.recipe and args.precision is None:
        base["precision"] = "auto"
    if "precision" in base:
        base["precision"] = resolve_precision(str(base["precision"]))
    if "outputs_dir" not in base:
        raise CompressError("give --outputs-dir (or --recipe)")
    procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if args.distributed else 1  # ranks share a node's cores
    threads = args.threads or max(1, (os.cpu_count() or 1) // procs)
    cfg = TrainConfig(
        images_dir=images_dir, threads=threads, workers=args.workers, data_root=args.data_root, **base  # type: ignore[arg-type]
    )
    if args.distributed:
        from compress import distributed

        distributed.init_from_env()
    try:
        trainer = train(cfg, resume=args.resume, progress=not args.no_progress)
    finally:
        if args.distributed:
            distributed.shutdown()
    st = trainer.state
    if not trainer.main:
        return 0
    print(
        f"trained {cfg.arch} for {st.step} steps in {st.wall_s / 60:.1f} min; best validation PSNR "
        f"{st.best_psnr:.3f} dB at step {st.best_step}; weights: {Path(cfg.outputs_dir) / 'best.safetensors'}"
    )
    return 0
