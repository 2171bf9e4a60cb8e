"""Experiment tasks: what `fastcourse run` does with a config, chosen by `task.name`.

A task is a function `task(cfg, run_dir, **args)` registered in TASKS; its keyword arguments
are the config's `task` section. `train` (arrays through the shared trainer) is the default.
Every module in this package is imported, so its tasks register themselves."""
from fastcourse.registry import Registry

TASKS: Registry = Registry("task")
TASK_ARGS_SKIPPED = ("cfg", "run_dir")

from fastcourse.autoimport import import_submodules  # noqa: E402

import_submodules(__name__)

__all__ = ["TASKS", "TASK_ARGS_SKIPPED"]
