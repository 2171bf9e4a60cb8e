"""The frame every task call runs in, alone or as an ensemble member: cleared Keras state, the
config's seed, and the precision policy and tf.distribute scope (train/devices.py); and the
run's wall time, recorded in its metrics.json as `wall_seconds`."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Optional, TypeVar

from fastcourse import io
from fastcourse.config import ExperimentConfig
from fastcourse.run import records

Task = Callable[..., dict]
T = TypeVar("T")


def run_task(cfg: ExperimentConfig, task: Task, run_dir: Path) -> dict:
    """One task call: cleared Keras state, seeded, inside the precision and distribution scope."""
    import keras

    from fastcourse.train.devices import training_scope
    from fastcourse.train.trainer import seed_everything

    keras.backend.clear_session()  # drop earlier models' graphs (ensemble members, reproduce steps)
    seed_everything(cfg.seed, cfg.train.deterministic)
    with training_scope(cfg.train.precision, cfg.train.distribute):
        return task(cfg, Path(run_dir), **cfg.task.args)


class WallClock:
    """The wall time of the work in `run_dir`, across sessions: a resumed run adds the seconds
    its earlier sessions spent, which each kept in `run_dir/wall.json` (rewritten every `every`
    seconds, so a killed session loses at most that much; an interrupted one writes it on exit).

    Everything between entering and `record()` counts: building the model, feature
    precomputation, training, evaluation and writing the artifacts."""

    def __init__(self, run_dir: str | Path, every: float = 10.0):
        self.path = Path(run_dir) / records.WALL
        self.every = float(every)
        self.prior = 0.0
        self._start = 0.0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "WallClock":
        self.prior = _read_seconds(self.path)
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._beat, name="fastcourse-wall-clock", daemon=True)
        self._thread.start()
        return self

    def seconds(self) -> float:
        return self.prior + time.perf_counter() - self._start

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            self._save()

    def _save(self) -> None:
        try:
            io.write_json(self.path, {"seconds": self.seconds()})
        except Exception:  # noqa: BLE001  a full disk must not stop training: the time is advisory
            pass

    def _halt(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def record(self) -> Optional[float]:
        """Write `wall_seconds` into the finished run's metrics.json and drop wall.json; return
        the seconds (None when the run wrote no metrics.json, e.g. a non-chief worker)."""
        self._halt()
        seconds = self.seconds()
        metrics_path = self.path.parent / records.METRICS
        metrics, _ = records.read_metrics(metrics_path)
        if metrics is None:
            return None
        metrics["wall_seconds"] = seconds
        io.write_json(metrics_path, metrics)
        self.path.unlink(missing_ok=True)
        return seconds

    def __exit__(self, exc_type, exc, tb) -> None:
        self._halt()
        if exc_type is not None and self.path.parent.is_dir():
            self._save()  # interrupted or failed: a resumed session adds on from here


def timed(run_dir: str | Path, call: Callable[[], T]) -> T:
    """`call()`, with the wall time of `run_dir`'s work recorded in its metrics.json."""
    with WallClock(run_dir) as clock:
        result = call()
        seconds = clock.record()
    if isinstance(result, dict) and seconds is not None:
        result["wall_seconds"] = seconds
    return result


def _read_seconds(path: Path) -> float:
    import json

    try:
        seconds = float(json.loads(path.read_text()).get("seconds", 0.0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0
    return seconds if seconds >= 0 else 0.0
