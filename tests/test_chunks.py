"""ChunkedArray: a chunk-by-chunk fill resumes at the first uncommitted row after a crash."""

import errno
import os

import numpy as np
import pytest

from fastcourse.data.chunks import ChunkedArray
from fastcourse.errors import RunError

SHAPE = (10, 3, 2)
FULL = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)


def fill(out: ChunkedArray, stop: int, chunk: int = 2, commit: bool = True) -> None:
    for start in range(out.rows, stop, chunk):
        end = min(start + chunk, stop)
        out.array[start:end] = FULL[start:end]
        if commit:
            out.commit(end)


def test_a_crashed_fill_resumes_at_the_first_uncommitted_row(tmp_path):
    path = tmp_path / "feats.npy"
    first = ChunkedArray(path, SHAPE, key="k1")
    fill(first, 6)  # rows 0-5 committed
    first.array[6:8] = -1.0  # a chunk written but never committed: the process dies here
    del first
    assert not path.exists()  # the final name appears only when complete

    again = ChunkedArray(path, SHAPE, key="k1")
    assert again.rows == 6
    np.testing.assert_array_equal(again.array[:6], FULL[:6])
    fill(again, SHAPE[0])
    done = again.finish()
    np.testing.assert_array_equal(done, FULL)
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), FULL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.npy"]  # no partial or progress file


def test_another_key_or_shape_starts_over(tmp_path):
    path = tmp_path / "feats.npy"
    fill(ChunkedArray(path, SHAPE, key="old-weights"), 4)
    assert ChunkedArray(path, SHAPE, key="new-weights").rows == 0
    fill(ChunkedArray(path, SHAPE, key="k"), 4)
    assert ChunkedArray(path, (12, 3, 2), key="k").rows == 0


def test_misuse_and_full_disk_are_clear_errors(tmp_path, monkeypatch):
    out = ChunkedArray(tmp_path / "f.npy", SHAPE)
    fill(out, 4)
    with pytest.raises(RunError, match="finish\\(\\) with 4 of 10 rows"):
        out.finish()
    with pytest.raises(RunError, match="commit\\(2\\) after 4"):
        out.commit(2)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(out.array, "flush", full, raising=False)
    with pytest.raises(RunError, match="No space left on device"):
        out.commit(6)
    monkeypatch.undo()
    assert ChunkedArray(tmp_path / "f.npy", SHAPE).rows == 4  # the progress did not advance
