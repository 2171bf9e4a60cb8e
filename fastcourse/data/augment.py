"""Named augmentation pipelines, applied to whole batches inside tf.data.

`course` equals the 2017 notebooks' ImageDataGenerator(rotation_range=8, width_shift_range=0.08,
shear_range=0.3, height_shift_range=0.08, zoom_range=0.08) as Keras 1.2.2 ran it
(keras/preprocessing/image.py, `ImageDataGenerator.random_transform`): it composes rotation,
shift, shear (in RADIANS, as Keras 1 had it) and zoom into ONE affine matrix per image in (row,
column) coordinates, so `height_shift` moves rows and `width_shift` columns on any image shape,
and resamples once (fill 'nearest'), here for a whole batch in one projective-transform op; then
one channel shift per channel, then the flip. Two choices differ from Keras 1.2.2, both below a
pixel: bilinear sampling where it read the nearest pixel (scipy order=0), and the centre of
rotation, shear and zoom at the image's middle, where Keras 1.2.2 put it one pixel off
(tests/test_augment.py compares with a port of the 1.2.2 code and measures both).
(Keras 2.2+'s and Keras 3's legacy generator swap the two shifts and transpose the shear on
their (x, y) axes; fastcourse follows the course.) `keras_layers` chains any of Keras' own
preprocessing layers.

Every pipeline is a callable `augment(images, seed) -> images` over a float32 batch in 0-255,
where `seed` is a stateless seed (2 int64): the same seed gives the same batch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Optional

import keras
import numpy as np
import tensorflow as tf

from fastcourse.data.base import AUGMENTATIONS
from fastcourse.data.stateless import LayerChain

# the legacy generator's fill modes (ImageProjectiveTransformV3 takes the same four)
FillMode = Literal["nearest", "constant", "reflect", "wrap"]


@keras.saving.register_keras_serializable(package="fastcourse")
class RandomAffine(keras.layers.Layer):
    """One random affine transform per image, as the course's Keras 1.2 ImageDataGenerator drew it.

    Args are the generator's: rotation in degrees, shifts as fractions of the size (`height_shift`
    moves rows, `width_shift` columns), shear in radians, zoom z draws each axis in [1-z, 1+z],
    channel_shift in 0-255 units (one shift per channel, as Keras 1.2 drew it).

    `draw` makes the random parameters of a batch from a stateless seed and `apply` transforms
    the batch with given parameters; `augment` is the two together.
    """

    def __init__(
        self,
        rotation: float = 0.0,
        width_shift: float = 0.0,
        height_shift: float = 0.0,
        shear: float = 0.0,
        zoom: float = 0.0,
        horizontal_flip: bool = False,
        channel_shift: float = 0.0,
        fill_mode: str = "nearest",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rotation, self.width_shift, self.height_shift = rotation, width_shift, height_shift
        self.shear, self.zoom, self.horizontal_flip = shear, zoom, horizontal_flip
        self.channel_shift, self.fill_mode = channel_shift, fill_mode

    def call(self, images, seed=None, training=True):
        if not training:
            return images
        if seed is None:
            seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
        return self.augment(images, seed)

    def augment(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        images = tf.convert_to_tensor(images, tf.float32)
        return self.apply(images, self.draw(tf.shape(images), seed))

    def draw(self, shape, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """The random parameters for a batch of `shape` (B, H, W, C), in Keras 1.2's names and
        units: `theta` degrees, `tx` rows and `ty` columns in pixels, `shear` radians, `zx` (rows)
        and `zy` (columns) zoom factors, `channel` (B, C) intensity shifts, `flip` (B,) bools."""
        batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 8)

        def uniform(i, low, high, size=None):
            return tf.random.stateless_uniform(size if size is not None else [batch], seeds[i], low, high)

        zeros, ones = tf.zeros([batch]), tf.ones([batch])
        return {
            "theta": uniform(0, -self.rotation, self.rotation) if self.rotation else zeros,
            "tx": uniform(1, -self.height_shift, self.height_shift) * tf.cast(height, tf.float32)
            if self.height_shift
            else zeros,
            "ty": uniform(2, -self.width_shift, self.width_shift) * tf.cast(width, tf.float32)
            if self.width_shift
            else zeros,
            "shear": uniform(3, -self.shear, self.shear) if self.shear else zeros,
            "zx": uniform(4, 1 - self.zoom, 1 + self.zoom) if self.zoom else ones,
            "zy": uniform(5, 1 - self.zoom, 1 + self.zoom) if self.zoom else ones,
            "channel": uniform(6, -self.channel_shift, self.channel_shift, [batch, channels])
            if self.channel_shift
            else tf.zeros([batch, channels]),
            "flip": uniform(7, 0.0, 1.0) < 0.5 if self.horizontal_flip else tf.zeros([batch], tf.bool),
        }

    def apply(self, images: tf.Tensor, params: dict[str, tf.Tensor]) -> tf.Tensor:
        """Keras 1.2's random_transform with given parameters: one resampling through the
        composed matrix, then the channel shift (clipped to the transformed image's range), then
        the flip."""
        images = tf.convert_to_tensor(images, tf.float32)
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        geometry = {k: tf.cast(params[k], tf.float32) for k in ("theta", "tx", "ty", "shear", "zx", "zy")}
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=images,
            transforms=affine_transforms(**geometry, height=height, width=width),
            output_shape=tf.shape(images)[1:3],
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode=self.fill_mode.upper(),
        )
        if self.channel_shift:
            # Keras 1.2's random_channel_shift: one intensity per channel, clipped to the range of
            # the whole (transformed) image
            shift = tf.cast(params["channel"], tf.float32)[:, None, None, :]
            lo = tf.reduce_min(out, axis=[1, 2, 3], keepdims=True)
            hi = tf.reduce_max(out, axis=[1, 2, 3], keepdims=True)
            out = tf.clip_by_value(out + shift, lo, hi)
        if self.horizontal_flip:
            out = tf.where(params["flip"][:, None, None, None], tf.reverse(out, axis=[2]), out)
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "rotation": self.rotation,
            "width_shift": self.width_shift,
            "height_shift": self.height_shift,
            "shear": self.shear,
            "zoom": self.zoom,
            "horizontal_flip": self.horizontal_flip,
            "channel_shift": self.channel_shift,
            "fill_mode": self.fill_mode,
        }


def affine_transforms(theta, tx, ty, shear, zx, zy, height, width) -> tf.Tensor:
    """Per-image 8-vectors for ImageProjectiveTransformV3 from Keras 1.2's parameters.

    Keras 1.2 (keras/preprocessing/image.py, random_transform) composes rotation @ shift @ shear
    @ zoom in (row, column) coordinates, centres it on the image and hands it to
    scipy.ndimage.affine_transform, which maps each output (row, col) to the input pixel it
    reads. The same matrix here, centred on the image's middle ((H-1)/2, (W-1)/2; Keras 1.2's
    transform_matrix_offset_center put it at (H/2+0.5, W/2+0.5), a pixel off, which later Keras
    corrected), then written for TensorFlow's op, whose coordinates are (x, y) = (col, row).
    `theta` in degrees, `tx` rows and `ty` columns in pixels, `shear` in radians, `zx` scales
    rows and `zy` columns."""
    theta = theta * (math.pi / 180.0)
    c, s = tf.cos(theta), tf.sin(theta)
    zero, one = tf.zeros_like(theta), tf.ones_like(theta)

    def mat(rows):
        return tf.stack([tf.stack(r, axis=-1) for r in rows], axis=-2)  # (B, 3, 3)

    rotation = mat([[c, -s, zero], [s, c, zero], [zero, zero, one]])
    shift = mat([[one, zero, tx], [zero, one, ty], [zero, zero, one]])
    shear_m = mat([[one, -tf.sin(shear), zero], [zero, tf.cos(shear), zero], [zero, zero, one]])
    zoom_m = mat([[zx, zero, zero], [zero, zy, zero], [zero, zero, one]])
    o_r = tf.cast(height, tf.float32) / 2 - 0.5 + zero
    o_c = tf.cast(width, tf.float32) / 2 - 0.5 + zero
    offset = mat([[one, zero, o_r], [zero, one, o_c], [zero, zero, one]])
    reset = mat([[one, zero, -o_r], [zero, one, -o_c], [zero, zero, one]])
    m = offset @ rotation @ shift @ shear_m @ zoom_m @ reset  # (row, col): input = m @ output
    # the same map in (x, y) = (col, row): swap both the rows and the columns of m
    return tf.stack([m[:, 1, 1], m[:, 1, 0], m[:, 1, 2], m[:, 0, 1], m[:, 0, 0], m[:, 0, 2], zero, zero], axis=-1)


def mirror_images(images, seed=None):
    """Mirror a batch (N, H, W, C) left to right, the same every time: test-time augmentation's
    flip (`tta="flip"`, `ensemble.tta: flip`), an `augment(images, seed)` that ignores the seed."""
    return tf.reverse(images, axis=[2])


class Affine:
    """Callable wrapper so a pipeline is `augment(images, seed)`."""

    def __init__(self, layer: RandomAffine):
        self.layer = layer

    def __call__(self, images, seed):
        return self.layer.augment(images, seed)

    def __repr__(self):
        return f"Affine({self.layer.get_config()})"


@AUGMENTATIONS.register()
def none() -> None:
    """No augmentation."""
    return None


@AUGMENTATIONS.register()
def affine(
    rotation: float = 0.0,
    width_shift: float = 0.0,
    height_shift: float = 0.0,
    shear: float = 0.0,
    zoom: float = 0.0,
    horizontal_flip: bool = False,
    channel_shift: float = 0.0,
    fill_mode: FillMode = "nearest",
) -> Affine:
    """Any ImageDataGenerator-style affine augmentation (rotation deg, shear rad). Each range is
    symmetric (rotation 8: -8 to 8 degrees); the config check holds the values to their bounds
    (config.ARG_BOUNDS) and `fill_mode` to its choices."""
    return Affine(
        RandomAffine(rotation, width_shift, height_shift, shear, zoom, horizontal_flip, channel_shift, fill_mode)
    )


@AUGMENTATIONS.register()
def course(rotation: float = 8.0, shift: float = 0.08, shear: float = 0.3, zoom: float = 0.08) -> Affine:
    """The MNIST lesson's generator: rotation 8 deg, shifts 0.08, shear 0.3 rad, zoom 0.08."""
    return affine(rotation=rotation, width_shift=shift, height_shift=shift, shear=shear, zoom=zoom)


@AUGMENTATIONS.register()
def fashion(horizontal_flip: bool = True, shift: float = 0.05, fill_mode: FillMode = "constant") -> Affine:
    """Fashion-MNIST's clothes: horizontal flips and shifts of 0.05 (1.4 pixels), black fill.

    The photos are upright and centred on black, so the digit lesson's rotation, shear and zoom
    cost more than they give. Measured on the full data (cnn_bn_dropout, one-cycle max 6e-3,
    batch 256, 24 epochs, seed 42): flip + shift 0.05 0.9402; flip only 0.9329 (overfits: 0.988
    on training images); flip + shift 0.1 0.9325 (underfits: 0.940). At 10 epochs: the course's
    augmentation 0.9225, flip + shift 0.1 0.9242, none 0.9348."""
    return affine(width_shift=shift, height_shift=shift, horizontal_flip=horizontal_flip, fill_mode=fill_mode)


@AUGMENTATIONS.register()
def dogscats(
    rotation: float = 15.0,
    shift: float = 0.1,
    zoom: float = 0.1,
    horizontal_flip: bool = True,
    shear: float = 0.0,
    channel_shift: float = 0.0,
) -> Affine:
    """Lesson 3's photos: rotation 15, shifts 0.1, zoom 0.1, horizontal flip."""
    return affine(
        rotation=rotation,
        width_shift=shift,
        height_shift=shift,
        zoom=zoom,
        horizontal_flip=horizontal_flip,
        shear=shear,
        channel_shift=channel_shift,
    )


@AUGMENTATIONS.register()
def statefarm(
    rotation: float = 15.0,
    width_shift: float = 0.1,
    height_shift: float = 0.05,
    shear: float = 0.1,
    channel_shift: float = 20.0,
) -> Affine:
    """Statefarm's combination: rotation 15, shifts 0.1/0.05, shear 0.1, channel shift 20."""
    return affine(
        rotation=rotation, width_shift=width_shift, height_shift=height_shift, shear=shear, channel_shift=channel_shift
    )


@AUGMENTATIONS.register()
def keras_layers(layers: list[dict[str, dict[str, Any]]] = ()) -> Optional[LayerChain]:
    """Keras preprocessing layers in order, e.g. [{RandomFlip: {mode: horizontal}}].

    Their draws come from the run's seed and the batch (see LayerChain), so a layer's own `seed`
    argument changes nothing in a run."""
    built = []
    for spec in layers:
        if not isinstance(spec, dict) or len(spec) != 1:
            raise ValueError(f"each layer is {{LayerName: {{args}}}}, got {spec!r}")
        ((cls_name, args),) = spec.items()
        cls = getattr(keras.layers, cls_name, None)
        if cls is None or not cls_name.startswith("Random"):
            raise ValueError(f"{cls_name!r} is not a Keras Random* preprocessing layer")
        layer = cls(**(args or {}))
        if not any(v.name == "seed_generator_state" for v in layer.variables):
            raise ValueError(f"{cls_name!r} has no Keras seed generator, so a run's seed cannot drive it")
        built.append(layer)
    return LayerChain(built) if built else None


class PerImageRandAugment(keras.layers.RandAugment):
    """Keras 3's RandAugment with its operations drawn per image.

    Keras' layer draws `num_ops` operation indices for the whole batch, so every image of a batch
    gets the same operations; the paper (Cubuk et al. 2020) and timm draw them per image. Each
    operation's own strength is still drawn per image by its layer, as in Keras."""

    def get_random_transformation(self, data, training=True, seed=None):
        transformation = super().get_random_transformation(data, training=training, seed=seed)
        if transformation is None:
            return None
        images = data["images"] if isinstance(data, dict) else data
        transformation["layer_idxes"] = self.backend.random.randint(
            (self.num_ops, self.backend.shape(images)[0]),
            0,
            len(self._AUGMENT_LAYERS),
            seed=self._get_seed_generator(self.backend._backend),
        )
        return transformation

    def transform_images(self, images, transformation, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        idxes, transforms = transformation["layer_idxes"], transformation["transforms"]
        for i in range(self.num_ops):
            for idx, (key, value) in enumerate(transforms.items()):
                chosen = self.backend.numpy.reshape(idxes[i] == idx, (-1, 1, 1, 1))
                images = self.backend.numpy.where(chosen, getattr(self, key).transform_images(images, value), images)
        return self.backend.cast(images, self.compute_dtype)


@AUGMENTATIONS.register()
def randaugment(num_ops: int = 2, magnitude: float = 0.5, horizontal_flip: bool = False) -> LayerChain:
    """RandAugment: `num_ops` operations per image, drawn from Keras 3's eleven (shear,
    translation, rotation, brightness, colour, contrast, sharpness, solarize, posterize,
    autocontrast, equalize), each of strength up to `magnitude` (Keras' `factor`, 0-1).

    Keras' layer as it is, but for the draw of the operations: per image here, per batch in Keras
    (PerImageRandAugment). Its `value_range` is the course's 0-255 floats; its dtype float32, so a
    mixed-precision policy never rounds the pixels to bfloat16. With `horizontal_flip` a random
    mirror image first (clothes and photos; never digits)."""
    layers: list[keras.layers.Layer] = []
    if horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", dtype="float32"))
    ops = PerImageRandAugment(value_range=(0, 255), num_ops=int(num_ops), factor=float(magnitude), dtype="float32")
    layers.append(ops)
    return LayerChain(layers)


def build(name: str, params: dict | None = None, mix: dict | None = None):
    """The pipeline registered as `name`, built with `params`; with a `mix` spec
    (`{name: mixup | cutmix, alpha: ...}`, also accepted as `params["mix"]`) that pipeline
    followed by the mix of images and labels (fastcourse.data.mix)."""
    params = dict(params or {})
    mix = params.pop("mix", None) if mix is None else mix
    pipeline = AUGMENTATIONS.get(name)(**params)
    if mix is None:
        return pipeline
    from fastcourse.data.mix import Mixed, build_mix

    return Mixed(pipeline, build_mix(mix))


def preview(augment, image: np.ndarray, path: str | Path, n: int = 8, seed: int = 0, title: str = "") -> Path:
    """Save a PNG grid: the original image and `n` augmented copies of it."""
    from matplotlib.figure import Figure  # not pyplot: the user's backend is left alone

    from fastcourse.io import save_figure

    batch = np.repeat(np.asarray(image, np.float32)[None], n, axis=0)
    copies = batch if augment is None else np.asarray(augment(tf.constant(batch), tf.constant([seed, 0], tf.int64)))
    shown = [np.asarray(image, np.float32)] + list(copies)
    cols = min(len(shown), 9)
    rows = math.ceil(len(shown) / cols)
    fig = Figure(figsize=(1.6 * cols, 1.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, im) in enumerate(zip(axes.flat, shown)):
        im = np.clip(im, 0, 255).astype(np.uint8)
        ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray" if im.shape[-1] == 1 else None)
        ax.set_title("original" if i == 0 else f"#{i}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
