"""Lesson 3 on precomputed features, as one task on any dataset (image folders or arrays):

cut the builder at `cut` -> precompute the conv features once, with `passes` augmented copies
(cached on disk, streamed back a batch at a time) -> train a `dense_head` on them (any dropout,
the batchnorm head) -> optionally `pseudo_rounds` of pseudo-labelling with the unlabelled test
images' soft labels -> put the head back on the conv part (checked to give the same
predictions) -> optionally `finetune_epochs` of that full model with augmentation and the convs
frozen. Every training call is the one trainer's, with its own schedule table and checkpoints.
An `ensemble` section makes the lesson's ensemble of heads: the members share the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import keras
import numpy as np

from fastcourse.config import ArgsOf, ExperimentConfig
from fastcourse.data import augment
from fastcourse.data.features import precompute_features
from fastcourse.data.sources import FeaturePart, FeatureSource
from fastcourse.errors import UsageError
from fastcourse.models.heads import dense_head
from fastcourse.models.surgery import attach_head, cut_model, set_trainable
from fastcourse.run.artifacts import write_run
from fastcourse.run.inputs import build_for, inputs_for
from fastcourse.run.rundir import checkpoint_dir
from fastcourse.tasks import TASKS
from fastcourse.train.devices import float32_outputs
from fastcourse.train.pseudo import pseudo_rows
from fastcourse.train.trainer import FitResult, evaluate, fit, predict


@TASKS.register()
def features(
    cfg: ExperimentConfig,
    run_dir: Path,
    cut: str = "last_conv",
    cache_dir: str = "cache/features",
    passes: int = 0,
    dtype: Literal["float32", "float16"] = "float32",
    head: Annotated[Optional[dict[str, Any]], ArgsOf(dense_head, ("input_shape", "num_classes"))] = None,
    pseudo_ratio: float = 0.0,
    pseudo_rounds: int = 1,
    pseudo_epochs: int = 0,
    finetune_epochs: int = 0,
    finetune_scale: float = 0.1,
    feature_seed: int = 0,
) -> dict:
    """Cached conv features -> dense head (-> pseudo-labels) -> head back on the conv part.

    `feature_seed` seeds the conv part (its weights when not pretrained) and the augmented passes,
    apart from the run's seed, so the members of an ensemble share one features cache. `head` is
    dense_head's arguments, checked with the config (fastcourse.config.ArgsOf)."""
    head_args = dict(head or {})
    inputs = inputs_for(cfg)
    augmenter = augment.build(cfg.augment.name, cfg.augment.args)
    spec = {"name": cfg.augment.name, **cfg.augment.args}
    keras.utils.set_random_seed(feature_seed)
    backbone = build_for(cfg, inputs, float32_output=False)
    conv = cut_model(backbone, cut)
    print(
        f"fastcourse: {cfg.name}: features of {cfg.model.name} at {cut} on {inputs.describe()}, "
        f"{passes} augmented passes -> {run_dir}",
        flush=True,
    )
    if note := inputs.progress_note(cfg.train):
        print(note, flush=True)
    common = dict(batch_size=cfg.train.batch_size, dtype=dtype, verbose=cfg.train.verbose > 0)
    train_paths = precompute_features(
        conv,
        inputs.train,
        cache_dir,
        augment=augmenter,
        augment_spec=spec,
        passes=passes,
        seed=feature_seed,
        desc=f"{inputs.name}-train",
        **common,
    )
    (eval_path,) = precompute_features(
        conv, inputs.eval, cache_dir, desc=f"{inputs.name}-{inputs.eval_split}", **common
    )
    labels = np.asarray(inputs.train.labels)
    train_parts = [FeaturePart(p, labels) for p in train_paths]
    keras.utils.set_random_seed(cfg.seed)  # the head, its data order and dropout: the run's own seed
    n = inputs.num_classes
    train_src, eval_src = FeatureSource(train_parts, n), FeatureSource([FeaturePart(eval_path, inputs.eval.labels)], n)
    head_model = float32_outputs(dense_head(tuple(conv.output_shape[1:]), n, **head_args))
    parts = [
        fit(
            head_model,
            train_src,
            cfg.train,
            cfg.seed,
            validation=eval_src,
            checkpoint_dir=checkpoint_dir(run_dir, "head"),
        )
    ]
    extra: dict = {
        "cut": cut,
        "passes": passes,
        "head": head_args,
        "feature_shape": list(train_src.input_shape),
        "feature_dtype": dtype,
        "feature_files": [str(p) for p in [*train_paths, eval_path]],
    }

    if pseudo_ratio > 0:
        if inputs.unlabelled is None:
            raise UsageError(
                f"task.pseudo_ratio: {inputs.name} has no unlabelled images to pseudo-label "
                "(an image folder's test/ split); set pseudo_ratio: 0"
            )
        (un_path,) = precompute_features(conv, inputs.unlabelled, cache_dir, desc=f"{inputs.name}-test", **common)
        unlabelled = FeatureSource([FeaturePart(un_path)], n)
        for r in range(pseudo_rounds):
            soft = predict(head_model, unlabelled)
            rows = pseudo_rows(len(train_src), len(unlabelled), pseudo_ratio, cfg.seed + r)
            mixed = FeatureSource([*train_parts, FeaturePart(un_path, soft[rows], rows)], n)
            parts.append(
                fit(
                    head_model,
                    mixed,
                    cfg.train,
                    cfg.seed + 1 + r,
                    validation=eval_src,
                    epochs=pseudo_epochs or cfg.train.epochs,
                    checkpoint_dir=checkpoint_dir(run_dir, f"pseudo{r + 1}"),
                )
            )
        extra.update(pseudo_ratio=pseudo_ratio, pseudo_rounds=pseudo_rounds, pseudo_images=int(len(rows)))

    model = attach_head(conv, head_model, name=f"{cfg.model.name}_{cut}_head")
    k = min(64, len(inputs.eval))
    head_probs = predict(head_model, eval_src.take(k))
    extra["attach_max_abs_diff"] = float(np.abs(predict(model, inputs.eval.take(k)) - head_probs).max())
    if finetune_epochs:
        set_trainable(model, "head")  # convs frozen, as the lesson's augmented full-model step
        parts.append(
            fit(
                model,
                inputs.train,
                cfg.train,
                cfg.seed + 100,
                augment=augmenter,
                validation=inputs.eval,
                epochs=finetune_epochs,
                scale=finetune_scale,
                checkpoint_dir=checkpoint_dir(run_dir, "full"),
            )
        )
        evaluation = evaluate(model, inputs.eval)
    else:
        evaluation = evaluate(head_model, eval_src)  # the same predictions, without rerunning the convs
    return write_run(run_dir, cfg, inputs, model, FitResult.join(parts), evaluation, extra)
