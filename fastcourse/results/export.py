"""A finished run's model for serving: a TensorFlow SavedModel or a TFLite file, with the
preprocessing inside and the class names beside it.

    folder = export_run("runs/cats-20260101-120000", "tflite")     # -> RUN/tflite/

The exported model takes raw pixels as the run's data gives them to the model: float32 in 0-255,
(batch, height, width, channels) at the run's image size (cast uint8 images to float32), and
returns class probabilities. Its normalisation (a `Normalization` layer, VGG/ImageNet
preprocessing) is part of the Keras model, so it is part of the export. The folder holds:

    savedmodel/   saved_model.pb, variables/ (Keras' model.export, endpoint `serve` and the
                  signature `serving_default`), classes.json, export.json
    tflite/       model.tflite (tf.lite.TFLiteConverter.from_saved_model, float32, no
                  quantisation), classes.json, export.json

The export computes in float32 whatever precision the run trained in: a run trained under a
mixed policy (mixed_bfloat16 is `precision: auto` on a bf16 CPU) keeps float32 weights but
computes in bfloat16, which TFLite cannot run; `float32_copy` gives the same layers and weights
computing in float32. export.json records the input, the output, the classes and the largest
differences between the export's probabilities and the Keras model's on 8 probe images: in
float32 (`max_abs_diff_vs_keras`, checked against MAX_DIFF) and in the run's own precision
(`max_abs_diff_vs_trained_precision`). Each folder is written into a temporary folder beside it
and renamed into place, so a reader never sees half an export.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from fastcourse import io
from fastcourse.errors import RunError, UsageError

FORMATS = ("savedmodel", "tflite")
PROBE_IMAGES = 8
# an export whose probabilities differ more than this from the Keras model's is refused
# (float32 TFLite differs by rounding only; measured figures: docs/serving.md)
MAX_DIFF = {"savedmodel": 1e-5, "tflite": 1e-4}


def export_run(run_dir: str | os.PathLike, fmt: str, out: Optional[str | os.PathLike] = None) -> Path:
    """Export RUN's model as `fmt` ("savedmodel" or "tflite") into OUT/<fmt>/ (OUT: default RUN)."""
    import keras

    from fastcourse.results.predict import load_run

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    run = load_run(run_dir)
    folder = io.make_folder(out if out is not None else run.path, "--out folder") / fmt
    refuse_foreign(folder, fmt)
    model = float32_copy(run.model)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UsageError(
            f"{run.path}: the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "export serves models of one image input and one probability output"
        )
    # one tensor in and out (not lists of one), so the signature takes and gives plain tensors
    model = keras.Model(model.inputs[0], model.outputs[0], name=model.name)
    shape = [int(d) for d in model.input_shape[1:]]
    probe = np.random.default_rng(0).uniform(0, 255, (PROBE_IMAGES, *shape)).astype(np.float32)
    expected = np.asarray(model.predict(probe, verbose=0), np.float64)
    trained = np.asarray(run.model.predict(probe, verbose=0), np.float64)
    with io.atomic_folder(folder) as tmp:
        tmp.mkdir()
        if fmt == "savedmodel":
            write_savedmodel(model, tmp)
            got = serve_savedmodel(tmp, probe)
        else:
            with tempfile.TemporaryDirectory(prefix=".savedmodel.", dir=tmp.parent) as saved:
                write_savedmodel(model, Path(saved))
                write_tflite(Path(saved), tmp / "model.tflite")
            got = serve_tflite(tmp / "model.tflite", probe)
        diff = float(np.abs(np.asarray(got, np.float64) - expected).max())
        if not diff <= MAX_DIFF[fmt]:
            raise RunError(
                f"{run.path}: the {fmt} export's probabilities differ from the Keras model's by {diff:.2e} "
                f"(more than {MAX_DIFF[fmt]:g}); nothing was written"
            )
        io.write_json(tmp / "classes.json", list(run.class_names))
        io.write_json(
            tmp / "export.json",
            {
                "format": fmt,
                "run": str(run.path),
                "model": model.name,
                "classes": list(run.class_names),
                "input": {
                    "shape": [None, *shape],
                    "dtype": "float32",
                    "pixels": "raw 0-255, as the run's data gives them; the preprocessing is inside",
                },
                "output": f"class probabilities, shape [None, {len(run.class_names)}], in the order of classes",
                "signature": "serving_default",
                "probe_images": PROBE_IMAGES,
                "max_abs_diff_vs_keras": diff,
                "trained_precision": _policy(run.model),
                "compute_precision": "float32",
                "max_abs_diff_vs_trained_precision": float(np.abs(np.asarray(got, np.float64) - trained).max()),
            },
        )
    return folder


def refuse_foreign(folder: Path, fmt: str) -> None:
    """An export replaces OUT/<fmt>/ wholesale, so only a folder that an export wrote: one that
    holds fastcourse's export.json for this format. Anything else there is the user's: refused."""
    if not folder.exists() and not folder.is_symlink():
        return
    try:
        mine = json.loads((folder / "export.json").read_text()).get("format") == fmt
    except (OSError, ValueError, AttributeError):
        mine = False
    if folder.is_symlink() or not folder.is_dir() or not mine:
        raise UsageError(
            f"{folder}: exists and is not a fastcourse {fmt} export (no export.json of one); "
            "export replaces only its own folder: move it or give another --out"
        )


def float32_copy(model):
    """The same layers and weights computing in float32 (a model without a mixed layer is returned as is)."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in _layers(model)):
        return model

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def _layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


def _policy(model) -> str:
    names = sorted({layer.dtype_policy.name for layer in _layers(model)} - {"float32"})
    return names[0] if names else "float32"


def write_savedmodel(model, path: Path) -> None:
    """Keras 3's model.export: endpoint `serve`, signature `serving_default`, inference mode."""
    model.export(str(path), format="tf_saved_model", verbose=False)


def write_tflite(saved_model: Path, path: Path) -> None:
    """Convert a SavedModel to a float32 TFLite file (no quantisation: predictions stay comparable)."""
    import tensorflow as tf

    try:
        data = tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()
    except Exception as exc:  # the converter raises its own error types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RunError(f"the TFLite converter failed: {first[:200]}") from None
    with io.atomic_path(path) as tmp:
        tmp.write_bytes(data)


def serve_savedmodel(path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Probabilities from an exported SavedModel (as a server would call it)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return loaded.serve(tf.constant(images, tf.float32)).numpy()


def tflite_interpreter(path: str | os.PathLike):
    """tf.lite.Interpreter for `path` (LiteRT's ai_edge_litert interpreter has the same API)."""
    import tensorflow as tf

    with warnings.catch_warnings():  # its deprecation notice, in favour of LiteRT
        warnings.simplefilter("ignore")
        return tf.lite.Interpreter(model_path=str(path))


def serve_tflite(path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Probabilities from an exported TFLite file, through its `serving_default` signature."""
    interpreter = tflite_interpreter(path)
    runner = interpreter.get_signature_runner("serving_default")
    (name,) = interpreter.get_signature_list()["serving_default"]["inputs"]
    (out,) = runner(**{name: np.asarray(images, np.float32)}).values()
    return out


def read_classes(folder: str | os.PathLike) -> list[str]:
    """The class names an export carries."""
    return json.loads((Path(folder) / "classes.json").read_text())
