"""One trial: a `fastcourse run` process of the trial's config into `SWEEP/trials/NNN/`.

Each trial is its own process, so TensorFlow's memory cannot grow from one trial to the next and
a trial that crashes or diverges is recorded as failed while the sweep goes on. The sweep reads
the run's per-epoch records (`checkpoints/state.json`, committed after each epoch) once a
second, reports each epoch's figure to the Optuna trial, and stops a pruned trial with SIGTERM
(the run keeps its last checkpoint). No callback runs inside the trial: the storage and the run
directory are all the two processes share.

    SWEEP/trials/NNN.yaml   the trial's config (base + set + the trial's parameters)
    SWEEP/trials/NNN/       its run directory (`fastcourse runs SWEEP` lists them)
    SWEEP/trials/NNN.log    what the run printed (appended by each session of a resumed trial)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from fastcourse import io
from fastcourse.locks import is_held
from fastcourse.run import records
from fastcourse.run.rundir import CHECKPOINTS, METRICS, is_complete
from fastcourse.sweeps.spec import RangeSpec, Sweep

# A small run's epochs can take a fraction of a second: a slower poll could see none of them
# before the run ends, and a trial the pruner would stop would run to the end. Reading
# state.json four times a second costs nothing next to an epoch.
POLL_SECONDS = 0.25
INTERRUPTED_CODES = (130, 143, -signal.SIGINT, -signal.SIGTERM)


@dataclass
class Outcome:
    """How a trial ended: complete, pruned, failed, or interrupted (the sweep was stopped: the
    trial stays RUNNING in the study and continues from its checkpoint on the next run)."""

    state: str
    values: dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None


def trial_paths(folder: Path, number: int) -> tuple[Path, Path, Path]:
    """(config, run directory, log) of trial `number` in the sweep folder."""
    base = folder / "trials" / f"{number:03d}"
    return base.with_suffix(".yaml"), base, base.with_suffix(".log")


def suggest(trial, sweep: Sweep) -> dict[str, Any]:
    """The trial's parameters (a resumed trial gets back the values it was given)."""
    params = {}
    for key, dim in sweep.spec.space.items():
        if isinstance(dim, RangeSpec):
            suggest_range = trial.suggest_int if dim.is_int else trial.suggest_float
            options = {"log": dim.log} if dim.step is None else {"step": dim.step}
            params[key] = suggest_range(key, dim.low, dim.high, **options)
        else:
            params[key] = trial.suggest_categorical(key, dim)
    return params


def run_trial(trial, sweep: Sweep, folder: Path, stop: threading.Event, prune: bool, reported: set[int]) -> Outcome:
    """Run (or continue) `trial` as a `fastcourse run` process; report its epochs (those not in
    `reported`, the steps the study already holds); return how it ended."""
    params = suggest(trial, sweep)
    config, run_dir, log = trial_paths(folder, trial.number)
    if not config.exists():  # a resumed trial keeps the config it started with
        io.write_text(config, yaml.safe_dump(sweep.trial_config(params, trial.number), sort_keys=False))
    while is_held(run_dir) and not stop.is_set():  # a run left by a sweep killed with -9 finishes on its own
        time.sleep(POLL_SECONDS)
    key = "val_accuracy" if sweep.spec.objective == "accuracy" else "val_loss"
    process_seconds = float(trial.user_attrs.get("process_seconds") or 0.0)
    if is_complete(run_dir):
        _report(trial, _history(run_dir), key, reported)
        return _finished(run_dir, process_seconds)
    command = [sys.executable, "-m", "fastcourse", "run", str(config), "--run-dir", str(run_dir)]
    command += ["--set", "train.verbose=2"]  # one line per epoch in the log (may differ on resume)
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            while process.poll() is None:
                if stop.wait(POLL_SECONDS):
                    _terminate(process)
                    return Outcome("interrupted")
                _report(trial, _running_history(run_dir), key, reported)
                if prune and trial.should_prune():
                    _terminate(process)
                    seconds = process_seconds + time.perf_counter() - start
                    trial.set_user_attr("process_seconds", seconds)
                    return Outcome("pruned", {**_partial(run_dir, key), "process_seconds": seconds})
        except BaseException:  # Ctrl-C in this process: stop the run, keep its checkpoint
            _terminate(process)
            raise
    seconds = process_seconds + time.perf_counter() - start
    trial.set_user_attr("process_seconds", seconds)
    if process.returncode in INTERRUPTED_CODES:
        return Outcome("interrupted")
    if process.returncode != 0 or not is_complete(run_dir):
        return Outcome("failed", {"process_seconds": seconds}, _error_line(log, process.returncode))
    _report(trial, _history(run_dir), key, reported)
    return _finished(run_dir, seconds)


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM: the run unwinds as on Ctrl-C and keeps its last completed epoch."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _report(trial, history: dict[str, list[float]], key: str, reported: set[int]) -> None:
    for epoch, value in enumerate(history.get(key) or [], start=1):
        if epoch not in reported:
            trial.report(float(value), epoch)
            reported.add(epoch)


def _running_history(run_dir: Path) -> dict[str, list[float]]:
    """The history so far, from the checkpoint's commit point (written after each healthy epoch)."""
    try:
        state = json.loads((run_dir / CHECKPOINTS / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    history = state.get("history") if isinstance(state, dict) else None
    return history if isinstance(history, dict) else {}


def _history(run_dir: Path) -> dict[str, list[float]]:
    import pandas as pd

    try:
        frame = pd.read_csv(run_dir / "history.csv")
    except (OSError, ValueError):
        return {}
    return {col: frame[col].astype(float).tolist() for col in frame.columns if col != "epoch"}


def _last(history: dict[str, list[float]], key: str) -> Optional[float]:
    values = history.get(key) or []
    return float(values[-1]) if values else None


def _partial(run_dir: Path, key: str) -> dict[str, Any]:
    history = _running_history(run_dir)
    return {
        "epochs": len(history.get(key) or []),
        "train_accuracy": _last(history, "accuracy"),
        "train_loss": _last(history, "loss"),
        "last_val_accuracy": _last(history, "val_accuracy"),
        "last_val_loss": _last(history, "val_loss"),
    }


def _finished(run_dir: Path, process_seconds: float) -> Outcome:
    """A complete run's figures: the evaluation (metrics.json, named by its split) and the last
    epoch's training accuracy and loss (history.csv: the running figure over that epoch's
    augmented batches with dropout on, as Keras reports it)."""
    metrics, problem = records.read_metrics(run_dir / METRICS)
    if metrics is None:
        return Outcome("failed", {"process_seconds": process_seconds}, f"{run_dir / METRICS}: {problem}")
    history = _history(run_dir)
    epoch_seconds = [float(s) for s in metrics.get("epoch_seconds") or []]
    values = {
        "train_accuracy": _last(history, "accuracy"),
        "train_loss": _last(history, "loss"),
        "eval_split": records.eval_split(metrics),
        "eval_accuracy": records.eval_accuracy(metrics),
        "eval_loss": records.eval_loss(metrics),
        "epochs": metrics.get("epochs"),
        "run_seconds": metrics.get("wall_seconds"),
        "process_seconds": process_seconds,
        "first_epoch_seconds": epoch_seconds[0] if epoch_seconds else None,
        "later_epoch_seconds": sum(epoch_seconds[1:]) / (len(epoch_seconds) - 1) if len(epoch_seconds) > 1 else None,
    }
    return Outcome("complete", values)


def _error_line(log: Path, code: int) -> str:
    """The run's own error line (`fastcourse: error: ...`), else the last line it printed."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    errors = [line for line in lines if line.startswith("fastcourse: error:")]
    last = errors[-1] if errors else (lines[-1] if lines else "no output")
    how = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
    return f"{how}: {last[:300]}"
