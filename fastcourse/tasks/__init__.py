"""Layer 5, tasks: what `fastcourse run` does with a config, chosen by `task.name`.

A task is a function `task(cfg, run_dir, **args) -> metrics` registered in TASKS; its keyword
arguments are the config's `task` section. Every task reads its data through the run layer's
`Inputs` (arrays and image folders alike), trains through the one trainer and writes its run
directory through the run layer's artifacts. `run_experiment` checks a config and runs it,
as an ensemble when it has an `ensemble` section. Importing this package imports no TensorFlow."""

from fastcourse.registry import TASKS

TASK_ARGS_SKIPPED = TASKS.supplied

__all__ = ["TASKS", "TASK_ARGS_SKIPPED"]
