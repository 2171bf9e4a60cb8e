"""`fastcourse data get NAME [--to DIR]` and `fastcourse data list`.

    get("dogscats")            # -> data/dogscats with train/ valid/ test/ sample/
    get("statefarm")           # -> data/statefarm_split (Kaggle; grouped by driver)
    get("mnist")               # -> $KERAS_HOME/datasets/mnist.npz, where keras.datasets looks
    list_local()               # DataFrame: name, present, size_mb, where

HTTP downloads resume: an interrupted one leaves `<file>.part` beside the target and the next
call asks the server for the rest (`Range: bytes=N-`). A file that fails its published hash is
deleted and refused; archives are unpacked into a temporary folder beside the target and
renamed into place only when the layout is complete.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from fastcourse import io
from fastcourse.data import remote as sources
from fastcourse.data.archives import single_folder, unpack
from fastcourse.data.remote import Remote, Source
from fastcourse.errors import DataError, RunError, UsageError

CHUNK = 1 << 20
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def get(
    name: str,
    to: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    retries: int = 3,
    mirror: Optional[str] = None,
    timeout: float = 60,
) -> Path:
    """Fetch dataset `name` (see `names()`) and return the folder or file the configs use.

    `to` is the dataset folder (default data/<name>; for mnist/fashion_mnist the Keras cache).
    `retries` resumes a dropped connection that many times before giving up (the .part stays).
    """
    source = _source(name)
    if source.kind == "kaggle":
        from fastcourse.data.kaggle_get import get_competition

        return get_competition(source, _target(source, to), progress=progress)
    if source.kind == "keras":
        # --to DIR takes the files as they are; the Keras cache needs keras.datasets' own names
        single = len(source.files) == 1
        folder = Path(to).expanduser() if to else keras_datasets() / ("" if single else source.keras_path)
        paths = [
            fetch(remote, folder / remote.file, progress=progress, retries=retries, mirror=mirror, timeout=timeout)
            for remote in source.files
        ]
        return paths[0] if single else folder
    target = _target(source, to)
    if _complete(target):
        return target
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target}: exists but lacks train/ and valid/; remove it or choose another --to")
    (remote,) = source.files
    archive = fetch(
        remote, target.parent / remote.file, progress=progress, retries=retries, mirror=mirror, timeout=timeout
    )
    unpack_into(archive, target, source.split)
    archive.unlink()  # 840 MB that the extracted folder duplicates
    return target


def names() -> list[str]:
    return list(sources.SOURCES)


def keras_datasets() -> Path:
    from fastcourse.data.arrays import keras_home

    return keras_home() / "datasets"


# --- one file over HTTP --------------------------------------------------------------------


def fetch(
    remote: Remote,
    dest: Path,
    *,
    progress: bool = True,
    retries: int = 3,
    mirror: Optional[str] = None,
    timeout: float = 60,
) -> Path:
    """Download `remote` to `dest` (resuming `dest.part`), check it, then rename it into place."""
    dest = Path(dest)
    url = remote.url(mirror)
    if dest.is_file():
        if check(dest, remote) is None:
            return dest
        dest.unlink()  # stale or damaged: fetch it again, as keras.utils.get_file does
    _allowed(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _download(url, part, remote.size, progress, timeout)
            break
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 403, 401, 410):
                raise DataError(
                    f"{url}: HTTP {exc.code} {exc.reason}; the file has moved: set "
                    f"{sources.MIRROR_ENV} to a base URL that holds {remote.file}"
                ) from None
            reason = f"HTTP {exc.code}"
        except (OSError, http.client.HTTPException) as exc:  # URLError, resets, short reads
            reason = _reason(exc)
        if attempt < retries:
            time.sleep(min(2**attempt, 10))
    else:
        have = part.stat().st_size if part.exists() else 0
        if not have:
            raise RunError(
                f"{url}: cannot download ({reason}); check the network (or {sources.MIRROR_ENV}) and run again"
            )
        raise RunError(
            f"{url}: download stopped at {have:,} bytes ({reason}); run the same command again to resume from {part}"
        )
    problem = check(part, remote)
    if problem:
        part.unlink()
        raise DataError(f"{url}: {problem}; deleted it. Try again later, or set {sources.MIRROR_ENV} to another copy")
    os.replace(part, dest)
    return dest


def _download(url: str, part: Path, size: Optional[int], progress: bool, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # cannot be a prefix of the right file
        part.unlink()
        have = 0
    headers = {"User-Agent": "fastcourse"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing past what we hold: the .part is whole; the hash decides
            return
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored Range and sends the whole file
        elif have:
            start = response.headers.get("Content-Range", "").split(" ")[-1].split("-")[0]
            if start != str(have):
                raise RunError(
                    f"{url}: asked for bytes {have}- but the server sent "
                    f"{response.headers.get('Content-Range')}; delete {part} and run again"
                )
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else None
        bar = _bar(progress, total, have, Path(url).name)
        try:
            with open(part, "ab" if have else "wb") as f:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    got = part.stat().st_size
    if total is not None and got < total:
        raise ConnectionError(f"connection closed after {got:,} of {total:,} bytes")


def check(path: Path, remote: Remote) -> Optional[str]:
    """None when `path` matches every published fact about `remote`; else what differs."""
    actual = path.stat().st_size
    if remote.size is not None and actual != remote.size:
        return f"size {actual:,} bytes, published {remote.size:,}"
    if remote.md5_head:
        with open(path, "rb") as f:
            got = hashlib.md5(f.read(2**20)).hexdigest()
        if got != remote.md5_head:
            return f"md5 of the first MiB {got} differs from the published {remote.md5_head}"
    for algo in ("sha256", "md5"):
        want = getattr(remote, algo)
        if want:
            h = hashlib.new(algo)
            with open(path, "rb") as f:
                while block := f.read(CHUNK):
                    h.update(block)
            if h.hexdigest() != want.lower():
                return f"{algo} {h.hexdigest()} differs from the published {want}"
    return None


def _allowed(url: str) -> None:
    # tests set FASTCOURSE_OFFLINE; a local server (a test's, a LAN mirror on localhost) is fine
    host = urllib.parse.urlsplit(url).hostname or ""
    if os.environ.get("FASTCOURSE_OFFLINE") and host not in LOCAL_HOSTS:
        raise UsageError(f"{url}: FASTCOURSE_OFFLINE is set, so nothing is downloaded; unset it to fetch")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def _bar(progress: bool, total: Optional[int], initial: int, label: str):
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=label)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


# --- archives ------------------------------------------------------------------------------


def unpack_into(archive: Path, target: Path, split: dict | None = None) -> Path:
    """Unpack `archive` beside `target`, complete the course layout, then rename it to `target`."""
    with io.atomic_folder(target) as build:  # get() only goes on when target is missing or empty
        unpacked = build.with_name("unpacked")
        unpack(archive, unpacked)
        os.replace(single_folder(unpacked), build)
        course_layout(build, split or {}, final=target)
    return target


def course_layout(root: Path, split: dict, final: Path | None = None) -> None:
    """Make `root` hold train/<class>/, valid/<class>/, test/ and sample/ as the configs expect.

    fast.ai's archive names the test set test1/; a missing valid/ is made by make_split
    (moving images, as the course did), a missing sample/ by copying a seeded subset.
    """
    if (root / "test1").is_dir() and not (root / "test").exists():
        (root / "test1").rename(root / "test")
    train = root / "train"
    if not train.is_dir() or sum(p.is_dir() for p in train.iterdir()) < 2:
        raise DataError(f"{root}: the archive has no train/<class>/ folders; it is not the expected dataset")
    if not (root / "valid").is_dir():
        from fastcourse.data.split import make_split

        make_split(root, mode="move", **split)
        if final is not None:  # split.json would name the temporary folder
            text = (root / "split.json").read_text().replace(str(root.resolve()), str(Path(final).resolve()))
            io.write_text(root / "split.json", text)
    if not (root / "sample").is_dir():
        _copy_sample(root, split)


def _copy_sample(root: Path, split: dict) -> None:
    from fastcourse.data.folders import open_folder
    from fastcourse.data.split import sample_indices

    data = open_folder(root, check="none")
    seed = split.get("seed", 0)
    for key, size in (("train", split.get("sample_train", 200)), ("valid", split.get("sample_valid", 100))):
        s = data.split(key)
        for i in sample_indices(len(s), size, seed, s.labels):
            src = Path(s.files[i])
            dst = root / "sample" / key / src.parent.name / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def _complete(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "valid").is_dir()


def _target(source: Source, to) -> Path:
    return Path(to).expanduser() if to else Path("data") / source.name


def _source(name: str) -> Source:
    try:
        return sources.SOURCES[name]
    except KeyError:
        raise UsageError(f"unknown dataset {name!r}; choose one of: {', '.join(sources.SOURCES)}") from None


# --- what is here already --------------------------------------------------------------------


def list_local(root: str | os.PathLike | None = None):
    """A DataFrame (name, present, size_mb, where): one row per place a dataset was found.

    Looks in the data folder `root` (default data/), the Keras cache, the system folders
    fastcourse.data.arrays searches (Debian's dataset-fashion-mnist) and $FASTCOURSE_<NAME>_PATH.
    A dataset found nowhere gets one row with present False and the place `get` would fill.
    """
    import pandas as pd

    root = Path(root).expanduser() if root else Path("data")
    rows = []
    for name, source in sources.SOURCES.items():
        places = _places(name, source, root)
        found = [(p, _size_mb(p)) for p in places if _present(source, p)]
        rows += [(name, True, size, str(p)) for p, size in found]
        if not found:
            rows.append((name, False, 0.0, str(places[0])))
    return pd.DataFrame(rows, columns=["name", "present", "size_mb", "where"])


def _places(name: str, source: Source, root: Path) -> list[Path]:
    if source.kind != "keras":
        # statefarm's configs read the split folder; list it first
        return ([root / f"{name}_split"] if source.split.get("method") == "grouped" else []) + [root / name]
    from fastcourse.data import arrays

    places = [keras_datasets() / source.keras_path, root / name]
    places += [Path(d) for d in arrays.SYSTEM_DIRS.get(name, [])]
    env = os.environ.get(f"FASTCOURSE_{name.upper()}_PATH")
    return places + ([Path(env).expanduser()] if env else [])


def _present(source: Source, path: Path) -> bool:
    if source.kind != "keras":
        return (path / "train").is_dir()  # statefarm's raw download has no valid/ until it is split
    if path.is_file():
        return True
    if not path.is_dir():
        return False
    from fastcourse.data import arrays

    return arrays._idx_paths(path) is not None or len(list(path.glob("*.npz"))) == 1


def _size_mb(path: Path) -> float:
    # lstat: a split folder of symlinks counts the links, not the images twice
    if path.is_file():
        return round(path.stat().st_size / 2**20, 3)
    total = sum(f.lstat().st_size for f in path.rglob("*") if not f.is_dir() or f.is_symlink())
    return round(total / 2**20, 3)
