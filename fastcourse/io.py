"""Atomic file writes: a reader never sees a half-written file, and a failed write leaves
whatever was there before untouched (write to a temporary file beside it, then rename)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from fastcourse.errors import FastcourseError, RunError, UsageError

# the process's umask, read once (os.umask can only be read by setting it): the modes a file and
# a folder get when made the usual way, given to what mkstemp makes 0600
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` on success.

    `suffix` keeps the extension some writers insist on (Keras wants ".keras").
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.",
            suffix=suffix if suffix is not None else path.suffix + ".tmp",
            dir=path.parent,
        )
        os.close(fd)
    except OSError as exc:
        raise os_error(exc, f"cannot write {path}") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)  # mkstemp makes 0600; give the file the usual mode
        _fsync(tmp_path)  # the data is on disk before the rename makes it visible
        os.replace(tmp_path, path)
        _fsync(path.parent)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise os_error(exc, f"cannot write {path}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Build a folder, then rename it onto `folder`: a reader sees what was there or the new
    folder whole, never a half-built one, and a failure leaves `folder` as it was.

        with io.atomic_folder(out / "savedmodel") as build:
            build.mkdir()  # or shutil.copytree(source, build), os.replace(unpacked, build)
            ...            # write into build

    `build` does not exist yet: the block makes it. Its parent is a private temporary folder
    beside `folder`, which the block may use for scratch and which is removed at the end. An
    existing `folder` is replaced (moved aside, then removed): the caller decides it may be."""
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as exc:
        raise os_error(exc, f"cannot write {folder}") from None
    build = work / folder.name
    try:
        yield build
    except BaseException:  # the block's own error, as it was raised; nothing replaced
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        if not build.is_dir():
            raise RuntimeError(f"atomic_folder({folder}): the block made no folder at {build}")
        old = None
        if folder.exists() or folder.is_symlink():
            old = work / ".replaced"
            os.replace(folder, old)
        try:
            os.replace(build, folder)
        except OSError:
            if old is not None:
                os.replace(old, folder)  # put back what was there
            raise
        _fsync(folder.parent)
    except OSError as exc:
        raise os_error(exc, f"cannot write {folder}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def make_folder(path: str | os.PathLike, what: str) -> Path:
    """`path` as a folder, made with its parents if missing; a file in its place, or any failure to
    make it, is one line naming `what` (e.g. "--out folder", "features cache") and exits 2."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{what} {folder}: is a file, not a folder; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_create(exc, f"{what} {folder}") from None
    return folder


def cannot_create(exc: OSError, what: str) -> UsageError:
    """A folder fastcourse writes into cannot be made: bad input whatever the errno (a read-only
    place, a file in the path, /proc, a full disk), fixed by choosing another place."""
    return UsageError(f"cannot create {what}: {exc.strerror or exc}; choose a writable folder (--out or --run-dir)")


# errnos that say the path given cannot be a writable folder: bad input (exit 2), fixed by
# choosing another place; anything else (a full disk, an I/O error) is a failure at run time
_BAD_PLACE = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENAMETOOLONG,
    errno.ELOOP,
    errno.EEXIST,
}


def os_error(exc: OSError, what: str) -> FastcourseError:
    """UsageError for a place the user cannot write (read-only, no permission, a file in the
    path, a name too long); else RunError (a full disk, an I/O error)."""
    if exc.errno in _BAD_PLACE:
        return UsageError(f"{what}: {exc.strerror or exc}; choose a writable folder (--out or --run-dir)")
    return RunError(f"{what}: {exc.strerror or exc}")


# errnos with which a file system says it cannot fsync a DIRECTORY (some network and FUSE file
# systems, Windows shares); the rename is atomic all the same, only its durability is weaker
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF}


def _fsync(path: Path) -> None:
    """Flush `path` (a file, or a folder after a rename) to disk. Every error propagates (atomic_path
    turns it into one line), except a folder's fsync being unsupported."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if not (exc.errno in _DIR_FSYNC_UNSUPPORTED and path.is_dir()):
            raise
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def save_model(model, path: str | os.PathLike) -> Path:
    """Save a Keras model so that an existing file is never replaced by a half-written one."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
    return Path(path)


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path, suffix=Path(path).suffix) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)  # also when the save failed: a figure left open holds its memory
    return Path(path)


def _json_default(value: Any):
    # numpy scalars and arrays, Paths
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
