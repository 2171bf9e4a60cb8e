"""What the Learner shows: show_batch, show_results (the lesson's views, through
fastcourse.results.views.write_views, as `fastcourse views` draws them) and fastai's top_losses /
plot_top_losses / most_confused; figures are made without pyplot (the user's matplotlib backend
is never switched) and shown inline when running in IPython."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from fastcourse.learner.predict import Predicting

if TYPE_CHECKING:  # for annotations only: importing it at run time would import TensorFlow
    from fastcourse.results.inference import Tta


def image_grid(images: np.ndarray, captions: list[str], title: str):
    """A Figure (made without pyplot) of images 0..255 with their captions."""
    import math

    from matplotlib.figure import Figure

    cols = min(len(images), 5) or 1
    rows = max(1, math.ceil(len(images) / cols))
    fig = Figure(figsize=(2.0 * cols, 2.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        image = np.clip(np.asarray(image, np.float32), 0, 255).astype(np.uint8)
        gray = image.shape[-1] == 1
        ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None)
        ax.set_title(caption, fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig


def in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def display_figure(fig) -> None:
    """Show a Figure inline when running in IPython (as a PNG: no pyplot, whatever the backend)."""
    if not in_ipython():
        return
    import io as _io

    from IPython.display import Image, display

    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    display(Image(data=buffer.getvalue()))


def display_files(paths: list[Path]) -> None:
    """Show PNGs inline when running in IPython; nothing otherwise."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is None:
        return
    for path in paths:
        display(Image(str(path)))


class Showing(Predicting):
    """The Learner's figures and views (a part of fastcourse.learner.core.Learner)."""

    def show_batch(
        self, n: int = 9, split: str = "train", augmented: bool = True, path: Optional[str | os.PathLike] = None
    ):
        """fastai's show_batch: `n` images of a split with their labels (the training images as
        augmented for training, unless augmented=False). Drawn inline in a notebook; saved to
        `path` when given. Returns the matplotlib Figure (made without pyplot)."""
        from fastcourse.io import save_figure

        source, _ = self._source(split)
        augment = self.augment_fn if (augmented and split == "train") else None
        x, y = next(iter(source.batches(max(1, n), shuffle=True, seed=self.seed, augment=augment)))
        x, y = np.asarray(x)[:n], np.asarray(y)[:n]
        labels = y.argmax(1) if y.ndim == 2 else y
        names = list(self.inputs.class_names)
        where = f"{split}{', augmented' if augment is not None else ''}"
        fig = image_grid(x, [names[int(i)] for i in labels], f"{self.data_name}: {len(x)} {where} images")
        if path is not None:
            save_figure(fig, path)
        display_figure(fig)
        return fig

    def show_results(
        self, n: int = 4, out_dir: Optional[str | os.PathLike] = None, tta: Tta = 0, show: Optional[list[str]] = None
    ) -> dict:
        """The lesson's views of the evaluation predictions (random correct/incorrect, most
        confident per class, most uncertain, confusion matrix, augmented copies), as PNGs in
        `out_dir` (default OUT/<name>/views), as `fastcourse views` draws them; shown inline in a
        notebook. Returns views.write_views' summary (accuracy, confusion matrix, the images each
        view shows) with `files`, the paths of what it wrote."""
        from fastcourse.results.predict import split_predictions
        from fastcourse.results.views import write_views

        out_dir = Path(out_dir) if out_dir is not None else self.out / self.name / "views"
        probs, labels = self.get_preds(tta=tta)
        i = self.inputs
        preds = split_predictions(i, i.eval, probs, i.class_names, labels, i.eval_split)
        first = None
        if self.augment_fn is not None:  # the first evaluation image as the model sees it
            first = (preds.filenames[0], np.asarray(next(iter(i.eval.take(1).batches(1, labels=False))))[0])
        shown = write_views(
            preds.folder,
            preds.filenames,
            labels,
            probs,
            preds.class_names,
            out_dir,
            n=n,
            seed=self.seed,
            augment=self.augment_fn,
            augment_image=first,
            display=preds.display_image,
            split=i.eval_split,
        )
        shown["files"] = {view: Path(file) for view, file in shown["files"].items()}
        wanted = show or ["random_correct", "random_incorrect", "most_uncertain", "confusion_matrix"]
        display_files([shown["files"][k] for k in wanted if k in shown["files"]])
        return shown

    def top_losses(self, k: Optional[int] = None, largest: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """fastai's `top_losses`: (losses, indices) of the `k` evaluation images with the
        largest loss (smallest with largest=False), that loss first; every image by default."""
        from fastcourse.results.views import top_losses

        probs, labels = self.get_preds()
        return top_losses(labels, probs, k, largest)

    def plot_top_losses(self, k: int = 9, largest: bool = True, path: Optional[str | os.PathLike] = None) -> Path:
        """fastai's `plot_top_losses`: the `k` top-loss evaluation images, each titled
        predicted/actual / loss / probability of the actual class; saved to `path` (default
        OUT/<name>/views/top_losses.png) and shown inline in a notebook."""
        from fastcourse.results.predict import split_predictions
        from fastcourse.results.views import plot_top_losses

        probs, labels = self.get_preds()
        i = self.inputs
        preds = split_predictions(i, i.eval, probs, i.class_names, labels, i.eval_split)
        target = Path(path) if path is not None else self.out / self.name / "views" / "top_losses.png"
        png, _ = plot_top_losses(preds.display_image, labels, probs, i.class_names, target, k, largest, i.eval_split)
        display_files([png])
        return png

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """fastai's `most_confused`: [(actual, predicted, count)] off the diagonal of the
        evaluation split's confusion matrix, at least `min_val` times, most frequent first."""
        from fastcourse.results.views import most_confused

        probs, labels = self.get_preds()
        return most_confused(labels, probs, self.inputs.class_names, min_val)
