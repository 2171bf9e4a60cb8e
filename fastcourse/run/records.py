"""metrics.json: the one place its keys are written and read (docs/records.md lists them).

Every run (any task, an ensemble member, an ensemble, the Learner's save) writes its metrics
through `run_metrics`, and every reader (`fastcourse runs` / `compare`, the run printout, the
reproduction report) reads the evaluation through `eval_split` / `eval_accuracy` /
`eval_loss`, which fall back to the keys older runs wrote.

The evaluation keys name the split they were measured on: `eval_split` is "test" for array
datasets and "valid" for image folders, and `eval_accuracy` / `eval_loss` / `eval_images` are
that split's. fastcourse 0.1.0 wrote them as `test_split` / `test_accuracy` / `test_loss` /
`test_images`, even for the valid split; those keys are still written, with the same values,
as aliases for one release (ALIASES: written by 0.2.x, dropped in 0.3.0), so that notebooks and
scripts reading them keep working.

Nothing here imports TensorFlow, Keras or matplotlib: listing a hundred runs stays quick.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

METRICS = "metrics.json"
PROBS = "eval_probs.npy"  # class probabilities on the evaluation split; written last by every task
LABELS = "eval_labels.npy"  # their labels
WALL = "wall.json"  # an unfinished run's wall time so far (run/frame.py's WallClock)

# old key -> new key. The old keys are written too, by 0.2.x only; read the new ones.
ALIASES = {
    "test_split": "eval_split",
    "test_accuracy": "eval_accuracy",
    "test_loss": "eval_loss",
    "test_images": "eval_images",
}
ALIAS_NOTE = (
    "test_split/test_accuracy/test_loss/test_images repeat eval_split/eval_accuracy/eval_loss/"
    "eval_images (the split eval_split names) for readers of fastcourse 0.1.0 runs; "
    "0.2.x writes them, 0.3.0 drops them"
)


def with_aliases(values: dict[str, Any]) -> dict[str, Any]:
    """`values` plus the old name of each evaluation key it holds (same value)."""
    out = dict(values)
    for old, new in ALIASES.items():
        if new in values:
            out[old] = values[new]
    return out


def evaluation(split: str, accuracy: float, loss: Optional[float], images: Optional[int] = None) -> dict[str, Any]:
    """The evaluation keys of one result (a run, a member, a combination rule), with aliases."""
    values: dict[str, Any] = {
        "eval_split": str(split),
        "eval_accuracy": float(accuracy),
        "eval_loss": None if loss is None else float(loss),
    }
    if images is not None:
        values["eval_images"] = int(images)
    return with_aliases(values)


def run_metrics(
    *,
    name: str,
    task: str,
    model: str,
    dataset: Any,
    data_kind: Any,
    data_source: Any,
    classes: list,
    augment: str,
    split: str,
    accuracy: float,
    loss: Optional[float],
    eval_images: int,
    train_images: Any,
    epochs: Any,
    train_seconds: float,
    params: int,
    seed: int,
    versions: dict,
    **extra: Any,
) -> dict[str, Any]:
    """metrics.json of a finished run: what ran, on what, the evaluation (named by its split),
    timings and versions; `extra` holds the task's own keys.

    `wall_seconds` (the run's wall time, feature extraction and evaluation included) is added
    by the frame once the task returns (fastcourse.run.frame.WallClock)."""
    metrics: dict[str, Any] = {
        "name": name,
        "task": task,
        "model": model,
        "dataset": dataset,
        "data_kind": data_kind,
        "data_source": data_source,
        "classes": list(classes),
        "augment": augment,
        **evaluation(split, accuracy, loss, eval_images),
        "epochs": epochs,
        "train_images": train_images,
        "train_seconds": float(train_seconds),
        "params": int(params),
        "seed": seed,
        "precision": _compute_policy(),
        "versions": versions,
    }
    return {**metrics, **extra, "aliases": ALIAS_NOTE}


def _compute_policy() -> str:
    """The dtype policy the run computed under (float32, mixed_bfloat16, ...): the frame sets it
    for the whole task, and metrics.json is written inside it."""
    import keras

    return keras.mixed_precision.global_policy().name


# --- reading (old runs included) ------------------------------------------------------------


def _get(metrics: dict, key: str) -> Any:
    value = metrics.get(key)
    if value is None:
        old = next((o for o, n in ALIASES.items() if n == key), None)
        value = metrics.get(old) if old else None
    return value


def eval_split(metrics: dict) -> Optional[str]:
    """ "valid" or "test": the split the run's accuracy was measured on (None when unknown)."""
    value = _get(metrics, "eval_split")
    return str(value) if value else None


def eval_accuracy(metrics: dict) -> Optional[float]:
    value = _get(metrics, "eval_accuracy")
    return float(value) if _number(value) else None


def eval_loss(metrics: dict) -> Optional[float]:
    value = _get(metrics, "eval_loss")
    return float(value) if _number(value) else None


def result_line(name: str, metrics: dict) -> str:
    """`fastcourse: NAME: test accuracy 0.9830, loss 0.0673`: a finished run's result as the Learner's
    save() and each step of `fastcourse reproduce` print it (`fastcourse run` prints its own line, with
    the wall time and the run directory, so a run's result is printed once)."""
    loss = eval_loss(metrics)
    return (
        f"fastcourse: {name}: {eval_split(metrics)} accuracy {eval_accuracy(metrics):.4f}, "
        f"loss {'-' if loss is None else f'{loss:.4f}'}"
    )


def read_metrics(path: str | Path) -> tuple[Optional[dict], Optional[str]]:
    """(metrics, None) for a sound metrics.json; (None, why) for a damaged one; (None, None) when
    there is none. Sound: a JSON object with a split and an accuracy between 0 and 1."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, f"not valid JSON ({exc})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    accuracy = eval_accuracy(data)
    if accuracy is None or not 0.0 <= accuracy <= 1.0:
        return None, "no eval_accuracy between 0 and 1"
    if eval_split(data) is None:
        return None, "no eval_split"
    return data, None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
