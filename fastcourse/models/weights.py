"""Pretrained weight files: keras.applications' files in the Keras cache, or a file the user gives.

    path = keras_cache_file("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", url, md5, "ResNet50")

A file already in $KERAS_HOME/models (default ~/.keras/models) is used as it is, with no network;
else it is downloaded there (md5-checked) unless FASTCOURSE_OFFLINE is set. Either way a missing
file is one line saying where to put it, or to use `weights: none` or a path. A network says in
one line which weights it starts from (`starts_from`), so random weights are never a surprise.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastcourse.errors import DataError


def keras_home() -> Path:
    """$KERAS_HOME, read now (Keras itself reads it once, at import)."""
    return Path(os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")))


def keras_cache_file(fname: str, origin: str, md5: str | None, what: str) -> str:
    """The cached file `fname` of keras.applications, else downloaded from `origin` (md5-checked)."""
    import keras

    cached = keras_home() / "models" / fname
    if cached.is_file():
        return str(cached)
    hint = (
        f"put {origin} in {cached}, or train from scratch with model.weights: none "
        "(Learner: model_args={'weights': None}), or give weights: /path/to/file.h5"
    )
    if os.environ.get("FASTCOURSE_OFFLINE"):
        raise DataError(f"{what} ImageNet weights are not in {cached} and FASTCOURSE_OFFLINE is set; {hint}")
    try:
        return keras.utils.get_file(fname, origin, cache_subdir="models", file_hash=md5, cache_dir=str(keras_home()))
    except Exception as exc:  # network errors come in many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{what} ImageNet weights: cannot download ({first[:120]}); {hint}") from None


def weights_path(weights: str | None, what: str) -> str | None:
    """None for `none`; the expanded path of an existing file; else a one-line DataError."""
    if weights in (None, "none"):
        return None
    path = Path(str(weights)).expanduser()
    if not path.is_file():
        raise DataError(
            f"weights={weights!r}: no such file; give 'imagenet' (from the Keras cache), none, "
            f"or a path to a {what} weights file"
        )
    return str(path)


def starts_from(model: str, weights: str | None, path: str | None) -> str:
    """Print and return the line saying which weights `model` starts from: keras.applications'
    ImageNet file (named, not its machine path), a file given, or random weights."""
    if path is None:
        what = "random weights (weights: none): it learns from scratch, nothing is transferred"
    elif weights == "imagenet":
        what = f"ImageNet weights ({Path(path).name} from the Keras cache)"
    else:
        what = f"the weights in {weights}"
    line = f"fastcourse: {model} starts from {what}"
    print(line, flush=True)
    return line
