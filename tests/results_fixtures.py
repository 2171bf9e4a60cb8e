"""Tiny runs and image folders for the predict / submission / views tests.

The model is the ladder's `linear` builder at 32x32x3 with hand-set weights: the logit of
"dogs" grows with (blue - red) pixels, so a blue square is a dog, a red one a cat, and a
bigger square is a more confident prediction. No training needed; results are exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

SIZE = 32


def shape_image(color: str, side: int, size: int = 40) -> np.ndarray:
    """A gray image with a centred red or blue square of `side` pixels (uint8 RGB)."""
    image = np.full((size, size, 3), 128, np.uint8)
    lo = (size - side) // 2
    rgb = {"red": (230, 20, 20), "blue": (20, 20, 230)}[color]
    image[lo : lo + side, lo : lo + side] = rgb
    return image


def make_model(classes=("cats", "dogs"), scale: float = 40.0):
    """linear(32x32x3, 2 classes) whose P(dogs) rises with the blue-minus-red area."""
    from fastcourse.models.mnist import linear

    model = linear((SIZE, SIZE, 3), len(classes))
    kernel = np.zeros((SIZE, SIZE, 3, len(classes)), np.float32)
    per_pixel = scale / (SIZE * SIZE * 255.0)
    dog = list(classes).index("dogs") if "dogs" in classes else 1
    kernel[:, :, 2, dog] = per_pixel  # blue votes dog
    kernel[:, :, 0, dog] = -per_pixel  # red votes against
    model.get_layer("predictions").set_weights([kernel.reshape(-1, len(classes)), np.zeros(len(classes), np.float32)])
    return model


def make_run(
    tmp_path: Path, classes=("cats", "dogs"), augment: dict | None = None, model=None, name: str = "run"
) -> Path:
    """A run directory: model.keras, config.yaml (seed, augment), metrics.json (classes)."""
    from fastcourse import io

    run = tmp_path / name
    run.mkdir()
    io.save_model(model if model is not None else make_model(classes), run / "model.keras")
    cfg = {"name": "tiny", "seed": 3, "augment": augment or {"name": "none"}, "data": {"name": "mnist_sample"}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "metrics.json").write_text(json.dumps({"classes": list(classes)}))
    return run


def write_image(path: Path, image: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(image)
    if mode:
        im = im.convert(mode)
    im.save(path, quality=95) if path.suffix in (".jpg", ".jpeg") else im.save(path)
    return path


def make_test_folder(root: Path, n: int = 6) -> Path:
    """test/unknown/{1..n}.png|jpg: odd ids blue (dogs), even ids red (cats), growing squares."""
    folder = root / "test"
    for i in range(1, n + 1):
        color = "blue" if i % 2 else "red"
        ext = ".jpg" if i % 3 == 0 else ".png"
        write_image(folder / "unknown" / f"{i}{ext}", shape_image(color, 6 + 4 * i))
    return folder


def make_labelled_folder(root: Path) -> tuple[Path, dict[str, str]]:
    """valid/{cats,dogs}/: mostly right, two images in the wrong folder; returns truth per file."""
    folder = root / "valid"
    truth = {}
    specs = [("cats", "red", s) for s in (8, 16, 24, 32)] + [("dogs", "blue", s) for s in (10, 20, 30)]
    specs += [("cats", "blue", 28), ("dogs", "red", 12)]  # mislabelled: predicted the other way
    for i, (cls, color, side) in enumerate(specs):
        name = f"{cls}/{cls[:-1]}.{i}.png"
        write_image(folder / name, shape_image(color, side))
        truth[name] = cls
    # one grayscale and one palette image: decoded to RGB like the rest
    write_image(folder / "cats/gray.png", shape_image("red", 20), mode="L")
    write_image(folder / "dogs/palette.png", shape_image("blue", 22), mode="P")
    return folder, truth


# --- trained runs, one of each kind, made once per test process --------------------------

_RUNS: dict[str, tuple[Path, Path | None]] = {}


def _runs_root() -> Path:
    import tempfile

    if "root" not in _RUNS:
        import atexit
        import shutil

        root = Path(tempfile.mkdtemp(prefix="fastcourse-results-"))
        atexit.register(shutil.rmtree, root, True)
        _RUNS["root"] = (root, None)
    return _RUNS["root"][0]


def folder_run() -> tuple[Path, Path]:
    """(run directory, data folder): a batchnorm CNN trained 1 epoch on a generated dogscats
    layout (train/valid/{cats,dogs}, test/unknown/1..6) at 32x32, with the dogscats augmentation."""
    if "folder" not in _RUNS:
        from fastcourse.config import load_config
        from fastcourse.data.synthetic import make_image_folder
        from fastcourse.tasks.runner import run_experiment

        root = _runs_root()
        data = make_image_folder(
            root / "dogscats", "dogscats", classes=2, per_class=10, valid_per_class=5, test=6, size=40, seed=0
        )
        for old, new in (("circle", "cats"), ("square", "dogs")):
            for split in ("train", "valid"):
                (data / split / old).rename(data / split / new)
        for i, f in enumerate(sorted((data / "test" / "unknown").iterdir()), start=1):
            f.rename(f.with_name(f"{i}{f.suffix}"))
        cfg = load_config(
            {
                "name": "tiny-folder",
                "seed": 5,
                "data": {"name": "image_folder", "path": str(data), "image_size": [32, 32]},
                "model": {"name": "cnn_bn", "filters": [4, 8], "dense": 8},
                "augment": {"name": "dogscats"},
                "train": {"batch_size": 8, "epochs": 1, "verbose": 0, "schedule": {"name": "constant", "lr": 1e-3}},
            }
        )
        _RUNS["folder"] = (run_experiment(cfg, out=root / "runs"), data)
    return _RUNS["folder"]


def array_run() -> Path:
    """A run directory of the `linear` model trained 1 epoch on the bundled MNIST sample."""
    if "arrays" not in _RUNS:
        from fastcourse.config import load_config
        from fastcourse.tasks.runner import run_experiment

        cfg = load_config(
            {
                "name": "tiny-arrays",
                "seed": 1,
                "data": {"name": "mnist_sample", "train_limit": 128, "test_limit": 24},
                "model": {"name": "linear"},
                "augment": {"name": "course"},
                "train": {"batch_size": 32, "epochs": 1, "verbose": 0, "schedule": {"name": "constant", "lr": 1e-3}},
            }
        )
        _RUNS["arrays"] = (run_experiment(cfg, out=_runs_root() / "runs"), None)
    return _RUNS["arrays"][0]


def upright_model():
    """linear(32x32x3, cats/dogs) whose P(dogs) rises with blue in the TOP half and falls with
    blue in the bottom half: a picture turned on its side is predicted differently."""
    from fastcourse.models.mnist import linear

    model = linear((SIZE, SIZE, 3), 2)
    kernel = np.zeros((SIZE, SIZE, 3, 2), np.float32)
    per_pixel = 40.0 / (SIZE * SIZE * 255.0)
    kernel[: SIZE // 2, :, 2, 1] = per_pixel
    kernel[SIZE // 2 :, :, 2, 1] = -per_pixel
    model.get_layer("predictions").set_weights([kernel.reshape(-1, 2), np.zeros(2, np.float32)])
    return model
