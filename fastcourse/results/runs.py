"""`fastcourse runs [DIR]`: what the run directories hold (`fastcourse compare` is compare.py).

`list_runs(root)` reads every run directory under `root` (config.yaml, metrics.json,
history.csv, wall.json, checkpoints/state.json, members/<i>/, a reproduction's reproduce.yaml)
into one row each, newest first; `format_runs(df)` prints it. The columns (docs/records.md):

- `split`, `accuracy`: the split the accuracy was measured on (valid for image folders, test
  for array datasets) and the accuracy on it;
- `minutes`: the run's wall time (metrics.json's `wall_seconds`: building, feature
  precomputation, training, evaluation, saving; every session of a resumed run); so far, for
  an unfinished run;
- `images_per_s`: training images x epochs (x members) per second of that wall time;
- `status`: running, finished, interrupted, failed, or damaged (a metrics.json that is not
  valid JSON or lacks the evaluation).

Only files are read: no TensorFlow or Keras, so listing a hundred runs takes a moment.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import yaml

from fastcourse.errors import UsageError
from fastcourse.locks import LOCK, is_held
from fastcourse.run import records

COLUMNS = ["name", "task", "model", "dataset", "epochs", "split", "accuracy", "minutes", "images_per_s", "status"]
STATUSES = ("running", "finished", "interrupted", "failed", "damaged")

# The files fastcourse writes; kept here rather than imported from rundir / reproduce /
# checkpoint, which pull in the config models (and through them TensorFlow).
CONFIG, METRICS, HISTORY = "config.yaml", records.METRICS, "history.csv"
CHECKPOINTS, STATE, PLAN, REPORT = "checkpoints", "state.json", "reproduce.yaml", "report.md"
STEP_TIME = "step_time.json"
# Runs live at <out>/<name>-<stamp>; a few levels more allow folders of experiments without
# walking a whole data tree when DIR is a big folder.
MAX_DEPTH = 4


# --- listing ---------------------------------------------------------------------------


def list_runs(root: str | os.PathLike = "runs") -> pd.DataFrame:
    """One row per run directory or reproduction under `root`, newest first.

    Columns are COLUMNS; the index is each run's path. `name` is the path relative to `root`
    (what `fastcourse compare` takes after `root/`). A run directory's members/ and a
    reproduction's steps are summed up in its own row, not listed apart.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(
            f"{root}: no such folder; pass the folder your runs went to (fastcourse run --out, default runs)"
        )
    found = sorted(find_runs(root), key=lambda p: (_started(p), str(p)), reverse=True)
    rows = [describe(p, _relative(p, root)) for p in found]
    df = pd.DataFrame(rows, columns=COLUMNS, index=pd.Index([str(p) for p in found], name="path"))
    df["epochs"] = df["epochs"].astype("Int64")  # whole numbers, with gaps where unknown
    for col in ("accuracy", "minutes", "images_per_s"):
        df[col] = df[col].astype("float64")
    df.attrs["root"] = str(root)
    return df


def format_runs(df: pd.DataFrame) -> str:
    """`list_runs`' table as aligned text; '-' where a value is unknown; then a line for each
    damaged run saying what is wrong with its metrics.json."""
    if df.empty:
        return f"no run directories under {df.attrs.get('root', 'this folder')}"
    formats = {"accuracy": "{:.4f}", "minutes": "{:.1f}", "images_per_s": "{:.0f}"}
    shown = df[COLUMNS].copy()
    for col in COLUMNS:
        fmt = formats.get(col, "{}")
        shown[col] = [("-" if _missing(v) else fmt.format(v)) for v in df[col]]
    notes = [
        f"{name}: {METRICS} is damaged ({damage(Path(path))}); its model and figures may be incomplete"
        for path, name, status in zip(df.index, df["name"], df["status"])
        if status == "damaged"
    ]
    return "\n".join([shown.to_string(index=False), *notes])


def find_runs(root: Path) -> list[Path]:
    """Run directories (config.yaml) and reproductions (reproduce.yaml) under `root`, itself included."""
    found = []
    for folder, subdirs, files in os.walk(root):
        path = Path(folder)
        if CONFIG in files or PLAN in files:
            found.append(path)
            subdirs[:] = []  # members/ and reproduction steps belong to this row
            continue
        if len(path.relative_to(root).parts) >= MAX_DEPTH:
            subdirs[:] = []
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    return found


def describe(run: Path, name: Optional[str] = None) -> dict[str, Any]:
    """The table row of one run directory or reproduction."""
    if (run / PLAN).is_file() and not (run / CONFIG).is_file():
        return _describe_reproduction(run, name or run.name)
    cfg = _flat(_read_yaml(run / CONFIG) or {})
    metrics = records.read_metrics(run / METRICS)[0] or {}
    state = _read_json(run / CHECKPOINTS / STATE) or {}
    members = _member_metrics(run)
    ensemble = bool(members) or (cfg.get("ensemble.members") or 0) > 1
    seconds = run_seconds(run, metrics, state, members)
    epochs = metrics.get("epochs") if metrics else state.get("epoch")
    return {
        "name": name or run.name,
        "task": "ensemble" if ensemble else metrics.get("task") or cfg.get("task.name") or "train",
        "model": metrics.get("model") or cfg.get("model.name"),
        "dataset": metrics.get("dataset") or cfg.get("data.name"),
        "epochs": epochs,
        "split": records.eval_split(metrics) if metrics else None,
        "accuracy": records.eval_accuracy(metrics) if metrics else None,
        "minutes": None if seconds is None else seconds / 60.0,
        "images_per_s": _rate(metrics, members, seconds) if metrics else None,
        "status": run_status(run),
    }


def run_seconds(run: Path, metrics: dict, state: dict, members: list[dict]) -> Optional[float]:
    """The run's wall time: metrics.json's `wall_seconds`; for an unfinished run the time so far
    (wall.json, else its checkpointed epochs and finished members); for a run written before
    fastcourse recorded wall time, its training time (plus extraction for sklearn_features)."""
    if metrics:
        if _number(metrics.get("wall_seconds")):
            return float(metrics["wall_seconds"])
        if "fit_seconds" in metrics:  # sklearn_features: extraction and the fit
            return (metrics.get("extract_seconds") or 0.0) + metrics["fit_seconds"]
        return metrics.get("train_seconds")
    so_far = (_read_json(run / records.WALL) or {}).get("seconds")
    if _number(so_far):
        return float(so_far)
    total = sum(state.get("epoch_seconds") or []) + sum(
        m.get("wall_seconds") or m.get("train_seconds") or 0.0 for m in members
    )
    return total or None


def _rate(metrics: dict, members: list[dict], seconds: Optional[float]) -> Optional[float]:
    """Training images x epochs (x members) per second of the run's wall time: the end-to-end rate
    (metrics.json's `images_per_second` is the trainer's own, over its later epochs only)."""
    images, epochs = metrics.get("train_images"), metrics.get("epochs") or 1  # sklearn: one pass
    if not (_number(images) and _number(epochs) and _number(seconds)) or seconds <= 0:
        return None
    return images * epochs * max(1, int(metrics.get("ensemble_members") or len(members) or 1)) / seconds


def run_status(run: Path) -> str:
    """running (its lock is held), finished (a sound metrics.json / report.md), damaged (a
    metrics.json that is not valid JSON or lacks the evaluation: see records.read_metrics),
    interrupted (checkpoints or finished members or steps to continue from), or failed
    (nothing to resume)."""
    if (run / PLAN).is_file() and not (run / CONFIG).is_file():
        steps = [p for p in sorted(run.iterdir()) if p.is_dir() and (p / CONFIG).is_file()]
        if any(_lock_held(s) for s in steps):
            return "running"
        if (run / REPORT).is_file():
            return "finished"
        return "interrupted" if any(run_status(s) in ("finished", "interrupted") for s in steps) else "failed"
    if _lock_held(run):
        return "running"
    metrics, problem = records.read_metrics(run / METRICS)
    if problem is not None:
        return "damaged"
    if metrics is not None:
        return "finished"
    if any((run / CHECKPOINTS).rglob(STATE)) or _member_metrics(run):
        return "interrupted"
    return "failed"


def damage(run: Path) -> Optional[str]:
    """Why the run's metrics.json is damaged, or None."""
    return records.read_metrics(run / METRICS)[1]


def _describe_reproduction(run: Path, name: str) -> dict[str, Any]:
    plan = _read_yaml(run / PLAN) or {}
    steps = [run / s for s in plan.get("steps") or []]
    results = [m for m in (records.read_metrics(s / METRICS)[0] for s in steps) if m]
    best = max(results, key=records.eval_accuracy, default=None)
    times = [t["seconds"] for t in map(_read_json, (s / STEP_TIME for s in steps)) if t and "seconds" in t]
    return {
        "name": name,
        "task": "reproduce",
        "model": f"{len(steps)} steps" if steps else None,
        "dataset": plan.get("data_name") or plan.get("dataset"),
        "epochs": None,
        # the best step's: the headline number of a reproduction (report.md has them all)
        "split": None if best is None else records.eval_split(best),
        "accuracy": None if best is None else records.eval_accuracy(best),
        "minutes": sum(times) / 60.0 if times else None,
        "images_per_s": None,
        "status": run_status(run),
    }


def _member_metrics(run: Path) -> list[dict]:
    members = run / "members"
    if not members.is_dir():
        return []
    return [m for m in (_read_json(p / METRICS) for p in sorted(members.iterdir())) if m]


def _lock_held(run: Path) -> bool:
    """Whether a fastcourse process holds `run`'s lock. Taking it for an instant is the only
    portable test; a run starting in that instant is refused as "in use" and can be started again."""
    return is_held(run, LOCK)


def _started(run: Path) -> float:
    # config.yaml / reproduce.yaml are written once when the run starts (a resume keeps them)
    for name in (CONFIG, PLAN):
        try:
            return (run / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


# --- small helpers ---------------------------------------------------------------------


def _flat(config: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 3}} -> {"train.epochs": 3}; lists stay values."""
    flat = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flat(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _read_json(path: Path) -> Optional[dict]:
    # A listing shows what it can: an unreadable or half-copied file counts as absent.
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_yaml(path: Path) -> Optional[dict]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _relative(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return str(rel) if rel.parts else path.resolve().name


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any, fmt: str) -> str:
    return "-" if _missing(value) else fmt.format(value)
