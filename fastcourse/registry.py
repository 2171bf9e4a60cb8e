"""Name -> function registries (timm style): builders, datasets, augmentations, schedules, tasks.

A function joins a registry with a decorator in its own module (`@MODELS.register()`), which
registers the function object when that module is imported. Each registry names the modules
that fill it (`modules`), and imports them all on its first lookup or listing: `fastcourse list`
and a config's check import them, and so TensorFlow (the model and task modules import Keras).
An unknown name fails with the list of known ones and the nearest match.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import threading
from typing import Callable, Generic, TypeVar

from fastcourse.errors import UsageError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """`Registry("model", ("fastcourse.models.vgg", ...))`: the functions decorated with
    `@MODELS.register()` in the modules named."""

    def __init__(self, kind: str, modules: tuple[str, ...], supplied: tuple[str, ...] = ()):
        self.kind, self.modules = kind, modules
        self.supplied = supplied  # arguments the run passes in, never set in a config
        self._items: dict[str, F] = {}
        self._loaded = False  # its modules are being imported, or were
        self._complete = False  # they all were
        # Another thread's first lookup waits until the modules are imported, instead of seeing a
        # half-filled registry; re-entrant, as a module may look a name up while it loads.
        self._loading = threading.RLock()

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: `@MODELS.register()` registers a function under its own name."""

        def add(fn: F) -> F:
            key = name or fn.__name__
            if key in self._items and self._items[key] is not fn:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = fn
            return fn

        return add

    def _load(self) -> dict[str, F]:
        """Import the modules that fill the registry (once); their decorators register."""
        if self._complete:
            return self._items
        with self._loading:
            if not self._loaded:
                self._loaded = True  # first: a module that looks a name up while it loads ends here
                try:
                    for module in self.modules:
                        importlib.import_module(module)
                except BaseException:
                    self._loaded = False
                    raise
                self._complete = True
        return self._items

    def get(self, name: str) -> F:
        items = self._load()
        if name not in items:
            raise UsageError(self.unknown_message(name))
        return items[name]

    def unknown_message(self, name: str) -> str:
        near = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})"

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def names(self) -> list[str]:
        return sorted(self._load())

    def describe(self, name: str) -> str:
        """The function's docstring's first paragraph on one line (whole sentences), for `fastcourse list`."""
        doc = inspect.cleandoc(self._load()[name].__doc__ or "")
        return " ".join(doc.split("\n\n")[0].split())


# Every registry, here in the base layer so that the config check (fastcourse.config) can look a
# name up; each function joins with the decorator in its own module (`@MODELS.register()`), and
# a new module that registers is added to its registry's tuple here.
TASKS: Registry = Registry(
    "task",
    ("fastcourse.tasks.train", "fastcourse.tasks.finetune", "fastcourse.tasks.features", "fastcourse.tasks.sklearn"),
    supplied=("cfg", "run_dir"),
)
DATASETS: Registry = Registry("dataset", ("fastcourse.data.arrays", "fastcourse.data.folder_sets"))
AUGMENTATIONS: Registry = Registry("augmentation", ("fastcourse.data.augment",))
MODELS: Registry = Registry(
    "model",
    (
        "fastcourse.models.mnist",
        "fastcourse.models.digits",
        "fastcourse.models.classic",
        "fastcourse.models.vgg",
        "fastcourse.models.applications",
        "fastcourse.models.heads",
    ),
    supplied=("input_shape", "num_classes", "mean", "std"),
)
SCHEDULES: Registry = Registry("schedule", ("fastcourse.train.schedules",), supplied=("epoch", "total_epochs"))
