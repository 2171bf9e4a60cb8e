"""Array datasets: local files in every accepted form, the search order, the missing-data error."""

import gzip

import numpy as np
import pytest

from fastcourse.data import DATASETS
from fastcourse.data.arrays import IDX_FILES, mnist_sample
from fastcourse.data.sources import ArraySource
from fastcourse.errors import DataError


def write_idx(path, array, gz=True):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def arrays(rng):
    return {
        "x_train": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 20),
        "x_test": rng.integers(0, 256, (8, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 8),
    }


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("FASTCOURSE_MNIST_PATH", raising=False)
    monkeypatch.delenv("FASTCOURSE_FASHION_MNIST_PATH", raising=False)
    monkeypatch.setattr("fastcourse.data.arrays.SYSTEM_DIRS", {})


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_from_config_path(tmp_path, arrays, gz):
    folder = tmp_path / "fmnist"
    folder.mkdir()
    for key, stem in IDX_FILES.items():
        write_idx(folder / stem, arrays[key], gz)
    data = DATASETS.get("fashion_mnist")(path=str(folder))
    assert data.x_train.shape == (20, 28, 28, 1) and data.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.x_train[..., 0], arrays["x_train"])
    np.testing.assert_array_equal(data.y_test, arrays["y_test"])
    assert data.class_names[9] == "Ankle boot"


def test_npz_from_environment_variable(tmp_path, arrays, monkeypatch):
    np.savez(tmp_path / "mnist.npz", **arrays)
    monkeypatch.setenv("FASTCOURSE_MNIST_PATH", str(tmp_path / "mnist.npz"))
    data = DATASETS.get("mnist")()
    assert len(data.x_test) == 8 and str(tmp_path) in data.source


def test_keras_cache_is_found(tmp_path, arrays):
    cache = tmp_path / "keras_home" / "datasets"
    cache.mkdir(parents=True)
    np.savez(cache / "mnist.npz", **arrays)
    assert DATASETS.get("mnist")().source == str(cache / "mnist.npz")


def test_missing_data_lists_every_place_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCOURSE_FASHION_MNIST_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as err:
        DATASETS.get("fashion_mnist")(path=str(tmp_path / "also-nowhere"), download=False)
    msg = str(err.value)
    assert "also-nowhere" in msg and "nowhere" in msg and "Keras cache" in msg
    assert "download (disabled)" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "\n" not in msg


def test_truncated_idx_is_an_error_naming_the_file(tmp_path, arrays):
    folder = tmp_path / "broken"
    folder.mkdir()
    for key, stem in IDX_FILES.items():
        write_idx(folder / stem, arrays[key], gz=False)
    raw = (folder / IDX_FILES["x_train"]).read_bytes()
    (folder / IDX_FILES["x_train"]).write_bytes(raw[:-100])
    with pytest.raises(DataError, match="truncated"):
        DATASETS.get("mnist")(path=str(folder))


def test_bundled_sample():
    data = mnist_sample()
    assert data.x_train.shape == (4000, 28, 28, 1) and data.x_test.shape == (1000, 28, 28, 1)
    assert set(np.unique(data.y_train)) == set(range(10))
    mean, std = data.pixel_stats()
    assert 25 < mean < 45 and 70 < std < 90  # MNIST's global stats are about 33.3 and 78.6


def test_train_stream_is_seeded_and_resumable():
    x = np.arange(10 * 4, dtype=np.uint8).reshape(10, 2, 2, 1)
    y = np.arange(10) % 3

    def first_labels(seed, start=0, n=6):
        ds = ArraySource(x, y, 3).batches(4, shuffle=True, seed=seed, repeat=True, start_step=start)
        return [im.numpy()[:, 0, 0, 0].tolist() for im, _ in ds.take(n)]

    run = first_labels(5)
    assert run == first_labels(5)
    assert run != first_labels(6)
    assert first_labels(5, start=3, n=3) == run[3:]  # a resumed stream continues the same sequence
    epoch1 = sorted(sum(run[:3], []))
    assert epoch1 == sorted(x[:, 0, 0, 0].tolist())  # each epoch sees every image once


def test_eval_dataset_keeps_order():
    x = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1)
    batches = [b[0].numpy().ravel().tolist() for b in ArraySource(x, np.zeros(5, int), 2).batches(2)]
    assert sum(batches, []) == [0, 1, 2, 3, 4]
