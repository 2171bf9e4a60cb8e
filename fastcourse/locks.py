"""One process at a time per folder, on the `filelock` library.

    from fastcourse.locks import hold, shared
    with hold(run_dir):             # RunError at once if another process holds run_dir/.lock
        ...
    with shared(cache_dir, "features cache"):   # waits for the writer, saying whom it waits for
        ...

The lock is filelock's UnixFileLock (flock(2)): the OS releases it when the holder exits or is
killed (kill -9 included), so a crash never leaves a folder locked. filelock records no holder,
so the holder's pid goes to a side file `<lock>.pid`, removed on release (a killed holder's file
stays and is overwritten by the next one). Holding is re-entrant within a process, as
run_experiment -> run_ensemble nest.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

from filelock import Timeout, UnixFileLock

from fastcourse import io
from fastcourse.errors import RunError

LOCK = ".lock"


def pid_path(folder: str | os.PathLike, name: str = LOCK) -> Path:
    return Path(folder) / f"{name}.pid"


def holder(folder: str | os.PathLike, name: str = LOCK) -> Optional[int]:
    """The pid recorded by the process holding `folder`'s lock, if one is recorded."""
    # fall back to the lock file: fastcourse before filelock wrote the pid into it
    for path in (pid_path(folder, name), Path(folder) / name):
        try:
            text = path.read_text(errors="replace").strip()
        except FileNotFoundError:
            continue
        if text.isdigit():
            return int(text)
    return None


@contextlib.contextmanager
def hold(folder: str | os.PathLike, name: str = LOCK, what: str = "run directory") -> Iterator[None]:
    """Hold `folder`/`name` without waiting; a one-line RunError naming the holder's pid if taken."""
    folder = Path(folder)
    # is_singleton: one lock object per path in this process, so nested holds only count up
    lock = UnixFileLock(str(folder / name), is_singleton=True, thread_local=False)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        pid = holder(folder, name)
        raise RunError(
            f"{what} {folder} is in use by another fastcourse run (pid {pid or 'unknown'}); "
            "wait for it to finish, or start a separate run"
        ) from None
    except OSError as exc:  # a read-only or foreign folder
        raise io.os_error(exc, f"cannot lock {what} {folder}") from None
    with _holding(lock, folder, name, what):
        yield


@contextlib.contextmanager
def shared(folder: str | os.PathLike, what: str, name: str = LOCK) -> Iterator[Optional[int]]:
    """Hold `folder`/`name`, waiting while another process holds it: a cache that runs share.

    A writer found at work is named once, "<what> <folder> is being written by pid N; waiting",
    and its pid is yielded (0 when none is recorded, None when the lock was free), so the caller
    can say that what it finds was written while it waited."""
    folder = Path(folder)
    lock = UnixFileLock(str(folder / name), is_singleton=True, thread_local=False)
    waited: Optional[int] = None
    try:
        try:
            lock.acquire(blocking=False)
        except Timeout:
            waited = holder(folder, name) or 0
            who = f"pid {waited}" if waited else "another fastcourse run"
            print(f"fastcourse: {what} {folder} is being written by {who}; waiting", flush=True)
            lock.acquire()  # flock: freed when the writer finishes, or dies
    except OSError as exc:  # a read-only or foreign folder
        raise io.os_error(exc, f"cannot lock {what} {folder}") from None
    with _holding(lock, folder, name, what):
        yield waited


@contextlib.contextmanager
def _holding(lock: UnixFileLock, folder: Path, name: str, what: str) -> Iterator[None]:
    """An acquired `lock`: record our pid beside it while held, release it on the way out."""
    outer = lock.lock_counter == 1
    try:
        if outer:
            try:
                pid_path(folder, name).write_text(str(os.getpid()))
            except OSError as exc:
                raise io.os_error(exc, f"cannot lock {what} {folder}") from None
        yield
    finally:
        if outer:  # while still held, so the next holder's pid file is never removed
            pid_path(folder, name).unlink(missing_ok=True)
        lock.release()


@contextlib.contextmanager
def locked(folder: str | os.PathLike, what: str = "run directory") -> Iterator[None]:
    """`hold(folder)`: the lock a run directory's writer takes (a features cache, which runs
    share, takes `shared` instead)."""
    with hold(folder, LOCK, what):
        yield


def is_held(folder: str | os.PathLike, name: str = LOCK) -> bool:
    """Whether another process holds `folder`'s lock right now (checked without waiting)."""
    path = Path(folder) / name
    if not path.exists():
        return False
    lock = UnixFileLock(str(path), is_singleton=False, thread_local=False)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


__all__ = ["hold", "holder", "is_held", "locked", "pid_path", "shared", "LOCK"]
