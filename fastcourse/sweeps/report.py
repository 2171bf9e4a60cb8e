"""What a sweep leaves in its folder, rewritten from the study at the end of every `fastcourse sweep`:

    trials.csv       one row per trial: its parameters, train and evaluation accuracy and loss,
                     the gap between them, epochs, seconds and state (complete, pruned, failed,
                     running, waiting)
    report.md        the best trial, which settings overfit or underfit (with the figures), the
                     per-trial overhead, the trials table
    overfitting.png  train against evaluation accuracy, one point per trial, with the diagonal
    best.yaml        the best trial's config, runnable with `fastcourse run SWEEP/best.yaml`

Overfitting as lesson 3 reads it: a trial whose training accuracy is more than GAP above its
evaluation accuracy overfits; more than GAP below, it underfits (dropout and augmentation make
the training batches harder than the clean evaluation images). The training figure is the last
epoch's running accuracy over its augmented batches with dropout on, as Keras reports it and as
each run's learning_curves.png draws it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import yaml

from fastcourse import io
from fastcourse.sweeps.spec import Sweep, describe_params
from fastcourse.sweeps.trial import trial_paths

GAP = 0.01  # accuracy points (as a fraction) between train and evaluation that count as over/underfitting
STATES = ("complete", "pruned", "failed", "running", "waiting")
FIGURES = [
    "train_accuracy",
    "eval_accuracy",
    "gap",
    "train_loss",
    "eval_loss",
    "eval_split",
    "epochs",
    "run_seconds",
    "process_seconds",
    "verdict",
    "first_epoch_seconds",
    "later_epoch_seconds",
    "error",
]


def trials_frame(sweep: Sweep, study) -> pd.DataFrame:
    """One row per trial of the study (by number): state, parameters, figures (FIGURES)."""
    rows = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        attrs = t.user_attrs
        params = t.params or t.system_attrs.get("fixed_params") or {}
        row: dict[str, Any] = {"trial": t.number, "state": _state(t.state.name)}
        row.update({key: params.get(key) for key in sweep.spec.space})
        row.update({key: attrs.get(key) for key in FIGURES if key in attrs})
        train, valid = attrs.get("train_accuracy"), attrs.get("eval_accuracy")
        if _number(train) and _number(valid) and row["state"] == "complete":
            row["gap"] = train - valid
            row["verdict"] = verdict(train - valid)
        rows.append(row)
    columns = ["trial", "state", *sweep.spec.space, *FIGURES]
    return pd.DataFrame(rows, columns=columns).set_index("trial")


def verdict(gap: float) -> str:
    if gap > GAP:
        return "overfits"
    if gap < -GAP:
        return "underfits"
    return "balanced"


def write_report(sweep: Sweep, study, folder: Path) -> dict[str, Path]:
    """trials.csv, report.md, overfitting.png and best.yaml (when a trial is complete)."""
    df = trials_frame(sweep, study)
    written = {"trials": io.write_text(folder / "trials.csv", df.to_csv())}
    done = df[df["state"] == "complete"]
    best = _best(sweep, done)
    if best is not None:
        written["best"] = _write_best(sweep, folder, int(best))
    if len(done):
        written["plot"] = plot_overfitting(done, sweep, folder / "overfitting.png")
    written["report"] = io.write_text(folder / "report.md", report_text(sweep, df, best))
    return written


def _best(sweep: Sweep, done: pd.DataFrame) -> Optional[int]:
    metric = "eval_accuracy" if sweep.spec.objective == "accuracy" else "eval_loss"
    values = pd.to_numeric(done[metric], errors="coerce").dropna()
    if values.empty:
        return None
    return int(values.idxmax() if sweep.spec.direction == "maximize" else values.idxmin())


def _write_best(sweep: Sweep, folder: Path, number: int) -> Path:
    config, _, _ = trial_paths(folder, number)
    raw = yaml.safe_load(config.read_text())
    raw["name"] = f"{sweep.study_name}-best"
    header = (
        f"# The best trial ({number:03d}) of sweep {sweep.study_name} ({sweep.source}), by "
        f"{sweep.spec.objective}.\n#\n#   fastcourse run {folder / 'best.yaml'}\n"
    )
    return io.write_text(folder / "best.yaml", header + yaml.safe_dump(raw, sort_keys=False))


def plot_overfitting(done: pd.DataFrame, sweep: Sweep, path: Path) -> Path:
    """Train against evaluation accuracy, one point per complete trial (labelled with its number; the
    key beside the plot gives its settings), with the diagonal: a point below it overfits (train
    above evaluation), above it underfits."""
    from matplotlib.figure import Figure

    split = str(done["eval_split"].dropna().iloc[0]) if done["eval_split"].notna().any() else "evaluation"
    train = pd.to_numeric(done["train_accuracy"], errors="coerce")
    valid = pd.to_numeric(done["eval_accuracy"], errors="coerce")
    fig = Figure(figsize=(11, 6.5))
    ax = fig.add_axes((0.08, 0.09, 0.52, 0.83))
    low = float(min(train.min(), valid.min()))
    low = max(0.0, math.floor(low * 50) / 50 - 0.02) if math.isfinite(low) else 0.0
    ax.plot([low, 1.0], [low, 1.0], "--", color="grey", lw=1, label=f"train = {split}")
    colours = {"overfits": "tab:red", "underfits": "tab:blue", "balanced": "tab:green"}
    bounds = {"overfits": f"gap > {GAP:g}", "underfits": f"gap < -{GAP:g}", "balanced": f"|gap| <= {GAP:g}"}
    for what, colour in colours.items():
        mask = done["verdict"] == what
        ax.scatter(train[mask], valid[mask], s=40, color=colour, label=f"{what} ({bounds[what]})")
    for number in done.index:
        ax.annotate(
            f"{number:03d}", (train[number], valid[number]), fontsize=8, xytext=(4, 3), textcoords="offset points"
        )
    ax.set_xlim(low, 1.005)
    ax.set_ylim(low, 1.005)
    ax.set_xlabel("train accuracy (last epoch, augmented batches, dropout on)")
    ax.set_ylabel(f"{split} accuracy")
    ax.set_title(f"{sweep.study_name}: train against {split} accuracy per trial")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    key = [f"{n:03d}  " + "  ".join(_short(k, _py(row[k])) for k in sweep.spec.space) for n, row in done.iterrows()]
    fig.text(0.63, 0.92, "\n".join(["trial  settings", *key]), va="top", family="monospace", fontsize=8)
    return io.save_figure(fig, path)


def _short(key: str, value: Any) -> str:
    """`dropout=0.25`, `augment=course` (a section's `name` goes by the section)."""
    parts = key.split(".")
    label = parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]
    return f"{label}={value}"


def report_text(sweep: Sweep, df: pd.DataFrame, best: Optional[int]) -> str:
    counts = {s: int((df["state"] == s).sum()) for s in STATES}
    split = df["eval_split"].dropna().iloc[0] if df["eval_split"].notna().any() else "evaluation"
    lines = [
        f"# Sweep {sweep.study_name}",
        "",
        f"Spec {sweep.source} on base config {sweep.spec.base}; objective: {split} {sweep.spec.objective} "
        f"({sweep.spec.direction}d); sampler {sweep.spec.sampler.name} (seed {sweep.spec.sampler.seed}); "
        f"pruner {sweep.spec.pruner.name}.",
        "",
        f"Trials: {len(df)} of {sweep.n_trials}: " + ", ".join(f"{counts[s]} {s}" for s in STATES) + ".",
        "",
    ]
    if best is not None:
        row = df.loc[best]
        params = {k: _py(row[k]) for k in sweep.spec.space}
        lines += [
            f"**Best trial: {best:03d}** ({describe_params(params)}): {split} accuracy {row['eval_accuracy']:.4f}, "
            f"{split} loss {row['eval_loss']:.4f}, train accuracy {row['train_accuracy']:.4f}. "
            "Its config: `best.yaml` (`fastcourse run best.yaml`).",
            "",
        ]
    done = df[df["state"] == "complete"]
    if len(done):
        lines += _fit_section(sweep, done, split)
        lines += _overhead_section(done)
    shown = df.drop(columns=["error", "first_epoch_seconds", "later_epoch_seconds"]).copy()
    for col in ("train_accuracy", "eval_accuracy", "gap", "train_loss", "eval_loss"):
        shown[col] = [("-" if not _number(v) else f"{v:.4f}") for v in shown[col]]
    for col in ("run_seconds", "process_seconds"):
        shown[col] = [("-" if not _number(v) else f"{v:.0f}") for v in shown[col]]
    lines += ["## Trials", "", shown.fillna("-").to_markdown(), ""]
    failed = df[df["state"] == "failed"]
    if len(failed):
        lines += ["## Failed trials", ""] + [f"- {n:03d}: {e}" for n, e in failed["error"].fillna("-").items()] + [""]
    return "\n".join(lines)


def _fit_section(sweep: Sweep, done: pd.DataFrame, split: str) -> list[str]:
    lines = [
        "## Which settings overfit",
        "",
        f"gap = train accuracy - {split} accuracy. A trial overfits when the gap is above {GAP:g}, underfits "
        f"when it is below -{GAP:g}. The train figure is the last epoch's running accuracy over augmented "
        "batches with dropout on (what Keras prints): augmentation and dropout lower it.",
        "",
    ]
    for number, row in done.sort_values("gap", ascending=False).iterrows():
        params = describe_params({k: _py(row[k]) for k in sweep.spec.space})
        lines.append(
            f"- {number:03d} ({params}): **{row['verdict']}**, train {row['train_accuracy']:.4f}, "
            f"{split} {row['eval_accuracy']:.4f}, gap {row['gap']:+.4f}"
        )
    lines += ["", "Each setting, averaged over the complete trials that have it:", ""]
    table = []
    for key in sweep.spec.space:
        for value, group in done.groupby(key, dropna=False, sort=True):
            table.append(
                {
                    "setting": f"{key}={value}",
                    "trials": len(group),
                    "train accuracy": group["train_accuracy"].mean(),
                    f"{split} accuracy": group["eval_accuracy"].mean(),
                    "mean gap": group["gap"].mean(),
                    "overfit": int((group["verdict"] == "overfits").sum()),
                    "underfit": int((group["verdict"] == "underfits").sum()),
                }
            )
    lines += [pd.DataFrame(table).to_markdown(index=False, floatfmt=".4f"), ""]
    return lines


def _overhead_section(done: pd.DataFrame) -> list[str]:
    process = pd.to_numeric(done["process_seconds"], errors="coerce")
    run = pd.to_numeric(done["run_seconds"], errors="coerce")
    overhead = (process - run).dropna()
    if overhead.empty:
        return []
    first = pd.to_numeric(done["first_epoch_seconds"], errors="coerce")
    later = pd.to_numeric(done["later_epoch_seconds"], errors="coerce")
    tracing = (first - later).dropna()
    traced = (
        f" Inside the run, the first epoch took {tracing.mean():.1f} s longer than the later ones on average "
        f"(min {tracing.min():.1f}, max {tracing.max():.1f}): tracing the training and evaluation graphs, "
        "building the input pipeline."
        if len(tracing)
        else ""
    )
    return [
        "## Per-trial overhead",
        "",
        f"Each trial is a process: its wall time ({process.mean():.1f} s on average) less the run's own "
        f"(metrics.json wall_seconds: building, training, evaluating, saving; {run.mean():.1f} s) is the start "
        f"of the interpreter, the import of TensorFlow and fastcourse and the config check: {overhead.mean():.1f} s "
        f"on average (min {overhead.min():.1f}, max {overhead.max():.1f}).{traced}",
        "",
    ]


def _py(value: Any) -> Any:
    """A pandas cell as the plain Python value it was (numpy scalars print as np.float64(...))."""
    return value.item() if hasattr(value, "item") else value


def _state(name: str) -> str:
    return {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}.get(name, "waiting")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
