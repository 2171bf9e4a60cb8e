"""Batch-level augmentation that mixes images AND their labels: MixUp and CutMix.

Configured as `augment.mix: {name: mixup | cutmix, alpha: ...}` beside any image pipeline
(`augment.name`), or in the Learner as `augment={"name": "fashion", "mix": {"name": "mixup"}}`.
The image pipeline runs first, then the mix, on whole training batches of (images 0-255, one-hot
labels); the labels come out soft (rows still sum to 1), which the trainer's categorical
cross-entropy takes as they are. Validation and evaluation batches are never mixed.

- `mixup` is Keras 3's `keras.layers.MixUp` (Zhang et al. 2018): per image a weight
  lambda ~ Beta(alpha, alpha), a partner from a permutation of the batch, images and labels
  blended with lambda. It is linear, so the course's 0-255 floats fit; it is built with dtype
  float32 so a mixed-precision policy never turns the pixels into bfloat16.
- `cutmix` is the paper's (Yun et al. 2019) and fastai's (fastai/callback/mixup.py, CutMix and
  its `rand_bbox`): lambda ~ Beta(alpha, alpha), a box of side sqrt(1 - lambda) of the image's
  with its centre uniform on the image and clipped at the borders, the partner's pixels pasted in
  the box, and the label weight recomputed as the share of pixels kept. Keras' `CutMix` does not
  fit: its `factor` is not alpha (it draws alpha itself from U(factor), bounded to [0, 1]), its box
  always lies inside the image, and its label weight is the box's real-valued area, not the
  pixels pasted (up to a few percent apart on 28x28 images). fastai draws one box per batch; here
  each image gets its own, as Keras' layers do.

Every draw comes from the pipeline's stateless seed (the run's seed and the global batch index,
data/pipeline.py), folded with 1 so the image pipeline's draws stay what they were without a mix.
"""

from __future__ import annotations

from typing import Callable, Optional

import keras
import tensorflow as tf

from fastcourse.data.stateless import LayerChain
from fastcourse.errors import UsageError

# fastai's defaults: MixUp(alpha=0.4), CutMix(alpha=1.)
MIX_ALPHA = {"mixup": 0.4, "cutmix": 1.0}


def _beta(shape, alpha: float, seeds) -> tf.Tensor:
    """Beta(alpha, alpha) from two stateless gamma draws."""
    a = tf.random.stateless_gamma(shape, seeds[0], alpha=alpha)
    b = tf.random.stateless_gamma(shape, seeds[1], alpha=alpha)
    return a / tf.maximum(a + b, 1e-12)


class MixUp:
    """Keras' MixUp layer, driven by a stateless seed: `mix(images, labels, seed)`."""

    name = "mixup"

    def __init__(self, alpha: float = MIX_ALPHA["mixup"]):
        self.alpha = float(alpha)
        self.chain = LayerChain([keras.layers.MixUp(alpha=self.alpha, dtype="float32")])

    def __call__(self, images, labels, seed):
        out = self.chain({"images": tf.cast(images, tf.float32), "labels": tf.cast(labels, tf.float32)}, seed)
        return out["images"], out["labels"]

    def __repr__(self):
        return f"MixUp(alpha={self.alpha})"


class CutMix:
    """CutMix as the paper and fastai draw it (one box per image): `mix(images, labels, seed)`."""

    name = "cutmix"

    def __init__(self, alpha: float = MIX_ALPHA["cutmix"]):
        self.alpha = float(alpha)

    def draw(self, shape, seed) -> dict[str, tf.Tensor]:
        """The random parameters for a batch of `shape` (B, H, W, C): `lam` (B,), the box centre
        `cy`, `cx` (B,) in pixels (integers, as torch.randint(0, H)), `perm` (B,) the partners."""
        batch, height, width = shape[0], shape[1], shape[2]
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
        lam = _beta([batch], self.alpha, seeds[:2])
        cy = tf.random.stateless_uniform([batch], seeds[2], 0, tf.cast(height, tf.int32), dtype=tf.int32)
        cx = tf.random.stateless_uniform([batch], seeds[3], 0, tf.cast(width, tf.int32), dtype=tf.int32)
        perm = tf.argsort(tf.random.stateless_uniform([batch], seeds[4]))
        return {"lam": lam, "cy": cy, "cx": cx, "perm": perm}

    @staticmethod
    def boxes(lam, cy, cx, height, width):
        """fastai's rand_bbox per image: cut = round(size x sqrt(1 - lam)) (torch.round and
        tf.round both round half to even), the box centred on (cy, cx), clipped to the image.
        Returns (y1, y2, x1, x2), int32, each (B,)."""
        rat = tf.sqrt(1.0 - lam)
        cut_h = tf.cast(tf.round(tf.cast(height, tf.float32) * rat), tf.int32)
        cut_w = tf.cast(tf.round(tf.cast(width, tf.float32) * rat), tf.int32)
        y1 = tf.clip_by_value(cy - cut_h // 2, 0, height)
        y2 = tf.clip_by_value(cy + cut_h // 2, 0, height)
        x1 = tf.clip_by_value(cx - cut_w // 2, 0, width)
        x2 = tf.clip_by_value(cx + cut_w // 2, 0, width)
        return y1, y2, x1, x2

    def apply(self, images, labels, params):
        images, labels = tf.cast(images, tf.float32), tf.cast(labels, tf.float32)
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        y1, y2, x1, x2 = self.boxes(params["lam"], params["cy"], params["cx"], height, width)
        rows = tf.range(height)[None, :, None]
        cols = tf.range(width)[None, None, :]
        in_rows = (rows >= y1[:, None, None]) & (rows < y2[:, None, None])
        inside = in_rows & (cols >= x1[:, None, None]) & (cols < x2[:, None, None])
        mixed = tf.where(inside[..., None], tf.gather(images, params["perm"]), images)
        # fastai: lam = 1 - (x2 - x1) * (y2 - y1) / (W * H), the share of pixels kept
        kept = 1.0 - tf.cast((y2 - y1) * (x2 - x1), tf.float32) / tf.cast(height * width, tf.float32)
        mixed_labels = kept[:, None] * labels + (1.0 - kept[:, None]) * tf.gather(labels, params["perm"])
        return mixed, mixed_labels

    def __call__(self, images, labels, seed):
        return self.apply(images, labels, self.draw(tf.shape(images), seed))

    def __repr__(self):
        return f"CutMix(alpha={self.alpha})"


MIXES = {"mixup": MixUp, "cutmix": CutMix}


def build_mix(spec: Optional[dict]):
    """The mix a spec `{name: mixup | cutmix, alpha: ...}` names, or None. Bad values are one
    line (the config's check says the same at load: fastcourse.config.MixConfig)."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) - {"name", "alpha"}:
        raise UsageError(f"augment mix {spec!r}: give {{name: mixup | cutmix, alpha: a number > 0}}")
    name = spec.get("name")
    if name not in MIXES:
        raise UsageError(f"augment mix name {name!r}: use mixup or cutmix")
    alpha = spec.get("alpha")
    alpha = MIX_ALPHA[name] if alpha is None else alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 100:
        raise UsageError(f"augment mix alpha {alpha!r}: give a number in (0, 100] (lambda ~ Beta(alpha, alpha))")
    return MIXES[name](float(alpha))


class Mixed:
    """An image pipeline (or none) followed by a mix of images and labels.

    Called with images alone (`augment(images, seed)`: previews, TensorBoard samples, TTA) it is
    the image pipeline only; the training batches call `with_labels`."""

    mixes_labels = True

    def __init__(self, base: Optional[Callable], mix):
        self.base, self.mix = base, mix

    def __call__(self, images, seed):
        return images if self.base is None else self.base(images, seed)

    def with_labels(self, images, labels, seed):
        images = self(images, seed)
        return self.mix(images, labels, tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 1))

    def __repr__(self):
        return f"Mixed({self.base!r}, {self.mix!r})"


def preview_mix(mixed: Mixed, images, labels, class_names, path, seed: int = 0, title: str = ""):
    """Save a PNG grid: `images` (N, H, W, C) 0-255 with one-hot `labels`, then the same batch
    through `mixed` (its image pipeline, then the mix), each titled with its label weights
    ("0.71 Bag + 0.29 Shirt")."""
    import math

    import numpy as np
    from matplotlib.figure import Figure  # not pyplot: the user's backend is left alone

    from fastcourse.io import save_figure

    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.float32)
    out, soft = mixed.with_labels(tf.constant(images), tf.constant(labels), tf.constant([seed, 0], tf.int64))
    rows_of = [(images, labels, "original"), (np.asarray(out), np.asarray(soft), repr(mixed.mix))]
    cols = min(len(images), 8)
    per = math.ceil(len(images) / cols)
    fig = Figure(figsize=(1.9 * cols, 2.1 * 2 * per))
    axes = fig.subplots(2 * per, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (ims, ys, _) in enumerate(rows_of):
        for i, (im, y) in enumerate(zip(ims, ys)):
            ax = axes[r * per + i // cols, i % cols]
            im = np.clip(im, 0, 255).astype(np.uint8)
            ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray" if im.shape[-1] == 1 else None)
            top = np.argsort(-y)[:2]
            parts = [f"{y[k]:.2f} {class_names[k]}" for k in top if y[k] > 0.005]
            ax.set_title(" + ".join(parts), fontsize=7)
    fig.suptitle(title or f"top: originals; bottom: {rows_of[1][2]}", fontsize=9)
    return save_figure(fig, path)
