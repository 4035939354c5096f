"""Checkpoints: safetensors only, with the architecture in the file's metadata.

A checkpoint stores tensors plus string metadata: ``arch`` (registry name), ``channels``,
``arch_kwargs`` (JSON) and anything else the writer adds (quality, colour, steps...). Pickle-bearing
files (``torch.save``) are refused unless they load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import CheckpointError, CompressError
from compress.fsio import atomic_write_bytes

EXTRA_PREFIX = "_extra."
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # raw pickle protocol 2+, torch zip archive


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    arch: str,
    channels: int,
    arch_kwargs: dict[str, Any] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    metadata: dict[str, Any] | None = None,
    param_dtype: torch.dtype | None = None,
) -> Path:
    """Save ``model``'s state dict (plus optional extra tensors) as safetensors, atomically.

    ``param_dtype`` (e.g. ``torch.bfloat16``) stores the model's floating-point *parameters* in that dtype
    (half the bytes of a large teacher); stored buffers (IDCN's quantization tables, running statistics) keep
    theirs, and the metadata key ``stored_dtype`` says so. Loading casts back to the model's dtype.
    """
    from safetensors.torch import save

    p = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if param_dtype is not None:
        for k, prm in model.named_parameters():
            if prm.is_floating_point():
                tensors[k] = tensors[k].to(param_dtype)
    for k, v in (extra_tensors or {}).items():  # e.g. optimizer state, kept apart from the model's keys
        tensors[EXTRA_PREFIX + k] = v.detach().cpu().contiguous()
    meta = {"format": "compress-checkpoint/1", "arch": arch, "channels": str(channels)}
    meta["arch_kwargs"] = json.dumps(arch_kwargs or {}, sort_keys=True)
    for k, v in (metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    if param_dtype is not None:
        meta["stored_dtype"] = f"parameters {str(param_dtype).removeprefix('torch.')}, buffers as trained"
    atomic_write_bytes(p, save(tensors, metadata=meta))
    return p


def _is_pickle(p: Path) -> bool:
    """Whether ``p`` is a pickle-based file (torch zip archive or raw pickle) rather than safetensors.

    Safetensors is recognised by its structure first (an 8-byte little-endian header length that fits
    the file, then a JSON object): its first byte is the header length's low byte, which can be 0x80,
    the same as a raw pickle's first byte.
    """
    with p.open("rb") as fh:
        head = fh.read(9)
    size = p.stat().st_size
    if len(head) == 9 and 0 < int.from_bytes(head[:8], "little") <= size - 8 and head[8:9] == b"{":
        return False
    return head[:1] == _PICKLE_MAGIC[0] or head[:4] == _PICKLE_MAGIC[1]


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors and metadata. Safetensors first; a ``.pth`` only through ``weights_only=True``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    if _is_pickle(p):
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(
                f"{p}: refused: this file needs pickle to load (not a plain tensor file): {str(exc).splitlines()[0]}"
            ) from None
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise CheckpointError(f"{p}: not a state dict of tensors")
        return dict(obj), {}
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(p))
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: corrupt or not a safetensors file ({exc})") from None
    # the first training checkpoints wrote optimizer state as "_extra_opt.*": read them as "_extra._opt.*"
    tensors = {("_extra._" + k[len("_extra_") :] if k.startswith("_extra_") else k): v for k, v in tensors.items()}
    return tensors, meta


def checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors checkpoint, reading its header only (cheap: no tensor is loaded).

    A pickle-format file (``.pth``) has no metadata to read without loading it; it gives ``{}`` and is
    checked when it is loaded (:func:`read_checkpoint`, weights only).

    Raises:
        CheckpointError: the file is missing, or not a readable safetensors file (truncated, corrupt).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    if _is_pickle(p):
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(p), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: corrupt or not a safetensors file ({exc})") from None


def load_model(
    path: str | Path, arch: str | None = None, *, channels: int | None = None
) -> tuple[nn.Module, dict[str, str]]:
    """Build the checkpoint's architecture and load its weights (strict).

    ``arch``/``channels`` are needed for files without metadata (e.g. the reference ``.pth``); when
    the file names an architecture and ``arch`` disagrees, that is an error.
    """
    from compress.nets import MODELS, build_model

    p = Path(path)
    if arch is not None:
        MODELS.get(normalize_arch(arch))  # an unknown name fails first, listing the valid ones
    tensors, meta = read_checkpoint(p)
    file_arch = meta.get("arch")
    if arch is not None and file_arch is not None and normalize_arch(arch) != file_arch:
        raise CheckpointError(f"{p}: checkpoint is for architecture {file_arch!r}, not {normalize_arch(arch)!r}")
    name = file_arch or (normalize_arch(arch) if arch else None)
    if name is None:
        raise CheckpointError(f"{p}: file has no architecture metadata; pass --arch")
    try:  # the metadata is text anyone can write: a bad value is a bad checkpoint, not a crash
        ch = int(meta["channels"]) if "channels" in meta else channels
        kwargs = json.loads(meta.get("arch_kwargs", "{}"))
        if not isinstance(kwargs, dict):
            raise ValueError(f"arch_kwargs is a {type(kwargs).__name__}, not a mapping")
        if "features" in kwargs:
            kwargs["features"] = tuple(kwargs["features"])
        model = build_model(name, ch, **kwargs)
        ch = MODELS.get(name).default_channels if ch is None else ch
    except CompressError as exc:
        raise CheckpointError(f"{p}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{p}: bad architecture metadata ({type(exc).__name__}: {exc})") from None
    state = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise CheckpointError(
            f"{p}: weights do not fit architecture {name!r} with {ch} channel(s): {' '.join(first[:3])[:300]}"
        ) from None
    model.eval()
    return model, meta


_ARCH_ALIASES = {"ARCNN": "arcnn", "FastARCNN": "fast_arcnn", "FAST_ARCNN": "fast_arcnn", "fastarcnn": "fast_arcnn"}


def normalize_arch(name: str) -> str:
    """Map the brief's spellings (``ARCNN``, ``FastARCNN``) to registry names."""
    return _ARCH_ALIASES.get(name, _ARCH_ALIASES.get(name.upper(), name.lower() if name.isupper() else name))
