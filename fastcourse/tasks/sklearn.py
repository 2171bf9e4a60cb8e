"""Pretrained features plus a classic classifier (the feature-extraction recipe).

    task: {name: sklearn_features, layer: fc4, classifier: logistic}

Cut any builder at `layer` (default: the input of its last layer), run the images through
it once, and fit a scikit-learn classifier on those features. The network's weights come
from the builder itself (e.g. ImageNet weights in a VGG builder), from `weights` (a .keras
model or a .weights.h5 file), or from training it first on the same data (`pretrain: true`,
with the config's `train` section; array datasets). Image-folder datasets (dogscats,
statefarm) work too: their train split is fitted, their valid split tested. The run directory
gets metrics.json, features.keras (the
cut network, loads in safe mode), confusion_matrix.png and, when pretrained here,
history.csv and learning_curves.png.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from fastcourse.config import ExperimentConfig
from fastcourse.tasks import TASKS


@TASKS.register()
def sklearn_features(
    cfg: ExperimentConfig,
    run_dir: Path,
    layer: Optional[str] = None,
    classifier: Literal["logistic", "gradient_boosting"] = "logistic",
    pool: Literal["flatten", "avg", "max"] = "flatten",
    pretrain: bool = False,
    weights: Optional[str] = None,
    C: float = 1.0,
    max_iter: Optional[int] = None,
) -> dict:
    """Features from a builder's cut layer -> logistic regression or gradient boosting."""
    import pandas as pd

    from fastcourse import io
    from fastcourse.run import plots, records
    from fastcourse.run.artifacts import versions
    from fastcourse.run.inputs import build_for, inputs_for
    from fastcourse.run.rundir import checkpoint_dir
    from fastcourse.train.metrics import accuracy, log_loss
    from fastcourse.train.trainer import evaluate, fit

    inputs = inputs_for(cfg)
    model = build_for(cfg, inputs, float32_output=False)
    if weights:
        model = load_weights(model, weights)
    extractor = cut(model, layer)  # a bad layer name fails here, before any training
    extra: dict = {}
    if pretrain:
        print(
            f"fastcourse: {cfg.name}: training {cfg.model.name} for {cfg.train.epochs} epochs before the cut",
            flush=True,
        )
        result = fit(
            model, inputs.train, cfg.train, cfg.seed, validation=inputs.eval, checkpoint_dir=checkpoint_dir(run_dir)
        )
        extra["network_test_accuracy"] = evaluate(model, inputs.eval)["accuracy"]
        history = pd.DataFrame(result.history)
        history.insert(0, "epoch", np.arange(1, len(history) + 1))
        io.write_text(run_dir / "history.csv", history.to_csv(index=False))
        plots.plot_learning_curves(
            result.history, run_dir / "learning_curves.png", f"{cfg.name}: pretraining", split=inputs.eval_split
        )

    io.save_model(extractor, run_dir / "features.keras")
    start = time.perf_counter()
    f_train = features(extractor, inputs.train, pool, cfg.train.batch_size)
    f_test = features(extractor, inputs.eval, pool, cfg.train.batch_size)
    y_train, y_test = np.asarray(inputs.train.labels), np.asarray(inputs.eval.labels)
    extract_seconds = time.perf_counter() - start
    print(
        f"fastcourse: {cfg.name}: {f_train.shape[1]} features from {extractor.layers[-1].name}"
        f" ({len(f_train)} train / {len(f_test)} {inputs.eval_split}); fitting {classifier}",
        flush=True,
    )

    start = time.perf_counter()
    clf = make_classifier(classifier, C, max_iter, cfg.seed).fit(f_train, y_train)
    fit_seconds = time.perf_counter() - start
    probs = _full_probs(clf, f_test, inputs.num_classes)
    y_pred = probs.argmax(1)
    test_accuracy = accuracy(probs, y_test)
    metrics = records.run_metrics(
        name=cfg.name,
        task="sklearn_features",
        model=cfg.model.name,
        dataset=inputs.name,
        data_kind=inputs.kind,
        data_source=inputs.source,
        classes=list(inputs.class_names),
        augment=cfg.augment.name,
        split=inputs.eval_split,
        accuracy=test_accuracy,
        loss=log_loss(probs, y_test),
        eval_images=len(f_test),
        train_images=int(len(f_train)),
        epochs=cfg.train.epochs if pretrain else 0,
        train_seconds=fit_seconds,  # the classifier's fit; the network's pretraining is in wall_seconds
        params=int(extractor.count_params()),
        seed=cfg.seed,
        versions=versions(),
        layer=extractor.layers[-1].name,
        classifier=classifier,
        pool=pool,
        pretrained_here=pretrain,
        weights=weights,
        feature_dim=int(f_train.shape[1]),
        train_accuracy=accuracy(_full_probs(clf, f_train, inputs.num_classes), y_train),
        extract_seconds=extract_seconds,
        fit_seconds=fit_seconds,
        **extra,
    )
    cm = plots.confusion_matrix(y_test, y_pred, inputs.num_classes)
    plots.plot_confusion_matrix(
        cm,
        inputs.class_names,
        run_dir / "confusion_matrix.png",
        f"{cfg.name}: {classifier} on {metrics['layer']}: {inputs.eval_split} accuracy {test_accuracy:.4f}",
    )
    io.write_json(run_dir / "metrics.json", metrics)
    return metrics


def cut(model, layer: Optional[str] = None):
    """The model from its input up to `layer`, a layer name or a named cut point (default: the layer
    feeding the last one)."""
    import keras

    from fastcourse.errors import ConfigError, UsageError
    from fastcourse.models.surgery import cut_layer

    names = [lyr.name for lyr in model.layers]
    if layer is None:
        target = model.layers[-1].input
    else:
        try:  # a layer name, or a named cut point of the builder ("last_conv")
            target = model.get_layer(cut_layer(model, layer)).output
        except UsageError:
            raise ConfigError(
                f"task.layer = {layer!r}: {model.name} has no such layer or cut point (layers: {', '.join(names[1:])})"
            ) from None
    return keras.Model(model.input, target, name=f"{model.name}_features")


def features(extractor, source, pool: str = "flatten", batch_size: int = 256) -> np.ndarray:
    """(N, D) features of a Source's images; spatial outputs are flattened or pooled over height
    and width."""
    from fastcourse.train.trainer import predict

    out = predict(extractor, source, batch_size)
    if out.ndim > 2 and pool != "flatten":
        axes = tuple(range(1, out.ndim - 1))
        out = out.mean(axis=axes) if pool == "avg" else out.max(axis=axes)
    return out.reshape(len(out), -1)


def make_classifier(kind: str, C: float = 1.0, max_iter: Optional[int] = None, seed: int = 0):
    """Logistic regression on standardised features (`max_iter` solver steps, default 1000), or
    histogram gradient boosting (`max_iter` trees, default 100)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter or 1000))
    if kind == "gradient_boosting":
        return HistGradientBoostingClassifier(max_iter=max_iter or 100, random_state=seed)
    raise ValueError(f"classifier={kind!r}: use 'logistic' or 'gradient_boosting'")


def load_weights(model, path: str):
    """A .keras model (safe mode) replaces the built one; a .weights.h5 file fills it."""
    from fastcourse.errors import DataError
    from fastcourse.run.artifacts import load_model

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"task.weights = {path!r}: no such file; give a .keras model or a .weights.h5 file")
    try:
        if p.name.endswith(".keras"):
            return load_model(p)
        model.load_weights(p)
        return model
    except Exception as exc:  # a wrong file or architecture: one line, no traceback
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"task.weights = {path!r}: cannot load into {model.name}: {first[:200]}") from None


def _full_probs(clf, f: np.ndarray, num_classes: int) -> np.ndarray:
    """predict_proba spread over every class (a class absent from training gets 0)."""
    probs = np.zeros((len(f), num_classes), np.float64)
    probs[:, np.asarray(clf.classes_, np.int64)] = clf.predict_proba(f)
    return probs
