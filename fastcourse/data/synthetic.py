"""Small generated image folders in the four layouts, for tests, benchmarks and demos.

Each class is a simple shape (circle, square, triangle, cross, ...) drawn with Pillow at a
random position, size and colour on a noisy background, so a small model can learn them.
No real photos are needed (none can be downloaded on the project's machines)::

    make_image_folder("/tmp/shapes", layout="dogscats", per_class=12, size=48)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross", "hline", "vline", "ring", "diamond", "dot", "xcross")


def draw_shape(kind: str, size: int, rng: np.random.Generator):
    """An RGB Pillow image of one shape on a noisy background."""
    from PIL import Image, ImageDraw

    bg = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    im = Image.fromarray(bg, "RGB")
    d = ImageDraw.Draw(im)
    r = int(size * rng.uniform(0.2, 0.35))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    color = tuple(int(c) for c in rng.integers(150, 256, 3))
    w = max(2, size // 12)
    box = [cx - r, cy - r, cx + r, cy + r]
    if kind == "circle":
        d.ellipse(box, fill=color)
    elif kind == "square":
        d.rectangle(box, fill=color)
    elif kind == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    elif kind == "cross":
        d.line([(cx - r, cy), (cx + r, cy)], fill=color, width=w)
        d.line([(cx, cy - r), (cx, cy + r)], fill=color, width=w)
    elif kind == "hline":
        d.line([(cx - r, cy), (cx + r, cy)], fill=color, width=w)
    elif kind == "vline":
        d.line([(cx, cy - r), (cx, cy + r)], fill=color, width=w)
    elif kind == "ring":
        d.ellipse(box, outline=color, width=w)
    elif kind == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=color)
    elif kind == "dot":
        d.ellipse([cx - w, cy - w, cx + w, cy + w], fill=color)
    else:
        d.line([(cx - r, cy - r), (cx + r, cy + r)], fill=color, width=w)
        d.line([(cx - r, cy + r), (cx + r, cy - r)], fill=color, width=w)
    return im


def _save(im, path: Path, i: int, mixed_modes: bool) -> None:
    # cycle through the colour modes the loader must convert
    if mixed_modes and path.suffix == ".png":
        im = [im, im.convert("L"), im.convert("RGBA"), im.convert("P")][(i // 2) % 4]
    elif mixed_modes and i % 5 == 4:
        im = im.convert("CMYK")
    im.save(path, quality=92) if path.suffix == ".jpg" else im.save(path)


def make_image_folder(
    root: str | Path,
    layout: Literal["dogscats", "statefarm", "csv", "class_folders"] = "dogscats",
    classes: int = 2,
    per_class: int = 12,
    valid_per_class: int = 0,
    test: int = 6,
    size: int = 48,
    drivers: int = 4,
    seed: int = 0,
    mixed_modes: bool = True,
) -> Path:
    """Write a generated dataset under `root` in `layout`; returns `root`.

    dogscats: train/<class>/ (+ valid/<class>/ when valid_per_class) + test/unknown/.
    statefarm: train/c0../ + driver_imgs_list.csv assigning each image to one of `drivers`.
    csv: images/ + labels.csv (filename,label).
    class_folders: <class>/ directly under root (no valid or test split: valid_per_class and
    test are not used).
    Files alternate JPEG and PNG; with `mixed_modes` some are grayscale, RGBA, palette or CMYK.
    """
    import pandas as pd

    root = Path(root)
    rng = np.random.default_rng(seed)
    names = [f"c{i}" for i in range(classes)] if layout == "statefarm" else list(SHAPES[:classes])
    rows = []
    counter = 0

    def write(folder: Path, k: int, n: int, prefix: str):
        nonlocal counter
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for _ in range(n):
            ext = ".jpg" if counter % 2 == 0 else ".png"
            path = folder / f"{prefix}{counter:05d}{ext}"
            _save(draw_shape(SHAPES[k % len(SHAPES)], size, rng), path, counter, mixed_modes)
            out.append(path)
            counter += 1
        return out

    for k, cls in enumerate(names):
        if layout == "csv":
            for p in write(root / "images", k, per_class, "img_"):
                rows.append({"filename": p.name, "label": cls})
            continue
        if layout == "class_folders":
            write(root / cls, k, per_class, "img_")
            continue
        files = write(root / "train" / cls, k, per_class, "img_")
        if layout == "statefarm":
            rows += [{"subject": f"p{(j % drivers):03d}", "classname": cls, "img": p.name} for j, p in enumerate(files)]
        if valid_per_class:
            files = write(root / "valid" / cls, k, valid_per_class, "img_")
            if layout == "statefarm":  # a held-out driver, as a grouped split leaves it
                rows += [{"subject": f"p{drivers:03d}", "classname": cls, "img": p.name} for p in files]
    if test and layout in ("dogscats", "statefarm"):
        unknown = root / "test" / ("unknown" if layout == "dogscats" else "")
        for j in range(test):
            write(unknown, j % classes, 1, "test_")
    if layout == "statefarm":
        pd.DataFrame(rows).to_csv(root / "driver_imgs_list.csv", index=False)
    if layout == "csv":
        pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root
