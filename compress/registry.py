"""A tiny explicit registry: name -> object, filled by a decorator.

One instance per kind (models, datasets, protocols, metrics, pruners, quantizers). A duplicate
name is an error; a miss lists the valid names and the closest match.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from compress.errors import RegistryError

T = TypeVar("T")


def closest(name: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The closest match of ``name`` among ``choices``, or None."""
    hits = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return hits[0] if hits else None


def unknown_message(kind: str, name: str, choices: list[str] | tuple[str, ...]) -> str:
    """One line that names the bad value, the valid ones and the closest match."""
    hint = closest(name, choices)
    msg = f"unknown {kind} {name!r}; valid: {', '.join(sorted(choices))}"
    return msg + (f" (did you mean {hint!r}?)" if hint else "")


class Registry(Generic[T]):
    """Maps names to registered objects of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``."""

        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise RegistryError(f"duplicate {self.kind} {name!r}")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise RegistryError(unknown_message(self.kind, name, tuple(self._items))) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
