"""VGG16 builder, fine-tuning, cached features, heads, pseudo-labels and the lesson-3 tasks."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from fastcourse.config import TrainConfig, load_config
from fastcourse.data.features import cache_key, precompute_features
from fastcourse.data.folders import open_folder
from fastcourse.data.sources import FeaturePart, FeatureSource, FolderSource
from fastcourse.data.synthetic import make_image_folder
from fastcourse.models.heads import dense_head
from fastcourse.models.surgery import attach_head, cut_model, freeze, layer_groups, replace_top, set_trainable
from fastcourse.models.vgg import VGGPreprocess, vgg16, vgg16_bn
from fastcourse.train.optimizers import compile_model, spread_multipliers
from fastcourse.train.pseudo import pseudo_rows


def _source(folder, split="train", size=(32, 32)):
    s = folder.split(split)
    return FolderSource(s.files, s.labels, folder.num_classes, size, pillow=s.pillow)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = make_image_folder(
        tmp_path_factory.mktemp("vgg") / "dc", "dogscats", classes=2, per_class=8, valid_per_class=4, test=4, size=40
    )
    return open_folder(root)


@pytest.mark.integration
def test_vgg16_matches_keras_applications_with_the_same_weights(tmp_path):
    ref = keras.applications.VGG16(weights=None)
    path = tmp_path / "vgg16_ref.h5"
    ref.save(path)  # a legacy .h5 file, like the keras-applications download
    ours = vgg16(weights=str(path))
    assert ours.count_params() == 138_357_544
    assert [layer.name for layer in ours.layers if layer.weights] == [
        layer.name for layer in ref.layers if layer.weights
    ]
    x = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    expected = ref.predict(keras.applications.vgg16.preprocess_input(x.copy()), verbose=0)
    got = ours.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert ours.get_layer("block5_conv3").get_weights()[0].sum() == pytest.approx(
        ref.get_layer("block5_conv3").get_weights()[0].sum()
    )


def test_preprocess_layer_equals_keras_preprocess_input():
    x = np.random.default_rng(1).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    expected = keras.applications.vgg16.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(VGGPreprocess()(x)), expected, atol=1e-4)


@pytest.mark.integration
def test_conv_part_at_other_sizes_bn_variant_and_safe_reload(tmp_path):
    conv = vgg16((48, 48, 3), include_top=False)
    assert conv.output_shape == (None, 1, 1, 512) and conv.count_params() == 14_714_688
    bn = vgg16_bn((32, 32, 3), num_classes=3)
    assert [layer.name for layer in bn.layers if isinstance(layer, keras.layers.BatchNormalization)] == [
        "fc1_bn",
        "fc2_bn",
    ]
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


@pytest.mark.integration
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
        compile_model(model, train, 1, lr_multipliers=mults)
        model.train_on_batch(x, y)
        deltas.append({v.path: np.abs(np.array(v) - before[v.path]).max() for v in model.trainable_variables})
    full, scaled = deltas
    # Adam's first step moves each weight by about lr: halving the rate halves the step
    assert scaled["block5_conv3/kernel"] == pytest.approx(0.5 * full["block5_conv3/kernel"], rel=1e-3)
    assert scaled["block1_conv1/kernel"] == 0.0 and full["block1_conv1/kernel"] > 0
    assert scaled["predictions/kernel"] == pytest.approx(full["predictions/kernel"], rel=1e-5)
    m = spread_multipliers(["block1", "block2", "head"], 100)
    assert m == pytest.approx({"block1": 0.01, "block2": 0.1, "head": 1.0})


@pytest.mark.integration
def test_features_cache_reuse_and_invalidation_and_augmented_passes(folder, tmp_path):
    from fastcourse.data.augment import build

    source = _source(folder)
    conv = cut_model(vgg16((32, 32, 3), include_top=False), "block5_conv3")
    paths = precompute_features(conv, source, tmp_path, batch_size=8, verbose=False)
    feats = np.load(paths[0], mmap_mode="r")
    assert feats.shape == (16, 2, 2, 512) and isinstance(feats, np.memmap)
    cached = sorted(tmp_path.glob("*.npy"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    again = precompute_features(conv, source, tmp_path, batch_size=8, verbose=False)
    assert again == paths and cached[0].stat().st_mtime_ns == stamp  # reused, not recomputed
    direct = conv.predict(np.concatenate(list(source.batches(16, labels=False))), verbose=0)
    np.testing.assert_allclose(feats, direct, rtol=1e-4, atol=1e-3)
    spec = {"name": "dogscats"}
    key = cache_key(conv, source, spec, 0, 0, "float32")[0]
    assert cache_key(conv, source.take(15), spec, 0, 0, "float32")[0] != key  # file list
    assert cache_key(conv, _source(folder, size=(40, 40)), spec, 0, 0, "float32")[0] != key  # image size
    assert cache_key(conv, source, spec, 0, 0, "float16")[0] != key  # storage dtype
    assert cache_key(conv, source, spec, 1, 1, "float32")[0] != key  # pass index
    assert (
        cache_key(conv, source, {"name": "dogscats", "rotation": 5}, 1, 1, "float32")[0]
        != cache_key(conv, source, spec, 1, 1, "float32")[0]
    )  # augmentation values
    # built from values, never from object reprs: an equal config gives an equal key
    assert cache_key(conv, _source(folder), dict(spec), 0, 0, "float32")[0] == key
    conv.layers[-1].kernel.assign(conv.layers[-1].kernel * 1.01)
    assert cache_key(conv, source, spec, 0, 0, "float32")[0] != key  # backbone weights
    other_cut = cut_model(vgg16((32, 32, 3), include_top=False), "block4_conv3")
    assert cache_key(other_cut, source, spec, 0, 0, "float32")[0] != key  # cut layer
    aug = precompute_features(
        conv, source, tmp_path, augment=build("dogscats"), augment_spec=spec, passes=2, batch_size=8, verbose=False
    )
    a1, a2 = (np.load(p) for p in aug[1:])
    assert len(aug) == 3 and a1.shape == (16, 2, 2, 512) and not np.allclose(a1, a2)
    half = precompute_features(conv, source, tmp_path / "f16", batch_size=8, dtype="float16", verbose=False)
    f16 = np.load(half[0])
    assert f16.dtype == np.float16 and f16.nbytes * 2 == np.load(aug[0]).nbytes
    np.testing.assert_allclose(f16.astype(np.float32), np.load(aug[0]), rtol=1e-2, atol=1e-2)


@pytest.mark.integration
def test_feature_source_streams_from_disk_in_batches(folder, tmp_path):
    """Batches come from the features files: shuffled, with the right labels, every row once."""
    conv = cut_model(vgg16((32, 32, 3), include_top=False), "block5_conv3")
    source = _source(folder)
    paths = precompute_features(conv, source, tmp_path, batch_size=8, verbose=False)
    feats = np.load(paths[0])
    stream = FeatureSource(
        [FeaturePart(paths[0], source.labels), FeaturePart(paths[0], np.asarray(source.labels)[[3, 1]], [3, 1])], 2
    )
    assert len(stream) == 18 and stream.input_shape == (2, 2, 512)
    seen = [(x.numpy(), y.numpy()) for x, y in stream.batches(5, shuffle=True, seed=1)]
    x = np.concatenate([b[0] for b in seen])
    y = np.concatenate([b[1] for b in seen])
    assert x.shape == (18, 2, 2, 512) and x.dtype == np.float32
    rows = [int(np.argmin(np.abs(feats - xi).reshape(16, -1).sum(1))) for xi in x]
    assert sorted(rows) == sorted([*range(16), 3, 1])  # every row once, plus the two picked rows
    np.testing.assert_array_equal(y.argmax(1), np.asarray(source.labels)[rows])


@pytest.mark.integration
def test_head_back_on_conv_part_predicts_the_same(folder, tmp_path):
    conv = cut_model(vgg16((32, 32, 3), include_top=False), "block5_conv3")
    valid = _source(folder, "valid")
    feats = np.load(precompute_features(conv, valid, tmp_path, batch_size=8, verbose=False)[0])
    for head_args in ({"dropout": 0.3}, {"dropout": 0.6, "batchnorm": True}):
        head = dense_head(feats.shape[1:], 2, units=16, **head_args)
        head.compile("adam", "categorical_crossentropy")
        head.fit(feats, np.eye(2)[valid.labels], epochs=2, verbose=0)  # moves BN statistics
        full = attach_head(conv, head)
        images = np.concatenate(list(valid.batches(8, labels=False)))
        np.testing.assert_allclose(full.predict(images, verbose=0), head.predict(feats, verbose=0), atol=1e-5)


def test_pseudo_labels_mix_at_the_ratio():
    rows = pseudo_rows(30, 50, ratio=0.25, seed=0)
    assert len(rows) == 10 and len(set(rows)) == 10 and rows.max() < 50  # 10 of 40 are pseudo-labelled
    assert np.array_equal(rows, pseudo_rows(30, 50, ratio=0.25, seed=0))
    assert len(pseudo_rows(30, 5, ratio=0.5)) == 5 and len(pseudo_rows(30, 50, ratio=0.0)) == 0


def _cfg(folder, task, tmp_path, **train):
    return load_config(
        {
            "name": task["name"],
            "seed": 0,
            "task": task,
            "out": str(tmp_path),
            "data": {"name": "image_folder", "path": str(folder.root), "image_size": [32, 32]},
            "model": {"name": "vgg16", "include_top": False}
            if task["name"] == "features"
            else {"name": "vgg16", "dropout": 0.0},
            "augment": {"name": "dogscats"},
            "train": {
                "batch_size": 8,
                "epochs": 1,
                "verbose": 0,
                "schedule": {"name": "constant", "lr": 1e-4},
                **train,
            },
        }
    )


@pytest.mark.integration
def test_features_task_end_to_end(folder, tmp_path):
    import json

    from fastcourse.tasks.runner import run_experiment

    cfg = _cfg(
        folder,
        {
            "name": "features",
            "cache_dir": str(tmp_path / "cache"),
            "passes": 1,
            "head": {"units": 16, "dropout": 0.6, "batchnorm": True},
            "pseudo_ratio": 0.2,
            "finetune_epochs": 1,
        },
        tmp_path,
    )
    run = run_experiment(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["attach_max_abs_diff"] < 1e-5 and metrics["feature_shape"] == [2, 2, 512]
    assert metrics["pseudo_images"] == 4 and metrics["epochs"] == 3 and 0 <= metrics["eval_accuracy"] <= 1
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert model.output_shape == (None, 2)
    assert (run / "eval_predictions.csv").read_text().count("\n") == 9


@pytest.mark.slow
def test_finetune_task_runs_fastai_fine_tune(folder, tmp_path):
    import json

    from fastcourse.tasks.runner import run_experiment

    cfg = _cfg(folder, {"name": "finetune", "freeze_epochs": 1, "unfreeze_epochs": 1}, tmp_path)
    run = run_experiment(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["unfreeze_epochs"] == 1
    assert set(json.loads(json.dumps(metrics)).keys()) >= {"eval_accuracy", "eval_loss"}


@pytest.mark.integration
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


@pytest.mark.parametrize(
    "path", sorted(map(str, [*CONFIGS.glob("dogscats/*.yaml"), *CONFIGS.glob("statefarm/*.yaml")]))
)
def test_lesson_configs_validate_and_say_what_the_course_reached(path):
    cfg = load_config(path)
    text = Path(path).read_text()
    assert text.startswith("#") and "fastcourse run" in text and "course" in text.split("\nname:")[0]
    assert cfg.task.name in ("train", "finetune", "features", "sklearn_features")


@pytest.mark.integration
def test_fine_tune_freezes_the_body_first_then_trains_every_block(folder, tmp_path):
    """The finetune task's two phases: the body frozen, then every block at spread rates, each
    phase with its own schedule table (a one-cycle stretched to the phase)."""
    import json

    from fastcourse.tasks.runner import run_experiment

    cfg = _cfg(
        folder,
        {"name": "finetune", "freeze_epochs": 1, "unfreeze_epochs": 1, "frozen_up_to": "head"},
        tmp_path,
        schedule={"name": "one_cycle", "max_lr": 1e-3},
    )
    cfg.model.args  # noqa: B018 - vgg16 at 32x32 with a 2-class top
    run = run_experiment(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["freeze_epochs"] == 1 and len(metrics["epoch_seconds"]) == 2


@pytest.mark.integration
def test_interrupted_precomputation_resumes_at_the_last_chunk(folder, tmp_path, monkeypatch):
    """A precomputation killed mid-way keeps its committed chunks; the rerun computes only the
    rest (augmented pass included) and ends with exactly the uninterrupted features."""
    import fastcourse.data.features as features
    from fastcourse.data.augment import build

    source = _source(folder)  # 16 images: 4 batches of 4 per pass, 2 passes
    conv = cut_model(vgg16((32, 32, 3), include_top=False), "block5_conv3")
    aug, spec = build("dogscats"), {"name": "dogscats"}
    whole = precompute_features(
        conv,
        source,
        tmp_path / "a",
        augment=aug,
        augment_spec=spec,
        passes=1,
        batch_size=4,
        verbose=False,
        commit_every=2,
    )
    real_runner = features._runner
    calls = {"n": 0, "limit": 6}

    def counting_runner(model):
        fn = real_runner(model)

        def run(images):
            calls["n"] += 1
            if calls["n"] > calls["limit"]:
                raise KeyboardInterrupt  # the process dies in batch 7 (pass 2, batch 3)
            return fn(images)

        return run

    monkeypatch.setattr(features, "_runner", counting_runner)
    with pytest.raises(KeyboardInterrupt):
        precompute_features(
            conv,
            source,
            tmp_path / "b",
            augment=aug,
            augment_spec=spec,
            passes=1,
            batch_size=4,
            verbose=False,
            commit_every=2,
        )
    assert len(list((tmp_path / "b").glob("features-pass*.npy"))) == 1  # pass 0 complete, pass 1 not
    calls.update(n=0, limit=10**6)
    resumed = precompute_features(
        conv,
        source,
        tmp_path / "b",
        augment=aug,
        augment_spec=spec,
        passes=1,
        batch_size=4,
        verbose=False,
        commit_every=2,
    )
    assert calls["n"] == 2  # pass 2 committed through its batch 2: only batches 3 and 4 are recomputed
    for a, b in zip(resumed, whole):
        np.testing.assert_allclose(np.load(a), np.load(b), rtol=1e-5, atol=1e-5)
