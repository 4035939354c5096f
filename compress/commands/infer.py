"""``compress infer``: restore a JPEG file (or a folder of them), or compress-then-restore as the brief's example."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "infer",
        help="restore JPEG images with a trained model",
        description="Without --jpeg-quality, restores the given JPEG file(s) as they are (the real use). With "
        "--jpeg-quality Q, compresses the image at Q first and saves both the JPEG'd input and the output, as "
        "the brief's example does. --image may be a folder.",
    )
    p.add_argument("--arch", help="model name (ARCNN / FastARCNN spellings accepted); read from the file if absent")
    p.add_argument("--weights", required=True, help="checkpoint (.safetensors; .pth only if weights-only)")
    p.add_argument("--image", required=True, help="an image file or a folder of images")
    p.add_argument("--outputs-dir", required=True)
    p.add_argument("--jpeg-quality", type=int, help="compress at this quality first (demo mode)")
    p.add_argument("--tile", type=int, default=512, help="tile side for large images (bounded memory); 0 = whole")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check every setting and load the model and the first image before anything is written."""
    import io

    import numpy as np
    import torch
    from PIL import Image
    from tqdm import tqdm

    from compress.checkpoint import load_model
    from compress.data.images import load_image
    from compress.data.jpeg import jpeg_roundtrip
    from compress.data.patches import list_images
    from compress.errors import ConfigError, DataError
    from compress.fsio import atomic_write_bytes
    from compress.inference import DEFAULT_OVERLAP, model_channels, restore, tile_geometry

    if args.jpeg_quality is not None and not 1 <= args.jpeg_quality <= 100:
        raise ConfigError(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
    if args.tile:
        try:
            tile_geometry(args.tile, DEFAULT_OVERLAP)
        except ConfigError as exc:
            raise ConfigError(f"--tile: {exc}") from None
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    src = Path(args.image)
    if not src.exists():
        raise DataError(f"{src}: no such file or folder")
    files = list_images(src) if src.is_dir() else [src]
    model, _meta = load_model(args.weights, args.arch)
    channels = model_channels(model) or 3
    mode = "rgb" if channels == 3 else "gray"
    first = load_image(files[0], mode=mode)  # a bad first image fails before the output folder exists
    out_dir = Path(args.outputs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def save_png(arr: np.ndarray, dest: Path) -> None:  # whole files only, even if killed half-way
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        atomic_write_bytes(dest, buf.getvalue())

    for i, f in enumerate(tqdm(files, desc="restore", disable=len(files) < 2)):
        img = first if i == 0 else load_image(f, mode=mode)
        if args.jpeg_quality is not None:
            img = jpeg_roundtrip(img, args.jpeg_quality)
            save_png(img, out_dir / f"{f.stem}_jpeg_q{args.jpeg_quality}.png")
        y = restore(model, img, tile=args.tile or None)
        out = np.clip(np.round(y), 0, 255).astype(np.uint8)
        dest = out_dir / f"{f.stem}_{_meta.get('arch', args.arch or 'model')}.png"
        save_png(out, dest)
        print(dest)
    return 0
