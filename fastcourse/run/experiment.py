"""execute(config, task) -> run directory: the frame every task runs in.

Every run gets a fresh directory of its own (`<out>/<name>-<timestamp>`), locked while it runs
(rundir.py), with config.yaml from the start and the artifacts at the end (artifacts.py), whose
metrics.json gets the run's wall time (`wall_seconds`, every session of it). The task runs
seeded, inside the configured precision policy and tf.distribute scope, whatever it is; a config
with an `ensemble` section runs the task once per member (ensemble.py). An unfinished run (no
metrics.json) continues from its checkpoints.

The task registry lives one layer up (fastcourse.tasks); `fastcourse.tasks.runner` looks the
task up and calls `execute`, passing the task in.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import tempfile
from pathlib import Path

from fastcourse import io
from fastcourse.config import ExperimentConfig
from fastcourse.errors import RunError
from fastcourse.run import rundir
from fastcourse.run.frame import Task, run_task, timed


def new_run_dir(out: str | Path, name: str) -> Path:
    """A directory no other run uses: created here, never reused."""
    out = io.make_folder(out, "output folder (--out)")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        candidate = out / (f"{name}-{stamp}" + (f"-{i + 1}" if i else ""))
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise io.cannot_create(exc, f"a run directory in {out}") from None
    raise RunError(f"cannot find a free run directory name under {out}")


def execute(
    cfg: ExperimentConfig, task: Task, out: str | Path | None = None, run_dir: str | Path | None = None
) -> Path:
    """Run `task` for `cfg` (as an ensemble when it has one); return the run directory.

    Given the `run_dir` of an unfinished run, continue it from its last checkpoint.
    """
    from fastcourse.train.devices import is_chief

    if cfg.train.distribute == "multi_worker" and not is_chief():
        # Every worker trains and saves (saving is collective); only the chief keeps its files.
        scratch = Path(tempfile.mkdtemp(prefix="fastcourse-worker-"))
        try:
            run_task(cfg, task, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return scratch

    fresh = not run_dir or not Path(run_dir).exists()
    run_dir = Path(run_dir) if run_dir else new_run_dir(out or cfg.out, cfg.name)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io.cannot_create(exc, f"run directory {run_dir}") from None
    with rundir.claim(run_dir, cfg, fresh=fresh):
        if cfg.ensemble is not None and cfg.ensemble.members > 1:
            from fastcourse.run.ensemble import run_ensemble

            run_ensemble(cfg, task, run_dir)  # records its own wall time, and each member's
        else:
            timed(run_dir, lambda: run_task(cfg, task, run_dir))
    return run_dir
