"""data/archives.py unpacks downloads: every hostile member is refused or kept inside the target,
and nothing is written outside it, through Python's tar `filter="data"` and through the fallback
for Pythons without it (forced here by hiding `tarfile.data_filter`)."""

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from fastcourse.data.archives import unpack
from fastcourse.errors import DataError

SECRET = b"the user's file\n"


@pytest.fixture
def place(tmp_path):
    """tmp/outside/secret.txt (what an archive must not reach) and tmp/work/dest (the target)."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(SECRET)
    (tmp_path / "work").mkdir()
    return tmp_path, tmp_path / "work" / "dest"


def tree(root: Path, skip: Path) -> dict[str, bytes | None]:
    """Every path under `root` except those under `skip`, with file contents (None for a folder)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p == skip or skip in p.parents:
            continue
        out[str(p.relative_to(root))] = None if p.is_dir() and not p.is_symlink() else p.read_bytes()
    return out


def inside(dest: Path) -> list[str]:
    """What the target holds; each entry resolves inside it and none is a link or a device."""
    if not dest.exists():
        return []
    found = []
    for p in sorted(dest.rglob("*")):
        assert not p.is_symlink() and (p.is_file() or p.is_dir()), p
        assert dest.resolve() in p.resolve().parents, p
        found.append(str(p.relative_to(dest)))
    return found


def make_zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ok/file.txt", b"fine\n")
        for name in names:
            z.writestr(zipfile.ZipInfo(name), b"escaped?\n")
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for m in members:
            if isinstance(m, tuple):
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                t.addfile(info, io.BytesIO(m[1]))
            else:
                t.addfile(m)
    return path


def link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3  # /dev/null's numbers
    return info


def test_zip_members_with_dotdot_and_absolute_paths_stay_inside(place):
    root, dest = place
    archive = make_zip(root / "work" / "a.zip", ["../escaped.txt", "../../outside/secret.txt", "/abs/escaped.txt"])
    before = tree(root, dest)
    unpack(archive, dest)
    assert tree(root, dest) == before  # nothing written beside the target, the secret untouched
    held = inside(dest)
    assert "ok/file.txt" in held
    # ZipFile.extractall drops the leading '/' and the '..' parts: the members land inside
    assert {"escaped.txt", "outside/secret.txt", "abs/escaped.txt"} <= set(held)


HOSTILE_TAR = {
    "symlink-out": [link("s", "../../outside"), ("s/evil.txt", b"pwned\n")],
    "symlink-absolute": [link("etc", "/etc"), ("etc/evil.txt", b"pwned\n")],
    "hardlink-out": [link("h", "../../outside/secret.txt", tarfile.LNKTYPE), ("h", b"pwned\n")],
    "hardlink-absolute": [link("h", str(Path("/etc/hostname")), tarfile.LNKTYPE)],
    "device": [device("null")],
    "dotdot": [("../escaped.txt", b"pwned\n")],
    "dotdot-deep": [("a/../../../outside/secret.txt", b"pwned\n")],
}


@pytest.mark.parametrize("fallback", [False, True], ids=["filter-data", "fallback"])
@pytest.mark.parametrize("case", list(HOSTILE_TAR))
def test_hostile_tar_members_are_refused(place, case, fallback, monkeypatch):
    """Links (symbolic or hard) out of the target, devices and '..' paths: a DataError naming the
    archive, and nothing outside the target changes; what was unpacked is plain and inside."""
    root, dest = place
    if fallback:
        monkeypatch.delattr(tarfile, "data_filter")
    archive = make_tar(root / "work" / "a.tar.gz", [("ok/file.txt", b"fine\n"), *HOSTILE_TAR[case]])
    before = tree(root, dest)
    with pytest.raises(DataError, match=r"a\.tar\.gz") as err:
        unpack(archive, dest)
    assert "\n" not in str(err.value)
    assert tree(root, dest) == before
    assert (root / "outside" / "secret.txt").read_bytes() == SECRET
    held = inside(dest)
    if fallback:
        assert held == []  # the fallback checks every member before extracting any
        assert "refused member" in str(err.value)


@pytest.mark.parametrize("fallback", [False, True], ids=["filter-data", "fallback"])
def test_tar_member_with_an_absolute_path(place, fallback, monkeypatch):
    """'/abs/evil.txt': the data filter strips the '/' and keeps it inside; the fallback refuses it."""
    root, dest = place
    if fallback:
        monkeypatch.delattr(tarfile, "data_filter")
    archive = make_tar(root / "work" / "a.tar.gz", [("ok/file.txt", b"fine\n"), ("/abs/evil.txt", b"here\n")])
    before = tree(root, dest)
    if fallback:
        with pytest.raises(DataError, match="refused member '/abs/evil.txt'"):
            unpack(archive, dest)
        assert inside(dest) == []
    else:
        unpack(archive, dest)
        assert (dest / "abs" / "evil.txt").read_bytes() == b"here\n"
        assert set(inside(dest)) == {"ok", "ok/file.txt", "abs", "abs/evil.txt"}
    assert tree(root, dest) == before
    assert not Path("/abs/evil.txt").exists()


@pytest.mark.parametrize("fallback", [False, True], ids=["filter-data", "fallback"])
def test_a_plain_tar_unpacks_whole(place, fallback, monkeypatch):
    """Both paths unpack an honest archive: folders and files, contents intact."""
    root, dest = place
    if fallback:
        monkeypatch.delattr(tarfile, "data_filter")
    folder = tarfile.TarInfo("train/cats")
    folder.type = tarfile.DIRTYPE
    archive = make_tar(root / "work" / "a.tar.gz", [folder, ("train/cats/c0.txt", b"meow\n"), ("valid/d.txt", b"wo")])
    unpack(archive, dest)
    assert (dest / "train" / "cats" / "c0.txt").read_bytes() == b"meow\n"
    assert (dest / "valid" / "d.txt").read_bytes() == b"wo"
    assert set(inside(dest)) == {"train", "train/cats", "train/cats/c0.txt", "valid", "valid/d.txt"}


def test_neither_zip_nor_tar_is_refused(place):
    root, dest = place
    junk = root / "work" / "a.zip"
    junk.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="neither a zip nor a tar archive"):
        unpack(junk, dest)
    assert inside(dest) == []
