"""A Kaggle competition's files through the official `kaggle` package (pip install kaggle).

The package authenticates when it is imported, and fails with a traceback when no credentials
exist, so they are looked for first and a missing one is reported as one line.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fastcourse import io
from fastcourse.data.remote import Source
from fastcourse.errors import DataError, UsageError

TOKEN_HELP = (
    "create an API token at https://www.kaggle.com/settings (API > Create New Token) and save it as "
    "~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY"
)


def get_competition(source: Source, target: Path, *, progress: bool = True) -> Path:
    """Download and unpack `source.competition` into `target`, then split it (make_split).

    Returns `<target>_split`, the folder the configs read, with train/, valid/, test/, sample/.
    """
    from fastcourse.data.archives import single_folder, unpack
    from fastcourse.data.split import make_split

    target = Path(target)
    split_dir = target.with_name(target.name + "_split")
    if (split_dir / "train").is_dir() and (split_dir / "valid").is_dir():
        return split_dir
    if not (target / "train").is_dir():
        if target.exists() and any(target.iterdir()):
            raise UsageError(f"{target}: exists but has no train/; remove it or choose another --to")
        # kept between calls: the kaggle package skips a file it already has
        download = target.with_name(f".{target.name}.download")
        download.mkdir(parents=True, exist_ok=True)
        _download(source.competition, download, progress)
        zips = sorted(download.glob("*.zip"))
        if not zips:
            raise DataError(f"{download}: the kaggle package left no .zip; delete the folder and run again")
        with io.atomic_folder(target) as build:  # target is missing or empty here
            unpacked = build.with_name("unpacked")
            for z in zips:
                unpack(z, unpacked)
            os.replace(single_folder(unpacked), build)
            _flatten(build, unpack)
            if not (build / "train").is_dir():
                raise DataError(f"{zips[0]}: no train/ (or imgs/train/) inside; it is not the expected competition")
        shutil.rmtree(download, ignore_errors=True)
    make_split(target, split_dir, **source.split)
    return split_dir


def _flatten(root: Path, unpack) -> None:
    # older Kaggle archives nest imgs.zip and driver_imgs_list.csv.zip; the current one has imgs/
    for inner in sorted(root.glob("*.zip")):
        unpack(inner, root)
        inner.unlink()
    imgs = root / "imgs"
    for name in ("train", "test"):
        if (imgs / name).is_dir() and not (root / name).exists():
            (imgs / name).rename(root / name)
    if imgs.is_dir() and not any(imgs.iterdir()):
        imgs.rmdir()


def _download(competition: str, folder: Path, progress: bool) -> None:
    try:
        import kaggle  # authenticates on import: its own lookup of the token (environment, kaggle.json)
    except ImportError:
        raise UsageError(
            "the kaggle package is not installed: pip install 'fastcourse[kaggle]' (or pip install kaggle)"
        ) from None
    except (Exception, SystemExit) as exc:  # a malformed kaggle.json, a rejected key
        raise UsageError(f"the kaggle package could not log in ({_first_line(exc)}): {TOKEN_HELP}") from None
    try:
        kaggle.api.competition_download_files(competition, path=str(folder), quiet=not progress)
    except Exception as exc:  # the package raises ApiException (<1.7) or requests' HTTPError
        status = _status(exc)
        if status == 403:
            raise UsageError(
                f"Kaggle refused {competition} (403): accept the competition rules at "
                f"https://www.kaggle.com/c/{competition}/rules while logged in as the "
                "account in your token, then run again"
            ) from None
        if status == 401:
            raise UsageError(f"Kaggle rejected the credentials (401): {TOKEN_HELP}") from None
        if status == 404:
            raise DataError(f"Kaggle has no competition {competition!r} (404)") from None
        raise DataError(f"Kaggle download of {competition} failed ({_first_line(exc)}); run again to retry") from None


def _status(exc: Exception):
    for value in (getattr(exc, "status", None), getattr(getattr(exc, "response", None), "status_code", None)):
        try:
            return int(value)
        except (TypeError, ValueError):
            continue
    text = str(exc)
    return next((code for code in (403, 401, 404) if str(code) in text), None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
