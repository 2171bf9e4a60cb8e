"""export and load_learner: a trained Learner as a folder another machine can predict with.

    learn.export("my-model")                     # my-model/model.keras + my-model/learner.json
    learn = fastcourse.load_learner("my-model")
    label, index, probs = learn.predict("photo.jpg")

model.keras loads in Keras' safe mode (no Lambda layers: fastcourse's layers are registered
classes); learner.json holds what the model does not: the class names and how an image becomes
the model's input. No pickle is involved. The pixel normalisation (the training mean/std, or a
backbone's own preprocessing) is a layer inside the model, so the input is plain RGB 0..255.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastcourse.errors import UsageError

FORMAT, VERSION = "fastcourse-learner", 1


def _description(learn: Any) -> dict:
    from fastcourse.version import __version__

    shape = [int(d) for d in learn.inputs.input_shape]
    folder = learn.inputs.kind == "folder"
    return {
        "format": FORMAT,
        "version": VERSION,
        "fastcourse": __version__,
        "model": str(learn.model_name),
        "data": str(learn.data_name),
        "kind": learn.inputs.kind,
        "class_names": [str(c) for c in learn.inputs.class_names],
        "input_shape": shape,
        "image_size": shape[:2],
        "preprocessing": {
            # what fastcourse.data.pipeline does to a file before the model sees it
            "decode": "RGB" if folder else ("gray" if shape[-1] == 1 else "RGB"),
            "resize": {"size": shape[:2], "method": "bilinear"} if folder else None,
            "pixels": "float32 0..255; the model normalises them itself (a layer inside model.keras)",
            "mean": float(learn.inputs.mean),
            "std": float(learn.inputs.std),
        },
    }


def export_learner(learn: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    from fastcourse import io
    from fastcourse.run.artifacts import inference_model

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: a file, not a folder; export writes a folder (model.keras + learner.json)")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UsageError(f"{path}: already holds files; give another folder, or export(path, overwrite=True)")
    path = io.make_folder(path, "export folder")
    io.save_model(inference_model(learn.model), path / "model.keras")
    io.write_text(path / "learner.json", json.dumps(_description(learn), indent=2) + "\n")  # last: complete
    return path


def read_export(path: str | os.PathLike):
    """(model, learner.json as a dict, Inputs without data) from a folder export_learner wrote;
    fastcourse.learner.core.load_learner makes the Learner."""
    from fastcourse.run.artifacts import load_model
    from fastcourse.run.inputs import Inputs

    path = Path(path)
    meta_file = path / "learner.json"
    if not meta_file.is_file():
        raise UsageError(f"{path}: no learner.json here; give a folder written by learn.export(path)")
    try:
        meta = json.loads(meta_file.read_text())
    except ValueError as exc:
        raise UsageError(f"{meta_file}: not valid JSON ({exc}); export the learner again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UsageError(
            f"{meta_file}: not a fastcourse learner export (format {meta.get('format')!r})"
            if isinstance(meta, dict)
            else f"{meta_file}: not a fastcourse learner export"
        )
    if int(meta.get("version", 0)) > VERSION:
        raise UsageError(
            f"{meta_file}: export format version {meta['version']}, newer than this fastcourse "
            f"reads ({VERSION}); upgrade fastcourse"
        )
    model = load_model(path / "model.keras", compile=False)
    names, shape = list(meta["class_names"]), tuple(int(d) for d in meta["input_shape"])
    if int(model.output_shape[-1]) != len(names):
        raise UsageError(
            f"{path}: model.keras has {model.output_shape[-1]} outputs but learner.json names "
            f"{len(names)} classes; export the learner again"
        )
    pre = meta.get("preprocessing", {})
    inputs = Inputs(
        meta.get("data", "exported"),
        meta.get("kind", "folder"),
        names,
        None,  # type: ignore[arg-type]  # no data: an exported learner only predicts
        None,  # type: ignore[arg-type]
        "valid",
        shape,
        float(pre.get("mean", 0.0)),
        float(pre.get("std", 1.0)),
    )
    return model, meta, inputs
