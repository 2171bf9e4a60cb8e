"""Looking at results, as lesson 3 did: which images a model gets right, wrong, and unsure.

The pickers are pure functions of (labels, probs) that return indices, so they are tested on
hand-made arrays; `write_views` draws them as PNG grids (through fastcourse.io.save_figure):

- random_correct.png, random_incorrect.png
- most_confident_correct.png: per class (one row each), the images of that class predicted
  right with the highest P(class)
- most_confident_incorrect.png: per class, the images predicted as that class that are not,
  with the highest P(class) (the lesson's "most confident cats that are really dogs")
- most_uncertain.png: P closest to 0.5 for two classes; highest entropy for more
- confusion_matrix.png, augmented.png (copies of one image through the run's augmentation)
- top_losses.png: the images with the highest loss, each titled as fastai's plot_top_losses
  (predicted/actual / loss / probability of the actual class); most_confused.csv: the
  (actual, predicted, count) pairs off the diagonal of the confusion matrix, most frequent
  first, as fastai's ClassificationInterpretation.most_confused
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

UNCERTAINTY = ("auto", "entropy", "max_prob", "half")


def _check(labels: np.ndarray | None, probs: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, classes), got shape {probs.shape}")
    if labels is not None:
        labels = np.asarray(labels, np.int64)
        if labels.shape != (len(probs),):
            raise ValueError(f"{labels.shape[0] if labels.ndim else 0} labels for {len(probs)} rows of probs")
    return labels, probs


def _sample(candidates: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Up to n of `candidates`, drawn without replacement, kept in index order."""
    if len(candidates) <= n:
        return candidates
    return np.sort(np.random.default_rng(seed).choice(candidates, size=n, replace=False))


def random_correct(labels, probs, n: int = 4, seed: int = 0) -> np.ndarray:
    """Indices of up to n random images whose predicted class is their label."""
    labels, probs = _check(labels, probs)
    return _sample(np.flatnonzero(probs.argmax(1) == labels), n, seed)


def random_incorrect(labels, probs, n: int = 4, seed: int = 0) -> np.ndarray:
    """Indices of up to n random images whose predicted class is not their label."""
    labels, probs = _check(labels, probs)
    return _sample(np.flatnonzero(probs.argmax(1) != labels), n, seed)


def _by_confidence(candidates: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    # stable sort on the negated score: ties keep file order, so a rerun picks the same images
    order = np.argsort(-scores[candidates], kind="stable")
    return candidates[order[:n]]


def most_confident_correct(labels, probs, cls: int, n: int = 4) -> np.ndarray:
    """Images of class `cls` predicted as `cls`, highest P(cls) first."""
    labels, probs = _check(labels, probs)
    candidates = np.flatnonzero((labels == cls) & (probs.argmax(1) == cls))
    return _by_confidence(candidates, probs[:, cls], n)


def most_confident_incorrect(labels, probs, cls: int, n: int = 4) -> np.ndarray:
    """Images predicted as `cls` whose label is another class, highest P(cls) first."""
    labels, probs = _check(labels, probs)
    candidates = np.flatnonzero((labels != cls) & (probs.argmax(1) == cls))
    return _by_confidence(candidates, probs[:, cls], n)


def uncertainty(probs, by: str = "auto") -> np.ndarray:
    """A score per image, larger = less sure. `half`: -|P(class 0) - 0.5| (two classes, the
    lesson's measure); `entropy`: -sum p log p; `max_prob`: 1 - max p; `auto`: half for two
    classes, else entropy."""
    _, probs = _check(None, probs)
    if by == "auto":
        by = "half" if probs.shape[1] == 2 else "entropy"
    if by == "half":
        if probs.shape[1] != 2:
            raise ValueError(f"uncertainty 'half' is for two classes; these probs have {probs.shape[1]}")
        return -np.abs(probs[:, 0] - 0.5)
    if by == "entropy":
        p = np.clip(probs, 1e-12, 1.0)
        return -(probs * np.log(p)).sum(axis=1)
    if by == "max_prob":
        return 1.0 - probs.max(axis=1)
    raise ValueError(f"unknown uncertainty {by!r}: use one of {', '.join(UNCERTAINTY)}")


def most_uncertain(probs, n: int = 4, by: str = "auto") -> np.ndarray:
    """Indices of the n least certain images, least certain first (ties in file order)."""
    score = uncertainty(probs, by)
    return np.argsort(-score, kind="stable")[:n]


def top_losses(labels, probs, k: Optional[int] = None, largest: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """fastai's `ClassificationInterpretation.top_losses`: (losses, indices) of the `k` images
    with the largest (or, largest=False, smallest) loss, that loss first; all images by default.
    The loss is each image's log loss (fastcourse.train.metrics.sample_losses); ties keep file
    order."""
    from fastcourse.train.metrics import sample_losses

    labels, probs = _check(labels, probs)
    if labels is None:
        raise ValueError("top losses need the true labels")
    losses = sample_losses(probs, labels)
    order = np.argsort(-losses if largest else losses, kind="stable")[: len(losses) if k is None else int(k)]
    return losses[order], order


def most_confused(labels, probs, class_names: Sequence[str], min_val: int = 1) -> list[tuple[str, str, int]]:
    """fastai's `ClassificationInterpretation.most_confused`: [(actual, predicted, count)] for
    every pair off the confusion matrix's diagonal seen at least `min_val` times, most frequent
    first (ties in the matrix's row order, as fastai's sort of np.where leaves them)."""
    from fastcourse.train.metrics import confusion_matrix

    labels, probs = _check(labels, probs)
    if labels is None:
        raise ValueError("most_confused needs the true labels")
    cm = confusion_matrix(labels, probs.argmax(1), len(class_names))
    np.fill_diagonal(cm, 0)
    pairs = [(str(class_names[i]), str(class_names[j]), int(cm[i, j])) for i, j in zip(*np.where(cm >= min_val))]
    return sorted(pairs, key=lambda pair: pair[2], reverse=True)


def most_confused_csv(pairs: list[tuple[str, str, int]]) -> str:
    """most_confused's pairs as CSV text: actual,predicted,count."""
    import csv
    import io as _io

    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["actual", "predicted", "count"])
    writer.writerows(pairs)
    return buf.getvalue()


# --- drawing ----------------------------------------------------------------------------


def load_display_image(path: str | Path, size: int = 160) -> np.ndarray:
    """An RGB uint8 thumbnail decoded as training decodes it (fastcourse.data.images.pillow_rgb:
    EXIF rotation applied, CMYK converted, alpha on white, 16-bit scaled)."""
    from PIL import Image

    from fastcourse.data.images import pillow_rgb

    im = Image.fromarray(pillow_rgb(str(path)))
    im.thumbnail((size, size))
    return np.asarray(im)


def plot_grid(
    rows: Sequence[Sequence[tuple[np.ndarray, str]]],
    path: str | Path,
    title: str = "",
    row_labels: Sequence[str] | None = None,
) -> Path:
    """A PNG of image rows; each cell is (image, caption). Empty rows show 'none'."""
    from matplotlib.figure import Figure  # not pyplot: the user's backend is left alone

    from fastcourse.io import save_figure

    cols = max(1, max((len(r) for r in rows), default=1))
    fig = Figure(figsize=(2.2 * cols, 2.4 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(row):
                image, caption = row[c]
                if np.ndim(image) == 2:  # an array dataset's gray rows (MNIST)
                    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
                else:
                    ax.imshow(image)
                ax.set_title(caption, fontsize=8)
            elif c == 0:
                ax.text(0.5, 0.5, "none", ha="center", va="center", color="gray", transform=ax.transAxes)
        if row_labels:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def _caption(i: int, labels, probs, class_names) -> str:
    pred = int(probs[i].argmax())
    p = float(probs[i, pred])
    if labels is not None and labels[i] != pred:
        return f"{class_names[labels[i]]} as {class_names[pred]} {p:.2f}"
    return f"{class_names[pred]} {p:.2f}"


def plot_top_losses(
    display: Callable[[int], np.ndarray],
    labels,
    probs,
    class_names: Sequence[str],
    path: str | Path,
    k: int = 9,
    largest: bool = True,
    split: str = "",
) -> tuple[Path, np.ndarray]:
    """fastai's plot_top_losses: the `k` top-loss images in a square grid, each titled
    `predicted/actual / loss / probability of the actual class`. Returns (the PNG, their indices)."""
    import math

    labels, probs = _check(labels, probs)
    losses, idx = top_losses(labels, probs, k, largest)
    side = max(1, math.ceil(math.sqrt(len(idx))))
    cells = [
        (
            display(int(i)),
            f"{class_names[int(probs[i].argmax())]}/{class_names[labels[i]]} / {loss:.2f} / {probs[i, labels[i]]:.2f}",
        )
        for i, loss in zip(idx, losses)
    ]
    rows = [cells[r : r + side] for r in range(0, len(cells), side)] or [[]]
    which = "top" if largest else "lowest"
    title = f"{which} losses{f' ({split})' if split else ''}: predicted/actual / loss / probability of actual"
    return plot_grid(rows, path, title), idx


def write_views(
    folder: Optional[str | Path],
    filenames: Sequence[str],
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    out_dir: str | Path,
    n: int = 4,
    seed: int = 0,
    augment: Optional[Callable] = None,
    augment_image: Optional[tuple[str, np.ndarray]] = None,
    uncertainty_by: str = "auto",
    display: Optional[Callable[[int], np.ndarray]] = None,
    split: str = "",
) -> dict:
    """Draw every view into `out_dir`; return the accuracy, the confusion matrix, the file names
    each view shows and the PNG paths. `augment_image` is (name, image as the model sees it).
    `split` ("valid", "test", a folder's name) is named in every title.

    Images are read from `folder / filenames[i]`, or, with `display(i)`, come from it (an array
    dataset's rows: `filenames` are then only their names, and `folder` is None)."""
    from fastcourse.run import plots as report
    from fastcourse.train import metrics

    labels, probs = _check(labels, probs)
    if labels is None:
        raise ValueError("views need the true labels")
    out_dir = Path(out_dir)
    if display is None:
        if folder is None:
            raise ValueError("views need the images: a folder, or display(i)")
        root = Path(folder)
        display = lambda i: load_display_image(root / filenames[i])  # noqa: E731
    cache: dict[int, np.ndarray] = {}

    def cells(indices):
        out = []
        for i in indices:
            if i not in cache:
                cache[i] = display(i)
            out.append((cache[i], _caption(i, labels, probs, class_names)))
        return out

    picks = {
        "random_correct": random_correct(labels, probs, n, seed),
        "random_incorrect": random_incorrect(labels, probs, n, seed),
        "most_uncertain": most_uncertain(probs, n, uncertainty_by),
    }
    per_class = {
        "most_confident_correct": [most_confident_correct(labels, probs, c, n) for c in range(len(class_names))],
        "most_confident_incorrect": [most_confident_incorrect(labels, probs, c, n) for c in range(len(class_names))],
    }
    written: dict[str, Path] = {}
    on = f" ({split})" if split else ""
    titles = {
        "random_correct": "random correct",
        "random_incorrect": "random incorrect (true as predicted)",
        "most_uncertain": "most uncertain",
    }
    for view, idx in picks.items():
        written[view] = plot_grid([cells(idx)], out_dir / f"{view}.png", titles[view] + on)
    for view, rows in per_class.items():
        written[view] = plot_grid(
            [cells(idx) for idx in rows],
            out_dir / f"{view}.png",
            view.replace("_", " ") + " per class" + on,
            row_labels=list(class_names),
        )
    cm = report.confusion_matrix(labels, probs.argmax(1), len(class_names))
    accuracy = metrics.accuracy(probs, labels)
    written["confusion_matrix"] = report.plot_confusion_matrix(
        cm,
        class_names,
        out_dir / "confusion_matrix.png",
        f"{split + ' ' if split else ''}accuracy {accuracy:.4f} on {len(labels)} images",
    )
    written["top_losses"], top_idx = plot_top_losses(
        lambda i: cells([i])[0][0], labels, probs, class_names, out_dir / "top_losses.png", k=max(9, n), split=split
    )
    confused = most_confused(labels, probs, class_names)
    from fastcourse.io import write_text

    written["most_confused"] = write_text(out_dir / "most_confused.csv", most_confused_csv(confused))
    if augment is not None and augment_image is not None:
        from fastcourse.data.augment import preview

        name, image = augment_image
        written["augmented"] = preview(
            augment, image, out_dir / "augmented.png", n=8, seed=seed, title=f"augmented copies of {name}"
        )
    shown = {view: [filenames[i] for i in idx] for view, idx in picks.items()}
    shown["top_losses"] = [filenames[i] for i in top_idx]
    for view, rows in per_class.items():
        shown[view] = {class_names[c]: [filenames[i] for i in idx] for c, idx in enumerate(rows)}
    return {
        "split": split,
        "accuracy": accuracy,
        "confusion_matrix": cm.tolist(),
        "shown": shown,
        "most_confused": [list(pair) for pair in confused],
        "files": {k: str(v) for k, v in written.items()},
    }
