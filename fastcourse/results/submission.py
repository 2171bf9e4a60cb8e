"""Kaggle submission files from class probabilities, as lesson 3 wrote them.

- dogs vs cats: ``id,label`` with label = P(dog) clipped to [0.05, 0.95] and id = the image's
  numeric file stem (``test/unknown/123.jpg`` -> 123), rows sorted by id.
- Statefarm: ``img,c0,...,c9`` clipped to [(1-0.93)/9, 0.93] (the course's ``do_clip``),
  gzip-compressed CSV.

Clipping bounds the log loss of a confident mistake (log(0.05) instead of log(1e-15)), which
is what moved the course up the leaderboard. Example::

    probs = predict_folder("runs/dogscats-...", "data/dogscats/test")
    write_submission(dogscats_frame(probs.filenames, probs.probs, probs.class_names), "sub.csv")
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path, PurePath
from typing import Sequence

import numpy as np
import pandas as pd

from fastcourse.errors import UsageError
from fastcourse.io import atomic_path

DOGSCATS_CLIP = (0.05, 0.95)
STATEFARM_MAX = 0.93
STATEFARM_CLASSES = [f"c{i}" for i in range(10)]
KINDS = ("dogscats", "statefarm")


def statefarm_clip(mx: float = STATEFARM_MAX) -> tuple[float, float]:
    """The course's do_clip bounds: [(1 - mx) / 9, mx]."""
    return (1.0 - mx) / 9.0, mx


def _check(filenames: Sequence[str], probs: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise UsageError(
            f"probabilities of shape {probs.shape} do not fit {len(class_names)} classes {list(class_names)}"
        )
    if len(filenames) != len(probs):
        raise UsageError(f"{len(filenames)} file names for {len(probs)} rows of probabilities")
    if len(probs) == 0:
        raise UsageError("no predictions to submit: the folder has no images")
    return probs


def check_kind(kind: str, class_names: Sequence[str], filenames: Sequence[str] = ()) -> list[int]:
    """Fail early (before predicting thousands of images) when the classes or the file names do
    not fit the competition; for dogscats return the numeric ids of `filenames`."""
    if kind not in KINDS:
        raise UsageError(f"unknown submission kind {kind!r}: use one of {', '.join(KINDS)}")
    if kind == "statefarm":
        if sorted(class_names) != STATEFARM_CLASSES:
            raise UsageError(
                f"a Statefarm submission needs exactly the classes c0..c9; this model's classes are {list(class_names)}"
            )
        names = [PurePath(f).name for f in filenames]
        if len(set(names)) != len(names):
            dup = next(n for i, n in enumerate(names) if n in names[:i])
            raise UsageError(f"img {dup} appears twice among the images; one file per name")
        return []
    if "dogs" not in class_names:
        raise UsageError(
            f"a dogs-vs-cats submission needs a 'dogs' class; this model's classes are "
            f"{list(class_names)} (use --kind statefarm, or a model trained on dogs/cats)"
        )
    ids = []
    for name in filenames:
        stem = PurePath(name).stem
        if not stem.isdigit():
            raise UsageError(f"{name}: a dogs-vs-cats test image is named by its numeric id (e.g. 123.jpg)")
        ids.append(int(stem))
    return ids


def dogscats_frame(
    filenames: Sequence[str],
    probs: np.ndarray,
    class_names: Sequence[str],
    clip: tuple[float, float] = DOGSCATS_CLIP,
) -> pd.DataFrame:
    """``id,label``: P(dog) clipped, one row per image, sorted by the numeric id."""
    probs = _check(filenames, probs, class_names)
    ids = check_kind("dogscats", class_names, filenames)
    label = np.clip(probs[:, list(class_names).index("dogs")], *clip)
    frame = pd.DataFrame({"id": ids, "label": label})
    if frame["id"].duplicated().any():
        dup = frame["id"][frame["id"].duplicated()].iloc[0]
        raise UsageError(f"id {dup} appears twice among the images; one file per id")
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def statefarm_frame(
    filenames: Sequence[str],
    probs: np.ndarray,
    class_names: Sequence[str],
    mx: float = STATEFARM_MAX,
) -> pd.DataFrame:
    """``img,c0..c9``: every probability clipped to [(1-mx)/9, mx], rows in file order."""
    probs = _check(filenames, probs, class_names)
    check_kind("statefarm", class_names, filenames)
    order = [list(class_names).index(c) for c in STATEFARM_CLASSES]
    frame = pd.DataFrame(np.clip(probs[:, order], *statefarm_clip(mx)), columns=STATEFARM_CLASSES)
    frame.insert(0, "img", [PurePath(name).name for name in filenames])
    return frame


def submission_frame(
    kind: str, filenames: Sequence[str], probs: np.ndarray, class_names: Sequence[str]
) -> pd.DataFrame:
    """The `kind` competition's table (dogscats or statefarm)."""
    check_kind(kind, class_names)
    frame = dogscats_frame if kind == "dogscats" else statefarm_frame
    return frame(filenames, probs, class_names)


def default_name(kind: str) -> str:
    return {"dogscats": "submission_dogscats.csv", "statefarm": "submission_statefarm.csv.gz"}[kind]


def check_path(kind: str | None, path: str | os.PathLike) -> Path:
    path = Path(path)
    if kind == "statefarm" and path.suffix != ".gz":
        raise UsageError(f"{path}: a Statefarm submission is a gzip CSV; name it ending in .csv.gz")
    return path


def write_submission(frame: pd.DataFrame, path: str | os.PathLike, kind: str | None = None) -> Path:
    """Write the CSV atomically; gzip when the name ends in .gz (Statefarm requires it)."""
    path = check_path(kind, path)
    gz = path.suffix == ".gz"
    text = frame.to_csv(index=False, float_format="%.6f").encode()
    with atomic_path(path) as tmp:
        # gzip.compress stores no file name (not the temporary one) and, with mtime=0, no
        # time: the same predictions give a byte-identical file
        tmp.write_bytes(gzip.compress(text, mtime=0) if gz else text)
    return path
