"""The Learner meets images the way the data pipeline reads them (issue 34): a colour image for a
grey model is converted to grey (compared with Pillow's convert("L")), a grey one for a colour
model to RGB, another size is resized as training's decode_image does, each conversion said once;
bad calls and keyword typos are one line naming the argument, never pydantic's message."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import fastcourse
from fastcourse.data import DATASETS
from fastcourse.errors import UsageError

SIZE = 32


@pytest.fixture(scope="module")
def grey_learner():
    """A model for MNIST's grey 28x28x1 digits (not trained: only its input matters here)."""
    return fastcourse.Learner("linear", DATASETS.get("mnist_sample")(), train_limit=64, test_limit=32, verbose=0)


@pytest.fixture(scope="module")
def colour_learner(tmp_path_factory):
    """A model trained (here: built) on a folder of RGB images at 32x32."""
    from fastcourse.data.synthetic import make_image_folder

    folder = make_image_folder(tmp_path_factory.mktemp("shapes"), classes=2, per_class=4, valid_per_class=2, size=48)
    return fastcourse.Learner.from_folder(
        folder, "cnn", image_size=SIZE, model_args={"filters": [4, 8], "dense": 8}, verbose=0
    )


def _fed(learn, item) -> np.ndarray:
    """The pixels the model is given for `item` (what predict feeds it)."""
    source, _ = learn._source(item)
    return np.asarray(next(iter(source.batches(64, labels=False))))


def _photo(path, size=(28, 28), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    shape = (size[0], size[1], 3) if mode == "RGB" else size
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def test_a_colour_photo_for_a_grey_model_is_read_as_pillow_makes_it_grey(grey_learner, tmp_path, capsys):
    photo = _photo(tmp_path / "colour.png")
    fed = _fed(grey_learner, str(photo))
    assert fed.shape == (1, 28, 28, 1)
    pillow_grey = np.asarray(Image.open(photo).convert("L"), np.float32)  # ITU-R 601-2 luma, rounded
    np.testing.assert_allclose(fed[0, ..., 0], pillow_grey, atol=1.0)
    label, index, probs = grey_learner.predict(str(photo))
    assert probs.shape == (10,) and label == grey_learner.inputs.class_names[index]
    # the same photo as an array (H, W, 3) gives the same grey pixels
    np.testing.assert_allclose(_fed(grey_learner, np.asarray(Image.open(photo))), fed, atol=1e-3)
    said = capsys.readouterr().out
    assert said.count("colour images converted to grey") == 1, said  # once, however many images


def test_a_grey_photo_for_a_colour_model_is_read_as_rgb(colour_learner, tmp_path, capsys):
    photo = _photo(tmp_path / "grey.png", size=(SIZE, SIZE), mode="L")
    fed = _fed(colour_learner, str(photo))
    assert fed.shape == (1, SIZE, SIZE, 3)
    grey = np.asarray(Image.open(photo), np.float32)
    for channel in range(3):  # Pillow's convert("RGB") of a grey image: the value in every channel
        np.testing.assert_array_equal(fed[0, ..., channel], grey)
    colour_learner.predict(str(photo))
    colour_learner.predict(np.asarray(Image.open(photo)))  # (H, W) array: grey too
    said = capsys.readouterr().out
    assert said.count("grey images converted to RGB") == 1, said


def test_another_size_is_resized_as_training_decodes_files(colour_learner, tmp_path, capsys):
    """A 40x56 photo is resized to the model's 32x32 with decode_image's bilinear resize, the one
    training used for every image file; as an array it gets exactly the same pixels."""
    from fastcourse.data.pipeline import decode_image

    photo = _photo(tmp_path / "big.png", size=(40, 56))
    fed = _fed(colour_learner, str(photo))
    assert fed.shape == (1, SIZE, SIZE, 3)
    trained_as = np.asarray(decode_image(str(photo), (SIZE, SIZE)))
    np.testing.assert_allclose(fed[0], trained_as, atol=1e-4)
    as_array = _fed(colour_learner, np.asarray(Image.open(photo)))
    np.testing.assert_allclose(as_array, fed, atol=1e-3)
    colour_learner.predict(str(photo))
    said = capsys.readouterr().out
    assert said.count("images of 40x56 resized to 32x32 (bilinear)") == 1, said


def test_an_array_of_another_size_and_colour_for_a_grey_model(grey_learner, capsys):
    rgb = np.random.default_rng(1).integers(0, 256, (2, 56, 56, 3)).astype(np.uint8)
    fed = _fed(grey_learner, rgb)
    assert fed.shape == (2, 28, 28, 1)
    import tensorflow as tf

    # Pillow's luma (the outside reference), then training's bilinear resize (decode_image's):
    # both are linear, so their order does not matter beyond Pillow's rounding to whole values
    pillow_grey = np.stack([np.asarray(Image.fromarray(im).convert("L"), np.float32) for im in rgb])[..., None]
    expect = np.asarray(tf.image.resize(pillow_grey, (28, 28), method="bilinear"))
    np.testing.assert_allclose(fed, expect, atol=1.0)
    assert "images of 56x56 resized to 28x28" in capsys.readouterr().out
    with pytest.raises(UsageError, match=r"images of shape \(2, 28, 28, 2\)"):
        grey_learner.predict(np.zeros((2, 28, 28, 2)))


def test_bad_training_calls_are_one_line_naming_the_argument(grey_learner):
    cases = [
        (lambda: grey_learner.fit_one_cycle(0), "fit_one_cycle(n_epochs=0): give a whole number of epochs, 1 or more"),
        (lambda: grey_learner.fit_one_cycle(1, lr_max=-0.1), "fit_one_cycle(lr_max=-0.1): out of range"),
        (lambda: grey_learner.fit(0), "fit(n_epochs=0)"),
        (lambda: grey_learner.fit(1, lr=-1e-3), "fit(lr=-0.001): out of range"),
        (lambda: grey_learner.fine_tune(1, base_lr=0), "fine_tune(base_lr=0): out of range"),
    ]
    for call, start in cases:
        with pytest.raises(UsageError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(start) and "\n" not in message, message
    assert grey_learner.results == []  # nothing trained on the way to the error


def test_an_unknown_model_name_is_one_line_before_the_data_loads():
    with pytest.raises(UsageError) as caught:
        fastcourse.Learner("cnnn", "mnist_sample")
    message = str(caught.value)
    assert message.startswith("model='cnnn': not a registered model; did you mean 'cnn'?") and "\n" not in message


@pytest.mark.parametrize(
    "kwargs, said",
    [
        ({"img_size": 32}, "Learner(img_size=...): unknown argument; did you mean image_size?"),
        ({"batchsize": 8}, "Learner(batchsize=...): unknown argument; did you mean batch_size?"),
        ({"batch_size": -1}, "Learner(batch_size=-1): Input should be greater than 0"),
        ({"lr": -1.0}, "Learner(lr=-1.0): out of range"),
    ],
)
def test_keyword_mistakes_say_did_you_mean_and_name_no_internal_class(kwargs, said):
    with pytest.raises(UsageError) as caught:
        fastcourse.Learner.from_dataset("mnist_sample", "linear", **kwargs)
    message = str(caught.value)
    assert message.startswith(said), message
    assert "\n" not in message and "TrainConfig" not in message and "pydantic" not in message
