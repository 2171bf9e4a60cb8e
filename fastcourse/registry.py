"""Name -> function registries (timm style): builders, datasets, augmentations, schedules.

An unknown name fails with the list of known ones and the nearest match.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Callable, Generic, TypeVar

from fastcourse.errors import UsageError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, F] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: `@MODELS.register()` registers a function under its own name."""

        def add(fn: F) -> F:
            key = name or fn.__name__
            if key in self._items and self._items[key] is not fn:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = fn
            return fn

        return add

    def get(self, name: str) -> F:
        try:
            return self._items[name]
        except KeyError:
            raise UsageError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        near = difflib.get_close_matches(str(name), self._items, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._items))})"

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)

    def describe(self, name: str) -> str:
        """First line of the function's docstring, for `fastcourse list`."""
        doc = inspect.getdoc(self._items[name]) or ""
        return doc.splitlines()[0] if doc else ""
