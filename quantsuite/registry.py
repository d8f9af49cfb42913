"""A tiny name -> class registry.

Backends, runtimes, tasks and strategies each live in one file and register themselves
here; the registry imports a module only when one of its names is asked for, so the CLI
stays fast and an optional dependency that is missing only matters when it is used.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from quantsuite.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self._items[name] = obj
            return obj

        return deco

    def lazy(self, name: str, module: str) -> None:
        """Declare that ``module`` registers ``name`` when imported."""
        self._lazy[name] = module

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._lazy))

    def get(self, name: str) -> T:
        if name not in self._items and name in self._lazy:
            importlib.import_module(self._lazy[name])
        if name not in self._items:
            raise UserError(f"unknown {self.kind} '{name}' (known: {', '.join(self.names())})")
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        return name in self._items or name in self._lazy
