"""The experiment configs shipped inside the package, addressable by name or by path.

    from fastcourse.shipped import resolve_config, shipped_names
    resolve_config("mnist_sample/cnn")             # the packaged fastcourse/configs/mnist_sample/cnn.yaml
    resolve_config("configs/mnist/cnn.yaml")       # a file that exists wins; else the shipped one
    shipped_names()                                # ['classic/lenet', ..., 'statefarm/vgg_boosting']

The configs are package data (read through importlib.resources), so an installed wheel runs
them from any folder: `fastcourse run mnist_sample/cnn`. A source checkout keeps a top-level
`configs` link to the same folder, so `fastcourse run configs/mnist_sample/cnn.yaml` works too.
"""

from __future__ import annotations

import difflib
import os
from importlib import resources
from pathlib import Path

from fastcourse.errors import ConfigError

SUFFIX = ".yaml"
SWEEPS = "sweeps"  # the folder of shipped sweep specs (fastcourse/sweeps/spec.py)


def configs_dir() -> Path:
    """The folder of shipped configs (a real folder in a normal install, a checkout or a wheel)."""
    root = resources.files("fastcourse") / "configs"
    # importlib.resources gives a pathlib.Path for every file-system install; a zipped package
    # (zipimport) is not supported, since runs read configs by path
    if not isinstance(root, Path):
        raise ConfigError("fastcourse is installed as a zip archive; its shipped configs need a normal install")
    return root


def shipped_names() -> list[str]:
    """Every shipped config as `dataset/name` (no .yaml), sorted; the sweep specs in `sweeps/` are
    not experiment configs (`fastcourse sweep sweeps/overfitting` runs one)."""
    root = configs_dir()
    found = (p.relative_to(root).with_suffix("").as_posix() for p in root.glob(f"*/*{SUFFIX}"))
    return sorted(name for name in found if not name.startswith(SWEEPS + "/"))


def shipped_path(name: str) -> Path | None:
    """The shipped config called `name` ('mnist/cnn', 'mnist/cnn.yaml' or 'configs/mnist/cnn.yaml'), or None."""
    text = str(name).replace(os.sep, "/").strip("/")
    if text.startswith("configs/"):  # the checkout's spelling, run from another folder
        text = text[len("configs/") :]
    if text.endswith(SUFFIX):
        text = text[: -len(SUFFIX)]
    if not text or ".." in text.split("/"):
        return None
    path = configs_dir() / f"{text}{SUFFIX}"
    return path if path.is_file() else None


def resolve_config(source: str | os.PathLike) -> Path:
    """The config file `source` names: an existing path wins, then a shipped config's name.

    Neither: a one-line ConfigError naming the closest shipped configs."""
    path = Path(source)
    if path.exists():
        return path
    found = shipped_path(str(source))
    if found is not None:
        return found
    names = shipped_names()
    key = str(source).replace(os.sep, "/").removeprefix("configs/").removesuffix(SUFFIX)
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"shipped configs: {', '.join(names[:6])}, ..."
    raise ConfigError(
        f"{source}: no such config file, and no shipped config of that name; {hint} "
        "(`fastcourse list configs` shows them all)"
    )


__all__ = ["configs_dir", "shipped_names", "shipped_path", "resolve_config"]
