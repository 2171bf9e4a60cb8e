"""`fastcourse runs [DIR]` and `fastcourse compare RUN RUN...`: what the run directories hold.

`list_runs(root)` reads every run directory under `root` (config.yaml, metrics.json,
history.csv, checkpoints/state.json, members/<i>/, a reproduction's reproduce.yaml) into one
row each, newest first; `format_runs(df)` prints it. `compare_runs(dirs, out)` writes
`out/compare.png` (learning curves of all runs) and `out/compare.md` (the config keys that
differ, and each run's results).

Only files are read: no TensorFlow or Keras, so listing a hundred runs takes a moment.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Optional

import pandas as pd
import yaml

from fastcourse import io
from fastcourse.errors import UsageError
from fastcourse.locks import LOCK, is_held

COLUMNS = ["name", "task", "model", "dataset", "epochs", "test_accuracy", "minutes", "images_per_s", "status"]
STATUSES = ("running", "finished", "interrupted", "failed")
COMPARE_PNG = "compare.png"
COMPARE_MD = "compare.md"

# The files fastcourse writes; kept here rather than imported from rundir / reproduce /
# checkpoint, which pull in the config models (and through them TensorFlow).
CONFIG, METRICS, HISTORY = "config.yaml", "metrics.json", "history.csv"
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
        raise UsageError(f"{root}: no such folder; pass the folder your runs went to (fastcourse run --out, default runs)")
    found = sorted(find_runs(root), key=lambda p: (_started(p), str(p)), reverse=True)
    rows = [describe(p, _relative(p, root)) for p in found]
    df = pd.DataFrame(rows, columns=COLUMNS, index=pd.Index([str(p) for p in found], name="path"))
    df["epochs"] = df["epochs"].astype("Int64")  # whole numbers, with gaps where unknown
    for col in ("test_accuracy", "minutes", "images_per_s"):
        df[col] = df[col].astype("float64")
    df.attrs["root"] = str(root)
    return df


def format_runs(df: pd.DataFrame) -> str:
    """`list_runs`' table as aligned text; '-' where a value is unknown."""
    if df.empty:
        return f"no run directories under {df.attrs.get('root', 'this folder')}"
    formats = {"test_accuracy": "{:.4f}", "minutes": "{:.1f}", "images_per_s": "{:.0f}"}
    shown = df[COLUMNS].copy()
    for col in COLUMNS:
        fmt = formats.get(col, "{}")
        shown[col] = [("-" if _missing(v) else fmt.format(v)) for v in df[col]]
    return shown.to_string(index=False)


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
    metrics = _read_json(run / METRICS) or {}
    state = _read_json(run / CHECKPOINTS / STATE) or {}
    members = _member_metrics(run)
    ensemble = bool(members) or (cfg.get("ensemble.members") or 0) > 1
    seconds = metrics.get("train_seconds")
    if seconds is None and "fit_seconds" in metrics:  # sklearn_features: extraction and the fit
        seconds = (metrics.get("extract_seconds") or 0.0) + metrics["fit_seconds"]
    if seconds is None and not metrics:  # unfinished: the checkpointed epochs' time
        seconds = sum(state.get("epoch_seconds") or []) + sum(m.get("train_seconds") or 0.0 for m in members) or None
    speed = metrics.get("images_per_second")
    if speed is None and members:
        speeds = [m["images_per_second"] for m in members if m.get("images_per_second")]
        speed = sum(speeds) / len(speeds) if speeds else None
    epochs = metrics.get("epochs") if metrics else state.get("epoch")
    return {
        "name": name or run.name,
        "task": "ensemble" if ensemble else metrics.get("task") or cfg.get("task.name") or "train",
        "model": metrics.get("model") or cfg.get("model.name"),
        "dataset": metrics.get("dataset") or cfg.get("data.name"),
        "epochs": epochs,
        "test_accuracy": metrics.get("test_accuracy"),
        "minutes": None if seconds is None else seconds / 60.0,
        "images_per_s": speed,
        "status": run_status(run),
    }


def run_status(run: Path) -> str:
    """running (its lock is held), finished (metrics.json / report.md), interrupted
    (checkpoints or finished members or steps to continue from), or failed (nothing to resume)."""
    if (run / PLAN).is_file() and not (run / CONFIG).is_file():
        steps = [p for p in sorted(run.iterdir()) if p.is_dir() and (p / CONFIG).is_file()]
        if any(_lock_held(s) for s in steps):
            return "running"
        if (run / REPORT).is_file():
            return "finished"
        return "interrupted" if any(run_status(s) in ("finished", "interrupted") for s in steps) else "failed"
    if _lock_held(run):
        return "running"
    if (run / METRICS).is_file():
        return "finished"
    if any((run / CHECKPOINTS).rglob(STATE)) or _member_metrics(run):
        return "interrupted"
    return "failed"


def _describe_reproduction(run: Path, name: str) -> dict[str, Any]:
    plan = _read_yaml(run / PLAN) or {}
    steps = [run / s for s in plan.get("steps") or []]
    accuracies = [m["test_accuracy"] for m in map(_read_json, (s / METRICS for s in steps))
                  if m and m.get("test_accuracy") is not None]
    times = [t["seconds"] for t in map(_read_json, (s / STEP_TIME for s in steps)) if t and "seconds" in t]
    return {
        "name": name, "task": "reproduce", "model": f"{len(steps)} steps" if steps else None,
        "dataset": plan.get("data_name") or plan.get("dataset"), "epochs": None,
        # the best step's: the headline number of a reproduction (report.md has them all)
        "test_accuracy": max(accuracies) if accuracies else None,
        "minutes": sum(times) / 60.0 if times else None, "images_per_s": None,
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


# --- comparing -------------------------------------------------------------------------

def compare_runs(run_dirs: Iterable[str | os.PathLike], out: str | os.PathLike) -> tuple[Path, str]:
    """Write `out/compare.png` (loss and accuracy per epoch, train solid and validation dashed,
    one colour per run) and `out/compare.md` (results, and the config keys that differ).

    Returns the PNG's path and the markdown text. Each run must be a run directory
    (config.yaml); a reproduction is compared through its step folders.
    """
    runs = [_check_run(Path(r)) for r in run_dirs]
    if len(runs) < 2:
        raise UsageError("compare: give at least two run directories (see `fastcourse runs` for their names)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder; pass a folder for compare.png and compare.md")
    labels = _labels(runs)
    histories = {label: load_history(run) for label, run in zip(labels, runs)}
    png = plot_curves(histories, out / COMPARE_PNG)
    text = compare_markdown(runs, labels)
    io.write_text(out / COMPARE_MD, text)
    return png, text


def load_history(run: Path) -> pd.DataFrame:
    """Per-epoch metrics: history.csv, or for an unfinished run its checkpoint's history so far."""
    if (run / HISTORY).is_file():
        try:
            return pd.read_csv(run / HISTORY)
        except (OSError, ValueError, pd.errors.ParserError):
            return pd.DataFrame()
    state = _read_json(run / CHECKPOINTS / STATE) or {}
    history = state.get("history") or {}
    try:
        return pd.DataFrame(history)
    except ValueError:  # columns of unequal length: a state from another writer
        return pd.DataFrame()


def plot_curves(histories: dict[str, pd.DataFrame], path: Path) -> Path:
    """All runs on one figure: a loss panel and an accuracy panel."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    # A bare Figure: no pyplot state, and no backend switch in a notebook that imports this.
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, hist) in enumerate(histories.items()):
        color = colors[i % len(colors)]
        epochs = hist["epoch"] if "epoch" in hist else pd.Series(range(1, len(hist) + 1))
        for ax, metric in zip(axes, ("loss", "accuracy")):
            for key, style, suffix in ((metric, "-", "train"), (f"val_{metric}", "--", "validation")):
                if key in hist and hist[key].notna().any():
                    ax.plot(epochs, hist[key], style, color=color, marker="o", ms=3, label=f"{label} ({suffix})")
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, f"no {metric} history", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("learning curves: " + ", ".join(histories))
    return io.save_figure(fig, path)


def config_differences(configs: list[dict]) -> dict[str, list]:
    """{dotted key: the value in each config} for the keys not the same in every config."""
    flat = [_flat(c) for c in configs]
    keys = dict.fromkeys(k for f in flat for k in f)
    diffs = {}
    for key in keys:
        values = [f.get(key, _ABSENT) for f in flat]
        if any(v != values[0] for v in values[1:]):
            diffs[key] = values
    return diffs


def compare_markdown(runs: list[Path], labels: list[str]) -> str:
    """The results of each run and the table of config differences, as markdown."""
    results = [["run", "status", "test accuracy", "epochs", "minutes"]]
    for label, run in zip(labels, runs):
        row = describe(run, label)
        results.append([label, row["status"], _fmt(row["test_accuracy"], "{:.4f}"), _fmt(row["epochs"], "{}"),
                        _fmt(row["minutes"], "{:.1f}")])
    diffs = config_differences([_read_yaml(r / CONFIG) or {} for r in runs])
    lines = ["# Comparison", "", _table(results), "", "## Config differences", ""]
    if not diffs:
        lines.append("The runs' configs are the same.")
    else:
        cells = [["key", *labels]] + [[key, *map(_value, values)] for key, values in diffs.items()]
        lines.append(_table(cells))
    lines += ["", f"![learning curves]({COMPARE_PNG})", ""]
    return "\n".join(lines)


def _check_run(run: Path) -> Path:
    if not run.is_dir():
        raise UsageError(f"{run}: no such run directory; pass folders listed by `fastcourse runs`")
    if not (run / CONFIG).is_file():
        hint = "a reproduction: compare its step folders" if (run / PLAN).is_file() else "not a run directory"
        raise UsageError(f"{run}: no {CONFIG} ({hint}); pass folders listed by `fastcourse runs`")
    return run


def _labels(runs: list[Path]) -> list[str]:
    """Short names that tell the runs apart: the folder name, with parents where they clash."""
    for depth in range(1, max(len(r.resolve().parts) for r in runs) + 1):
        labels = ["/".join(r.resolve().parts[-depth:]) for r in runs]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i + 1}: {r}" for i, r in enumerate(runs)]  # the same folder given twice


# --- small helpers ---------------------------------------------------------------------

class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


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


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any, fmt: str) -> str:
    return "-" if _missing(value) else fmt.format(value)


def _value(value: Any) -> str:
    """A config value as it reads in YAML flow style: 0.001, [[1, 0.001]], null."""
    if value is _ABSENT:
        return "(absent)"
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _table(rows: list[list[str]]) -> str:
    """A markdown table; the first row is the header. Pipes in cells are escaped."""
    esc = [[str(c).replace("|", r"\|").replace("\n", " ") for c in row] for row in rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in esc[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)
