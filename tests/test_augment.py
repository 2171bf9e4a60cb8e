"""The augmentation pipelines against their references.

The reference for `RandomAffine` (and so `course`, `affine`, `dogscats`, `statefarm`, `fashion`)
is the generator the course ran: Keras 1.2.2, keras/preprocessing/image.py
(github.com/keras-team/keras, tag 1.2.2, commit 4fa7e5d454dd4f3f33f1d756a2a8659f2e789141):
`ImageDataGenerator.random_transform`, `transform_matrix_offset_center` and `apply_transform`.
`keras12_random_transform` below ports those lines to scipy.ndimage, per channel on (row, column)
coordinates; it is written from that source, not from fastcourse.
"""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage as ndi

from fastcourse.data import augment
from fastcourse.data.arrays import mnist_sample
from fastcourse.data.augment import RandomAffine, affine_transforms
from fastcourse.data.sources import ArraySource


@pytest.fixture(scope="module")
def digits():
    return mnist_sample().x_train[:4].astype(np.float32)


def keras12_random_transform(x, p, order=0, centre="keras12", fill_mode="nearest", cval=0.0):
    """Keras 1.2.2's random_transform on one (H, W, C) image with the draws `p` given: `theta`
    degrees, `tx` rows and `ty` columns in pixels, `shear` radians, `zx`, `zy`, `channel` (one
    shift per channel), `flip`. As written there: order=0 (nearest pixel) and the centre at
    (H/2 + 0.5, W/2 + 0.5); `order=1, centre="middle"` gives bilinear sampling about
    ((H-1)/2, (W-1)/2), fastcourse's two stated choices."""
    theta = np.pi / 180 * p["theta"]
    rotation_matrix = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    translation_matrix = np.array([[1, 0, p["tx"]], [0, 1, p["ty"]], [0, 0, 1]])
    shear_matrix = np.array([[1, -np.sin(p["shear"]), 0], [0, np.cos(p["shear"]), 0], [0, 0, 1]])
    zoom_matrix = np.array([[p["zx"], 0, 0], [0, p["zy"], 0], [0, 0, 1]])
    transform_matrix = np.dot(np.dot(np.dot(rotation_matrix, translation_matrix), shear_matrix), zoom_matrix)
    h, w = x.shape[0], x.shape[1]
    # transform_matrix_offset_center(matrix, h, w)
    o_x, o_y = (float(h) / 2 + 0.5, float(w) / 2 + 0.5) if centre == "keras12" else ((h - 1) / 2, (w - 1) / 2)
    offset_matrix = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset_matrix = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    transform_matrix = np.dot(np.dot(offset_matrix, transform_matrix), reset_matrix)
    # apply_transform: scipy on each channel, (row, col) coordinates
    final_affine_matrix, final_offset = transform_matrix[:2, :2], transform_matrix[:2, 2]
    x = np.stack(
        [
            ndi.affine_transform(x[..., c], final_affine_matrix, final_offset, order=order, mode=fill_mode, cval=cval)
            for c in range(x.shape[-1])
        ],
        axis=-1,
    )
    if np.any(p["channel"] != 0):  # random_channel_shift: one draw per channel, clipped to the image's range
        min_x, max_x = np.min(x), np.max(x)
        x = np.stack([np.clip(x[..., c] + p["channel"][c], min_x, max_x) for c in range(x.shape[-1])], axis=-1)
    if p["flip"]:  # flip_axis(x, img_col_axis)
        x = x[:, ::-1]
    return x


def smooth_images(h, w, n=16, seed=0):
    """RGB noise blurred (sigma 2 pixels) and stretched to 0-255: structure on every scale an
    axis mix-up would show, smooth enough that sampling error stays below a pixel's step."""
    x = ndi.gaussian_filter(np.random.default_rng(seed).uniform(0, 255, (n, h, w, 3)), sigma=(0, 2, 2, 0))
    return ((x - x.min()) / np.ptp(x) * 255).astype(np.float32)


FULL = dict(rotation=15.0, height_shift=0.2, width_shift=0.1, shear=0.3, zoom=0.2, horizontal_flip=True)
PARAMETERS = {
    "height_shift": dict(height_shift=0.2),
    "width_shift": dict(width_shift=0.2),
    "rotation": dict(rotation=15.0),
    "shear": dict(shear=0.3),
    "zoom": dict(zoom=0.2),
    "flip": dict(horizontal_flip=True),
    "channel_shift": dict(channel_shift=20.0),
    "all": dict(**FULL, channel_shift=20.0),
}
SIZES = [(20, 40), (37, 64)]


def _both(h, w, kwargs, seed=(5, 1)):
    """fastcourse's batch and the per-image draws it made (as numpy), fed to the reference."""
    x = smooth_images(h, w)
    layer = RandomAffine(**kwargs)
    params = {k: v.numpy() for k, v in layer.draw(tf.shape(x), tf.constant(seed, tf.int64)).items()}
    ours = layer.apply(tf.constant(x), params).numpy()
    draws = [{k: v[i] for k, v in params.items()} for i in range(len(x))]
    return x, ours, draws


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(PARAMETERS))
def test_equals_keras_1_2_composition_on_non_square_images(name, size):
    """With bilinear sampling about the image's middle, Keras 1.2.2's composition and
    fastcourse agree to float rounding: max abs diff < 0.01 of 255 (measured <= 2e-4)."""
    x, ours, draws = _both(*size, PARAMETERS[name])
    ref = np.stack([keras12_random_transform(x[i], d, order=1, centre="middle") for i, d in enumerate(draws)])
    assert np.abs(ours - ref).max() < 0.01
    assert np.abs(ours - x).max() > 5  # and the parameter really changed the pixels


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(PARAMETERS))
def test_within_interpolation_tolerance_of_keras_1_2_as_written(name, size):
    """Keras 1.2.2 as written read the nearest pixel (order=0) about a centre one pixel off. The
    sampling point then differs by under a pixel, so the interpolation tolerance is one
    pixel's step: max abs diff <= the largest difference between neighbouring pixels of the
    image (52-60 here), mean <= half the mean neighbouring difference (3.5-4.1). Measured:
    max 15-34, mean 1.3-3.4; flip and channel shift alone are exact. The same draws on swapped
    axes (fastcourse before, Keras 3's legacy generator) give means of 12-30."""
    x, ours, draws = _both(*size, PARAMETERS[name])
    ref = np.stack([keras12_random_transform(x[i], d) for i, d in enumerate(draws)])
    diff = np.abs(ours - ref)
    neighbours = [np.diff(x, axis=1), np.diff(x, axis=2), x[:, 1:, 1:] - x[:, :-1, :-1], x[:, 1:, :-1] - x[:, :-1, 1:]]
    step_max = max(np.abs(d).max() for d in neighbours)
    step_mean = np.mean([np.abs(d).mean() for d in neighbours[:2]])
    if name in ("flip", "channel_shift"):
        assert diff.max() < 1e-3
    else:
        assert diff.max() <= step_max and diff.mean() <= 0.5 * step_mean
        # the same draws applied on transposed axes (the old height/width mix-up) fall far outside
        wrong = np.stack([keras12_random_transform(x[i].swapaxes(0, 1), d).swapaxes(0, 1) for i, d in enumerate(draws)])
        assert np.abs(wrong - ref).mean() > 3 * diff.mean()


def test_height_shift_moves_rows_width_shift_columns():
    """The issue's dot: a 20x40 image with one bright dot, six seeds. height_shift=0.3 moves it
    along rows only (up to 0.3 x 20 = 6), width_shift=0.3 along columns only (up to 12)."""
    dot = np.zeros((1, 20, 40, 1), np.float32)
    dot[0, 10, 20, 0] = 255.0
    for kwargs, axis, limit in [(dict(height_shift=0.3), 0, 6), (dict(width_shift=0.3), 1, 12)]:
        layer = RandomAffine(**kwargs, fill_mode="constant")
        moves = []
        for seed in range(6):
            out = layer.augment(tf.constant(dot), tf.constant([seed, 0], tf.int64)).numpy()[0, ..., 0]
            where = np.array(np.unravel_index(out.argmax(), out.shape)) - (10, 20)
            assert where[1 - axis] == 0, (kwargs, seed, where)
            moves.append(where[axis])
        assert max(abs(m) for m in moves) <= limit and sum(m != 0 for m in moves) >= 4, moves


def test_draws_are_keras_1_2_ranges_per_axis():
    """Each range draws its own parameter: tx (rows) from height_shift x H, ty (columns) from
    width_shift x W, zoom per axis, one channel shift per channel."""
    layer = RandomAffine(height_shift=0.1, width_shift=0.3, zoom=0.2, channel_shift=20.0)
    p = {k: v.numpy() for k, v in layer.draw(tf.constant([256, 20, 40, 3]), tf.constant([1, 2], tf.int64)).items()}
    assert np.abs(p["tx"]).max() <= 2.0 and np.abs(p["tx"]).max() > 1.8  # 0.1 x 20 rows
    assert np.abs(p["ty"]).max() <= 12.0 and np.abs(p["ty"]).max() > 11.0  # 0.3 x 40 columns
    assert (p["theta"] == 0).all() and (p["shear"] == 0).all() and not p["flip"].any()
    assert ((0.8 <= p["zx"]) & (p["zx"] <= 1.2)).all() and not np.allclose(p["zx"], p["zy"])
    assert p["channel"].shape == (256, 3) and np.abs(p["channel"]).max() <= 20
    assert np.abs(p["channel"][:, 0] - p["channel"][:, 1]).max() > 5


def test_transposed_legacy_generator_on_squares(digits):
    """Keras 3's legacy ImageDataGenerator (the Keras 2.2+ generator) builds the same matrix but
    applies it on (x, y) axes: on a square image, with equal parameters, fastcourse's output is
    its output on the transposed image, transposed back (its shear in degrees, Keras 1's in
    radians)."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    params = [
        dict(theta=7.0, tx=2.0, ty=-1.5, shear=0.25, zx=0.95, zy=1.07),
        dict(theta=-5.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0),
        dict(theta=0.0, tx=1.0, ty=2.0, shear=-0.3, zx=1.08, zy=0.92),
        dict(theta=8.0, tx=-2.2, ty=2.2, shear=0.1, zx=1.0, zy=1.0),
    ]
    gen = ImageDataGenerator(fill_mode="nearest")
    ref = np.stack(
        [
            gen.apply_transform(digits[i].transpose(1, 0, 2), {**p, "shear": np.rad2deg(p["shear"])}).transpose(1, 0, 2)
            for i, p in enumerate(params)
        ]
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


KERAS_LAYERS = {
    "layers": [
        {"RandomFlip": {"mode": "horizontal"}},
        {"RandomRotation": {"factor": 0.1}},
        {"RandomColorJitter": {"value_range": [0, 255], "brightness_factor": 0.3}},  # a layer of layers
    ]
}


def _stream(seed, start_step=0, n=4):
    """`n` training batches as a run draws them, through a freshly built keras_layers pipeline
    (fresh layers: their own generators start from new random states)."""
    x = (np.arange(32 * 12 * 12 * 3) % 251).reshape(32, 12, 12, 3).astype(np.uint8)
    source = ArraySource(x, np.arange(32) % 3, 3)
    pipe = augment.build("keras_layers", KERAS_LAYERS)
    before = [s.numpy().copy() for s in pipe.states]
    ds = source.batches(8, shuffle=True, seed=seed, augment=pipe, repeat=True, start_step=start_step)
    batches = [b[0].numpy() for b in ds.take(n)]
    assert all(np.array_equal(s.numpy(), v) for s, v in zip(pipe.states, before))  # stateless
    plain = [b[0].numpy() for b in source.batches(8, shuffle=True, seed=seed, repeat=True).take(n)]
    return batches, plain


@pytest.mark.integration  # trains nothing, but builds the Keras layers pipeline twice: seconds
def test_keras_layers_draw_from_the_runs_seed():
    """Two runs with the same seed: identical augmented batches; another seed: other batches."""
    a, plain = _stream(seed=3)
    b, _ = _stream(seed=3)
    c, _ = _stream(seed=4, n=1)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not any(np.allclose(p, q) for p, q in zip(a, plain))  # the layers did transform
    assert not np.allclose(a[0], a[1])  # each batch its own draws
    assert not np.allclose(a[0], c[0])


def test_keras_layers_resumed_run_continues_the_same_draws():
    """A run resumed at step 2 gets the augmented batches 2 and 3 of the uninterrupted run."""
    whole, _ = _stream(seed=3)
    resumed, _ = _stream(seed=3, start_step=2, n=2)
    assert all(np.array_equal(p, q) for p, q in zip(whole[2:], resumed))


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
