"""keras.applications backbones (fastcourse.models.applications): preprocessing, cut points, layer
groups, weights, and each one through the features, finetune and sklearn_features tasks on a small
generated folder, with `weights: none` (no ImageNet file can be downloaded here)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from fastcourse.errors import DataError, UsageError
from fastcourse.models import build_model
from fastcourse.models.applications import BACKBONES, ImageNetPreprocess
from fastcourse.models.surgery import cut_model, layer_groups, set_trainable

NAMES = sorted(BACKBONES)
SIZE = 32  # keras.applications' minimum: every backbone ends at 1x1 here


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from fastcourse.data.synthetic import make_image_folder

    return make_image_folder(
        tmp_path_factory.mktemp("shapes"), classes=2, per_class=8, valid_per_class=4, test=0, size=SIZE
    )


def _pixels(n=2, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


@pytest.mark.parametrize(
    "mode, reference",
    [
        ("caffe", "resnet50"),
        ("tf", "mobilenet_v2"),
        ("torch", None),
    ],
)
def test_preprocessing_equals_keras_applications(mode, reference):
    """Each mode is what keras.applications' own preprocess_input computes (torch: EfficientNet's
    ImageNet normalisation, imagenet_utils' torch mode)."""
    x = _pixels(3)
    if reference:
        expected = getattr(keras.applications, reference).preprocess_input(x.copy())
    else:
        expected = keras.applications.imagenet_utils.preprocess_input(x.copy(), mode="torch")
    got = np.asarray(ImageNetPreprocess(mode)(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    again = ImageNetPreprocess.from_config(ImageNetPreprocess(mode).get_config())
    assert again.mode == mode
    with pytest.raises(ValueError, match="mode"):
        ImageNetPreprocess("inception")


HEAVY = {"efficientnet_b0", "resnet50"}  # seconds each: they run in `make test`


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.integration) if n in HEAVY else n for n in NAMES])
def test_structure_cut_points_and_groups(name):
    spec = BACKBONES[name]
    model = build_model(name, (SIZE, SIZE, 3), 3, weights=None)
    assert model.name == name and model.layers[1].name == "preprocess"
    assert model.get_layer("preprocess").mode == spec.mode
    assert not any(isinstance(layer, (keras.layers.Lambda, keras.layers.Normalization)) for layer in model.layers)
    assert model.output_shape == (None, 3) and model.layers[-1].name == "predictions"
    for cut, layer in spec.cuts.items():
        assert cut_model(model, cut).layers[-1].name == layer
    assert cut_model(model, "last_conv").output_shape[-1] in (1280, 2048)
    with pytest.raises(UsageError, match="last_conv"):
        cut_model(model, "nope")
    groups = layer_groups(model)
    assert groups[-1] == "head" and len(groups) >= 6
    trainable = set_trainable(model, "head")
    assert trainable == ["head"]
    assert [w.name for w in model.trainable_weights] == ["kernel", "bias"]


def test_stage_groups_by_name():
    from fastcourse.models.surgery import layer_group

    assert layer_group("conv4_block2_1_conv") == "conv4"
    assert layer_group("block2a_expand_conv") == "block2" and layer_group("block3_conv2") == "block3"
    assert layer_group("block_13_expand_relu") == "block_13" and layer_group("expanded_conv_project") == "block_0"
    assert layer_group("bn_Conv1") == "stem" == layer_group("stem_bn")
    assert layer_group("Conv_1_bn") == "top" == layer_group("top_conv")
    assert layer_group("predictions") == "head" == layer_group("avg_pool")


def test_builder_arguments_fail_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(DataError, match=r"resnet50_weights_tf_dim_ordering_tf_kernels_notop\.h5.*weights: none"):
        build_model("resnet50", (SIZE, SIZE, 3), 2, weights="imagenet")
    with pytest.raises(DataError, match="no such file"):
        build_model("mobilenet_v2", (SIZE, SIZE, 3), 2, weights=str(tmp_path / "missing.h5"))
    with pytest.raises(UsageError, match="at least 32x32"):
        build_model("efficientnet_b0", (28, 28, 1), 2)
    with pytest.raises(UsageError, match="imagenet_top"):
        build_model("mobilenet_v2", (SIZE, SIZE, 3), 2, weights=None, imagenet_top=True)
    with pytest.raises(UsageError, match="pooling"):
        build_model("mobilenet_v2", (SIZE, SIZE, 3), 2, include_top=False, pooling="mean")


@pytest.mark.parametrize("name", NAMES)
def test_the_default_is_imagenet_as_keras_applications_and_fastai(name, tmp_path, monkeypatch):
    """keras.applications' own default (and fastai's vision_learner, pretrained=True) is ImageNet
    weights; offline without the file, one line names it and how to train from scratch."""
    import inspect

    from fastcourse.models import MODELS

    spec = BACKBONES[name]
    ours = inspect.signature(MODELS.get(name)).parameters["weights"].default
    assert ours == inspect.signature(getattr(keras.applications, spec.application)).parameters["weights"].default
    assert ours == "imagenet"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty cache; the tests run with FASTCOURSE_OFFLINE
    with pytest.raises(DataError) as caught:
        build_model(name, (SIZE, SIZE, 3), 2)
    message = str(caught.value)
    assert "\n" not in message and spec.files[False][0] in message
    assert "model.weights: none" in message and "model_args={'weights': None}" in message


def test_random_weights_are_said_in_one_line(capsys):
    build_model("mobilenet_v2", (SIZE, SIZE, 3), 2, weights=None)
    build_model("vgg16", (SIZE, SIZE, 3), 2, weights="none", include_top=False)
    assert capsys.readouterr().out.splitlines() == [
        f"fastcourse: {name} starts from random weights (weights: none): it learns from scratch, nothing is transferred"
        for name in ("mobilenet_v2", "vgg16")
    ]


@pytest.mark.integration
def test_imagenet_weights_come_from_the_keras_cache(tmp_path, monkeypatch, capsys):
    """A keras.applications-format file (legacy .h5, layer names as keras.applications builds them)
    in $KERAS_HOME/models is what weights=imagenet loads, by name, with no network; the build says so."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    keras.utils.set_random_seed(7)
    app = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    fname = BACKBONES["mobilenet_v2"].files[False][0]
    (tmp_path / "models").mkdir()
    app.save(tmp_path / "models" / fname)  # Keras' legacy HDF5 format, as the downloaded files are
    capsys.readouterr()
    model = build_model("mobilenet_v2", (SIZE, SIZE, 3), 2)  # imagenet is the default
    assert capsys.readouterr().out.splitlines() == [
        f"fastcourse: mobilenet_v2 starts from ImageNet weights ({fname} from the Keras cache)"
    ]
    np.testing.assert_array_equal(
        model.get_layer("block_5_project").get_weights()[0], app.get_layer("block_5_project").get_weights()[0]
    )
    # the same network, apart from the scaling ImageNetPreprocess now does
    conv = cut_model(model, "last_conv")
    x = _pixels(2)
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(app(x / 127.5 - 1.0)), atol=1e-4)
    # a file of another network is refused in one line
    with pytest.raises(DataError, match="no weights for layer"):
        build_model("resnet50", (SIZE, SIZE, 3), 2, weights=str(tmp_path / "models" / fname))


@pytest.mark.integration
def test_weights_file_of_a_built_model_round_trips(tmp_path):
    model = build_model("efficientnet_b0", (SIZE, SIZE, 3), 2, weights=None)
    model.save_weights(tmp_path / "b0.weights.h5")
    again = build_model("efficientnet_b0", (SIZE, SIZE, 3), 2, weights=str(tmp_path / "b0.weights.h5"))
    x = _pixels(2)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), atol=1e-6)


@pytest.mark.integration
def test_explain_matches_keras_for_every_layer():
    from fastcourse.lessons.explain import explain

    for name in NAMES:
        table = explain(name, (64, 64, 3), 3)
        assert table["matches_keras"].all(), table.loc[~table["matches_keras"], "layer"].tolist()[:5]
        assert table["params"].sum() == table.attrs["total_params"]
    dw = explain("mobilenet_v2", (64, 64, 3), 3).set_index("layer").loc["expanded_conv_depthwise"]
    assert dw["params_formula"] == "3*3*32 = 288" and dw["macs"] == 32 * 32 * 9 * 32


def _cfg(folder, tmp_path, name, task):
    from fastcourse.config import load_config

    return load_config(
        {
            "name": f"{name}-{task['name']}",
            "seed": 0,
            "out": str(tmp_path / "runs"),
            "data": {"name": "image_folder", "path": str(folder), "image_size": [SIZE, SIZE]},
            "model": {"name": name, "weights": "none"},
            "augment": {"name": "none"},
            "task": task,
            "train": {"batch_size": 8, "verbose": 0, "epochs": 1, "schedule": {"name": "constant", "lr": 1e-3}},
        }
    )


def _reloads_with_the_run_predictions(run):
    """model.keras loads in safe mode and gives the run's own saved evaluation probabilities."""
    from fastcourse.results.predict import predict_eval
    from fastcourse.run.artifacts import load_model

    model = load_model(run / "model.keras", compile=False)
    assert model.output_shape == (None, 2)
    saved = np.load(run / "eval_probs.npy")
    np.testing.assert_allclose(predict_eval(run).probs, saved, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_features_finetune_sklearn_on_a_folder(name, folder, tmp_path):
    """Each backbone through the features task (1 epoch, cut last_conv), the finetune task (new top
    only) and sklearn_features (a named cut point), each model reloading in safe mode."""
    from fastcourse.tasks.runner import run_experiment

    cache = str(tmp_path / "cache")
    run = run_experiment(
        _cfg(
            folder,
            tmp_path,
            name,
            {"name": "features", "cut": "last_conv", "cache_dir": cache, "head": {"units": 16, "depth": 1}},
        )
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["attach_max_abs_diff"] < 1e-5  # the head back on the conv part predicts as on features
    assert metrics["feature_shape"][-1] == {"resnet50": 2048}.get(name, 1280)
    _reloads_with_the_run_predictions(run)

    run = run_experiment(_cfg(folder, tmp_path, name, {"name": "finetune"}))
    assert json.loads((run / "metrics.json").read_text())["trainable"] == ["head"]
    _reloads_with_the_run_predictions(run)

    run = run_experiment(
        _cfg(folder, tmp_path, name, {"name": "sklearn_features", "layer": "last_conv", "pool": "avg"})
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["layer"] == BACKBONES[name].cuts["last_conv"] and metrics["train_images"] == 16
