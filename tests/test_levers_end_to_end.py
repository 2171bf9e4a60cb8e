"""The weight average and gradient accumulation end to end: through `fastcourse run` on arrays and
through the Learner on an image folder, each checked against what the lever means (the model left
is the optimizer's average; K batches of B train as one batch of K x B), not against our own
output. tests/test_ema.py and tests/test_accumulate.py check the trainer underneath."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

pytestmark = pytest.mark.integration  # each test trains small models: seconds


def _folder(root, n=8):
    rs = np.random.RandomState(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            pixels = rs.randint(0, 120, (10, 10, 3)) + (100 if c == "b" else 0)
            Image.fromarray(pixels.astype(np.uint8)).save(root / c / f"{i}.png")
    return root


def _weights(model):
    return [np.asarray(v.numpy()) for v in model.trainable_variables]


def _config(tmp_path, tiny_config, name, **train):
    """The bundled digits, a model with no batchnorm or dropout (so batches of 32 x 2 can equal 64),
    plain SGD under one-cycle in float32, no augmentation: every difference is the lever's."""
    cfg = tiny_config(name=name, out=str(tmp_path / "runs"))
    cfg["data"].update(train_limit=256, test_limit=64)
    cfg["model"] = {"name": "linear"}
    cfg["train"].update(
        epochs=2, optimizer="sgd", precision="float32", schedule={"name": "one_cycle", "max_lr": 0.05}, **train
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(path, capsys):
    from fastcourse.cli import main

    assert main(["run", str(path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    run_dir = [line.split("run directory: ")[1].strip() for line in out.splitlines() if "run directory: " in line]
    return out, run_dir[-1]


def test_accumulate_through_the_cli_on_arrays_trains_as_the_larger_batch(tmp_path, tiny_config, capsys):
    from fastcourse.run.artifacts import load_model

    out, accumulated = _run(_config(tmp_path, tiny_config, "acc", batch_size=32, accumulate=2, verbose=2), capsys)
    assert "accumulate 2: the progress bar counts batches of 32; one optimizer step per 2 batches" in out
    _, large = _run(_config(tmp_path, tiny_config, "large", batch_size=64), capsys)
    _, small = _run(_config(tmp_path, tiny_config, "small", batch_size=32), capsys)
    acc_w, large_w, small_w = (_weights(load_model(f"{d}/model.keras")) for d in (accumulated, large, small))
    for a, b in zip(acc_w, large_w):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    assert max(np.abs(s - b).max() for s, b in zip(small_w, large_w)) > 1e-3  # batches of 32 alone differ


def test_ema_through_the_cli_on_arrays_saves_the_average_of_the_steps(tmp_path, tiny_config, capsys):
    """One step an epoch (a batch of all 256 images) at a constant rate: plain runs of 1 and 2
    epochs give the weights after step 1 and step 2 (the average does not steer training), and
    the run with `ema: {momentum: 0.75}` saves Keras' average of them, 0.75 w1 + 0.25 w2 (the
    average starts at the first step's weights). Its last per-epoch figure is that model's."""
    import json

    from fastcourse.run.artifacts import load_model

    def weights(name, epochs, **train):
        path = _config(tmp_path, tiny_config, name, batch_size=256, **train)
        cfg = yaml.safe_load(path.read_text())
        cfg["train"].update(epochs=epochs, schedule={"name": "constant", "lr": 0.1})
        path.write_text(yaml.safe_dump(cfg))
        _, run_dir = _run(path, capsys)
        return _weights(load_model(f"{run_dir}/model.keras")), run_dir

    w1, _ = weights("one", 1)
    w2, _ = weights("two", 2)
    averaged, run_dir = weights("ema", 2, ema={"momentum": 0.75})
    assert max(np.abs(a - b).max() for a, b in zip(w1, w2)) > 1e-3  # the second step moved the weights
    for got, a, b in zip(averaged, w1, w2):
        np.testing.assert_allclose(got, 0.75 * a + 0.25 * b, rtol=1e-5, atol=1e-6)
    metrics = json.loads(open(f"{run_dir}/metrics.json").read())
    history = np.genfromtxt(f"{run_dir}/history.csv", delimiter=",", names=True)
    assert float(np.atleast_1d(history["val_accuracy"])[-1]) == pytest.approx(metrics["eval_accuracy"], abs=1e-6)


def _learner(tmp_path, root, **train):
    import fastcourse

    return fastcourse.Learner.from_folder(
        root,
        "linear",
        image_size=10,
        valid_pct=0.25,
        seed=1,
        out=tmp_path / "runs",
        verbose=0,
        optimizer="sgd",
        precision="float32",
        **train,
    )


def test_accumulate_through_the_learner_on_a_folder_trains_as_the_larger_batch(tmp_path):
    root = _folder(tmp_path / "photos")
    runs = {}
    for name, train in {"acc": dict(batch_size=2, accumulate=2), "large": dict(batch_size=4)}.items():
        learn = _learner(tmp_path / name, root, **train)
        assert (learn.config.train.accumulate or 1) == train.get("accumulate", 1)
        learn.fit_one_cycle(2, 0.05)
        runs[name] = _weights(learn.model)
    for a, b in zip(runs["acc"], runs["large"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def test_ema_through_the_learner_on_a_folder_is_the_model_it_evaluates_and_exports(tmp_path):
    import keras

    from fastcourse.run.artifacts import load_model
    from fastcourse.train.ema import average_values

    learn = _learner(tmp_path, _folder(tmp_path / "photos"), batch_size=4, ema={"momentum": 0.8})
    assert learn.config.train.ema.momentum == 0.8
    learn.fit(2, lr=0.05)
    for w, a in zip(_weights(learn.model), average_values(learn.model)):
        np.testing.assert_allclose(w, a, rtol=1e-6, atol=1e-7)
    last = learn.results[-1].history["val_accuracy"][-1]
    assert last == pytest.approx(learn.evaluate()["accuracy"], abs=1e-6)
    exported = load_model(learn.export(tmp_path / "export") / "model.keras")
    images = keras.ops.convert_to_numpy(next(iter(learn.inputs.eval.batches(8)))[0])
    np.testing.assert_allclose(exported.predict(images, verbose=0), learn.model.predict(images, verbose=0), atol=1e-6)
