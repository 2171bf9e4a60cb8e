"""Using the Learner's model: get_preds, predict and evaluate, on the evaluation split, a Source,
a folder, one image file or an array of images. Given images are read as the data pipeline reads
them for this model (each conversion said once); TTA averages augmented copies
(fastcourse.results.predict.predict_images)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from fastcourse.errors import UsageError
from fastcourse.learner import checks
from fastcourse.learner.checks import Spec

if TYPE_CHECKING:  # for annotations only: importing them at run time would import TensorFlow
    from fastcourse.results.inference import Tta
    from fastcourse.run.inputs import Inputs


class LearnerState:
    """The Learner's state that its parts read, declared once for the type checker (set by
    fastcourse.learner.core.Learner.__init__)."""

    inputs: Inputs
    model: Any
    model_name: str
    seed: int
    name: str
    out: Path
    data_name: str
    augment_fn: Optional[Callable]
    _train: dict[str, Any]


class Predicting(LearnerState):
    """The Learner's predictions (a part of fastcourse.learner.core.Learner)."""

    _said: set[str]

    def _source(self, data):
        """`data` as a Source: None (the evaluation split), a split's name, a Source, a folder of
        images (with its file names), one image file, or images as an array."""
        from fastcourse.data.sources import ArraySource, Source

        if data is None:
            data = self.inputs.eval_split if self.inputs.eval is not None else None
        if isinstance(data, str) and data in ("valid", "test", "eval", "train"):
            split = self.inputs.train if data == "train" else self.inputs.eval
            if split is None:
                raise UsageError(
                    f"get_preds({data!r}): this learner was loaded for prediction and holds no data; "
                    "give images (a folder, a file or an array)"
                )
            if data in ("valid", "test") and data != self.inputs.eval_split:
                raise UsageError(
                    f"get_preds({data!r}): this learner evaluates on its {self.inputs.eval_split!r} "
                    f"split; give {self.inputs.eval_split!r} (or 'train')"
                )
            return split, None
        if isinstance(data, Source):
            return data, None
        if data is None:
            raise UsageError("give images to predict: a folder, a file or an array")
        if isinstance(data, (str, os.PathLike)):
            from fastcourse.results.predict import list_images

            path = Path(data)
            if path.is_file():
                return self._files([str(path)]), None
            if not path.is_dir():
                raise UsageError(f"{path}: no such image file or folder")
            files = list_images(path)
            return self._files([str(path / f) for f in files]), files
        from fastcourse.data.pipeline import conform

        x = np.asarray(data)
        if x.ndim == 2:  # one grey image without its channel axis
            x = x[None, ..., None]
        elif x.ndim == 3:  # one image (H, W, C), or grey images without their channel axis (N, H, W)
            x = x[None] if x.shape[-1] in (1, 3, 4) else x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or np.issubdtype(x.dtype, np.complexfloating):
            raise UsageError(
                f"images of shape {np.shape(data)}: give (H, W), (H, W, C) or (N, H, W[, C]) arrays of "
                "0-255 pixels with C 1 (grey), 3 (RGB) or 4 (RGBA), or image files"
            )
        x, notes = conform(x, self.inputs.input_shape)
        self._say(notes)
        return ArraySource(x, None, self.inputs.num_classes), None

    def _files(self, files: list[str]):
        """Image files as the data pipeline reads them for this model: decoded, resized (bilinear)
        to its size, RGB or grey as it takes them; each conversion said once (_say)."""
        from fastcourse.data.images import scan
        from fastcourse.data.sources import FolderSource

        h, w, channels = (int(d) for d in self.inputs.input_shape)
        statuses = scan(files, "fast")
        readable = [st for st in statuses if st.problem is None]
        notes = []
        if channels == 1 and any(not st.grey for st in readable):
            notes.append("colour images converted to grey")
        if channels == 3 and any(st.grey for st in readable):
            notes.append("grey images converted to RGB")
        other = sorted({st.size for st in readable} - {(h, w)})
        if other:
            sizes = ", ".join(f"{a}x{b}" for a, b in other[:3]) + (", ..." if len(other) > 3 else "")
            notes.append(f"images of {sizes} resized to {h}x{w} (bilinear)")
        self._say(notes)
        pillow = np.array([st.pillow or st.problem is not None for st in statuses], bool)
        return FolderSource(files, None, self.inputs.num_classes, (h, w), pillow=pillow, channels=channels)

    def _say(self, notes: list[str]) -> None:
        """One line per conversion of the images given to predict, the first time it happens."""
        h, w, c = (int(d) for d in self.inputs.input_shape)
        for note in notes:
            if note not in self._said:
                self._said.add(note)
                print(f"fastcourse: {note}: the model takes {h}x{w}x{c} images, as it was trained", flush=True)

    def _probs(self, source, tta: Tta, batch_size: int, augment: Spec):
        from fastcourse.results.inference import check_tta, needs_augmenter, predict_images

        check_tta(tta)
        augmenter = checks.augmentation(augment)[0] if augment is not None else self.augment_fn
        if needs_augmenter(tta) and augmenter is None:
            raise UsageError(
                f"tta={tta}: this learner has no augmentation; give augment=... for the copies, or tta='flip'"
            )
        return predict_images(
            self.model,
            source.batches(batch_size, labels=False),
            augmenter if needs_augmenter(tta) else None,
            tta,
            self.seed,
            progress=False,
        )

    def get_preds(self, split: Any = None, tta: Tta = 0, batch_size: int = 64, augment: Spec = None):
        """fastai's get_preds: `(probs, targets)` for a whole split: None (the evaluation
        split: "valid" for a folder, "test" for array datasets), that split's name, "train",
        a Source, a folder or an array of images.
        `probs` is (N, classes), the mean over the clean images and `tta` augmented copies
        (`tta="flip"`: each image and its mirror image, for clothes and photos, never digits);
        `targets` the integer labels, or None for unlabelled images."""
        source, _ = self._source(split)
        probs = self._probs(source, tta, batch_size, augment)
        labels = getattr(source, "labels", None)
        if labels is not None:
            labels = np.asarray(labels)
            labels = labels.argmax(1) if labels.ndim == 2 else labels.astype(np.int64)
        return probs, labels

    def predict(self, item: Any, tta: Tta = 0, augment: Spec = None):
        """fastai's predict, for ONE image (a file path, or an array (H, W[, C]) of 0..255 pixels):
        `(label, index, probabilities)`. A folder gives a fastcourse.results.predict.Predictions
        for every image in it (file names relative to the folder); a split, see get_preds."""
        from fastcourse.results.predict import Predictions

        if item is None:
            raise UsageError("predict(item): give one image (a file or an array); get_preds() gives a whole split")
        source, files = self._source(item)
        probs = self._probs(source, tta, 64, augment)
        if files is not None:
            return Predictions(list(files), probs, list(self.inputs.class_names))
        if len(probs) != 1:
            raise UsageError(f"predict: {len(probs)} images given; predict takes one, get_preds(images) many")
        index = int(probs[0].argmax())
        return self.inputs.class_names[index], index, probs[0]

    def evaluate(self, tta: Tta = 0) -> dict:
        """Loss and accuracy on the evaluation split (clean, or with `tta` augmented copies)."""
        from fastcourse.train.metrics import scores

        probs, _ = self.get_preds(tta=tta)
        result = scores(probs, np.asarray(self.inputs.eval.labels))
        return {"loss": result["loss"], "accuracy": result["accuracy"], "probs": result["probs"]}
