"""The model registry: name -> :class:`ModelSpec` (constructor plus what a user needs to know)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from compress.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture.

    Attributes:
        name: registry name.
        build: constructor; takes ``channels`` (1 or 3) and architecture kwargs.
        family: ``student`` or ``teacher``.
        default_channels: 3 for the RGB models of the brief, 1 for ``arcnn_y``.
        description: one line for listings.
        published: the brief's (layers, params) where the model is in its "network comparison" table.
        reference_params: parameter count the implementation must have at ``default_channels``.
    """

    name: str
    build: Callable[..., nn.Module]
    family: str
    default_channels: int
    description: str
    published: tuple[int, str] | None = None
    reference_params: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(spec: ModelSpec) -> ModelSpec:
    MODELS.add(spec.name, spec)
    return spec


def build_model(name: str, channels: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model by name (unknown names raise with the list of valid ones)."""
    spec = MODELS.get(name)
    ch = spec.default_channels if channels is None else channels
    if ch not in (1, 3):
        from compress.errors import CompressError

        raise CompressError(f"model {name!r}: channels must be 1 or 3, got {ch}")
    merged = {**spec.kwargs, **kwargs}
    return spec.build(channels=ch, **merged)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
