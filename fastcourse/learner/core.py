"""The Learner: the notebook front door, in the spirit of fastai's, on THE trainer the YAML runs use.

One class, the notebook's whole API, so over our ~400-line guide; what is not the Learner's own
state lives beside it (show.py: figures and inline display; export.py: export and load_learner).

Every argument is a plain value or a builder's result; no config object is needed::

    import fastcourse

    learn = fastcourse.Learner.from_folder("photos", "vgg16", image_size=224, valid_pct=0.2)
    learn = fastcourse.Learner.from_dataset("mnist_sample", "cnn", augment="course", seed=0)
    learn.lr_find().suggestion               # the curve is drawn inline in a notebook
    learn.fit_one_cycle(3, lr_max=1e-2)
    probs, targets = learn.get_preds()       # the evaluation split (fastai's get_preds)
    label, index, probs = learn.predict("one.jpg")
    learn.show_results()
    learn.save("runs/my-cnn")                # the same artifacts as `fastcourse run`
    learn.export("my-model")                 # fastcourse.load_learner("my-model").predict(...)

`model` is a registered builder's name (built here after seeding, with the data's input shape,
classes and pixel statistics: exactly what a config run builds) or any keras.Model. `data` is a
dataset object (DATASETS.get(name)(...): arrays or an image folder), a dataset name, a folder of
images (its valid/ split, or `valid_pct` of train/ held out), or a Source (with `valid=` another
Source). `callbacks=` (Keras callbacks) and `metrics=` (Keras metrics, beside accuracy) go to
every training call. `augment` and `schedule` are a registered name, a dict
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
from fastcourse.learner import show as _show

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
        self,
        model: Union[str, Any],
        data: Any,
        *,
        augment: Spec = None,
        schedule: Spec = None,
        lr: float = 1e-3,
        batch_size: int = 64,
        optimizer: str = "adam",
        seed: int = 0,
        valid: Any = None,
        train_limit: Optional[int] = None,
        test_limit: Optional[int] = None,
        model_args: Optional[dict] = None,
        name: str = "learner",
        tensorboard: bool = False,
        verbose: int = 1,
        out: str | os.PathLike = "runs",
        image_size: Union[int, tuple, list] = 224,
        valid_pct: Optional[float] = 0.2,
        callbacks: Optional[list] = None,
        metrics: Optional[list] = None,
        **train_args: Any,
    ):
        if isinstance(model, str):
            _known_model(model)  # before the data loads: a typo fails at once
        _check_keywords(train_args)
        _bounded("Learner", lr=lr)
        self.seed, self.name, self.out = int(seed), name, Path(out)
        self.callbacks, self.metrics = list(callbacks or []), list(metrics or [])
        self._image_size, self._valid_pct = _size(image_size), valid_pct  # for a folder path
        self._data_spec: dict = {}
        self.exported: Optional[dict] = None  # learner.json, for a learner from load_learner
        self.lr = float(lr)
        self.schedule_name, self.schedule_args = _named(schedule, "constant", "schedule")
        if self.schedule_name == "constant":
            self.schedule_args.setdefault("lr", self.lr)
        self._train = dict(batch_size=batch_size, optimizer=optimizer, verbose=verbose, **train_args)
        _train_settings("Learner", self._train)  # a bad value fails here, naming the argument
        self._said: set[str] = set()  # what _say printed: each conversion of given images once
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

        if isinstance(data, os.PathLike) or (isinstance(data, str) and data not in DATASETS.names()):
            data = self._open_folder(data)
        elif isinstance(data, str):
            data = DATASETS.get(data)()
        if isinstance(data, Inputs):
            return data, data.name
        if isinstance(data, Source):
            if valid is None:
                raise UsageError("Learner(model, source): give valid=<a labelled Source> to evaluate on")
            train = data.take(train_limit) if train_limit else data
            valid = valid.take(test_limit) if test_limit else valid
            mean, std = (
                (float(train.x.mean()), float(train.x.std() or 1.0)) if isinstance(train, ArraySource) else (0.0, 1.0)
            )
            names = [str(i) for i in range(train.num_classes)]
            return Inputs(
                "source", train.kind, names, train, valid, "valid", tuple(train.input_shape), mean, std
            ), "source"
        if train_limit or test_limit:  # a folder's per class, from the learner's seed, as a config run's
            from fastcourse.data.folders import FolderDataset

            data = (
                data.limit(train_limit, test_limit, seed=self.seed)
                if isinstance(data, FolderDataset)
                else data.limit(train_limit, test_limit)
            )
        return inputs_for(None, data), getattr(data, "name", type(data).__name__)

    def _open_folder(self, path):
        """A folder of images as `image_folder` opens it (what a config's data section names)."""
        from fastcourse.data import DATASETS

        if not Path(path).is_dir():
            raise UsageError(
                f"data={str(path)!r}: neither a registered dataset ({', '.join(DATASETS.names())}) "
                "nor a folder of images; give one of those names or a folder path"
            )
        size, pct = self._image_size, self._valid_pct
        self._data_spec = {
            "name": "image_folder",
            "path": str(path),
            "image_size": list(size),
            **({"valid_fraction": float(pct), "split_seed": self.seed} if pct else {}),
        }
        args = {k: v for k, v in self._data_spec.items() if k != "name"}
        return DATASETS.get("image_folder")(**args)

    # --- fastai's constructors ----------------------------------------------------------

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike,
        model: Union[str, Any],
        *,
        image_size: Union[int, tuple] = 224,
        valid_pct: Optional[float] = 0.2,
        augment: Spec = None,
        batch_size: int = 64,
        seed: int = 0,
        **kwargs: Any,
    ) -> "Learner":
        """fastai's ImageDataLoaders.from_folder + vision_learner: class sub-folders under
        train/ (or directly under `path`), evaluated on valid/ when there is one, else on
        `valid_pct` of the training images held out (stratified, from `seed`). Images are
        resized to `image_size` (an int for a square, or (height, width))."""
        return cls(
            model,
            Path(path),
            image_size=image_size,
            valid_pct=valid_pct,
            augment=augment,
            batch_size=batch_size,
            seed=seed,
            **kwargs,
        )

    @classmethod
    def from_arrays(
        cls,
        x_train,
        y_train,
        x_valid,
        y_valid,
        model: Union[str, Any],
        *,
        class_names: Optional[list[str]] = None,
        name: str = "arrays",
        **kwargs: Any,
    ) -> "Learner":
        """Images as arrays (N, H, W[, C]) of 0..255 (or 0..1) with integer or one-hot labels;
        `class_names` default to "0", "1", ... The valid arrays are the evaluation split."""
        from fastcourse.data.arrays import _make

        y = np.asarray(y_train)
        n = (
            len(class_names)
            if class_names
            else int(y.shape[1] if y.ndim == 2 and y.shape[1] > 1 else max(int(y.max()), int(np.max(y_valid))) + 1)
        )
        names = [str(c) for c in class_names] if class_names else [str(i) for i in range(n)]
        try:
            data = _make(
                name,
                {"x_train": x_train, "y_train": y_train, "x_test": x_valid, "y_test": y_valid},
                names,
                "arrays given to Learner.from_arrays",
            )
        except ValueError as exc:
            raise UsageError(f"Learner.from_arrays: {exc}") from None
        return cls(model, data, name=name, **kwargs)

    @classmethod
    def from_dataset(
        cls, dataset: str, model: Union[str, Any], *, dataset_args: Optional[dict] = None, **kwargs: Any
    ) -> "Learner":
        """A registered dataset by name (`fastcourse list` shows them), opened with `dataset_args`."""
        from fastcourse.data import DATASETS

        return cls(model, DATASETS.get(dataset)(**(dataset_args or {})), **kwargs)

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
            return float32_outputs(
                build_model(name, i.input_shape, i.num_classes, mean=i.mean, std=i.std, **self.model_args)
            )

    def _model(self, model):
        import keras

        if isinstance(model, str):
            return self._build(model), model
        if isinstance(model, keras.Model):
            out = int(model.output_shape[-1])
            if out != self.inputs.num_classes:
                raise UsageError(
                    f"the model has {out} outputs but the data has {self.inputs.num_classes} "
                    f"classes {self.inputs.class_names}; give it a matching top"
                )
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

        return training_scope(self._train.get("precision", "auto"), self._train.get("distribute", "none"))

    # --- the equivalent config ----------------------------------------------------------

    def train_config(self, epochs: int, schedule: Optional[tuple[str, dict]] = None):
        """The TrainConfig of one training call (the one trainer reads nothing else)."""
        from pydantic import ValidationError

        from fastcourse.config import TrainConfig

        name, args = schedule or (self.schedule_name, self.schedule_args)
        extra = {} if name == "phases" else {"epochs": int(epochs)}
        try:
            return TrainConfig(**self._train, **extra, tensorboard=self.tensorboard, schedule={"name": name, **args})
        except ValidationError as exc:
            raise _one_line("training", exc) from None

    @property
    def config(self):
        """The ExperimentConfig a `fastcourse run` of this learner would have (what save() records)."""
        from fastcourse.config import ExperimentConfig

        epochs = max(1, sum(len(r.epoch_seconds) for r in self.results))
        data = {**(self._data_spec or {"name": self.data_name}), **{k: v for k, v in self.data_args.items() if v}}
        return ExperimentConfig.model_validate(
            {
                "name": self.name,
                "seed": self.seed,
                "task": {"name": "learner"},
                "data": data,
                "model": {"name": self.model_name, **self.model_args},
                "augment": {"name": self.augment_name, **self.augment_args},
                "train": self.train_config(epochs, getattr(self, "_last_schedule", None)).model_dump(mode="json"),
                "out": str(self.out),
            }
        )

    # --- training -----------------------------------------------------------------------

    def _schedule(self, lr: Optional[float]) -> tuple[str, dict]:
        import inspect

        from fastcourse.train.schedules import SCHEDULES

        name, args = self.schedule_name, dict(self.schedule_args)
        if lr is not None:
            params = inspect.signature(SCHEDULES.get(name)).parameters
            key = "lr" if "lr" in params else "max_lr" if "max_lr" in params else None
            if key is None:
                raise UsageError(f"schedule {name!r} sets its own rates; fit(n) without lr, or another schedule")
            args[key] = float(lr)
        return name, args

    def _fit(
        self,
        epochs: int,
        schedule: tuple[str, dict],
        seed: int,
        phase: str = "",
        callbacks: Optional[list] = None,
        **kwargs,
    ):
        from fastcourse.train.trainer import fit

        if self.inputs.train is None:
            raise UsageError(
                "this learner was loaded for prediction (load_learner) and has no data to train on; "
                "build one with Learner.from_folder/from_arrays and learn.load(...)"
            )
        train = self.train_config(epochs, schedule)
        self._last_schedule = schedule  # what config/save() record
        note = self.inputs.progress_note(train) if not getattr(self, "_split_named", False) else None
        if note:  # once per learner: Keras calls the figures val_* whatever split they are
            print(note, flush=True)
            self._split_named = True
        board = None
        if self.tensorboard:
            board = self.out / self.name / "tensorboard" / (phase or f"call{len(self.results) + 1}")
        with self._scope():
            result = fit(
                self.model,
                self.inputs.train,
                train,
                seed,
                augment=self.augment_fn,
                validation=self.inputs.eval,
                epochs=epochs if schedule[0] != "phases" else None,
                tensorboard_dir=board,
                callbacks=[*self.callbacks, *(callbacks or [])],
                metrics=self.metrics,
                **kwargs,
            )
        self.results.append(result)
        return result

    def fit(self, n_epochs: Optional[int] = None, lr: Optional[float] = None, callbacks: Optional[list] = None):
        """Train `n_epochs` with the learner's schedule (constant `lr` by default) stretched to them;
        `callbacks` (Keras callbacks) join the learner's for this call."""
        if n_epochs is not None:
            _epochs("fit", "n_epochs", n_epochs)
        _bounded("fit", lr=lr)
        schedule = self._schedule(lr)
        if n_epochs is None and schedule[0] != "phases":
            n_epochs = 1
        return self._fit(int(n_epochs or 0), schedule, self._call_seed(), callbacks=callbacks)

    def fit_one_cycle(
        self,
        n_epochs: int,
        lr_max: Optional[float] = None,
        *,
        max_lr: Optional[float] = None,
        callbacks: Optional[list] = None,
        **one_cycle_args: Any,
    ):
        """fastai's fit_one_cycle: the one_cycle schedule over `n_epochs` peaking at `lr_max`
        (default 1e-2; `max_lr` is the same, fastcourse's older name)."""
        if lr_max is not None and max_lr is not None and float(lr_max) != float(max_lr):
            raise UsageError(f"fit_one_cycle: lr_max={lr_max} and max_lr={max_lr} are the same setting; give one")
        _epochs("fit_one_cycle", "n_epochs", n_epochs)
        _bounded("fit_one_cycle", lr_max=lr_max, max_lr=max_lr, **one_cycle_args)
        peak = float(lr_max if lr_max is not None else max_lr if max_lr is not None else 1e-2)
        return self._fit(
            int(n_epochs), ("one_cycle", {"max_lr": peak, **one_cycle_args}), self._call_seed(), callbacks=callbacks
        )

    def fine_tune(
        self,
        epochs: int,
        base_lr: float = 2e-3,
        freeze_epochs: int = 1,
        lr_mult: float = 100.0,
        frozen_up_to: str = "head",
    ):
        """fastai's fine_tune, as the `finetune` task does it: the body frozen for `freeze_epochs`
        at `base_lr`, then everything for `epochs` at half the rate, spread over the layer groups
        from 1/lr_mult (first block) to 1 (head). Each phase is a trainer call of its own."""
        from fastcourse.tasks.finetune import first_phase, unfrozen_phase
        from fastcourse.train.trainer import FitResult

        _epochs("fine_tune", "epochs", epochs, least=0)
        _epochs("fine_tune", "freeze_epochs", freeze_epochs, least=0)
        _bounded("fine_tune", base_lr=base_lr, lr_mult=lr_mult)
        schedule, parts = self._schedule(base_lr), []
        seed = self._call_seed()
        if not (freeze_epochs or epochs):
            return None
        # the finetune task's own phases: one sequence for the YAML run and the notebook
        first_phase(
            self.model,
            self.model_name,
            freeze_epochs=freeze_epochs,
            unfreeze_epochs=epochs,
            lr_mult=lr_mult,
            frozen_up_to=frozen_up_to,
        )
        if freeze_epochs:
            parts.append(self._fit(freeze_epochs, schedule, seed, "frozen"))
        if epochs:
            multipliers = unfrozen_phase(self.model, lr_mult)
            parts.append(self._fit(epochs, schedule, seed + 1, "unfrozen", scale=0.5, lr_multipliers=multipliers))
        return FitResult.join(parts) if parts else None

    def _call_seed(self) -> int:
        return self.seed + len(self.results)  # the first call uses the run's seed, as a config run

    def lr_find(
        self,
        steps: int = 100,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        plot: Optional[str] = None,
        suggest: str = "valley",
    ):
        """The learning-rate range test on a copy of the weights, for whatever model the learner
        holds (its frozen layers stay frozen). Returns the result (`.suggestion` by fastai's rule
        `suggest`: valley, slide, minimum or steep; `.suggestions` by every rule; `.lrs`,
        `.losses`); the curve is drawn inline in a notebook, and saved to `plot` when given. On a
        curve with no real descent `.suggestion` is None and one line says why."""
        from fastcourse.train.lr_find import lr_find

        if self.inputs.train is None:
            raise UsageError("lr_find: this learner was loaded for prediction and has no training data")
        with self._scope():
            self.lr_finder = lr_find(
                self.model,
                self.inputs.train,
                int(self._train["batch_size"]),
                self.seed,
                self.augment_fn,
                min_lr,
                max_lr,
                steps,
                str(self._train["optimizer"]),
                suggest_by=suggest,
            )
        if plot:
            self.lr_finder.plot(plot)
        _show.display_figure(self.lr_finder.figure(f"learning-rate range test: {self.model_name} on {self.data_name}"))
        if self._train.get("verbose", 1) or self.lr_finder.suggestion is None:
            print(f"fastcourse: {self.lr_finder.message()}", flush=True)
        return self.lr_finder

    def ensemble(
        self, n: int = 5, epochs: Optional[int] = None, lr: Optional[float] = None, one_cycle: bool = False
    ) -> dict:
        """Train `n` members (seeds seed, seed+1, ...), each from fresh initial weights (the builder
        again, or keras.models.clone_model), with the same data, augmentation and schedule; the
        learner's model becomes their average (one Keras model). Returns each member's and the
        ensemble's accuracy and loss per combination rule (fastcourse.run.ensemble.summarize)."""
        import keras

        from fastcourse.models.ensemble import average_members
        from fastcourse.run import records
        from fastcourse.run.ensemble import member_loop, summarize
        from fastcourse.train.trainer import FitResult, evaluate

        if n < 1:
            raise UsageError(f"ensemble(n={n}): give at least one member")
        if epochs is not None:
            _epochs("ensemble", "epochs", epochs)
        _bounded("ensemble", lr=lr)
        template, members, probs, parts = self.model, [], [], []

        def train_one(i: int, seed: int) -> dict:
            self._start(seed)
            if isinstance(self.model_name, str) and self.model_name in _registered_models():
                self.model = self._build(self.model_name)
            else:
                with self._scope():
                    self.model = keras.models.clone_model(template)
            schedule = ("one_cycle", {"max_lr": float(lr or 1e-2)}) if one_cycle else self._schedule(lr)
            n_epochs = int(epochs or (1 if schedule[0] != "phases" else 0))
            result = self._fit(n_epochs, schedule, seed, f"member{i}")
            self.results.pop()
            parts.append(result)
            ev = evaluate(self.model, self.inputs.eval)
            probs.append(ev["probs"])
            members.append(self.model)
            return {
                **records.evaluation(self.inputs.eval_split, ev["accuracy"], ev["loss"]),
                "seed": seed,
                "epochs": len(result.epoch_seconds),
                "train_seconds": result.train_seconds,
            }

        seeds = [self.seed + i for i in range(n)]
        metrics = member_loop(self.name, seeds, range(n), train_one, verbose=bool(self._train.get("verbose", 1)))
        self.members = members
        self.model = average_members(members, name=f"{self.name}_ensemble")
        last = parts[-1]
        self.results.append(
            FitResult(
                last.history, last.epoch_seconds, last.images_per_epoch, last.steps_per_epoch, {"ensemble_members": n}
            )
        )
        labels = np.asarray(self.inputs.eval.labels)
        self.ensemble_summary = summarize(
            np.stack(probs), labels if labels.ndim == 1 else labels.argmax(1), metrics, self.inputs.eval_split
        )
        return self.ensemble_summary

    # --- using the model ----------------------------------------------------------------

    def _source(self, data):
        """`data` as a Source: None (the evaluation split), a split's name, a Source, a folder of
        images (with its file names), one image file, or images as an array."""
        from fastcourse.data.sources import ArraySource, Source

        if data is None:
            data = self.inputs.eval_split if self.inputs.eval is not None else None
        if isinstance(data, str) and data in ("valid", "test", "eval", "train"):
            split = self.inputs.train if data == "train" else self.inputs.eval
            if split is None:
                raise UsageError(
                    f"get_preds({data!r}): this learner was loaded for prediction and holds no data; "
                    "give images (a folder, a file or an array)"
                )
            if data in ("valid", "test") and data != self.inputs.eval_split:
                raise UsageError(
                    f"get_preds({data!r}): this learner evaluates on its {self.inputs.eval_split!r} "
                    f"split; give {self.inputs.eval_split!r} (or 'train')"
                )
            return split, None
        if isinstance(data, Source):
            return data, None
        if data is None:
            raise UsageError("give images to predict: a folder, a file or an array")
        if isinstance(data, (str, os.PathLike)):
            from fastcourse.results.predict import list_images

            path = Path(data)
            if path.is_file():
                return self._files([str(path)]), None
            if not path.is_dir():
                raise UsageError(f"{path}: no such image file or folder")
            files = list_images(path)
            return self._files([str(path / f) for f in files]), files
        from fastcourse.data.pipeline import conform

        x = np.asarray(data)
        if x.ndim == 2:  # one grey image without its channel axis
            x = x[None, ..., None]
        elif x.ndim == 3:  # one image (H, W, C), or grey images without their channel axis (N, H, W)
            x = x[None] if x.shape[-1] in (1, 3, 4) else x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or np.issubdtype(x.dtype, np.complexfloating):
            raise UsageError(
                f"images of shape {np.shape(data)}: give (H, W), (H, W, C) or (N, H, W[, C]) arrays of "
                "0-255 pixels with C 1 (grey), 3 (RGB) or 4 (RGBA), or image files"
            )
        x, notes = conform(x, self.inputs.input_shape)
        self._say(notes)
        return ArraySource(x, None, self.inputs.num_classes), None

    def _files(self, files: list[str]):
        """Image files as the data pipeline reads them for this model: decoded, resized (bilinear)
        to its size, RGB or grey as it takes them; each conversion said once (_say)."""
        from fastcourse.data.images import scan
        from fastcourse.data.sources import FolderSource

        h, w, channels = (int(d) for d in self.inputs.input_shape)
        statuses = scan(files, "fast")
        readable = [st for st in statuses if st.problem is None]
        notes = []
        if channels == 1 and any(not st.grey for st in readable):
            notes.append("colour images converted to grey")
        if channels == 3 and any(st.grey for st in readable):
            notes.append("grey images converted to RGB")
        other = sorted({st.size for st in readable} - {(h, w)})
        if other:
            sizes = ", ".join(f"{a}x{b}" for a, b in other[:3]) + (", ..." if len(other) > 3 else "")
            notes.append(f"images of {sizes} resized to {h}x{w} (bilinear)")
        self._say(notes)
        pillow = np.array([st.pillow or st.problem is not None for st in statuses], bool)
        return FolderSource(files, None, self.inputs.num_classes, (h, w), pillow=pillow, channels=channels)

    def _say(self, notes: list[str]) -> None:
        """One line per conversion of the images given to predict, the first time it happens."""
        h, w, c = (int(d) for d in self.inputs.input_shape)
        for note in notes:
            if note not in self._said:
                self._said.add(note)
                print(f"fastcourse: {note}: the model takes {h}x{w}x{c} images, as it was trained", flush=True)

    def _probs(self, source, tta: int, batch_size: int, augment: Spec):
        from fastcourse.results.predict import predict_images

        augmenter = self._augment(augment)[0] if augment is not None else self.augment_fn
        if tta and augmenter is None:
            raise UsageError(f"tta={tta}: this learner has no augmentation; give augment=... for the copies")
        return predict_images(
            self.model,
            source.batches(batch_size, labels=False),
            augmenter if tta else None,
            tta,
            self.seed,
            progress=False,
        )

    def get_preds(self, split: Any = None, tta: int = 0, batch_size: int = 64, augment: Spec = None):
        """fastai's get_preds: `(probs, targets)` for a whole split: None (the evaluation
        split: "valid" for a folder, "test" for array datasets), that split's name, "train",
        a Source, a folder or an array of images.
        `probs` is (N, classes), the mean over the clean images and `tta` augmented copies;
        `targets` the integer labels, or None for unlabelled images."""
        source, _ = self._source(split)
        probs = self._probs(source, tta, batch_size, augment)
        labels = getattr(source, "labels", None)
        if labels is not None:
            labels = np.asarray(labels)
            labels = labels.argmax(1) if labels.ndim == 2 else labels.astype(np.int64)
        return probs, labels

    def predict(self, item: Any, tta: int = 0, augment: Spec = None):
        """fastai's predict, for ONE image (a file path, or an array (H, W[, C]) of 0..255 pixels):
        `(label, index, probabilities)`. A folder gives a fastcourse.results.predict.Predictions
        for every image in it (file names relative to the folder); a split, see get_preds."""
        from fastcourse.results.predict import Predictions

        if item is None:
            raise UsageError("predict(item): give one image (a file or an array); get_preds() gives a whole split")
        source, files = self._source(item)
        probs = self._probs(source, tta, 64, augment)
        if files is not None:
            return Predictions(list(files), probs, list(self.inputs.class_names))
        if len(probs) != 1:
            raise UsageError(f"predict: {len(probs)} images given; predict takes one, get_preds(images) many")
        index = int(probs[0].argmax())
        return self.inputs.class_names[index], index, probs[0]

    def evaluate(self, tta: int = 0) -> dict:
        """Loss and accuracy on the evaluation split (clean, or with `tta` augmented copies)."""
        from fastcourse.train.metrics import scores

        probs, _ = self.get_preds(tta=tta)
        result = scores(probs, np.asarray(self.inputs.eval.labels))
        return {"loss": result["loss"], "accuracy": result["accuracy"], "probs": result["probs"]}

    def show_batch(
        self, n: int = 9, split: str = "train", augmented: bool = True, path: Optional[str | os.PathLike] = None
    ):
        """fastai's show_batch: `n` images of a split with their labels (the training images as
        augmented for training, unless augmented=False). Drawn inline in a notebook; saved to
        `path` when given. Returns the matplotlib Figure (made without pyplot)."""
        from fastcourse.io import save_figure

        source, _ = self._source(split)
        augment = self.augment_fn if (augmented and split == "train") else None
        x, y = next(iter(source.batches(max(1, n), shuffle=True, seed=self.seed, augment=augment)))
        x, y = np.asarray(x)[:n], np.asarray(y)[:n]
        labels = y.argmax(1) if y.ndim == 2 else y
        names = list(self.inputs.class_names)
        where = f"{split}{', augmented' if augment is not None else ''}"
        fig = _show.image_grid(x, [names[int(i)] for i in labels], f"{self.data_name}: {len(x)} {where} images")
        if path is not None:
            save_figure(fig, path)
        _show.display_figure(fig)
        return fig

    def show_results(
        self, n: int = 4, out_dir: Optional[str | os.PathLike] = None, tta: int = 0, show: Optional[list[str]] = None
    ) -> dict:
        """The lesson's views of the evaluation predictions (random correct/incorrect, most
        confident per class, most uncertain, confusion matrix, augmented copies), as PNGs in
        `out_dir` (default OUT/<name>/views); shown inline in a notebook. Returns their paths."""
        from fastcourse.results.predict import split_predictions
        from fastcourse.results.views import write_views

        out_dir = Path(out_dir) if out_dir is not None else self.out / self.name / "views"
        probs, labels = self.get_preds(tta=tta)
        i = self.inputs
        preds = split_predictions(i, i.eval, probs, i.class_names, labels, i.eval_split)
        first = None
        if self.augment_fn is not None:  # the first evaluation image as the model sees it
            first = (preds.filenames[0], np.asarray(next(iter(i.eval.take(1).batches(1, labels=False))))[0])
        shown = write_views(
            preds.folder,
            preds.filenames,
            labels,
            probs,
            preds.class_names,
            out_dir,
            n=n,
            seed=self.seed,
            augment=self.augment_fn,
            augment_image=first,
            display=preds.display_image,
            split=i.eval_split,
        )
        shown["files"] = {view: Path(file) for view, file in shown["files"].items()}
        wanted = show or ["random_correct", "random_incorrect", "most_uncertain", "confusion_matrix"]
        _show.display_files([shown["files"][k] for k in wanted if k in shown["files"]])
        return shown

    # --- fastai's ClassificationInterpretation, on the evaluation split -----------------

    def top_losses(self, k: Optional[int] = None, largest: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """fastai's `top_losses`: (losses, indices) of the `k` evaluation images with the
        largest loss (smallest with largest=False), that loss first; every image by default."""
        from fastcourse.results.views import top_losses

        probs, labels = self.get_preds()
        return top_losses(labels, probs, k, largest)

    def plot_top_losses(self, k: int = 9, largest: bool = True, path: Optional[str | os.PathLike] = None) -> Path:
        """fastai's `plot_top_losses`: the `k` top-loss evaluation images, each titled
        predicted/actual / loss / probability of the actual class; saved to `path` (default
        OUT/<name>/views/top_losses.png) and shown inline in a notebook."""
        from fastcourse.results.predict import split_predictions
        from fastcourse.results.views import plot_top_losses

        probs, labels = self.get_preds()
        i = self.inputs
        preds = split_predictions(i, i.eval, probs, i.class_names, labels, i.eval_split)
        target = Path(path) if path is not None else self.out / self.name / "views" / "top_losses.png"
        png, _ = plot_top_losses(preds.display_image, labels, probs, i.class_names, target, k, largest, i.eval_split)
        _show.display_files([png])
        return png

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """fastai's `most_confused`: [(actual, predicted, count)] off the diagonal of the
        evaluation split's confusion matrix, at least `min_val` times, most frequent first."""
        from fastcourse.results.views import most_confused

        probs, labels = self.get_preds()
        return most_confused(labels, probs, self.inputs.class_names, min_val)

    def save(self, run_dir: Optional[str | os.PathLike] = None, overwrite: bool = False) -> Path:
        """Write the run's artifacts into `run_dir` (default OUT/<name>), as a config run does:
        config.yaml, model.keras, metrics.json, history.csv, eval_probs.npy, the plots. A
        folder that already holds files is never written over unless overwrite=True: the
        default one is then stamped (OUT/<name>-<date>-<time>), a given one is refused."""
        from fastcourse import io
        from fastcourse.data.sources import steps_per_epoch
        from fastcourse.run import records
        from fastcourse.run.artifacts import write_run
        from fastcourse.run.experiment import new_run_dir
        from fastcourse.train.trainer import FitResult, evaluate

        if self.inputs.eval is None:
            raise UsageError(
                "save: this learner was loaded for prediction and has no data to record a run of; use export(path)"
            )
        target = Path(run_dir) if run_dir is not None else self.out / self.name
        if not overwrite and target.exists() and any(target.iterdir()):
            if run_dir is not None:
                raise UsageError(f"{target}: already holds a saved run; give another folder, or overwrite=True")
            target = new_run_dir(self.out, self.name)
        run_dir = target
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.config
        io.write_text(run_dir / "config.yaml", cfg.to_yaml())
        result = (
            FitResult.join(self.results)
            if self.results
            else FitResult(
                {}, [], len(self.inputs.train), steps_per_epoch(len(self.inputs.train), cfg.train.batch_size)
            )
        )
        extra: dict[str, Any] = {"front_door": "learner"}
        if self.members:
            extra["ensemble"] = {k: v for k, v in self.ensemble_summary.items() if k != "members"}
        metrics = write_run(
            run_dir, cfg, self.inputs, self.model, result, evaluate(self.model, self.inputs.eval), extra
        )
        print(records.result_line(cfg.name, metrics), flush=True)
        if self._train.get("verbose", 1):
            print(f"fastcourse: saved {run_dir}", flush=True)
        return run_dir

    def load(self, path: str | os.PathLike) -> "Learner":
        """The model saved by save() (a run folder) or export() (its folder), or a .keras file,
        loaded in Keras' safe mode in place of the learner's; its classes must match."""
        from fastcourse.run.artifacts import load_model

        path = Path(path)
        file = path / "model.keras" if path.is_dir() else path
        model = load_model(file)
        out = int(model.output_shape[-1])
        if out != self.inputs.num_classes:
            raise UsageError(
                f"{file}: a model with {out} outputs, but this learner has {self.inputs.num_classes} "
                f"classes {self.inputs.class_names}"
            )
        if tuple(model.input_shape[1:]) != tuple(self.inputs.input_shape):
            raise UsageError(
                f"{file}: a model for images of shape {tuple(model.input_shape[1:])}, but this "
                f"learner's are {tuple(self.inputs.input_shape)}"
            )
        self.model = model
        return self

    def export(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """fastai's export: a folder `path` with model.keras (loads in Keras' safe mode) and
        learner.json (class names, image size, preprocessing), read back by
        fastcourse.load_learner(path). No pickle."""
        from fastcourse.learner.export import export_learner

        return export_learner(self, path, overwrite=overwrite)

    def __repr__(self) -> str:
        return (
            f"Learner({self.model_name!r}, {self.inputs.describe()}, augment={self.augment_name!r}, "
            f"schedule={self.schedule_name!r} {self.schedule_args}, seed={self.seed})"
        )


def load_learner(path: str | os.PathLike) -> Learner:
    """fastai's load_learner: a Learner for prediction from a folder learn.export(path) wrote:
    predict(one image), get_preds(images), the class names and preprocessing as exported
    (`learn.exported`). It holds no data: to train on, build a Learner on data and load(path)."""
    from fastcourse.learner.export import read_export

    model, meta, inputs = read_export(path)
    learn = Learner(model, inputs, image_size=inputs.input_shape[:2], valid_pct=None, verbose=0)
    learn.model_name, learn.exported = str(meta.get("model", model.name)), meta
    return learn


def _registered_models() -> list[str]:
    from fastcourse.models import MODELS

    return MODELS.names()


def _known_model(name: str) -> None:
    """A registered builder's name, or one line with the nearest one and the known ones."""
    import difflib

    known = _registered_models()
    if name not in known:
        near = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise UsageError(
            f"model={name!r}: not a registered model{hint} (known: {', '.join(known)}); or give a keras.Model"
        )


# TrainConfig fields the Learner sets itself (per training call, or as its own arguments)
_SET_BY_THE_LEARNER = ("epochs", "schedule", "tensorboard")


def _check_keywords(train_args: dict) -> None:
    """Keywords beyond the Learner's own are training settings (the config's `train` section);
    anything else is a typo, named with the nearest argument (as the CLI names a config key)."""
    import difflib
    import inspect

    from fastcourse.config import TrainConfig

    own = [p for p in inspect.signature(Learner.__init__).parameters if p not in ("self", "train_args")]
    settings = [k for k in TrainConfig.model_fields if k not in _SET_BY_THE_LEARNER]
    for key in train_args:
        if key not in settings:
            near = difflib.get_close_matches(key, own + settings, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise UsageError(
                f"Learner({key}=...): unknown argument{hint} (the Learner's: {', '.join(own)}; "
                f"training settings: {', '.join(settings)})"
            )


def _train_settings(call: str, settings: dict) -> None:
    """The training settings as the config's `train` section checks them; a bad one is one line."""
    from pydantic import ValidationError

    from fastcourse.config import TrainConfig

    try:
        TrainConfig(**settings)
    except ValidationError as exc:
        raise _one_line(call, exc) from None


def _one_line(call: str, exc) -> UsageError:
    """pydantic's first error as `call(key=value): what is wrong`, naming no internal class."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "arguments"
    message = str(err["msg"]).removeprefix("Value error, ")
    return UsageError(f"{call}({key}={err.get('input')!r}): {message}")


def _epochs(call: str, name: str, value: Any, least: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise UsageError(f"{call}({name}={value!r}): give a whole number of epochs, {least} or more")


# the Learner's argument -> the ARG_BOUNDS entry (fastcourse/config.py) that bounds it
_BOUND_AS = {"lr_max": "max_lr", "base_lr": "lr"}


def _bounded(call: str, **values: Any) -> None:
    """Each value inside the bounds a config's same setting has (ARG_BOUNDS), else one line."""
    from fastcourse.config import ARG_BOUNDS

    for name, value in values.items():
        bounds = ARG_BOUNDS.get(_BOUND_AS.get(name, name))
        if value is None or bounds is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not bounds.holds(float(value)):
            raise UsageError(f"{call}({name}={value!r}): out of range; give a value {bounds.allowed()}")


def _size(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        return (image_size, image_size)
    size = tuple(int(s) for s in image_size)
    if len(size) != 2:
        raise UsageError(f"image_size={image_size!r}: give an int (a square) or (height, width)")
    return (size[0], size[1])
