"""VGG16 builder, fine-tuning, cached features, heads, pseudo-labels and the lesson-3 tasks."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from fastcourse.config import TrainConfig, load_config
from fastcourse.data.folders import open_folder
from fastcourse.data.synthetic import make_image_folder
from fastcourse.models.vgg import VGGPreprocess, vgg16, vgg16_bn
from fastcourse.data.features import attach_head, cache_key, cut_model, dense_head, precompute_features
from fastcourse.train.finetune import (compile_discriminative, freeze, layer_groups, replace_top, set_trainable,
                                       spread_multipliers)
from fastcourse.train.pseudo import mix_pseudo_labels


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("vgg") / "dc", "dogscats", classes=2, per_class=8,
                             valid_per_class=4, test=4, size=40)
    return open_folder(root)


def test_vgg16_matches_keras_applications_with_the_same_weights(tmp_path):
    ref = keras.applications.VGG16(weights=None)
    path = tmp_path / "vgg16_ref.h5"
    ref.save(path)  # a legacy .h5 file, like the keras-applications download
    ours = vgg16(weights=str(path))
    assert ours.count_params() == 138_357_544
    assert [l.name for l in ours.layers if l.weights] == [l.name for l in ref.layers if l.weights]
    x = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    expected = ref.predict(keras.applications.vgg16.preprocess_input(x.copy()), verbose=0)
    got = ours.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert ours.get_layer("block5_conv3").get_weights()[0].sum() == pytest.approx(
        ref.get_layer("block5_conv3").get_weights()[0].sum())


def test_preprocess_layer_equals_keras_preprocess_input():
    x = np.random.default_rng(1).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    expected = keras.applications.vgg16.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(VGGPreprocess()(x)), expected, atol=1e-4)


def test_conv_part_at_other_sizes_bn_variant_and_safe_reload(tmp_path):
    conv = vgg16((48, 48, 3), include_top=False)
    assert conv.output_shape == (None, 1, 1, 512) and conv.count_params() == 14_714_688
    bn = vgg16_bn((32, 32, 3), num_classes=3)
    assert [l.name for l in bn.layers if isinstance(l, keras.layers.BatchNormalization)] == ["fc1_bn", "fc2_bn"]
    assert bn.output_shape == (None, 3)
    path = tmp_path / "conv.keras"
    conv.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(2).uniform(0, 255, (1, 48, 48, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), conv.predict(x, verbose=0), rtol=1e-5)


def test_replace_top_and_freeze_by_block_name():
    model = replace_top(vgg16((32, 32, 3), num_classes=10), 2)
    assert model.output_shape == (None, 2) and model.layers[-1].name == "predictions"
    assert layer_groups(model) == ["block1", "block2", "block3", "block4", "block5", "head"]
    freeze(model, "block5")
    trainable = {v.path.split("/")[0] for v in model.trainable_variables}
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3", "fc1", "fc2", "predictions"}
    set_trainable(model, ["head"])
    assert {v.path.split("/")[0] for v in model.trainable_variables} == {"fc1", "fc2", "predictions"}
    with pytest.raises(Exception, match="known groups"):
        set_trainable(model, ["block9"])


def test_discriminative_rates_scale_adam_updates_per_block():
    # a small stand-in with VGG's layer names: the multipliers go by name, not by size
    x = np.random.default_rng(3).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[[0, 1, 0, 1]]
    train = TrainConfig(optimizer="adam", batch_size=4)
    deltas = []
    for mults in (None, {"block5": 0.5, "block1": 0.0}):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((16, 16, 3))
        h = keras.layers.Conv2D(4, 3, name="block1_conv1")(keras.layers.Rescaling(1 / 255)(inputs))
        h = keras.layers.Conv2D(4, 3, name="block5_conv3")(h)
        top = keras.layers.Dense(2, activation="softmax", name="predictions")(keras.layers.Flatten()(h))
        model = keras.Model(inputs, top)
        before = {v.path: np.array(v) for v in model.trainable_variables}
        compile_discriminative(model, train, 1, mults)
        model.train_on_batch(x, y)
        deltas.append({v.path: np.abs(np.array(v) - before[v.path]).max() for v in model.trainable_variables})
    full, scaled = deltas
    # Adam's first step moves each weight by about lr: halving the rate halves the step
    assert scaled["block5_conv3/kernel"] == pytest.approx(0.5 * full["block5_conv3/kernel"], rel=1e-3)
    assert scaled["block1_conv1/kernel"] == 0.0 and full["block1_conv1/kernel"] > 0
    assert scaled["predictions/kernel"] == pytest.approx(full["predictions/kernel"], rel=1e-5)
    m = spread_multipliers(["block1", "block2", "head"], 100)
    assert m == pytest.approx({"block1": 0.01, "block2": 0.1, "head": 1.0})


def test_features_cache_reuse_and_invalidation_and_augmented_passes(folder, tmp_path):
    from fastcourse.data.augment import build

    files = folder.split("train").files
    conv = cut_model(vgg16((32, 32, 3), include_top=False), "block5_conv3")
    feats = precompute_features(conv, files, (32, 32), 8, tmp_path, verbose=False)
    assert feats.shape == (16, 2, 2, 512) and isinstance(feats, np.memmap)
    cached = sorted(tmp_path.glob("*.npy"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    again = precompute_features(conv, files, (32, 32), 8, tmp_path, verbose=False)
    assert cached[0].stat().st_mtime_ns == stamp and np.array_equal(again, feats)  # reused, not recomputed
    direct = conv.predict(np.stack([np.asarray(x) for x in folder.dataset("train", (32, 32), 16, labels=False)
                                    .unbatch()]), verbose=0)
    np.testing.assert_allclose(feats, direct, rtol=1e-4, atol=1e-3)
    key = cache_key(conv, files, (32, 32))[0]
    assert cache_key(conv, files[:-1], (32, 32))[0] != key           # file list
    assert cache_key(conv, files, (40, 40))[0] != key                # image size
    conv.layers[-1].kernel.assign(conv.layers[-1].kernel * 1.01)
    assert cache_key(conv, files, (32, 32))[0] != key                # backbone weights
    other_cut = cut_model(vgg16((32, 32, 3), include_top=False), "block4_conv3")
    assert cache_key(other_cut, files, (32, 32))[0] != key           # cut layer
    aug = precompute_features(conv, files, (32, 32), 8, tmp_path, augment=build("dogscats"), passes=2,
                              verbose=False)
    assert aug.shape == (48, 2, 2, 512) and not np.allclose(aug[16:32], aug[32:48])
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_head_back_on_conv_part_predicts_the_same(folder):
    conv = cut_model(vgg16((32, 32, 3), include_top=False), "block5_conv3")
    feats = precompute_features(conv, folder.split("valid").files, (32, 32), 8, None, verbose=False)
    for head_args in ({"dropout": 0.3}, {"dropout": 0.6, "batchnorm": True}):
        head = dense_head(feats.shape[1:], 2, units=16, **head_args)
        head.compile("adam", "categorical_crossentropy")
        head.fit(feats, np.eye(2)[folder.split("valid").labels], epochs=2, verbose=0)  # moves BN statistics
        full = attach_head(conv, head)
        images = np.concatenate(list(folder.dataset("valid", (32, 32), 8, labels=False)))
        np.testing.assert_allclose(full.predict(images, verbose=0), head.predict(feats, verbose=0), atol=1e-5)


def test_pseudo_labels_mix_at_the_ratio():
    x, y = np.zeros((30, 4)), np.arange(30) % 3
    x_un, soft = np.ones((50, 4)), np.full((50, 3), 1 / 3, np.float32)
    xm, ym = mix_pseudo_labels(x, y, x_un, soft, ratio=0.25, seed=0)
    assert len(xm) == 40 and (xm[30:] == 1).all() and ym.shape == (40, 3)
    assert np.allclose(ym[30:], 1 / 3) and np.array_equal(ym[:30].argmax(1), y)
    assert len(mix_pseudo_labels(x, y, x_un, soft, ratio=0.0)[0]) == 30


def _cfg(folder, task, tmp_path, **train):
    return load_config({
        "name": task["name"], "seed": 0, "task": task, "out": str(tmp_path),
        "data": {"name": "image_folder", "path": str(folder.root)},
        "model": {"name": "vgg16", "include_top": False} if task["name"] == "features"
        else {"name": "vgg16", "dropout": 0.0},
        "augment": {"name": "dogscats"},
        "train": {"batch_size": 8, "epochs": 1, "verbose": 0, "schedule": {"name": "constant", "lr": 1e-4}, **train},
    })


def test_features_task_end_to_end(folder, tmp_path):
    import json

    from fastcourse.run.experiment import run_experiment

    cfg = _cfg(folder, {"name": "features", "image_size": [32, 32], "cache_dir": str(tmp_path / "cache"),
                        "passes": 1, "head": {"units": 16, "dropout": 0.6, "batchnorm": True},
                        "pseudo_ratio": 0.2, "finetune_epochs": 1}, tmp_path)
    run = run_experiment(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["attach_max_abs_diff"] < 1e-5 and metrics["feature_shape"] == [32, 2, 2, 512]
    assert metrics["pseudo_images"] == 4 and metrics["epochs"] == 3 and 0 <= metrics["test_accuracy"] <= 1
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert model.output_shape == (None, 2)
    assert (run / "valid_predictions.csv").read_text().count("\n") == 9


@pytest.mark.slow
def test_finetune_task_runs_fastai_fine_tune(folder, tmp_path):
    import json

    from fastcourse.run.experiment import run_experiment

    cfg = _cfg(folder, {"name": "finetune", "image_size": [32, 32], "freeze_epochs": 1, "unfreeze_epochs": 1},
               tmp_path)
    run = run_experiment(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["unfreeze_epochs"] == 1
    assert set(json.loads(json.dumps(metrics)).keys()) >= {"test_accuracy", "test_loss"}


def test_imagenet_weights_come_from_the_keras_cache_or_fail_clearly(tmp_path, monkeypatch):
    from fastcourse.errors import DataError

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(DataError, match="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        vgg16((32, 32, 3), include_top=False, weights="imagenet")  # tests run offline
    source = vgg16((32, 32, 3), include_top=False)
    (tmp_path / "models").mkdir()
    source.save(tmp_path / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    loaded = vgg16((64, 64, 3), include_top=False, weights="imagenet")  # conv weights fit any size
    for name in ("block1_conv1", "block5_conv3"):
        np.testing.assert_array_equal(loaded.get_layer(name).get_weights()[0], source.get_layer(name).get_weights()[0])
    with pytest.raises(DataError, match="no such file"):
        vgg16((32, 32, 3), include_top=False, weights=str(tmp_path / "missing.h5"))


CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("path", sorted(map(str, [*CONFIGS.glob("dogscats/*.yaml"), *CONFIGS.glob("statefarm/*.yaml")])))
def test_lesson_configs_validate_and_say_what_the_course_reached(path):
    cfg = load_config(path)
    text = Path(path).read_text()
    assert text.startswith("#") and "fastcourse run" in text and "course" in text.split("\nname:")[0]
    assert cfg.task.name in ("finetune", "features", "sklearn_features")


def test_fine_tune_freezes_the_body_first_then_trains_every_block(folder):
    from fastcourse.train.folder_fit import fine_tune

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, name="block1_conv1")(keras.layers.Rescaling(1 / 255, name="scale")(inputs))
    h = keras.layers.Conv2D(4, 3, name="block5_conv3")(h)
    top = keras.layers.Dense(2, activation="softmax", name="predictions")(keras.layers.Flatten(name="flatten")(h))
    model = keras.Model(inputs, top)
    train = TrainConfig(batch_size=8, verbose=0, schedule={"name": "constant", "lr": 1e-2})
    conv0 = np.array(model.get_layer("block1_conv1").kernel)
    top0 = np.array(model.get_layer("predictions").kernel)
    result = fine_tune(model, folder, train, 0, (16, 16), freeze_epochs=1, epochs=0)
    assert np.array_equal(np.array(model.get_layer("block1_conv1").kernel), conv0)  # frozen
    assert not np.array_equal(np.array(model.get_layer("predictions").kernel), top0)
    result = fine_tune(model, folder, train, 0, (16, 16), freeze_epochs=0, epochs=1, lr_mult=10)
    assert not np.array_equal(np.array(model.get_layer("block1_conv1").kernel), conv0)  # unfrozen
    assert len(result.history["loss"]) == 1 and "val_accuracy" in result.history


def test_interrupted_precomputation_resumes_at_the_last_chunk(folder, tmp_path, monkeypatch):
    """A precomputation killed mid-way keeps its committed chunks; the rerun computes only the
    rest (augmented pass included) and ends with exactly the uninterrupted features."""
    import fastcourse.data.features as features
    from fastcourse.data.augment import build

    files = folder.split("train").files  # 16 images: 4 batches of 4 per pass, 2 passes
    conv = cut_model(vgg16((32, 32, 3), include_top=False), "block5_conv3")
    aug = build("dogscats")
    whole = precompute_features(conv, files, (32, 32), 4, tmp_path / "a", augment=aug, passes=1,
                                verbose=False, commit_every=2)
    real_runner = features._runner
    calls = {"n": 0, "limit": 5}

    def counting_runner(model, size):
        fn = real_runner(model, size)

        def run(images):
            calls["n"] += 1
            if calls["n"] > calls["limit"]:
                raise KeyboardInterrupt  # the process dies in batch 6 (pass 2, batch 2)
            return fn(images)
        return run

    monkeypatch.setattr(features, "_runner", counting_runner)
    with pytest.raises(KeyboardInterrupt):
        precompute_features(conv, files, (32, 32), 4, tmp_path / "b", augment=aug, passes=1,
                            verbose=False, commit_every=2)
    assert not list((tmp_path / "b").glob("features-*.npy"))  # no complete-looking file yet
    calls.update(n=0, limit=10**6)
    resumed = precompute_features(conv, files, (32, 32), 4, tmp_path / "b", augment=aug, passes=1,
                                  verbose=False, commit_every=2)
    assert calls["n"] == 4  # committed through batch 4 (end of pass 1): only pass 2 is recomputed
    np.testing.assert_allclose(resumed, whole, rtol=1e-5, atol=1e-5)
