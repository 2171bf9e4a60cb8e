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
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from fastcourse.data.base import DATASETS, ArrayDataset
from fastcourse.errors import DataError

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
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
            f"{p} holds neither the four idx files ({', '.join(IDX_FILES.values())}, .gz or not) nor exactly one .npz"
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
            idx = _idx_paths(candidate) if candidate.is_dir() else None
            return _make(
                name, read_local(candidate), classes, str(candidate), {key: f.name for key, f in (idx or {}).items()}
            )
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
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # a cut download, or not gzip at all
        raise ValueError(f"{path.name}: damaged or truncated ({exc or type(exc).__name__})") from None
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path.name} is not an unsigned-byte idx file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=min(4 + 4 * ndim, len(data)))
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path.name}: header says {shape}, file holds {body.size} values (truncated?)")
    return body.reshape(shape)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as head:
        magic = head.read(6)
    if not magic:
        raise ValueError(f"{path.name}: empty file, not an .npz")
    if not (magic.startswith(b"PK") or magic == b"\x93NUMPY"):
        raise ValueError(
            f"{path.name}: not an .npz file (it starts with {magic!r}); expected numpy.savez's "
            "output with x_train, y_train, x_test, y_test"
        )
    try:
        f = np.load(path, allow_pickle=False)
    except EOFError:
        raise ValueError(f"{path.name}: truncated, not a complete .npz") from None
    except (ValueError, zipfile.BadZipFile) as exc:  # allow_pickle=False refuses anything but arrays
        raise ValueError(f"{path.name}: not an .npz of arrays ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{path.name}: one .npy array; expected an .npz with x_train, y_train, x_test, y_test")
    with f:
        missing = [k for k in IDX_FILES if k not in f]
        if missing:
            raise ValueError(f"{path.name} lacks arrays {missing}; expected x_train, y_train, x_test, y_test")
        try:
            return {k: f[k] for k in IDX_FILES}
        except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # an object array, a cut file
            raise ValueError(f"{path.name}: cannot read its arrays ({str(exc).splitlines()[0][:80]})") from None


# --- what arrays are accepted --------------------------------------------------------------
# images: (N, H, W) or (N, H, W, C) with C 1 or 3, 8 <= H, W <= 4096, N >= 1;
#   integers must lie in 0..255 (stored as uint8);
#   floats must be finite; floats all within [0, 1] are 0-1 intensities and are scaled to
#   0..255 (a uint8 cast would truncate them to 0 and 1), floats within [0, 255] are rounded;
#   anything else (bool, strings, complex, other ranges) is refused.
# labels: (N,) or (N, 1) integers (or integral floats) in 0..classes-1, one per image; one-hot
#   (N, classes) rows of 0/1 summing to 1 are converted to class ids.
# train and test images must have the same (H, W, C).
# Every refusal is one line naming the file (and the array in it).


def _images(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"{where}: images must be (N, H, W) or (N, H, W, C), got shape {x.shape}")
    n, h, w, c = x.shape
    if n == 0:
        raise ValueError(f"{where}: holds no images (shape {x.shape})")
    if c not in (1, 3):
        raise ValueError(f"{where}: {c} channels (shape {x.shape}); images must have 1 (gray) or 3 (RGB)")
    if not (8 <= h <= 4096 and 8 <= w <= 4096):
        raise ValueError(f"{where}: images of {h}x{w} pixels (shape {x.shape}); height and width must be 8..4096")
    kind = x.dtype.kind
    if kind in "ui":
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{where}: {x.dtype} values {lo}..{hi}; pixel values must be 0..255")
        return x.astype(np.uint8, copy=False)
    if kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            bad = np.argwhere(~finite)[0]
            raise ValueError(
                f"{where}: {int((~finite).sum())} NaN or infinite value(s), the first in image "
                f"{bad[0]}; pixel values must be finite"
            )
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{where}: {x.dtype} values {lo:g}..{hi:g}; pixel values must be 0..255 "
                "(or 0..1, which is scaled to 0..255)"
            )
        if hi <= 1.0:
            x = x * 255.0  # 0-1 intensities
        return np.rint(x).astype(np.uint8)
    raise ValueError(f"{where}: images of dtype {x.dtype}; expected integers 0..255 or floats")


def _labels(y: np.ndarray, where: str, n_images: int, classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif (
        y.ndim == 2
        and y.shape[1] == classes
        and y.dtype.kind in "uif"
        and np.isin(y, (0, 1)).all()
        and (y.sum(axis=1) == 1).all()
    ):
        y = y.argmax(axis=1)  # one-hot rows
    if y.ndim != 1:
        raise ValueError(f"{where}: labels must be (N,) class ids (or one-hot (N, {classes})), got shape {y.shape}")
    if len(y) != n_images:
        raise ValueError(f"{where}: {len(y)} labels for {n_images} images; give one label per image")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not (y == np.round(y)).all():
            i = int(np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))[0])
            raise ValueError(f"{where}: label {y[i]!r} at index {i} is not a class id (a whole number)")
    elif y.dtype.kind not in "ui":
        raise ValueError(f"{where}: labels of dtype {y.dtype}; expected integer class ids 0..{classes - 1}")
    bad = np.flatnonzero((y < 0) | (y >= classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{where}: label {y[i]:g} at index {i} is out of range; class ids are 0..{classes - 1} "
            f"({bad.size} label(s) outside)"
        )
    return y.astype(np.int64)


def _make(
    name: str, arrays: dict[str, np.ndarray], classes: list[str], source: str, files: dict[str, str] | None = None
) -> ArrayDataset:
    """Validate and convert the four arrays (see the rules above); `files` names each array's file."""

    def where(key: str) -> str:
        return f"{files[key]} [{key}]" if files and key in files else key

    xt, xs = _images(arrays["x_train"], where("x_train")), _images(arrays["x_test"], where("x_test"))
    if xt.shape[1:] != xs.shape[1:]:
        raise ValueError(
            f"{where('x_test')}: images of shape {xs.shape[1:]}, but x_train's are {xt.shape[1:]}; "
            "train and test images must match"
        )
    yt = _labels(arrays["y_train"], where("y_train"), len(xt), len(classes))
    ys = _labels(arrays["y_test"], where("y_test"), len(xs), len(classes))
    return ArrayDataset(name, xt, yt, xs, ys, list(classes), source)
