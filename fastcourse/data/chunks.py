"""A large array filled chunk by chunk that survives a kill (precomputed features, predictions).

`ChunkedArray(path, shape)` writes into `<path>.partial` (a memory-mapped .npy) and commits
its progress to `<path>.progress.json` after each `commit(rows)`; reopened with the same shape,
dtype and key after a crash, it resumes at `rows`, the first row not committed. `finish()`
renames the partial file onto `path`, so `path` exists only when complete::

    out = ChunkedArray("cache/feats-1a2b.npy", (n, 14, 14, 512), key=cache_key)
    for start in range(out.rows, n, chunk):       # 0 on a fresh start
        out.array[start:start + chunk] = compute(start, chunk)
        out.commit(min(start + chunk, n))           # data flushed, then progress committed
    feats = out.finish()                           # -> np.load(path, mmap_mode="r")

Hold `fastcourse.locks.shared(folder, what)` around it when two processes could fill the same file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from fastcourse import io
from fastcourse.errors import RunError


class ChunkedArray:
    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype="float32", key: str = ""):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.progress = self.path.with_name(self.path.name + ".progress.json")
        self.shape, self.dtype, self.key = tuple(int(s) for s in shape), np.dtype(dtype), str(key)
        self.rows = 0
        saved = self._saved_progress()
        try:
            if saved is not None:
                self.array = np.lib.format.open_memmap(self.partial, mode="r+")
                self.rows = int(saved["rows"])
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.array = np.lib.format.open_memmap(self.partial, mode="w+", dtype=self.dtype, shape=self.shape)
                self._write_progress(0)
        except OSError as exc:
            raise io.os_error(exc, f"cannot write {self.partial}") from None

    def _saved_progress(self) -> dict | None:
        """The committed progress, if it belongs to this very array (else start over)."""
        if not (self.partial.is_file() and self.progress.is_file()):
            return None
        try:
            saved = json.loads(self.progress.read_text())
            header = np.load(self.partial, mmap_mode="r")
            same = (
                saved.get("key") == self.key
                and tuple(saved.get("shape", ())) == self.shape
                and saved.get("dtype") == self.dtype.str
                and header.shape == self.shape
                and header.dtype == self.dtype
                and 0 <= int(saved.get("rows", -1)) <= self.shape[0]
            )
        except (OSError, ValueError, TypeError):
            return None
        return saved if same else None

    def _write_progress(self, rows: int) -> None:
        io.write_json(
            self.progress, {"rows": int(rows), "shape": list(self.shape), "dtype": self.dtype.str, "key": self.key}
        )

    def commit(self, rows: int) -> None:
        """Rows [0, rows) are filled: flush them to disk, then record it."""
        if not self.rows <= rows <= self.shape[0]:
            raise RunError(f"{self.path}: commit({rows}) after {self.rows} of {self.shape[0]} rows")
        try:
            self.array.flush()  # the data reaches the file before the progress says it has
        except OSError as exc:
            raise io.os_error(exc, f"cannot write {self.partial}") from None
        self._write_progress(rows)
        self.rows = rows

    def finish(self) -> np.ndarray:
        """Every row filled: publish the file at `path` and return it memory-mapped, read-only."""
        if self.rows != self.shape[0]:
            raise RunError(f"{self.path}: finish() with {self.rows} of {self.shape[0]} rows committed")
        self.array.flush()
        del self.array
        try:
            os.replace(self.partial, self.path)
        except OSError as exc:
            raise io.os_error(exc, f"cannot write {self.path}") from None
        self.progress.unlink(missing_ok=True)
        return np.load(self.path, mmap_mode="r")
