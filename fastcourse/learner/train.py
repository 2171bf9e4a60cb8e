"""Training the Learner: fit, fit_one_cycle, fine_tune, lr_find and ensemble. Each call builds
the TrainConfig it means (train_config) and runs THE trainer, fastcourse.train.trainer.fit, as a
`fastcourse run` does; ensemble() trains its members through run/ensemble.py's member loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from fastcourse.errors import UsageError
from fastcourse.learner import checks
from fastcourse.learner import show as _show
from fastcourse.learner.predict import LearnerState

if TYPE_CHECKING:  # for annotations only: importing them at run time would import Keras
    from fastcourse.train.lr_find import LRFinderResult


class Training(LearnerState):
    """The Learner's training calls (a part of fastcourse.learner.core.Learner)."""

    # the rest of the Learner's state this part reads (the shared part: LearnerState)
    model_args: dict
    schedule_name: str
    schedule_args: dict
    tensorboard: bool
    callbacks: list
    metrics: list
    results: list
    members: list
    lr_finder: Optional[LRFinderResult]

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

    def _scope(self):
        from fastcourse.train.devices import training_scope

        return training_scope(self._train.get("precision", "auto"), self._train.get("distribute", "none"))

    def train_config(self, epochs: int, schedule: Optional[tuple[str, dict]] = None):
        """The TrainConfig of one training call (the one trainer reads nothing else)."""
        from pydantic import ValidationError

        from fastcourse.config import TrainConfig

        name, args = schedule or (self.schedule_name, self.schedule_args)
        extra = {} if name == "phases" else {"epochs": int(epochs)}
        try:
            return TrainConfig(**self._train, **extra, tensorboard=self.tensorboard, schedule={"name": name, **args})
        except ValidationError as exc:
            raise checks.one_line("training", exc) from None

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
            checks.epochs("fit", "n_epochs", n_epochs)
        checks.bounded("fit", lr=lr)
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
        checks.epochs("fit_one_cycle", "n_epochs", n_epochs)
        checks.bounded("fit_one_cycle", lr_max=lr_max, max_lr=max_lr, **one_cycle_args)
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

        checks.epochs("fine_tune", "epochs", epochs, least=0)
        checks.epochs("fine_tune", "freeze_epochs", freeze_epochs, least=0)
        checks.bounded("fine_tune", base_lr=base_lr, lr_mult=lr_mult)
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
            checks.epochs("ensemble", "epochs", epochs)
        checks.bounded("ensemble", lr=lr)
        template, members, probs, parts = self.model, [], [], []

        def train_one(i: int, seed: int) -> dict:
            self._start(seed)
            if isinstance(self.model_name, str) and self.model_name in checks.registered_models():
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
