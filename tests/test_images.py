"""Images users really have: each kind is decoded right, or named by path and skipped."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from fastcourse.data.folders import image_dataset, open_folder
from fastcourse.data.images import inspect
from fastcourse.data.sources import FolderSource
from fastcourse.errors import DataError

RED, GRAY = (230, 20, 20), (128, 128, 128)
W, H = 24, 16  # stored size; orientations 5-8 display it as 16 x 24


def split_batches(data, split: str, image_size, batch_size: int = 64):
    """A split's batches as a run reads them (fastcourse.run.inputs makes the same FolderSource)."""
    s = data.split(split)
    return FolderSource(s.files, s.labels, data.num_classes, tuple(image_size), data.cache_dir, s.pillow).batches(
        batch_size
    )


def decode(path, size) -> np.ndarray:
    """One file through the real pipeline (the decoder chosen by the header scan)."""
    (batch,) = list(image_dataset([str(path)], None, None, size, batch_size=1))
    return batch.numpy()[0]


def corner(image: np.ndarray) -> str:
    """Which corner holds the red block."""
    h, w = image.shape[:2]
    quads = {
        "top-left": image[: h // 3, : w // 3],
        "top-right": image[: h // 3, -w // 3 :],
        "bottom-left": image[-h // 3 :, : w // 3],
        "bottom-right": image[-h // 3 :, -w // 3 :],
    }
    return max(quads, key=lambda k: quads[k][..., 0].mean() - quads[k][..., 1].mean())


def phone_photo(orientation: int) -> Image.Image:
    im = Image.new("RGB", (W, H), GRAY)
    im.paste(RED, (0, 0, 6, 6))  # stored top-left
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    return im


# orientation -> where the stored top-left block is shown (the EXIF standard, as Pillow applies it)
ORIENTED = {
    1: "top-left",
    2: "top-right",
    3: "bottom-right",
    4: "bottom-left",
    5: "top-left",
    6: "top-right",
    7: "bottom-right",
    8: "bottom-left",
}


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("orientation", list(ORIENTED))
def test_exif_orientation_applied_as_pillow_does(tmp_path, orientation, suffix):
    path = tmp_path / f"photo{suffix}"
    im = phone_photo(orientation)
    im.save(path, exif=im.info["exif"], **({"quality": 95} if suffix == ".jpg" else {}))
    shown = ImageOps.exif_transpose(Image.open(path))
    size = (shown.height, shown.width)
    assert size == ((H, W) if orientation < 5 else (W, H))
    out = decode(path, size)
    assert corner(out) == ORIENTED[orientation]
    # PNG: exact; JPEG: TF's and Pillow's libjpeg builds round differently (upright files use TF's)
    atol = 1.0 if suffix == ".png" or orientation != 1 else 12.0
    np.testing.assert_allclose(out, np.asarray(shown.convert("RGB"), np.float32), atol=atol)
    assert inspect(str(path)).pillow == (orientation != 1)


def solid(mode, value, size=(8, 6)):
    return Image.new(mode, size, value)


def rgba_on_black(alpha):
    return Image.new("RGBA", (8, 6), (255, 0, 0, alpha))


def palette_with_transparency():
    im = Image.new("P", (8, 6), 0)
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    im.paste(1, (0, 0, 4, 6))
    im.info["transparency"] = 0  # the right half (index 0) is transparent
    return im


def sixteen_bit(value):
    return Image.fromarray(np.full((6, 8), value, np.uint16))


# (name, image, file suffix, save options, expected RGB of every pixel or of (left, right) halves)
CASES = [
    ("rgb jpeg", solid("RGB", (10, 200, 30)), ".jpg", {"quality": 100}, (10, 200, 30)),
    ("cmyk white jpeg", solid("CMYK", (0, 0, 0, 0)), ".jpg", {"quality": 100}, (255, 255, 255)),
    ("cmyk black jpeg", solid("CMYK", (0, 0, 0, 255)), ".jpg", {"quality": 100}, (0, 0, 0)),
    ("gray png", solid("L", 77), ".png", {}, (77, 77, 77)),
    ("palette png", solid("RGB", (10, 200, 30)).quantize(), ".png", {}, (10, 200, 30)),
    ("palette transparency", palette_with_transparency(), ".png", {}, ((10, 200, 30), (255, 255, 255))),
    ("rgba opaque", rgba_on_black(255), ".png", {}, (255, 0, 0)),
    ("rgba transparent -> white", rgba_on_black(0), ".png", {}, (255, 255, 255)),
    ("rgba half", rgba_on_black(128), ".png", {}, (255, 127, 127)),
    ("gray+alpha", solid("LA", (0, 0)), ".png", {}, (255, 255, 255)),
    ("16-bit max", sixteen_bit(65535), ".png", {}, (255, 255, 255)),
    ("16-bit mid", sixteen_bit(257 * 100), ".png", {}, (100, 100, 100)),
    ("16-bit tiff", sixteen_bit(257 * 40), ".tif", {}, (40, 40, 40)),
    ("1-bit png", solid("1", 1), ".png", {}, (255, 255, 255)),
    ("webp lossless", solid("RGB", (10, 200, 30)), ".webp", {"lossless": True}, (10, 200, 30)),
    ("tiff", solid("RGB", (10, 200, 30)), ".tiff", {}, (10, 200, 30)),
    ("tiff cmyk", solid("CMYK", (0, 0, 0, 0)), ".tif", {}, (255, 255, 255)),
    ("bmp", solid("RGB", (10, 200, 30)), ".bmp", {}, (10, 200, 30)),
    ("bmp palette", solid("RGB", (10, 200, 30)).quantize(), ".bmp", {}, (10, 200, 30)),
    ("gif", solid("RGB", (10, 200, 30)).quantize(), ".gif", {}, (10, 200, 30)),
]


@pytest.mark.parametrize("name, image, suffix, options, expected", CASES, ids=[c[0] for c in CASES])
def test_modes_and_formats_decode_to_the_right_rgb(tmp_path, name, image, suffix, options, expected):
    path = tmp_path / f"image{suffix}"
    image.save(path, **options)
    out = decode(path, (6, 8))
    assert out.shape == (6, 8, 3)
    left, right = (expected, expected) if isinstance(expected[0], int) else expected
    np.testing.assert_allclose(out[:, :4], np.broadcast_to(left, (6, 4, 3)), atol=2.0)
    np.testing.assert_allclose(out[:, 4:], np.broadcast_to(right, (6, 4, 3)), atol=2.0)


def good(path, color=(10, 200, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def folder(tmp_path, per_class=3):
    root = tmp_path / "data"
    for cls in ("cats", "dogs"):
        for i in range(per_class):
            good(root / "train" / cls / f"{i}.jpg")
            good(root / "valid" / cls / f"{i}.png")
    return root


def jpeg_bytes():
    import io

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), RED).save(buf, "JPEG")
    return buf.getvalue()


# (file name, content, kind in the report, words of the reason)
BAD = [
    ("empty.jpg", b"", "empty", "0 bytes"),
    ("cut.jpg", jpeg_bytes()[:300], "truncated", "runcated"),
    ("cut2.jpg", jpeg_bytes()[:-40], "truncated", "truncated JPEG (no end-of-image marker)"),
    ("notes.jpg", b"my holiday notes\n", "not an image", "text file"),
    ("noise.png", bytes(range(256)) * 4, "not an image", "not an image"),
    ("iphone.jpg", b"\0\0\0\x18ftypheic" + bytes(100), "not an image", "HEIC"),
    ("page.png", b"<html><body>404</body></html>", "not an image", "text file"),
    ("fake.png", b"\x89PNG\r\n\x1a\n" + bytes(40), "corrupt", "corrupt PNG (its header is damaged)"),
]


def test_bad_files_are_named_counted_and_skipped(tmp_path, capsys):
    root = folder(tmp_path)
    for name, content, _, _ in BAD:
        (root / "train" / "cats" / name).write_bytes(content)
    data = open_folder(root)
    report = data.report["train"]
    by_path = {p: (kind, reason) for p, kind, reason in report.problems}
    for name, _, kind, words in BAD:
        path = str((root / "train" / "cats" / name).absolute())
        assert by_path[path][0] == kind and words in by_path[path][1], (name, by_path[path])
    assert report.ok == 6 and len(data.split("train")) == 6 and len(data.skipped) == len(BAD)
    err = capsys.readouterr().err
    assert f"scanned 14 files in {root / 'train'}: 6 ok, 1 empty, 2 truncated, 1 corrupt, 4 not images" in err
    assert err.count("train/cats/") == 5 and "... and 3 more (all in the dataset's .report)" in err
    assert sum(int(b[0].shape[0]) for b in split_batches(data, "train", (8, 8), 4)) == 6
    with pytest.raises(DataError, match=r"train/cats/.*\(and 7 more\); remove or replace it"):
        open_folder(root, on_error="raise")


def test_os_litter_ignored_and_counted_odd_names_read(tmp_path, capsys):
    root = folder(tmp_path)
    cats = root / "train" / "cats"
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "._0.jpg", ".hidden.jpg"):
        (cats / name).write_bytes(b"\0\x05\x16\x07 junk")
    (cats / "readme.txt").write_text("not a photo")
    (root / "train" / "__MACOSX").mkdir()
    (root / "train" / "__MACOSX" / "._x.jpg").write_bytes(b"junk")
    (root / "train" / ".thumbnails").mkdir()
    odd = ["my cat #1 (100%), best.JPG", "-rf.jpg", "ünïcødé 猫.jpeg", "a'b\"c;d.png", "tab\tname.png"]
    for name in odd:
        good(cats / name, RED)
    data = open_folder(root)
    assert data.class_names == ["cats", "dogs"]
    report = data.report["train"]
    assert report.ok == 6 + len(odd) and not report.problems
    assert report.counts()["hidden/OS files ignored"] == 5 and report.counts()["non-image files ignored"] == 1
    err = capsys.readouterr().err
    assert "5 hidden/OS files ignored, 1 non-image files ignored" in err and "readme.txt" in err
    x, y = next(iter(split_batches(data, "train", (8, 8), 64)))
    assert x.shape[0] == 6 + len(odd)
    files = data.split("train").files
    for name in odd:
        assert np.allclose(x[files.index(str((cats / name).absolute()))], RED, atol=2)


def test_class_folders_that_differ_between_splits(tmp_path, capsys):
    root = folder(tmp_path)
    (root / "train" / "birds").mkdir()
    with pytest.raises(DataError, match=r"train/birds: no images in this class folder .*add images or remove"):
        open_folder(root)
    (root / "train" / "birds" / "x.jpg").write_bytes(b"")  # only a bad file: still no usable image
    with pytest.raises(DataError, match=r"no readable train images of class\(es\) \['birds'\]"):
        open_folder(root)
    good(root / "train" / "birds" / "x.jpg")
    data = open_folder(root)  # valid lacks birds: allowed, said once
    assert data.class_names == ["birds", "cats", "dogs"] and len(data.split("valid")) == 6
    assert "valid has no images of class(es) ['birds']" in capsys.readouterr().err
    (root / "valid" / "fish").mkdir()
    good(root / "valid" / "fish" / "0.png")
    with pytest.raises(DataError, match=r"valid: class folder\(s\) \['fish'\] are not in train/"):
        open_folder(root)


def test_a_file_broken_after_the_scan_is_named_and_dropped(tmp_path, capsys):
    root = folder(tmp_path)
    webp = good(root / "train" / "cats" / "late.webp")
    data = open_folder(root)
    webp.write_bytes(b"RIFF\0\0\0\0WEBPjunk")
    assert sum(int(b[0].shape[0]) for b in split_batches(data, "train", (8, 8), 4)) == 6
    assert f"skipping {webp.absolute()}" in capsys.readouterr().err


def test_one_fingerprint_keys_both_caches_and_follows_the_files(tmp_path):
    """files_fingerprint is the features cache's key since 0.1.0 (so cached features stay valid)
    and names the decoded-image cache: a changed size, mtime, image size or a missing file changes it."""
    import hashlib
    import os

    from fastcourse.data.images import files_fingerprint
    from fastcourse.data.sources import FolderSource

    files = []
    for i in range(3):
        files.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (8, 8), RED).save(files[-1])
    old = hashlib.sha256(repr((32, 32)).encode())  # the 0.1.0 FolderSource.fingerprint, verbatim
    for f in files:
        st = os.stat(f)
        old.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    first = files_fingerprint(files, (32, 32))
    assert first == old.hexdigest() == FolderSource(files, None, 2, (32, 32)).fingerprint()
    assert files_fingerprint(files, (24, 24)) != first
    st = os.stat(files[1])
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    touched = files_fingerprint(files, (32, 32))
    assert touched != first
    os.remove(files[2])
    assert files_fingerprint(files, (32, 32)) not in (first, touched)  # a missing file is a change, not a crash

    cache = tmp_path / "cache"
    list(image_dataset(files[:2], None, None, (32, 32), batch_size=2, cache_dir=str(cache)))
    name = files_fingerprint(files[:2], (32, 32))[:16]
    assert [p.name for p in cache.glob("*.index")] == [f"decoded-32x32-{name}.index"]


def test_a_missing_file_is_reported_by_every_check(tmp_path):
    from fastcourse.data.images import scan

    good = tmp_path / "a.png"
    Image.new("RGB", (8, 8), RED).save(good)
    for check in ("fast", "full", "none"):
        statuses = scan([str(good), str(tmp_path / "gone.jpg")], check)
        assert statuses[0].problem is None and statuses[1].problem == ("missing", "no such file"), check
