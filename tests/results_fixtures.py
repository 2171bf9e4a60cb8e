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
    image[lo:lo + side, lo:lo + side] = rgb
    return image


def make_model(classes=("cats", "dogs"), scale: float = 40.0):
    """linear(32x32x3, 2 classes) whose P(dogs) rises with the blue-minus-red area."""
    from fastcourse.models.mnist import linear

    model = linear((SIZE, SIZE, 3), len(classes))
    kernel = np.zeros((SIZE, SIZE, 3, len(classes)), np.float32)
    per_pixel = scale / (SIZE * SIZE * 255.0)
    dog = list(classes).index("dogs") if "dogs" in classes else 1
    kernel[:, :, 2, dog] = per_pixel   # blue votes dog
    kernel[:, :, 0, dog] = -per_pixel  # red votes against
    model.get_layer("predictions").set_weights([kernel.reshape(-1, len(classes)), np.zeros(len(classes), np.float32)])
    return model


def make_run(tmp_path: Path, classes=("cats", "dogs"), augment: dict | None = None, model=None,
             name: str = "run") -> Path:
    """A run directory: model.keras, config.yaml (seed, augment), metrics.json (classes)."""
    from fastcourse import io

    run = tmp_path / name
    run.mkdir()
    io.save_model(model if model is not None else make_model(classes), run / "model.keras")
    cfg = {"name": "tiny", "seed": 3, "augment": augment or {"name": "none"},
           "data": {"name": "mnist_sample"}}
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
