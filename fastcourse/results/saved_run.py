"""A finished run directory, loaded for prediction: its model (safe mode), class names, seed,
augmentation and data, whatever its kind (array dataset or image folders).

    run = load_run("runs/dogscats-20260101-120000")
    run.model, run.class_names, run.image_shape, run.augmenter(), run.inputs()

A run directory holds model.keras (loaded by fastcourse.run.artifacts.load_model), config.yaml
(the augmentation TTA reuses, the seed, the dataset) and metrics.json (`classes`, `data_kind`,
`eval_split`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from fastcourse.errors import UsageError


@dataclass
class Run:
    """What prediction needs from a run directory."""

    path: Path
    model: object
    class_names: list[str]
    seed: int = 0
    augment_name: str = "none"
    augment_args: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    _inputs: object = field(default=None, repr=False)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) the model takes."""
        shape = self.model.input_shape
        return int(shape[1]), int(shape[2]), int(shape[3])

    @property
    def data_kind(self) -> str:
        """ "arrays" or "folder" (metrics.json's data_kind; "" when the run does not say)."""
        return str(self.metrics.get("data_kind") or "")

    def augmenter(self, name: str | None = None, args: dict | None = None) -> Optional[Callable]:
        """The run's augmentation pipeline (or the one named), as `augment(images, seed)`."""
        from fastcourse.data import augment

        if name is not None:
            return augment.build(name, args or {})
        return augment.build(self.augment_name, self.augment_args)

    def inputs(self):
        """The run's data as training saw it (fastcourse.run.inputs.Inputs), loaded once."""
        if self._inputs is None:
            from fastcourse.run.inputs import inputs_for
            from fastcourse.run.rundir import saved_config

            if not (self.path / "config.yaml").is_file():
                raise UsageError(f"{self.path}: no config.yaml, so the run's data is unknown; give a FOLDER of images")
            try:
                self._inputs = inputs_for(saved_config(self.path))
            except UsageError as exc:
                raise type(exc)(f"{self.path}: cannot open the run's data: {exc}") from None
            if list(self._inputs.class_names) != list(self.class_names):
                raise UsageError(
                    f"{self.path}: the run's dataset has classes {self._inputs.class_names}, the model "
                    f"{self.class_names}"
                )
        return self._inputs


def load_run(run_dir: str | os.PathLike, class_names: Sequence[str] | None = None) -> Run:
    """Load RUN/model.keras in safe mode and what config.yaml and metrics.json say about the run.

    Class names come from `class_names`, else RUN/classes.json or metrics.json's `classes`,
    else the run's dataset; they must match the model's outputs.
    """
    from fastcourse.run.artifacts import load_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    model_path = run_dir / "model.keras"
    if not model_path.is_file():
        if (run_dir / "config.yaml").is_file() and not (run_dir / "metrics.json").is_file():
            raise UsageError(
                f"{run_dir}: no model.keras: the run is unfinished; continue it with `fastcourse run {run_dir}`"
            )
        raise UsageError(
            f"{run_dir}: no model.keras in this run; train one with `fastcourse run CONFIG` "
            "and pass the run directory it prints"
        )
    # safe mode, one-line errors for a corrupt or foreign file; compile=False: prediction needs
    # no optimizer (and the learning-rate schedule need not deserialize)
    model = load_model(model_path, compile=False)
    if len(model.input_shape) != 4:
        raise UsageError(f"{model_path}: the model takes inputs of shape {model.input_shape}, not images")
    cfg = _read_config(run_dir)
    metrics = _read_json(run_dir / "metrics.json")
    names = list(class_names) if class_names else _class_names(run_dir, cfg, metrics)
    outputs = int(model.output_shape[-1])
    if len(names) != outputs:
        raise UsageError(
            f"{run_dir}: the model has {outputs} outputs but {len(names)} class names "
            f"{names}; pass --classes with {outputs} names"
        )
    augment = cfg.get("augment") or {"name": "none"}
    return Run(
        run_dir,
        model,
        names,
        int(cfg.get("seed", 0) or 0),
        augment.get("name", "none"),
        {k: v for k, v in augment.items() if k != "name"},
        metrics,
    )


def _read_config(run_dir: Path) -> dict:
    from fastcourse.safe_yaml import load_yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    try:
        raw = load_yaml(path)
    except UsageError as exc:
        raise UsageError(f"{path}: cannot read the run's config: {str(exc).splitlines()[0]}") from None
    return raw if isinstance(raw, dict) else {}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _class_names(run_dir: Path, cfg: dict, metrics: dict) -> list[str]:
    for names in (_read_json_any(run_dir / "classes.json"), metrics.get("classes"), metrics.get("class_names")):
        if isinstance(names, list) and names:
            return [str(n) for n in names]
    data = cfg.get("data") or {}
    if data.get("name"):
        from fastcourse.data import DATASETS

        args = {k: v for k, v in data.items() if k not in ("name", "train_limit", "test_limit")}
        try:
            return list(DATASETS.get(data["name"])(**args).class_names)
        except Exception as exc:  # the data may be gone or elsewhere: say so, offer --classes
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(
                f"{run_dir}: cannot tell the class names (no classes.json; loading dataset "
                f"{data['name']!r} failed: {reason}); pass --classes a,b,..."
            ) from None
    raise UsageError(
        f"{run_dir}: cannot tell the class names (no classes.json, no data section in "
        "config.yaml); pass --classes a,b,..."
    )


def _read_json_any(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
