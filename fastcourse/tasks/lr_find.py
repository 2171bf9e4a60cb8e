"""`fastcourse lr-find`: the learning-rate range test on what a config's task really trains.

A range test is only meaningful on the model and data of the training call whose rate it
suggests; each task kind names its own (`TARGETS`):

- train (arrays and image folders): the configured model on the training images, with the
  configured augmentation;
- features: the dense head on the cached conv features, computed (or reused from
  `task.cache_dir`) exactly as the features task computes them, so a run after lr-find does not
  recompute them;
- finetune: the model with its new top, frozen as the task's first phase is (the `trainable`
  groups; the groups from `frozen_up_to` on with `freeze_epochs`; everything, with the spread
  rates, with only `unfreeze_epochs`);
- sklearn_features with `pretrain: true`: the network trained before the cut (without it, a
  scikit-learn classifier has no learning rate).

    from fastcourse import load_config
    from fastcourse.tasks.lr_find import lr_find_for
    result = lr_find_for(load_config("configs/dogscats/features_dense.yaml"), steps=100)
    result.finder.suggestion, result.finder.plot("lr_find.png", result.title)

It runs in the config's precision policy, seeded like a run; a multi-worker config is tested on
this machine alone (one process can sweep the rate: the suggestion is for the same global batch).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional

from fastcourse.config import ExperimentConfig
from fastcourse.errors import UsageError
from fastcourse.tasks import TASKS

DEFAULT_STEPS = 200


@dataclass
class Target:
    """What one task trains first: the model (frozen as it trains), its data and augmentation."""

    model: Any  # keras.Model
    source: Any  # fastcourse.data.sources.Source
    what: str  # said in the output and the plot's title
    augment: Optional[Callable] = None
    lr_multipliers: Optional[dict] = None
    scale: float = 1.0  # the call's rate = scale x the schedule's: suggestions are given in schedule units


@dataclass
class LRFind:
    finder: Any  # fastcourse.train.lr_find.LRFinderResult, in the config's schedule units
    what: str
    task: str

    @property
    def title(self) -> str:
        return f"learning-rate range test: {self.what}"


def task_args(cfg: ExperimentConfig) -> dict:
    """The task's arguments with the task function's own defaults filled in."""
    fn = TASKS.get(cfg.task.name)
    params = inspect.signature(fn).parameters
    args = {
        k: p.default
        for k, p in params.items()
        if k not in ("cfg", "run_dir") and p.default is not inspect.Parameter.empty
    }
    return {**args, **cfg.task.args}


def _train_target(cfg: ExperimentConfig, inputs, **_: Any) -> Target:
    from fastcourse.data import augment
    from fastcourse.run.inputs import build_for

    model = build_for(cfg, inputs)
    return Target(
        model,
        inputs.train,
        f"{cfg.model.name} on {inputs.name} ({inputs.kind})",
        augment.build(cfg.augment.name, cfg.augment.args),
    )


def _finetune_target(
    cfg: ExperimentConfig,
    inputs,
    trainable="head",
    freeze_epochs: int = 0,
    unfreeze_epochs: int = 0,
    lr_mult: float = 100.0,
    frozen_up_to: str = "head",
    **_: Any,
) -> Target:
    from fastcourse.tasks.finetune import first_phase

    target = _train_target(cfg, inputs)
    groups, multipliers = first_phase(
        target.model, cfg.model.name, trainable, freeze_epochs, unfreeze_epochs, lr_mult, frozen_up_to
    )
    scale = 0.5 if (unfreeze_epochs and not freeze_epochs) else 1.0  # the unfrozen phase runs at half the rate
    return dataclasses.replace(
        target,
        lr_multipliers=multipliers,
        scale=scale,
        what=f"{cfg.model.name} on {inputs.name}, training {', '.join(groups)}",
    )


def feature_head(
    cfg: ExperimentConfig,
    inputs,
    cut: str = "block5_conv3",
    cache_dir: str = "cache/features",
    passes: int = 0,
    dtype: str = "float32",
    head: Optional[dict] = None,
    feature_seed: int = 0,
    where: str = "<config>",
):
    """The features task's first training call: (conv part, head model, training features Source).

    The steps and seeds are the features task's (fastcourse/tasks/features.py), so the cache key
    is the same and the files are shared: the conv part is built under `feature_seed`, its
    features precomputed (or found) in `cache_dir` with `passes` augmented passes, and the head
    built under the run's seed."""
    import keras
    import numpy as np

    from fastcourse.config import check_arguments
    from fastcourse.data import augment
    from fastcourse.data.features import precompute_features
    from fastcourse.data.sources import FeaturePart, FeatureSource
    from fastcourse.models.heads import dense_head
    from fastcourse.models.surgery import cut_model
    from fastcourse.run.inputs import build_for
    from fastcourse.train.devices import float32_outputs

    head_args = check_arguments(dense_head, dict(head or {}), "task.head", where, ("input_shape", "num_classes"))
    augmenter = augment.build(cfg.augment.name, cfg.augment.args)
    keras.utils.set_random_seed(feature_seed)
    conv = cut_model(build_for(cfg, inputs, float32_output=False), cut)
    paths = precompute_features(
        conv,
        inputs.train,
        cache_dir,
        augment=augmenter,
        augment_spec={"name": cfg.augment.name, **cfg.augment.args},
        passes=passes,
        seed=feature_seed,
        desc=f"{inputs.name}-train",
        batch_size=cfg.train.batch_size,
        dtype=dtype,
        verbose=cfg.train.verbose > 0,
    )
    labels = np.asarray(inputs.train.labels)
    keras.utils.set_random_seed(cfg.seed)  # the head, its data order and dropout: the run's own seed
    source = FeatureSource([FeaturePart(p, labels) for p in paths], inputs.num_classes)
    head_model = float32_outputs(dense_head(tuple(conv.output_shape[1:]), inputs.num_classes, **head_args))
    return conv, head_model, source


def _features_target(cfg: ExperimentConfig, inputs, where: str = "<config>", **args: Any) -> Target:
    keys = ("cut", "cache_dir", "passes", "dtype", "head", "feature_seed")
    conv, head_model, source = feature_head(cfg, inputs, where=where, **{k: args[k] for k in keys if k in args})
    return Target(
        head_model,
        source,
        f"the dense head on {cfg.model.name} features at {conv.layers[-1].name} "
        f"of {inputs.name} ({len(source)} cached rows)",
    )


def _sklearn_target(
    cfg: ExperimentConfig, inputs, pretrain: bool = False, weights: Optional[str] = None, **_: Any
) -> Target:
    if not pretrain:
        raise UsageError(
            "task sklearn_features fits a scikit-learn classifier, which has no learning rate; "
            "set task.pretrain: true to test the network it trains before the cut"
        )
    from fastcourse.run.inputs import build_for
    from fastcourse.tasks.sklearn import load_weights

    model = build_for(cfg, inputs, float32_output=False)
    if weights:
        model = load_weights(model, weights)
    # pretraining fits without augmentation (fastcourse/tasks/sklearn.py)
    return Target(model, inputs.train, f"{cfg.model.name} on {inputs.name} ({inputs.kind}), before the cut")


TARGETS: dict[str, Callable[..., Target]] = {
    "train": _train_target,
    "features": _features_target,
    "finetune": _finetune_target,
    "sklearn_features": _sklearn_target,
}


def lr_find_target(cfg: ExperimentConfig, inputs=None, where: str = "<config>") -> Target:
    """The model, data and freezing of `cfg`'s task's first training call (inside the caller's scope)."""
    from fastcourse.run.inputs import inputs_for

    chooser = TARGETS.get(cfg.task.name)
    if chooser is None:
        raise UsageError(
            f"lr-find: task {cfg.task.name!r} has no learning-rate range test; tasks with one: {', '.join(TARGETS)}"
        )
    args = task_args(cfg)
    inputs = inputs if inputs is not None else inputs_for(cfg)
    if cfg.task.name == "features":
        args["where"] = where
    return chooser(cfg, inputs, **args)


def lr_find_for(
    cfg: ExperimentConfig,
    steps: int = DEFAULT_STEPS,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    where: str = "<config>",
    suggest_by: str = "valley",
) -> LRFind:
    """The range test of `cfg`'s task, seeded and in its precision policy (as `fastcourse run` is);
    `suggest_by` names fastai's rule for the suggestion (fastcourse.train.lr_find.SUGGESTIONS)."""
    import keras

    from fastcourse.train.devices import training_scope
    from fastcourse.train.lr_find import check_method, check_range, lr_find_train
    from fastcourse.train.trainer import seed_everything

    check_range(min_lr, max_lr, steps)
    check_method(suggest_by)
    keras.backend.clear_session()
    seed_everything(cfg.seed, cfg.train.deterministic)
    # Keras' fit, which the range test uses, cannot run under MultiWorkerMirroredStrategy
    distribute = "none" if cfg.train.distribute == "multi_worker" else cfg.train.distribute
    with training_scope(cfg.train.precision, distribute):
        target = lr_find_target(cfg, where=where)
        finder = lr_find_train(
            target.model,
            target.source,
            cfg.train,
            cfg.seed,
            augment=target.augment,
            steps=steps,
            min_lr=min_lr * target.scale,
            max_lr=max_lr * target.scale,
            lr_multipliers=target.lr_multipliers,
            suggest_by=suggest_by,
        )
    if target.scale != 1.0:  # back to the schedule's units

        def unscaled(lr):
            return None if lr is None else lr / target.scale

        finder = dataclasses.replace(
            finder,
            lrs=finder.lrs / target.scale,
            suggestion=unscaled(finder.suggestion),
            min_loss_lr=finder.min_loss_lr / target.scale,
            suggestions={k: unscaled(v) for k, v in finder.suggestions.items()},
        )
    return LRFind(finder, target.what, cfg.task.name)
