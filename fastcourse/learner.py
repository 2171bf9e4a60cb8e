"""The Learner: the notebook front door, in the spirit of fastai's, on THE trainer the YAML runs use.

Every argument is a plain value or a builder's result; no config object is needed::

    import fastcourse
    from fastcourse.data import DATASETS

    learn = fastcourse.Learner("cnn", DATASETS.get("mnist_sample")(), augment="course", seed=0)
    learn.lr_find().plot("lr_find.png")
    learn.fit_one_cycle(3, max_lr=1e-2)
    learn.predict(tta=4)                     # class probabilities on the evaluation split
    learn.show_results()
    learn.save("runs/my-cnn")                # the same artifacts as `fastcourse run`

`model` is a registered builder's name (built here after seeding, with the data's input shape,
classes and pixel statistics: exactly what a config run builds) or any keras.Model. `data` is a
dataset object (DATASETS.get(name)(...): arrays or an image folder), a dataset name, or a Source
(with `valid=` another Source). `augment` and `schedule` are a registered name, a dict
``{"name": ..., **args}``, or (augment only) a function `augment(images, seed)`.

Internally each training call builds a `TrainConfig` and calls `fastcourse.train.trainer.fit`, so
`Learner("cnn", data, seed=0).fit(1)` gives what `fastcourse run` gives for the same config (same
metrics on the same seed: tests/test_learner.py). `learn.config` is that equivalent config.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import numpy as np

from fastcourse.errors import UsageError

if TYPE_CHECKING:  # for annotations only: importing it at run time would import Keras
    from fastcourse.train.lr_find import LRFinderResult

Spec = Union[None, str, dict, Callable]


def _named(spec: Spec, default: str, what: str) -> tuple[str, dict]:
    if spec is None:
        return default, {}
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict):
        if "name" not in spec:
            raise UsageError(f"{what}={spec!r}: a dict names the function: {{'name': ..., **arguments}}")
        return str(spec["name"]), {k: v for k, v in spec.items() if k != "name"}
    raise UsageError(f"{what}={spec!r}: give a registered name or a dict {{'name': ..., **arguments}}")


class Learner:
    """A model, its data and how to train it; every training call goes through the one trainer."""

    def __init__(
        self, model: Union[str, Any], data: Any, *, augment: Spec = None, schedule: Spec = None,
        lr: float = 1e-3, batch_size: int = 64, optimizer: str = "adam", seed: int = 0,
        valid: Any = None, train_limit: Optional[int] = None, test_limit: Optional[int] = None,
        model_args: Optional[dict] = None, name: str = "learner", tensorboard: bool = False,
        verbose: int = 1, out: str | os.PathLike = "runs", **train_args: Any,
    ):
        from fastcourse.config import TrainConfig

        self.seed, self.name, self.out = int(seed), name, Path(out)
        self.lr = float(lr)
        self.schedule_name, self.schedule_args = _named(schedule, "constant", "schedule")
        if self.schedule_name == "constant":
            self.schedule_args.setdefault("lr", self.lr)
        self._train = dict(batch_size=batch_size, optimizer=optimizer, verbose=verbose, **train_args)
        TrainConfig(**self._train)  # a bad value fails here, with pydantic's message
        self.tensorboard = bool(tensorboard)
        self.inputs, self.data_name = self._inputs(data, valid, train_limit, test_limit)
        self.data_args = {"train_limit": train_limit, "test_limit": test_limit}
        self._start()
        self.model_args = dict(model_args or {})
        self.model, self.model_name = self._model(model)
        self.augment_fn, self.augment_name, self.augment_args = self._augment(augment)
        self.results: list = []
        self.members: list = []
        self.lr_finder: Optional[LRFinderResult] = None

    # --- construction -------------------------------------------------------------------

    def _inputs(self, data, valid, train_limit, test_limit):
        from fastcourse.data import DATASETS
        from fastcourse.data.sources import ArraySource, Source
        from fastcourse.run.inputs import Inputs, inputs_for

        if isinstance(data, str):
            data = DATASETS.get(data)()
        if isinstance(data, Inputs):
            return data, data.name
        if isinstance(data, Source):
            if valid is None:
                raise UsageError("Learner(model, source): give valid=<a labelled Source> to evaluate on")
            train = data.take(train_limit) if train_limit else data
            valid = valid.take(test_limit) if test_limit else valid
            mean, std = ((float(train.x.mean()), float(train.x.std() or 1.0)) if isinstance(train, ArraySource)
                         else (0.0, 1.0))
            names = [str(i) for i in range(train.num_classes)]
            return Inputs("source", train.kind, names, train, valid, "valid", tuple(train.input_shape),
                          mean, std), "source"
        if train_limit or test_limit:  # a folder's per class, from the learner's seed, as a config run's
            from fastcourse.data.folders import FolderDataset

            data = (data.limit(train_limit, test_limit, seed=self.seed) if isinstance(data, FolderDataset)
                    else data.limit(train_limit, test_limit))
        return inputs_for(None, data), getattr(data, "name", type(data).__name__)

    def _start(self, seed: Optional[int] = None) -> None:
        """What a config run does before building: cleared Keras state, everything seeded."""
        import keras

        from fastcourse.train.trainer import seed_everything

        keras.backend.clear_session()
        seed_everything(self.seed if seed is None else seed, self._train.get("deterministic", True))

    def _build(self, name: str):
        from fastcourse.models import build_model
        from fastcourse.train.devices import float32_outputs

        i = self.inputs
        with self._scope():
            return float32_outputs(build_model(name, i.input_shape, i.num_classes, mean=i.mean, std=i.std,
                                               **self.model_args))

    def _model(self, model):
        import keras

        if isinstance(model, str):
            return self._build(model), model
        if isinstance(model, keras.Model):
            out = int(model.output_shape[-1])
            if out != self.inputs.num_classes:
                raise UsageError(f"the model has {out} outputs but the data has {self.inputs.num_classes} "
                                 f"classes {self.inputs.class_names}; give it a matching top")
            return model, model.name
        raise UsageError(f"model={model!r}: give a registered builder's name or a keras.Model")

    def _augment(self, augment):
        from fastcourse.data import augment as augmentations

        if callable(augment) and not isinstance(augment, (str, dict)):
            return augment, getattr(augment, "__name__", type(augment).__name__), {}
        name, args = _named(augment, "none", "augment")
        return augmentations.build(name, args), name, args

    def _scope(self):
        from fastcourse.train.devices import training_scope

        return training_scope(self._train.get("precision", "float32"), self._train.get("distribute", "none"))

    # --- the equivalent config ----------------------------------------------------------

    def train_config(self, epochs: int, schedule: Optional[tuple[str, dict]] = None):
        """The TrainConfig of one training call (the one trainer reads nothing else)."""
        from fastcourse.config import TrainConfig

        name, args = schedule or (self.schedule_name, self.schedule_args)
        extra = {} if name == "phases" else {"epochs": int(epochs)}
        return TrainConfig(**self._train, **extra, tensorboard=self.tensorboard,
                           schedule={"name": name, **args})

    @property
    def config(self):
        """The ExperimentConfig a `fastcourse run` of this learner would have (what save() records)."""
        from fastcourse.config import ExperimentConfig

        epochs = max(1, sum(len(r.epoch_seconds) for r in self.results))
        data = {"name": self.data_name, **{k: v for k, v in self.data_args.items() if v}}
        return ExperimentConfig.model_validate({
            "name": self.name, "seed": self.seed, "task": {"name": "learner"}, "data": data,
            "model": {"name": self.model_name, **self.model_args},
            "augment": {"name": self.augment_name, **self.augment_args},
            "train": self.train_config(epochs, getattr(self, "_last_schedule", None)).model_dump(mode="json"),
            "out": str(self.out),
        })

    # --- training -----------------------------------------------------------------------

    def _schedule(self, lr: Optional[float]) -> tuple[str, dict]:
        from fastcourse.train.schedules import SCHEDULES
        import inspect

        name, args = self.schedule_name, dict(self.schedule_args)
        if lr is not None:
            params = inspect.signature(SCHEDULES.get(name)).parameters
            key = "lr" if "lr" in params else "max_lr" if "max_lr" in params else None
            if key is None:
                raise UsageError(f"schedule {name!r} sets its own rates; fit(n) without lr, or another schedule")
            args[key] = float(lr)
        return name, args

    def _fit(self, epochs: int, schedule: tuple[str, dict], seed: int, phase: str = "", **kwargs):
        from fastcourse.train.trainer import fit

        train = self.train_config(epochs, schedule)
        self._last_schedule = schedule  # what config/save() record
        board = None
        if self.tensorboard:
            board = self.out / self.name / "tensorboard" / (phase or f"call{len(self.results) + 1}")
        with self._scope():
            result = fit(self.model, self.inputs.train, train, seed, augment=self.augment_fn,
                         validation=self.inputs.eval, epochs=epochs if schedule[0] != "phases" else None,
                         tensorboard_dir=board, **kwargs)
        self.results.append(result)
        return result

    def fit(self, n_epochs: Optional[int] = None, lr: Optional[float] = None):
        """Train `n_epochs` with the learner's schedule (constant `lr` by default) stretched to them."""
        schedule = self._schedule(lr)
        if n_epochs is None and schedule[0] != "phases":
            n_epochs = 1
        return self._fit(int(n_epochs or 0), schedule, self._call_seed())

    def fit_one_cycle(self, n_epochs: int, max_lr: float = 1e-2, **one_cycle_args: Any):
        """fastai's fit_one_cycle: the one_cycle schedule over `n_epochs` peaking at `max_lr`."""
        return self._fit(int(n_epochs), ("one_cycle", {"max_lr": float(max_lr), **one_cycle_args}),
                         self._call_seed())

    def fine_tune(self, epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1, lr_mult: float = 100.0,
                  frozen_up_to: str = "head"):
        """fastai's fine_tune, as the `finetune` task does it: the body frozen for `freeze_epochs`
        at `base_lr`, then everything for `epochs` at half the rate, spread over the layer groups
        from 1/lr_mult (first block) to 1 (head). Each phase is a trainer call of its own."""
        from fastcourse.models.surgery import layer_groups, set_trainable
        from fastcourse.train.optimizers import spread_multipliers
        from fastcourse.train.trainer import FitResult

        groups = layer_groups(self.model)
        if frozen_up_to not in groups:
            raise UsageError(f"frozen_up_to={frozen_up_to!r}: the model's layer groups are {groups}")
        schedule, parts = self._schedule(base_lr), []
        seed = self._call_seed()
        if freeze_epochs:
            set_trainable(self.model, groups[groups.index(frozen_up_to):])
            parts.append(self._fit(freeze_epochs, schedule, seed, "frozen"))
        if epochs:
            set_trainable(self.model, "all")
            parts.append(self._fit(epochs, schedule, seed + 1, "unfrozen", scale=0.5,
                                   lr_multipliers=spread_multipliers(groups, lr_mult)))
        return FitResult.join(parts) if parts else None

    def _call_seed(self) -> int:
        return self.seed + len(self.results)  # the first call uses the run's seed, as a config run

    def lr_find(self, steps: int = 100, min_lr: float = 1e-7, max_lr: float = 10.0, plot: Optional[str] = None):
        """The learning-rate range test on a copy of the weights; `plot` saves the curve there."""
        from fastcourse.train.lr_find import lr_find

        with self._scope():
            self.lr_finder = lr_find(self.model, self.inputs.train, int(self._train["batch_size"]), self.seed,
                                     self.augment_fn, min_lr, max_lr, steps, str(self._train["optimizer"]))
        if plot:
            self.lr_finder.plot(plot)
        if self._train.get("verbose", 1):
            print(f"fastcourse: lr_find: suggested {self.lr_finder.suggestion:.2e} "
                  f"(lowest loss at {self.lr_finder.min_loss_lr:.2e})", flush=True)
        return self.lr_finder

    def ensemble(self, n: int = 5, epochs: Optional[int] = None, lr: Optional[float] = None,
                 one_cycle: bool = False) -> dict:
        """Train `n` members (seeds seed, seed+1, ...), each from fresh initial weights (the builder
        again, or keras.models.clone_model), with the same data, augmentation and schedule; the
        learner's model becomes their average (one Keras model). Returns each member's and the
        ensemble's accuracy and loss per combination rule (fastcourse.run.ensemble.summarize)."""
        import keras

        from fastcourse.models.ensemble import average_members
        from fastcourse.run import records
        from fastcourse.run.ensemble import summarize
        from fastcourse.train.trainer import FitResult, evaluate

        if n < 1:
            raise UsageError(f"ensemble(n={n}): give at least one member")
        template, members, metrics, probs, parts = self.model, [], [], [], []
        for i in range(n):
            self._start(self.seed + i)
            if isinstance(self.model_name, str) and self.model_name in _registered_models():
                self.model = self._build(self.model_name)
            else:
                with self._scope():
                    self.model = keras.models.clone_model(template)
            schedule = ("one_cycle", {"max_lr": float(lr or 1e-2)}) if one_cycle else self._schedule(lr)
            n_epochs = int(epochs or (1 if schedule[0] != "phases" else 0))
            result = self._fit(n_epochs, schedule, self.seed + i, f"member{i}")
            self.results.pop()
            parts.append(result)
            ev = evaluate(self.model, self.inputs.eval)
            probs.append(ev["probs"])
            metrics.append({**records.evaluation(self.inputs.eval_split, ev["accuracy"], ev["loss"]),
                            "seed": self.seed + i, "epochs": len(result.epoch_seconds),
                            "train_seconds": result.train_seconds})
            members.append(self.model)
            if self._train.get("verbose", 1):
                print(f"fastcourse: ensemble member {i + 1}/{n} (seed {self.seed + i}): "
                      f"accuracy {ev['accuracy']:.4f}, loss {ev['loss']:.4f}", flush=True)
        self.members = members
        self.model = average_members(members, name=f"{self.name}_ensemble")
        last = parts[-1]
        self.results.append(FitResult(last.history, last.epoch_seconds, last.images_per_epoch,
                                      last.steps_per_epoch, {"ensemble_members": n}))
        labels = np.asarray(self.inputs.eval.labels)
        self.ensemble_summary = summarize(np.stack(probs), labels if labels.ndim == 1 else labels.argmax(1),
                                          metrics, self.inputs.eval_split)
        return self.ensemble_summary

    # --- using the model ----------------------------------------------------------------

    def _source(self, data):
        from fastcourse.data.sources import ArraySource, FolderSource, Source

        if data is None:
            return self.inputs.eval, None
        if isinstance(data, Source):
            return data, None
        if isinstance(data, (str, os.PathLike)):
            from fastcourse.results.predict import list_images

            folder = Path(data)
            files = list_images(folder)
            size = (int(self.inputs.input_shape[0]), int(self.inputs.input_shape[1]))
            return FolderSource([str(folder / f) for f in files], None, self.inputs.num_classes, size), files
        x = np.asarray(data)
        if x.ndim == len(self.inputs.input_shape):
            x = x[None]
        return ArraySource(x, None, self.inputs.num_classes), None

    def predict(self, data: Any = None, tta: int = 0, batch_size: int = 64, augment: Spec = None):
        """Class probabilities (N, classes) for `data` (default: the evaluation split; a Source, an
        array of images, or a folder of images), the mean over the clean images and `tta`
        augmented copies (the learner's augmentation, or `augment`). For a folder, a
        fastcourse.results.predict.Predictions with the file names (relative to the folder)."""
        from fastcourse.results.predict import Predictions, predict_images

        source, files = self._source(data)
        augmenter = self._augment(augment)[0] if augment is not None else self.augment_fn
        probs = predict_images(self.model, source.batches(batch_size, labels=False), augmenter if tta else None,
                               tta, self.seed, progress=False)
        if files is not None:
            return Predictions(list(files), probs, list(self.inputs.class_names))
        return probs

    def evaluate(self, tta: int = 0) -> dict:
        """Loss and accuracy on the evaluation split (clean, or with `tta` augmented copies)."""
        from fastcourse.train.trainer import scores

        result = scores(self.predict(tta=tta), np.asarray(self.inputs.eval.labels))
        return {"loss": result["loss"], "accuracy": result["accuracy"], "probs": result["probs"]}

    def show_results(self, n: int = 4, out_dir: Optional[str | os.PathLike] = None, tta: int = 0,
                     show: Optional[list[str]] = None) -> dict:
        """The lesson's views of the evaluation predictions (random correct/incorrect, most
        confident per class, most uncertain, confusion matrix, augmented copies), as PNGs in
        `out_dir` (default OUT/<name>/views); shown inline in a notebook. Returns their paths."""
        from fastcourse.results import views

        out_dir = Path(out_dir) if out_dir is not None else self.out / self.name / "views"
        probs = self.predict(tta=tta)
        labels = np.asarray(self.inputs.eval.labels)
        labels = labels if labels.ndim == 1 else labels.argmax(1)
        names = list(self.inputs.class_names)
        if self.inputs.eval_files is not None:
            first = self.inputs.eval_files[0]
            size = int(self.inputs.input_shape[0])
            shown = views.write_views(Path("/"), list(self.inputs.eval_files), labels, probs, names, out_dir, n=n,
                                      seed=self.seed, augment=self.augment_fn,
                                      augment_image=(Path(first).name, views.load_display_image(first, size)),
                                      split=self.inputs.eval_split)
        else:
            shown = self._array_views(labels, probs, names, out_dir, n)
        _display([shown["files"][k] for k in (show or ["random_correct", "random_incorrect", "most_uncertain",
                                                        "confusion_matrix"]) if k in shown["files"]])
        return shown

    def _array_views(self, labels, probs, names, out_dir: Path, n: int) -> dict:
        from fastcourse.results import views
        from fastcourse.run import plots

        x = self.inputs.eval.x
        picks = {"random_correct": views.random_correct(labels, probs, n, self.seed),
                 "random_incorrect": views.random_incorrect(labels, probs, n, self.seed),
                 "most_uncertain": views.most_uncertain(probs, n)}
        files = {}
        for view, idx in picks.items():
            cells = [(np.squeeze(x[i]).astype(np.uint8),
                      f"{names[labels[i]]} -> {names[int(probs[i].argmax())]} ({probs[i].max():.2f})") for i in idx]
            files[view] = views.plot_grid([cells], out_dir / f"{view}.png", view.replace("_", " "))
        cm = plots.confusion_matrix(labels, probs.argmax(1), len(names))
        accuracy = float(np.trace(cm) / max(1, cm.sum()))
        files["confusion_matrix"] = plots.plot_confusion_matrix(cm, names, out_dir / "confusion_matrix.png",
                                                                f"{self.inputs.eval_split} accuracy {accuracy:.4f} "
                                                                f"on {len(labels)} images")
        return {"accuracy": accuracy, "confusion_matrix": cm, "files": files}

    def save(self, run_dir: Optional[str | os.PathLike] = None) -> Path:
        """Write the run's artifacts into `run_dir` (default OUT/<name>), as a config run does:
        config.yaml, model.keras, metrics.json, history.csv, eval_probs.npy, the plots."""
        from fastcourse import io
        from fastcourse.data.sources import steps_per_epoch
        from fastcourse.run.artifacts import write_run
        from fastcourse.train.trainer import FitResult, evaluate

        run_dir = Path(run_dir) if run_dir is not None else self.out / self.name
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.config
        io.write_text(run_dir / "config.yaml", cfg.to_yaml())
        result = (FitResult.join(self.results) if self.results else
                  FitResult({}, [], len(self.inputs.train), steps_per_epoch(len(self.inputs.train),
                                                                            cfg.train.batch_size)))
        extra: dict[str, Any] = {"front_door": "learner"}
        if self.members:
            extra["ensemble"] = {k: v for k, v in self.ensemble_summary.items() if k != "members"}
        write_run(run_dir, cfg, self.inputs, self.model, result, evaluate(self.model, self.inputs.eval), extra)
        return run_dir

    def __repr__(self) -> str:
        return (f"Learner({self.model_name!r}, {self.inputs.describe()}, augment={self.augment_name!r}, "
                f"schedule={self.schedule_name!r} {self.schedule_args}, seed={self.seed})")


def _registered_models() -> list[str]:
    from fastcourse.models import MODELS

    return MODELS.names()


def _display(paths: list[Path]) -> None:
    """Show PNGs inline when running in IPython; nothing otherwise."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is None:
        return
    for path in paths:
        display(Image(str(path)))
