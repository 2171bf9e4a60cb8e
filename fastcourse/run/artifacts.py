"""What every run leaves in its directory, whatever the task, each file written atomically:

    model.keras            loads with keras.saving.load_model(path, safe_mode=True)
    metrics.json           the evaluation (`eval_split`: test for arrays, valid for folders;
                           `eval_accuracy`, `eval_loss`), timings (`wall_seconds` for the whole
                           run), images/s, seed, classes, versions, the task's extras (records.py)
    history.csv            per-epoch values of every training call, joined
    eval_probs.npy         class probabilities on the evaluation split (ensembles combine these)
    eval_labels.npy        its labels
    eval_predictions.csv   the same with file names (image folders)
    learning_curves.png, confusion_matrix.png   (both name the evaluation split)

`load_model` is the one way fastcourse reads a .keras file: safe mode, with fastcourse's own
registered classes given as `custom_objects`.
"""

from __future__ import annotations

import json
import platform
import sys
import zipfile
from pathlib import Path

import numpy as np

from fastcourse import io
from fastcourse.errors import UsageError
from fastcourse.run import plots, records
from fastcourse.run.records import LABELS, PROBS


def custom_objects() -> dict:
    """fastcourse's Keras classes (layers, schedules, optimizers) by their registered names
    ("fastcourse>BatchNorm"), for `keras.saving.load_model(path, custom_objects=...)`. Each is
    registered with `keras.saving.register_keras_serializable(package="fastcourse")` in the
    module that defines it; importing those modules registers them."""
    import keras

    import fastcourse.data.augment  # noqa: F401  RandomAffine
    import fastcourse.models.applications  # noqa: F401  ImageNetPreprocess
    import fastcourse.models.blocks  # noqa: F401  Step, BatchNorm
    import fastcourse.models.vgg  # noqa: F401  VGGPreprocess
    import fastcourse.train.optimizers  # noqa: F401  ScheduleAdapter, Multiplied*

    return {name: obj for name, obj in keras.saving.get_custom_objects().items() if name.startswith("fastcourse>")}


def load_model(path: str | Path, compile: bool = True):
    """Load a .keras model in Keras' safe mode: nothing in the file can run code.

    A model whose saved config holds a Lambda layer or a Python lambda (`__lambda__`) anywhere
    is refused with a UsageError before Keras reads it (`unsafe_parts`), as is a file that is not
    a readable .keras model.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path}: not a .keras model file (not a zip archive); it may be truncated")
    unsafe = unsafe_parts(path)
    if unsafe:
        raise UsageError(
            f"{path}: refused: it holds {unsafe[0]} (arbitrary Python code), and fastcourse loads models in "
            "safe mode only; rebuild it with registered layers"
        )
    try:
        return keras.saving.load_model(path, custom_objects=custom_objects(), compile=compile, safe_mode=True)
    except ValueError as exc:
        raise UsageError(f"{path}: cannot load this .keras model: {str(exc).splitlines()[0]}") from None
    except (TypeError, KeyError, OSError, zipfile.BadZipFile) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{path}: cannot load this .keras model: {first}") from None


def unsafe_parts(path: str | Path) -> list[str]:
    """What in a .keras file's config.json would run Python code when loaded: each Lambda layer
    ("a Lambda layer 'name'") and each serialised Python lambda outside one ("a Python lambda
    (`__lambda__`) at layers[2].config.activation"), found by walking the whole config."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except KeyError:
        raise UsageError(f"{path}: not a .keras model file (no config.json inside)") from None
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise UsageError(f"{path}: cannot read its config.json: {str(exc).splitlines()[0]}") from None
    found = []
    stack = [(config, "")]
    while stack:  # iterative: a deeply nested config cannot overflow the stack
        node, where = stack.pop()
        if isinstance(node, dict):
            kind = node.get("class_name")
            if kind == "Lambda":
                name = node.get("config", {}).get("name") if isinstance(node.get("config"), dict) else None
                found.append(f"a Lambda layer {name!r}")
                continue  # its function is the Lambda's own code: named once
            if kind == "__lambda__":
                found.append(f"a Python lambda (`__lambda__`) at {where.lstrip('.') or 'the top'}")
                continue
            stack.extend((value, f"{where}.{key}") for key, value in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((value, f"{where}[{i}]") for i, value in reversed(list(enumerate(node))))
    return found


def inference_model(model):
    """The same layers and weights, uncompiled: the saved model then holds no optimizer (nor its
    fastcourse schedule), so a model made of Keras' own layers loads in plain Keras."""
    import keras

    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    outputs = model.outputs[0] if len(model.outputs) == 1 else model.outputs
    return keras.Model(inputs, outputs, name=model.name)


def replicas() -> int:
    """Devices the model trained on (the tf.distribute strategy in force)."""
    import tensorflow as tf

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from fastcourse.version import __version__

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "fastcourse": __version__,
        "platform": sys.platform,
    }


def write_run(run_dir: Path, cfg, inputs, model, result, evaluation: dict, extra: dict | None = None) -> dict:
    """Write a finished run's artifacts (metrics.json last of the summary files); return the metrics.

    `evaluation` is `fastcourse.train.trainer.scores(...)` on `inputs.eval` (probs, loss, accuracy).
    """
    import pandas as pd

    run_dir = Path(run_dir)
    probs = evaluation["probs"]
    labels = np.asarray(inputs.eval.labels)
    io.save_model(inference_model(model), run_dir / "model.keras")
    history = pd.DataFrame(result.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    io.write_text(run_dir / "history.csv", history.to_csv(index=False))
    if inputs.eval_files is not None:
        table = pd.DataFrame(probs, columns=inputs.class_names)
        table.insert(0, "label", [inputs.class_names[i] for i in labels])
        table.insert(0, "file", inputs.eval_files)
        io.write_text(run_dir / "eval_predictions.csv", table.to_csv(index=False))
    with io.atomic_path(run_dir / LABELS, suffix=".npy") as tmp:
        np.save(tmp, labels)
    metrics = records.run_metrics(
        name=cfg.name,
        task=cfg.task.name,
        model=cfg.model.name,
        dataset=inputs.name,
        data_kind=inputs.kind,
        data_source=inputs.source,
        classes=list(inputs.class_names),
        augment=cfg.augment.name,
        split=inputs.eval_split,
        accuracy=evaluation["accuracy"],
        loss=evaluation["loss"],
        eval_images=len(inputs.eval),
        train_images=len(inputs.train),
        epochs=len(result.epoch_seconds),
        train_seconds=result.train_seconds,
        params=int(model.count_params()),
        seed=cfg.seed,
        versions=versions(),
        images_per_second=result.images_per_second,
        epoch_seconds=result.epoch_seconds,
        replicas=replicas(),
        **{**result.extra, **(extra or {})},
    )
    if result.history:
        plots.plot_learning_curves(
            result.history, run_dir / "learning_curves.png", f"{cfg.name} ({inputs.name})", split=inputs.eval_split
        )
    cm = plots.confusion_matrix(labels, probs.argmax(1), inputs.num_classes)
    plots.plot_confusion_matrix(
        cm,
        inputs.class_names,
        run_dir / "confusion_matrix.png",
        f"{cfg.name}: {inputs.eval_split} accuracy {evaluation['accuracy']:.4f}",
    )
    io.write_json(run_dir / "metrics.json", metrics)
    # the predictions file comes last: an ensemble member is finished when it exists
    with io.atomic_path(run_dir / PROBS, suffix=".npy") as tmp:
        np.save(tmp, probs.astype(np.float32))
    return metrics  # printed by the front door (records.result_line), once
