"""The course augmentation equals the legacy ImageDataGenerator's transform, batch-wise."""

import numpy as np
import pytest
import tensorflow as tf

from fastcourse.data import augment
from fastcourse.data.arrays import mnist_sample
from fastcourse.data.augment import affine_transforms


@pytest.fixture(scope="module")
def digits():
    return mnist_sample().x_train[:4].astype(np.float32)


def test_matrices_match_legacy_generator(digits):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    params = [
        dict(theta=7.0, tx=2.0, ty=-1.5, shear=0.25, zx=0.95, zy=1.07),
        dict(theta=-5.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0),
        dict(theta=0.0, tx=1.0, ty=2.0, shear=-0.3, zx=1.08, zy=0.92),
        dict(theta=8.0, tx=-2.2, ty=2.2, shear=0.1, zx=1.0, zy=1.0),
    ]
    gen = ImageDataGenerator(fill_mode="nearest")
    # the legacy generator takes shear in degrees; the course's Keras 1 (and we) in radians
    ref = np.stack(
        [gen.apply_transform(digits[i], {**p, "shear": np.rad2deg(p["shear"])}) for i, p in enumerate(params)]
    )
    cols = {k: tf.constant([p[k] for p in params], tf.float32) for k in params[0]}
    transforms = affine_transforms(**cols, height=28, width=28)
    ours = tf.raw_ops.ImageProjectiveTransformV3(
        images=digits,
        transforms=transforms,
        output_shape=[28, 28],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    ).numpy()
    assert np.abs(ours - ref).max() < 0.01  # of 255
    assert np.abs(ours - digits).max() > 50  # and it really moved the pixels


def test_same_seed_same_batch_new_seed_new_batch(digits):
    course = augment.build("course")
    a = course(tf.constant(digits), tf.constant([1, 7], tf.int64)).numpy()
    b = course(tf.constant(digits), tf.constant([1, 7], tf.int64)).numpy()
    c = course(tf.constant(digits), tf.constant([1, 8], tf.int64)).numpy()
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == digits.shape and a.min() >= 0 and a.max() <= 255


def test_course_parameters_are_the_lessons():
    layer = augment.build("course").layer
    assert (layer.rotation, layer.width_shift, layer.height_shift, layer.shear, layer.zoom) == (
        8.0,
        0.08,
        0.08,
        0.3,
        0.08,
    )


def test_zero_ranges_are_identity(digits):
    ident = augment.build("affine")
    out = ident(tf.constant(digits), tf.constant([0, 0], tf.int64)).numpy()
    np.testing.assert_allclose(out, digits, atol=1e-3)


def test_flip_is_mirror_or_identity_and_both_happen(digits):
    batch = np.concatenate([digits] * 4)
    out = augment.build("affine", {"horizontal_flip": True})(tf.constant(batch), tf.constant([3, 3], tf.int64)).numpy()
    mirrored = [np.allclose(o, b[:, ::-1], atol=1e-3) for o, b in zip(out, batch)]
    same = [np.allclose(o, b, atol=1e-3) for o, b in zip(out, batch)]
    assert all(m or s for m, s in zip(mirrored, same))
    assert any(mirrored) and any(same)


def test_channel_shift_adds_one_bounded_constant_per_image(digits):
    batch = np.clip(digits, 40, 200)  # room to shift without clipping at the image's own range
    out = augment.build("affine", {"channel_shift": 20.0})(tf.constant(batch), tf.constant([4, 4], tf.int64)).numpy()
    for o, b in zip(out, batch):
        inside = (b > 60) & (b < 180)
        diff = (o - b)[inside]
        assert np.ptp(diff) < 1e-3 and abs(diff[0]) <= 20


def test_keras_layers_pipeline(digits):
    pipe = augment.build("keras_layers", {"layers": [{"RandomFlip": {"mode": "horizontal", "seed": 1}}]})
    out = np.asarray(pipe(tf.constant(digits)))
    assert out.shape == digits.shape
    with pytest.raises(ValueError, match="not a Keras Random"):
        augment.build("keras_layers", {"layers": [{"Dense": {}}]})


def test_preview_writes_png(tmp_path, digits):
    path = augment.preview(augment.build("course"), digits[0], tmp_path / "grid.png", n=8)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fashion_flips_and_shifts_a_little_onto_black():
    """`fashion`: no rotation, shear or zoom; mirrored or not, moved at most 0.05 x 28 = 1.4 pixels,
    and what is uncovered is black (a white image gains dark edges, never smeared white)."""
    white = np.full((64, 28, 28, 1), 255.0, np.float32)
    out = augment.build("fashion")(tf.constant(white), tf.constant([1, 2], tf.int64)).numpy()
    assert out.min() < 1.0  # black fill at some edge
    assert (out[:, 2:-2, 2:-2] > 254.0).all()  # the centre stays: shifts are at most 1.4 pixels
    arrow = np.zeros((64, 28, 28, 1), np.float32)
    arrow[:, 10:18, 4:12] = 255.0  # left of centre
    moved = augment.build("fashion", {"shift": 0.0})(tf.constant(arrow), tf.constant([3, 4], tf.int64)).numpy()
    mirrored = np.array([np.allclose(m, a[:, ::-1]) for m, a in zip(moved, arrow)])
    same = np.array([np.allclose(m, a) for m, a in zip(moved, arrow)])
    assert (mirrored | same).all() and mirrored.any() and same.any()
    layer = augment.build("fashion").layer
    assert (layer.rotation, layer.shear, layer.zoom) == (0.0, 0.0, 0.0) and layer.fill_mode == "constant"
