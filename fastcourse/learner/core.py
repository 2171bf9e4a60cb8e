"""The Learner: the notebook front door, in the spirit of fastai's, on THE trainer the YAML runs use.

One class, the notebook's whole API, its jobs in modules of their own: core.py (construction,
the equivalent config, save/load/export), train.py (fit, fit_one_cycle, fine_tune, lr_find,
ensemble), predict.py (get_preds, predict, evaluate), show.py (show_batch, show_results, top
losses), checks.py (each argument checked as a config's same setting), export.py (the folder
export writes and load_learner reads).

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
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from fastcourse.errors import UsageError
from fastcourse.learner import checks
from fastcourse.learner.checks import Spec
from fastcourse.learner.show import Showing
from fastcourse.learner.train import Training

if TYPE_CHECKING:  # for annotations only: importing it at run time would import Keras
    from fastcourse.train.lr_find import LRFinderResult


class Learner(Training, Showing):
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
            checks.known_model(model)  # before the data loads: a typo fails at once
        checks.keywords(train_args, Learner.__init__)
        checks.bounded("Learner", lr=lr)
        self.seed, self.name, self.out = int(seed), name, Path(out)
        self.callbacks, self.metrics = list(callbacks or []), list(metrics or [])
        self._image_size, self._valid_pct = checks.size(image_size), valid_pct  # for a folder path
        self._data_spec: dict = {}
        self.exported: Optional[dict] = None  # learner.json, for a learner from load_learner
        self.lr = float(lr)
        self.schedule_name, self.schedule_args = checks.named(schedule, "constant", "schedule")
        if self.schedule_name == "constant":
            self.schedule_args.setdefault("lr", self.lr)
        self._train = dict(batch_size=batch_size, optimizer=optimizer, verbose=verbose, **train_args)
        checks.train_settings("Learner", self._train)  # a bad value fails here, naming the argument
        self._said: set[str] = set()  # what _say printed: each conversion of given images once
        self.tensorboard = bool(tensorboard)
        self.inputs, self.data_name = self._inputs(data, valid, train_limit, test_limit)
        self.data_args = {"train_limit": train_limit, "test_limit": test_limit}
        self._start()
        self.model_args = dict(model_args or {})
        self.model, self.model_name = self._model(model)
        self.augment_fn, self.augment_name, self.augment_args = checks.augmentation(augment)
        self.results: list = []
        self.members: list = []
        self.lr_finder: Optional[LRFinderResult] = None

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

    # --- the equivalent config, saving and loading --------------------------------------

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
