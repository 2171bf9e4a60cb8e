"""MNIST-format array datasets, found in this order:

1. the `path` in the config, or the environment variable FASTCOURSE_<NAME>_PATH
   (FASTCOURSE_MNIST_PATH, FASTCOURSE_FASHION_MNIST_PATH): an .npz with x_train, y_train,
   x_test, y_test, or a folder holding one, or the four idx files (.gz or not);
2. well-known system folders (Debian's dataset-fashion-mnist: /usr/share/datasets/fashion-mnist);
3. the Keras cache ($KERAS_HOME/datasets, default ~/.keras/datasets);
4. a download through keras.datasets, when `download` is true and the machine is online.

When none works, one DataError lists every place tried and how to provide the data.
"""
from __future__ import annotations

import gzip
import os
from importlib import resources
from pathlib import Path

import numpy as np

from fastcourse.data.base import DATASETS, ArrayDataset
from fastcourse.errors import DataError

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
SYSTEM_DIRS = {"fashion_mnist": ["/usr/share/datasets/fashion-mnist"], "mnist": ["/usr/share/datasets/mnist"]}


@DATASETS.register()
def mnist(path: str | None = None, download: bool = True) -> ArrayDataset:
    """MNIST handwritten digits, 60k train / 10k test, 28x28x1."""
    return _find("mnist", MNIST_CLASSES, path, download)


@DATASETS.register()
def fashion_mnist(path: str | None = None, download: bool = True) -> ArrayDataset:
    """Fashion-MNIST clothing images, 60k train / 10k test, 28x28x1."""
    return _find("fashion_mnist", FASHION_CLASSES, path, download)


@DATASETS.register()
def mnist_sample() -> ArrayDataset:
    """5,000 real MNIST digits shipped in the package (4k train / 1k test); works offline."""
    ref = resources.files("fastcourse.data") / "sample" / "mnist_sample.npz"
    with resources.as_file(ref) as p:
        arrays = _read_npz(Path(p))
    return _make("mnist_sample", arrays, MNIST_CLASSES, f"bundled sample ({ref.name})")


def read_local(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Arrays from an .npz file, a folder with one .npz, or a folder of the four idx files."""
    p = Path(path)
    if p.is_file():
        return _read_npz(p)
    if p.is_dir():
        idx = _idx_paths(p)
        if idx:
            return {key: _read_idx(f) for key, f in idx.items()}
        npzs = sorted(p.glob("*.npz"))
        if len(npzs) == 1:
            return _read_npz(npzs[0])
        raise FileNotFoundError(
            f"{p} holds neither the four idx files ({', '.join(IDX_FILES.values())}, .gz or not) "
            "nor exactly one .npz"
        )
    raise FileNotFoundError(f"{p} does not exist")


def _find(name: str, classes: list[str], path: str | None, download: bool) -> ArrayDataset:
    env = f"FASTCOURSE_{name.upper()}_PATH"
    tried: list[str] = []
    candidates: list[tuple[str, Path]] = []
    if path:
        candidates.append(("config data.path", Path(path).expanduser()))
    if os.environ.get(env):
        candidates.append((f"${env}", Path(os.environ[env]).expanduser()))
    for d in SYSTEM_DIRS.get(name, []):
        candidates.append(("system folder", Path(d)))
    cache = keras_home() / "datasets"
    cache_path = cache / ("mnist.npz" if name == "mnist" else "fashion-mnist")
    candidates.append(("Keras cache", cache_path))

    for label, candidate in candidates:
        if not candidate.exists():
            tried.append(f"{label} {candidate} (missing)")
            continue
        try:
            return _make(name, read_local(candidate), classes, str(candidate))
        except (OSError, ValueError, KeyError) as exc:
            if label.startswith("config") or label.startswith("$"):
                # the user pointed here explicitly: a broken file there is an error, not a miss
                raise DataError(f"{name}: cannot read {candidate} ({label}): {exc}") from None
            tried.append(f"{label} {candidate} ({exc})")

    if download and not os.environ.get("FASTCOURSE_OFFLINE"):
        try:
            import keras

            loader = keras.datasets.mnist if name == "mnist" else keras.datasets.fashion_mnist
            (xt, yt), (xs, ys) = loader.load_data()
            arrays = {"x_train": xt, "y_train": yt, "x_test": xs, "y_test": ys}
            return _make(name, arrays, classes, f"downloaded by keras.datasets.{loader.__name__.split('.')[-1]}")
        except Exception as exc:  # no network, a proxy, a broken cache: all end the same way
            tried.append(f"download through keras.datasets ({type(exc).__name__}: {str(exc)[:80]})")
    else:
        tried.append("download (disabled)")
    hint = (
        f"set data.path in the config or ${env} to an .npz or a folder of the four idx .gz files"
        + ("; on Debian/Ubuntu: apt-get install dataset-fashion-mnist" if name == "fashion_mnist" else "")
        + "; or use data.name: mnist_sample (bundled, offline)"
    )
    raise DataError(f"dataset {name!r} not found; tried: {'; '.join(tried)}. Fix: {hint}")


def keras_home() -> Path:
    # Keras reads KERAS_HOME at import; read it here at call time so tests can point it elsewhere.
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def _idx_paths(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, stem in IDX_FILES.items():
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path.name} is not an unsigned-byte idx file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path.name}: header says {shape}, file holds {body.size} values (truncated?)")
    return body.reshape(shape)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in IDX_FILES if k not in f]
        if missing:
            raise KeyError(f"{path.name} lacks arrays {missing}; expected x_train, y_train, x_test, y_test")
        return {k: f[k] for k in IDX_FILES}


def _make(name: str, arrays: dict[str, np.ndarray], classes: list[str], source: str) -> ArrayDataset:
    def images(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise ValueError(f"images must be (N, H, W[, C]), got shape {x.shape}")
        return x.astype(np.uint8, copy=False)

    xt, xs = images(arrays["x_train"]), images(arrays["x_test"])
    yt, ys = np.asarray(arrays["y_train"]).astype(np.int64), np.asarray(arrays["y_test"]).astype(np.int64)
    if len(xt) != len(yt) or len(xs) != len(ys):
        raise ValueError(f"image and label counts differ ({len(xt)}/{len(yt)}, {len(xs)}/{len(ys)})")
    return ArrayDataset(name, xt, yt, xs, ys, list(classes), source)
