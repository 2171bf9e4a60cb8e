"""Import every module of a package, so that registering decorators run (builders, commands,
tasks). New modules join by being added to the folder; no central list to edit."""
from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package_name: str, skip: tuple[str, ...] = ()) -> None:
    package = importlib.import_module(package_name)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in skip and not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
