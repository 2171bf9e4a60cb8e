"""Name -> function registries (timm style): builders, datasets, augmentations, schedules, tasks.

A function joins a registry with a decorator in its own module (`@MODELS.register()`). The
registry finds its names by READING those modules' source (ast), not by importing them, so
`fastcourse list` and config name checks need no TensorFlow; `get(name)` imports the one module
that defines the name. An unknown name fails with the list of known ones and the nearest match.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, TypeVar

from fastcourse.errors import UsageError

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class Entry:
    module: str
    function: str
    summary: str  # the docstring's first paragraph, on one line


class Registry(Generic[F]):
    """`Registry("model", "fastcourse.models", "MODELS")`: the functions decorated with
    `@MODELS.register()` in the package (or single module) `where`."""

    def __init__(self, kind: str, where: str, variable: str, supplied: tuple[str, ...] = ()):
        self.kind, self.where, self.variable = kind, where, variable
        self.supplied = supplied  # arguments the run passes in, never set in a config
        self._items: dict[str, F] = {}
        self._entries: dict[str, Entry] | None = None

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: `@MODELS.register()` registers a function under its own name."""

        def add(fn: F) -> F:
            key = name or fn.__name__
            if key in self._items and self._items[key] is not fn:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = fn
            return fn

        return add

    # --- the catalogue, read from source ---------------------------------------------------

    def entries(self) -> dict[str, Entry]:
        if self._entries is None:
            self._entries = {}
            for module, path in _modules(self.where):
                for entry_name, entry in _decorated(path, module, self.variable).items():
                    if entry_name in self._entries:
                        raise ValueError(f"{self.kind} {entry_name!r} is registered twice")
                    self._entries[entry_name] = entry
        return self._entries

    def get(self, name: str) -> F:
        if name not in self._items:
            entry = self.entries().get(name)
            if entry is None:
                raise UsageError(self.unknown_message(name))
            importlib.import_module(entry.module)  # its decorator registers the function
        return self._items[name]

    def unknown_message(self, name: str) -> str:
        near = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})"

    def __contains__(self, name: object) -> bool:
        return name in self.entries()

    def names(self) -> list[str]:
        return sorted(self.entries())

    def describe(self, name: str) -> str:
        """The function's docstring's first paragraph on one line (whole sentences), for `fastcourse list`."""
        return self.entries()[name].summary


# Every registry, here in the base layer so that the config check (fastcourse.config) can look a
# name up; each function joins with the decorator in its own module (`@MODELS.register()`).
TASKS: Registry = Registry("task", "fastcourse.tasks", "TASKS", supplied=("cfg", "run_dir"))
DATASETS: Registry = Registry("dataset", "fastcourse.data", "DATASETS")
AUGMENTATIONS: Registry = Registry("augmentation", "fastcourse.data.augment", "AUGMENTATIONS")
MODELS: Registry = Registry(
    "model", "fastcourse.models", "MODELS", supplied=("input_shape", "num_classes", "mean", "std")
)
SCHEDULES: Registry = Registry(
    "schedule", "fastcourse.train.schedules", "SCHEDULES", supplied=("epoch", "total_epochs")
)


def _modules(where: str) -> list[tuple[str, Path]]:
    """(dotted name, file) of a module, or of every module of a package."""
    spec = importlib.util.find_spec(where)
    if spec is None or spec.origin is None:
        raise ValueError(f"registry source {where!r} not found")
    if not spec.submodule_search_locations:
        return [(where, Path(spec.origin))]
    folder = Path(spec.origin).parent
    return [(f"{where}.{p.stem}", p) for p in sorted(folder.glob("*.py")) if not p.stem.startswith("_")]


def _decorated(path: Path, module: str, variable: str) -> dict[str, Entry]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: dict[str, Entry] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            func = call.func if call else deco
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "register"
                and isinstance(func.value, ast.Name)
                and func.value.id == variable
            ):
                name = node.name
                if call and call.args and isinstance(call.args[0], ast.Constant):
                    name = call.args[0].value
                doc = inspect.cleandoc(ast.get_docstring(node) or "")
                # the first paragraph, not the first line: a sentence wrapped in the source stays whole
                found[name] = Entry(module, node.name, " ".join(doc.split("\n\n")[0].split()))
    return found
