"""The image files users really have: what to read, what to skip, and how to decode each.

`inspect(path)` reads one file's header (Pillow) and says whether it is usable, and whether
it needs the Pillow decoder rather than TensorFlow's (TF ignores EXIF orientation, cannot
read WebP or TIFF, and treats CMYK, alpha and 16-bit gray in ways we do not want).
`pillow_rgb(path)` is that decoder. `scan(files)` inspects a whole split in a thread pool and
returns a ScanReport with counts by kind and every bad file by path.

What is legal, and why:
- JPEG (and phone MPO), PNG, WebP, TIFF, BMP, GIF (first frame). Other formats Pillow knows
  (EPS, PSD, ICO...) are refused: a renamed file should not reach an exotic decoder.
- EXIF orientation is applied exactly as Pillow's ImageOps.exif_transpose does (phones store
  portrait photos sideways and rely on it).
- Transparency is composited on white, as viewers show it (dropping alpha exposes whatever
  colour the invisible pixels happen to hold, often black).
- 16-bit gray is scaled to 8 bits (v / 257, so 65535 -> 255), never clipped; 16-bit RGB PNGs
  keep their high byte (both decoders). CMYK (also Adobe's inverted JPEGs) is converted by
  Pillow. 32-bit float images are refused: their range is unknown.
- Hidden files and OS litter (.DS_Store, ._AppleDouble, Thumbs.db, desktop.ini, __MACOSX/)
  are counted as ignored; other non-image files (notes.txt, .heic photos) are ignored but
  named, as a user may expect them to be read.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")  # Pillow openers (JPEG also opens MPO); others refused
TF_FAST = {"JPEG", "MPO", "PNG"}  # what tf.io.decode_image reads as we want (modes below)
TF_MODES = {"L", "RGB", "P"}
OS_FILES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}
OS_FOLDERS = {"__macosx", "$recycle.bin", "system volume information", "@eadir"}
SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
ORIENTATION = 0x0112
Check = Literal["fast", "full", "none"]

# counted kinds, in the order a summary lists them
NOTE_EXIF = "need EXIF rotation (applied)"
NOTE_CMYK = "CMYK (converted)"
NOTE_16 = "16-bit (scaled to 8-bit)"
NOTE_ALPHA = "transparent (composited on white)"
IGNORED_OS = "hidden/OS files ignored"
IGNORED_OTHER = "non-image files ignored"
PROBLEMS = ("empty", "truncated", "corrupt", "not an image", "unsupported", "too large", "missing", "bad name")


def is_os_litter(name: str) -> bool:
    """Hidden files, macOS resource forks (._x.jpg) and Windows/NAS thumbnails."""
    return name.startswith(".") or name.lower() in OS_FILES or name.lower() in OS_FOLDERS


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


GREY_MODES = {"1", "L", "LA", "La", "F", *SIXTEEN_BIT}  # Pillow modes with one colour channel


@dataclass(frozen=True)
class FileStatus:
    """One file: `problem` (kind, reason) when unusable; `notes` on conversions; `pillow` decoder;
    `grey` (one colour channel) and `size` (height, width) from its header."""

    path: str
    problem: Optional[tuple[str, str]] = None
    notes: tuple[str, ...] = ()
    pillow: bool = False
    grey: bool = False
    size: tuple[int, int] = (0, 0)


def inspect(path: str, check: Check = "fast") -> FileStatus:
    """Read `path`'s header (and with check="full" decode it) and classify it."""
    from PIL import Image, UnidentifiedImageError

    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # a name TensorFlow cannot carry (non-UTF-8 bytes on Linux)
        return FileStatus(path, ("bad name", "file name is not valid UTF-8; rename the file"))
    try:
        if os.path.getsize(path) == 0:
            return FileStatus(path, ("empty", "empty file (0 bytes); copy it again"))
        with Image.open(path, formats=FORMATS) as im:
            fmt, mode, size = im.format, im.mode, (im.height, im.width)
            orientation = im.getexif().get(ORIENTATION, 1)
            alpha = "A" in mode or "transparency" in im.info
            if check == "full":
                im.load()
    except FileNotFoundError:
        return FileStatus(path, ("missing", "no such file"))
    except UnidentifiedImageError:
        return FileStatus(path, _not_an_image(path))
    except Image.DecompressionBombError as exc:  # decoding it would take gigabytes
        return FileStatus(path, ("too large", f"image too large to decode safely ({exc}); resize it first"))
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's truncated / corrupt errors
        kind = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        return FileStatus(path, (kind, f"unreadable image: {exc}"))
    if mode == "F":
        return FileStatus(path, ("unsupported", "32-bit float image; save it as 8- or 16-bit"))
    if check == "fast" and fmt in TF_FAST:
        truncated = _check_trailer(path, fmt)
        if truncated:
            return FileStatus(path, ("truncated", truncated))
    notes = []
    if orientation in range(2, 9):  # 1 is upright; other values are invalid and ignored, as Pillow does
        notes.append(NOTE_EXIF)
    if mode == "CMYK":
        notes.append(NOTE_CMYK)
    if mode in SIXTEEN_BIT:
        notes.append(NOTE_16)
    if alpha:
        notes.append(NOTE_ALPHA)
    if fmt not in TF_FAST:
        notes.append(f"{fmt} (decoded with Pillow)")
    pillow = bool(notes) or mode not in TF_MODES
    return FileStatus(path, None, tuple(notes), pillow, mode in GREY_MODES, size)


MAGIC = {b"\xff\xd8": "JPEG", b"\x89PNG": "PNG", b"GIF8": "GIF", b"BM": "BMP", b"II*\0": "TIFF", b"MM\0*": "TIFF"}


def _not_an_image(path: str) -> tuple[str, str]:
    """(kind, reason) for a file Pillow cannot identify: damaged image, HEIC, text, other."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    fmt = next((f for magic, f in MAGIC.items() if head.startswith(magic)), None)
    if fmt is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        fmt = "WebP"
    if fmt:
        return "corrupt", f"corrupt {fmt} (its header is damaged); replace the file"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"):
        return "not an image", "HEIC photo, which cannot be read; convert it to JPEG"
    if head.lstrip()[:1] in (b"<", b"{") or all(32 <= b < 127 or b in b"\r\n\t" for b in head):
        return "not an image", "not an image: a text file with an image's name"
    return "not an image", "not an image: content is not JPEG, PNG, WebP, TIFF, BMP or GIF"


def _check_trailer(path: str, fmt: str) -> Optional[str]:
    """Truncated JPEG/PNG files lack their end marker; a cheap test that reads only the tail."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 1024))
        tail = fh.read()
    if fmt in ("JPEG", "MPO") and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if fmt == "PNG" and b"IEND" not in tail[-12:]:
        return "truncated PNG (no IEND chunk)"
    return None


def pillow_rgb(path: str) -> np.ndarray:
    """Decode `path` with Pillow -> uint8 (H, W, 3) RGB, upright, alpha on white, 16-bit scaled."""
    from PIL import Image, ImageOps

    with Image.open(path, formats=FORMATS) as im:
        im = ImageOps.exif_transpose(im)
    if im.mode in SIXTEEN_BIT:
        gray = np.rint(np.asarray(im, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode == "F":
        raise ValueError("32-bit float image; save it as 8- or 16-bit")
    if "A" in im.mode or "transparency" in im.info:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    return np.asarray(im.convert("RGB"))


@dataclass
class ScanReport:
    """What one scan of a split found: counts by kind, every bad and ignored file by path."""

    folder: str
    ok: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (path, kind, reason)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, kind)
    notes: Counter = field(default_factory=Counter)  # conversion -> count
    warnings: list[str] = field(default_factory=list)  # e.g. a class valid lacks

    @property
    def scanned(self) -> int:
        return self.ok + len(self.problems) + len(self.ignored)

    def counts(self) -> dict[str, int]:
        out = {"ok": self.ok}
        out.update(Counter(kind for _, kind, _ in self.problems))
        out.update(Counter(kind for _, kind in self.ignored))
        out.update(self.notes)
        return out

    def summary(self) -> str:
        """ "scanned 2,314 files in data/x/train: 2,301 ok, 3 truncated, 5 hidden/OS files ignored, ..."."""
        parts = [f"{self.ok:,} ok"]
        bad = Counter(k for _, k, _ in self.problems)
        parts += [f"{bad[kind]:,} {_plural(kind, bad[kind])}" for kind in PROBLEMS if bad[kind]]
        parts += [f"{n:,} {kind}" for kind, n in Counter(k for _, k in self.ignored).items()]
        parts += [f"{n:,} {kind}" for kind, n in self.notes.items()]
        return f"scanned {self.scanned:,} files in {self.folder}: {', '.join(parts)}"

    def lines(self, limit: int = 5) -> list[str]:
        """The summary, then the first `limit` bad (and named ignored) files and the warnings."""
        named = [(p, r) for p, _, r in self.problems] + [(p, k) for p, k in self.ignored if k == IGNORED_OTHER]
        out = [self.summary()] + [f"  {p}: {r}" for p, r in named[:limit]]
        if len(named) > limit:
            out.append(f"  ... and {len(named) - limit} more (all in the dataset's .report)")
        return out + [f"  {w}" for w in self.warnings]


def _plural(kind: str, n: int) -> str:
    return {"not an image": "not images"}.get(kind, kind) if n != 1 else kind


def scan(files: Sequence[str], check: Check = "fast", workers: int = 8) -> list[FileStatus]:
    """inspect() every file in a thread pool (Pillow releases the GIL while reading).

    With check="none" no file is opened: only a missing file is reported (as every check
    reports it, so a missing file is handled one way), and the decoder follows the extension."""
    if check == "none":
        return [
            FileStatus(f, pillow=os.path.splitext(f)[1].lower() not in (".jpg", ".jpeg", ".png"))
            if os.path.isfile(f)
            else FileStatus(f, ("missing", "no such file"))
            for f in files
        ]
    if not files:
        return []
    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda f: inspect(f, check), files, chunksize=64)
        # a bar only where the check takes a while (Statefarm's 80k test images)
        return list(tqdm(results, total=len(files), desc="checking images", unit="file", disable=len(files) < 5000))


def files_fingerprint(files: Sequence[str], image_size: Sequence[int]) -> str:
    """SHA-256 of what a list of image files is: each path, size and modification time, in order,
    and the size the images are resized to. Keys the features cache (data/features.py, through
    FolderSource.fingerprint) and the decoded-image cache (data/pipeline.py). A file gone since
    it was listed counts as a change. (The text hashed is the features cache's since 0.1.0, so
    its files stay valid.)"""
    import hashlib

    digest = hashlib.sha256(repr(tuple(image_size)).encode())
    for f in files:
        try:
            st = os.stat(f)
            digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{f}\0missing\n".encode())
    return digest.hexdigest()


__all__ = [
    "IMAGE_EXTENSIONS",
    "Check",
    "FileStatus",
    "ScanReport",
    "files_fingerprint",
    "inspect",
    "pillow_rgb",
    "scan",
    "is_os_litter",
    "is_image_name",
]
