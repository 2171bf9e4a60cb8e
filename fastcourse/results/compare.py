"""`fastcourse compare RUN RUN...`: several runs side by side.

`compare_runs(dirs, out)` writes `out/compare.png` (the learning curves of all runs, each
run's evaluation split named in the legend) and `out/compare.md` (each run's status, split,
accuracy, epochs and wall-time minutes, as `fastcourse runs` reads them, and the config keys
that differ). Only files are read: no TensorFlow or Keras.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Optional

import pandas as pd
import yaml

from fastcourse import io
from fastcourse.errors import UsageError
from fastcourse.results.runs import (
    CHECKPOINTS,
    CONFIG,
    HISTORY,
    METRICS,
    PLAN,
    STATE,
    _flat,
    _fmt,
    _read_json,
    _read_yaml,
    describe,
)
from fastcourse.run import records

COMPARE_PNG = "compare.png"
COMPARE_MD = "compare.md"


def compare_runs(run_dirs: Iterable[str | os.PathLike], out: str | os.PathLike) -> tuple[Path, str]:
    """Write `out/compare.png` (loss and accuracy per epoch, train solid and the evaluation split
    dashed, named in the legend: valid or test; one colour per run) and `out/compare.md` (results
    with their split, and the config keys that differ).

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
    png = plot_curves(histories, out / COMPARE_PNG, {label: eval_split_of(run) for label, run in zip(labels, runs)})
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


def eval_split_of(run: Path) -> Optional[str]:
    """The split a run validates on: its metrics.json's, a member's, else None (not known yet)."""
    for path in [run / METRICS, *sorted((run / "members").glob(f"*/{METRICS}"))]:
        split = records.eval_split(_read_json(path) or {})
        if split:
            return split
    return None


def plot_curves(
    histories: dict[str, pd.DataFrame], path: Path, splits: Optional[dict[str, Optional[str]]] = None
) -> Path:
    """All runs on one figure: a loss panel and an accuracy panel. `splits` names each run's
    evaluation split ("valid", "test") for the legend; "eval" where it is not known."""
    splits = splits or {}
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
            for key, style, suffix in ((metric, "-", "train"), (f"val_{metric}", "--", splits.get(label) or "eval")):
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
    results = [["run", "status", "split", "accuracy", "epochs", "minutes"]]
    for label, run in zip(labels, runs):
        row = describe(run, label)
        results.append(
            [
                label,
                row["status"],
                _fmt(row["split"], "{}"),
                _fmt(row["accuracy"], "{:.4f}"),
                _fmt(row["epochs"], "{}"),
                _fmt(row["minutes"], "{:.1f}"),
            ]
        )
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


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


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
