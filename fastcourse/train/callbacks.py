"""TensorBoard for every trainer call (`train.tensorboard: true`, `fastcourse run --tensorboard`,
`Learner(..., tensorboard=True)`).

Keras' own `keras.callbacks.TensorBoard` writes the epoch scalars (loss, accuracy, their
validation values); `RateAndSamples` adds the learning rate at every step (the schedule's table
as it was really applied, multipliers aside) and, once per run, a few augmented training images
exactly as the model sees them. Everything goes under RUN/tensorboard/ (one subfolder per phase
of a multi-phase task); the command to open it is printed when training starts::

    tensorboard --logdir runs/mnist-cnn-20260101-120000/tensorboard
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np

from fastcourse.data.sources import Source

TENSORBOARD = "tensorboard"
_ANNOUNCED: set[str] = set()


def tensorboard_dir_for(checkpoint_dir: str | Path) -> Path:
    """RUN/tensorboard[/phase] for a trainer call that checkpoints into RUN/checkpoints[/phase]."""
    path = Path(checkpoint_dir)
    parts = path.parts
    if "checkpoints" in parts:
        i = len(parts) - 1 - parts[::-1].index("checkpoints")
        return Path(*parts[:i], TENSORBOARD, *parts[i + 1 :])
    return path.parent / TENSORBOARD / path.name


def open_command(logdir: str | Path) -> str:
    return f"tensorboard --logdir {logdir}"


class RateAndSamples(keras.callbacks.Callback):
    """The learning rate per step and `samples` augmented training images, into `logdir/train`."""

    def __init__(
        self,
        logdir: str | Path,
        source: Optional[Source] = None,
        augment: Optional[Callable] = None,
        seed: int = 0,
        samples: int = 6,
        announce: Optional[str | Path] = None,
    ):
        super().__init__()
        self.logdir, self.source, self.augment = Path(logdir), source, augment
        self.seed, self.samples, self.announce = int(seed), int(samples), announce
        self._writer = None

    def _images_fit(self) -> bool:
        shape = tuple(self.source.input_shape) if self.source is not None else ()
        return (
            self.samples > 0
            and self.source is not None
            and self.source.kind != "features"
            and len(shape) == 3
            and shape[-1] in (1, 3, 4)
        )

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        if self.announce is not None and str(self.announce) not in _ANNOUNCED:
            _ANNOUNCED.add(str(self.announce))
            print(
                f"fastcourse: TensorBoard logs in {self.announce}; open them with: {open_command(self.announce)}",
                flush=True,
            )
        self._writer = tf.summary.create_file_writer(str(self.logdir / "train"))
        if self._images_fit():
            n = min(self.samples, len(self.source))
            batch = next(iter(self.source.batches(n, augment=self.augment, seed=self.seed, labels=False)))
            images = tf.clip_by_value(tf.cast(batch, tf.float32) / 255.0, 0.0, 1.0)
            with self._writer.as_default():
                tf.summary.image(
                    "augmented_samples" if self.augment is not None else "training_samples",
                    images,
                    step=int(self.model.optimizer.iterations.numpy()),
                    max_outputs=n,
                )
            self._writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        import tensorflow as tf

        opt = self.model.optimizer
        step = int(keras.ops.convert_to_numpy(opt.iterations))
        lr = float(np.asarray(keras.ops.convert_to_numpy(opt.learning_rate)))
        # one_cycle's momentum, where the optimizer has one (a loss-scale wrapper holds it inside)
        momentum = getattr(getattr(opt, "inner_optimizer", opt), "momentum_schedule", None)
        with self._writer.as_default():
            tf.summary.scalar("learning_rate", lr, step=step)
            if momentum is not None:
                tf.summary.scalar("momentum", float(keras.ops.convert_to_numpy(momentum(step))), step=step)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None


def tensorboard_callbacks(
    logdir: str | Path,
    source: Optional[Source] = None,
    augment: Optional[Callable] = None,
    seed: int = 0,
    announce: Optional[str | Path] = None,
) -> list[keras.callbacks.Callback]:
    """Keras' TensorBoard (epoch scalars) plus the per-step rate and the augmented samples."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        from fastcourse.errors import UsageError

        raise UsageError(
            "train.tensorboard needs the tensorboard package: pip install tensorboard (or turn train.tensorboard off)"
        )
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    root = announce if announce is not None else (logdir if logdir.name == TENSORBOARD else logdir.parent)
    return [
        keras.callbacks.TensorBoard(log_dir=str(logdir), update_freq="epoch", write_graph=False, profile_batch=0),
        RateAndSamples(logdir, source, augment, seed, announce=root),
    ]
