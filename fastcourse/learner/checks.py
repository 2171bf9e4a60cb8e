"""The Learner's arguments, checked as a config's same settings are (TrainConfig, ARG_BOUNDS, the
registries): a bad one is one line naming the argument and the fix, never a pydantic class."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np

from fastcourse.errors import UsageError

Spec = Union[None, str, dict, Callable]  # a registered name, {"name": ..., **arguments}, or a function


def named(spec: Spec, default: str, what: str) -> tuple[str, dict]:
    """(name, arguments) of a spec: None (`default`), a name, or {"name": ..., **arguments}."""
    if spec is None:
        return default, {}
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict):
        if "name" not in spec:
            raise UsageError(f"{what}={spec!r}: a dict names the function: {{'name': ..., **arguments}}")
        return str(spec["name"]), {k: v for k, v in spec.items() if k != "name"}
    raise UsageError(f"{what}={spec!r}: give a registered name or a dict {{'name': ..., **arguments}}")


def augmentation(augment: Spec) -> tuple[Optional[Callable], str, dict]:
    """(function, name, arguments) of the augmentation `augment` names, or the function given."""
    from fastcourse.data import augment as augmentations

    if callable(augment) and not isinstance(augment, (str, dict)):
        return augment, getattr(augment, "__name__", type(augment).__name__), {}
    name, args = named(augment, "none", "augment")
    return augmentations.build(name, args), name, args


def registered_models() -> list[str]:
    from fastcourse.models import MODELS

    return MODELS.names()


def known_model(name: str) -> None:
    """A registered builder's name, or one line with the nearest one and the known ones."""
    import difflib

    known = registered_models()
    if name not in known:
        near = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise UsageError(
            f"model={name!r}: not a registered model{hint} (known: {', '.join(known)}); or give a keras.Model"
        )


# TrainConfig fields the Learner sets itself (per training call, or as its own arguments)
_SET_BY_THE_LEARNER = ("epochs", "schedule", "tensorboard")


def keywords(train_args: dict, init: Callable) -> None:
    """Keywords beyond the Learner's own are training settings (the config's `train` section);
    anything else is a typo, named with the nearest argument (as the CLI names a config key)."""
    import difflib
    import inspect

    from fastcourse.config import TrainConfig

    own = [p for p in inspect.signature(init).parameters if p not in ("self", "train_args")]
    settings = [k for k in TrainConfig.model_fields if k not in _SET_BY_THE_LEARNER]
    for key in train_args:
        if key not in settings:
            near = difflib.get_close_matches(key, own + settings, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise UsageError(
                f"Learner({key}=...): unknown argument{hint} (the Learner's: {', '.join(own)}; "
                f"training settings: {', '.join(settings)})"
            )


def train_settings(call: str, settings: dict) -> None:
    """The training settings as the config's `train` section checks them; a bad one is one line."""
    from pydantic import ValidationError

    from fastcourse.config import TrainConfig

    try:
        TrainConfig(**settings)
    except ValidationError as exc:
        raise one_line(call, exc) from None


def one_line(call: str, exc) -> UsageError:
    """pydantic's first error as `call(key=value): what is wrong`, naming no internal class."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "arguments"
    message = str(err["msg"]).removeprefix("Value error, ")
    return UsageError(f"{call}({key}={err.get('input')!r}): {message}")


def epochs(call: str, name: str, value: Any, least: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise UsageError(f"{call}({name}={value!r}): give a whole number of epochs, {least} or more")


# the Learner's argument -> the ARG_BOUNDS entry (fastcourse/config.py) that bounds it
_BOUND_AS = {"lr_max": "max_lr", "base_lr": "lr"}


def bounded(call: str, **values: Any) -> None:
    """Each value inside the bounds a config's same setting has (ARG_BOUNDS), else one line."""
    from fastcourse.config import ARG_BOUNDS

    for name, value in values.items():
        bounds = ARG_BOUNDS.get(_BOUND_AS.get(name, name))
        if value is None or bounds is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not bounds.holds(float(value)):
            raise UsageError(f"{call}({name}={value!r}): out of range; give a value {bounds.allowed()}")


def size(image_size) -> tuple[int, int]:
    if isinstance(image_size, int):
        return (image_size, image_size)
    size = tuple(int(s) for s in image_size)
    if len(size) != 2:
        raise UsageError(f"image_size={image_size!r}: give an int (a square) or (height, width)")
    return (size[0], size[1])
