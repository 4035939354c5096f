"""The package's exceptions: one base class, a subclass per kind of failure.

The CLI turns any :class:`CompressError` into one line on stderr and exit code 2.
"""

from __future__ import annotations


class CompressError(Exception):
    """Base class of every error the package raises on purpose."""


class RegistryError(CompressError, KeyError):
    """An unknown or duplicate name in a registry."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class DataError(CompressError):
    """Missing, empty or unreadable data (images, data roots, archives)."""


class CheckpointError(CompressError):
    """A missing, corrupt, unsafe or mismatched checkpoint."""


class RecipeError(CompressError):
    """An invalid recipe; the message names file, line and key."""


class TrainingError(CompressError):
    """Training cannot go on (e.g. a non-finite loss)."""


class ExportError(CompressError):
    """An ONNX export that fails, or whose onnxruntime output differs from torch."""


class ConfigError(CompressError, ValueError):
    """An invalid setting: a flag or configuration value out of range or of the wrong kind.

    Also a :class:`ValueError`, so callers that validated settings with ``except ValueError`` keep working.
    """


class ShapeError(CompressError, ValueError):
    """An image or tensor whose dtype, shape or channel count does not fit the model (also a ValueError)."""
