"""Unpacking downloaded archives (zip, tar.gz) safely: plain files and folders only, no member
outside the target (path traversal), into a folder that appears only when complete."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from fastcourse.errors import DataError


def unpack(archive: Path, dest: Path) -> None:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:  # ZipFile drops absolute paths and '..'
                z.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                if hasattr(tarfile, "data_filter"):  # 3.11.4+: no links out of dest, no device files
                    t.extractall(dest, filter="data")
                else:
                    t.extractall(dest, members=plain_members(t, archive))
        else:
            raise DataError(f"{archive}: neither a zip nor a tar archive; delete it and run again")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DataError(f"{archive}: cannot unpack ({exc}); delete it and run again") from None


def plain_members(t: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = t.getmembers()
    for m in members:
        if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in Path(m.name).parts:
            raise DataError(
                f"{archive}: refused member {m.name!r} (a link, a device or a path outside); "
                "the archive is not the expected dataset"
            )
    return members


def single_folder(folder: Path) -> Path:
    # fast.ai's archive holds dogscats/...; Kaggle's zips hold the files directly
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder
