"""One process at a time on a folder (a run directory, a features cache).

`locked(folder)` holds `<folder>/.lock` with fcntl.flock: the OS frees it when the process dies,
even after kill -9. A second process is refused at once with the holder's pid. Nested use in
one process is allowed (a run directory's lock held around an ensemble's).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from fastcourse import io
from fastcourse.errors import RunError

LOCK = ".lock"
_held: set[str] = set()  # lock files this process holds


@contextlib.contextmanager
def locked(run_dir: str | Path) -> Iterator[None]:
    """Hold `run_dir`'s lock (fcntl.flock; the OS frees it if the process dies)."""
    path = Path(run_dir) / LOCK
    key = str(path.resolve())
    if key in _held:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise io.os_error(exc, f"cannot lock {run_dir}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunError(f"{run_dir} is in use by another fastcourse run (pid {holder}); "
                           "wait for it to finish, or start a separate run") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _held.add(key)
        try:
            yield
        finally:
            _held.discard(key)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


