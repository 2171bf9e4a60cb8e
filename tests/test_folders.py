"""Image-folder datasets and splits, on small generated folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fastcourse.data.folders import check_image, image_dataset, open_folder
from fastcourse.data.sources import FolderSource
from fastcourse.data.synthetic import make_image_folder
from fastcourse.errors import DataError


def split_batches(data, split: str, image_size, batch_size: int = 64):
    """A split's batches as a run reads them (fastcourse.run.inputs makes the same FolderSource)."""
    s = data.split(split)
    return FolderSource(s.files, s.labels, data.num_classes, tuple(image_size), data.cache_dir, s.pillow).batches(
        batch_size
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    return {
        "dogscats": make_image_folder(root / "dc", "dogscats", classes=2, per_class=10, valid_per_class=3, size=40),
        "statefarm": make_image_folder(root / "sf", "statefarm", classes=3, per_class=12, drivers=6, size=40),
        "csv": make_image_folder(root / "csv", "csv", classes=3, per_class=6, size=40),
    }


def test_layouts_detected_with_classes_labels_and_groups(folders):
    dc = open_folder(folders["dogscats"])
    assert dc.layout == "dogscats" and dc.class_names == ["circle", "square"]
    assert [len(dc.split(s)) for s in ("train", "valid", "test")] == [20, 6, 6]
    assert dc.split("test").labels is None
    assert np.bincount(dc.split("train").labels).tolist() == [10, 10]
    assert all(f"/{dc.class_names[y]}/" in f for f, y in zip(dc.split("train").files, dc.split("train").labels))
    sf = open_folder(folders["statefarm"])
    assert sf.layout == "statefarm" and sf.class_names == ["c0", "c1", "c2"]
    assert len(set(sf.split("train").groups)) == 6
    csv = open_folder(folders["csv"])
    assert csv.layout == "csv" and len(csv.split("train")) == 18 and csv.num_classes == 3
    with pytest.raises(DataError, match="no 'valid' split"):
        sf.split("valid")


def test_modes_decode_to_rgb_at_model_size(folders):
    # the generator writes grayscale, RGBA and palette PNGs and CMYK JPEGs among RGB ones
    from PIL import Image

    dc = open_folder(folders["dogscats"])
    modes = {Image.open(f).mode for f in dc.split("train").files}
    assert {"L", "RGBA", "P", "CMYK", "RGB"} <= modes
    ds = image_dataset(dc.split("train").files, dc.split("train").labels, 2, (32, 24), batch_size=7)
    batches = list(ds)
    x, y = batches[0]
    assert x.shape == (7, 32, 24, 3) and x.dtype.name == "float32" and y.shape == (7, 2)
    assert sum(int(b[0].shape[0]) for b in batches) == 20
    assert 0.0 <= float(np.min(x)) and float(np.max(x)) <= 255.0 and float(np.max(x)) > 100
    unlabelled = list(split_batches(dc, "test", (32, 32), 4))
    assert sum(int(b.shape[0]) for b in unlabelled) == 6


def test_truncated_and_corrupt_images_are_reported_and_skipped_or_raised(folders, tmp_path, capsys):
    root = make_image_folder(tmp_path / "bad", "dogscats", classes=2, per_class=6, size=40, test=0)
    files = sorted((root / "train" / "circle").iterdir())
    jpg = next(f for f in files if f.suffix == ".jpg")
    png = next(f for f in files if f.suffix == ".png")
    jpg.write_bytes(jpg.read_bytes()[:200])  # truncated
    png.write_bytes(b"not an image at all")  # corrupt
    assert "truncated" in check_image(str(jpg)).lower() and check_image(str(png))
    data = open_folder(root, on_error="skip")
    assert len(data.split("train")) == 10 and {p for p, _ in data.skipped} == {str(jpg), str(png)}
    assert str(jpg) in capsys.readouterr().err
    # a whole epoch runs over the remaining files
    assert sum(int(b[0].shape[0]) for b in split_batches(data, "train", (32, 32), 4)) == 10
    with pytest.raises(DataError, match="circle/img_"):
        open_folder(root, on_error="raise")
    # unchecked, the pipeline still drops the bad files instead of crashing halfway
    unchecked = open_folder(root, check="none")
    assert sum(int(b[0].shape[0]) for b in split_batches(unchecked, "train", (32, 32), 4)) == 10


def test_csv_layout_with_valid_csv_and_unknown_labels(tmp_path):
    import pandas as pd

    root = make_image_folder(tmp_path / "digits", "csv", classes=3, per_class=4, size=32)
    table = pd.read_csv(root / "labels.csv")
    table.iloc[:9].to_csv(root / "train.csv", index=False)
    table.iloc[9:].to_csv(root / "valid.csv", index=False)
    data = open_folder(root, layout="csv", csv="train.csv", valid_csv="valid.csv")
    assert (len(data.split("train")), len(data.split("valid"))) == (9, 3)
    assert data.class_names == sorted(set(table["label"]))
    table.assign(label="nope").to_csv(root / "bad.csv", index=False)
    with pytest.raises(DataError, match="not in train.csv"):
        open_folder(root, layout="csv", csv="train.csv", valid_csv="bad.csv")
    with pytest.raises(DataError, match="3 CSV files|4 CSV files"):
        open_folder(root, layout="csv")


def test_file_cache_decodes_once_and_follows_changes(tmp_path):
    """The second pass reads the tf.data file cache (it still yields a file deleted since),
    the pixels match the uncached stream to rounding, and a changed file list gets a new cache."""
    import numpy as np

    from fastcourse.data.folders import open_folder
    from fastcourse.data.synthetic import make_image_folder

    root = make_image_folder(tmp_path / "shapes", classes=2, per_class=6, test=0, size=32, mixed_modes=False)
    cache = tmp_path / "cache"
    data = open_folder(root, cache_dir=str(cache))
    plain = open_folder(root)

    def images(ds):
        return np.concatenate([x.numpy() for x, _ in ds])

    first = images(split_batches(data, "train", (24, 24), 5))
    assert len(list(cache.glob("decoded-24x24-*.index"))) == 1
    np.testing.assert_allclose(first, images(split_batches(plain, "train", (24, 24), 5)), atol=0.5)
    # scribble over one image but keep its size and mtime: the cache key is unchanged, so the
    # second pass must serve the cached pixels, not decode the file again
    victim = Path(data.split("train").files[0])
    stat = victim.stat()
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 3 : len(raw) // 3 + 200] = bytes(200)
    victim.write_bytes(bytes(raw))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = images(split_batches(data, "train", (24, 24), 5))
    np.testing.assert_array_equal(first, again)
    fresh = images(split_batches(plain, "train", (24, 24), 5))
    # decoding the file now gives other pixels, or nothing (a corrupt JPEG is dropped)
    assert fresh.shape != first.shape or not np.allclose(fresh, first, atol=0.5)
    victim.unlink()
    images(split_batches(open_folder(root, cache_dir=str(cache), check="none"), "train", (24, 24)))
    assert len(list(cache.glob("decoded-24x24-*.index"))) == 2  # a file gone: a new cache


# --- limits: per class, in proportion, seeded ------------------------------------------------


@pytest.fixture(scope="module")
def uneven(tmp_path_factory):
    """3 classes of 4, 10 and 10 training images, 4 valid images each, 6 unlabelled test images."""
    root = make_image_folder(
        tmp_path_factory.mktemp("uneven") / "shapes",
        "dogscats",
        classes=3,
        per_class=10,
        valid_per_class=4,
        size=24,
        mixed_modes=False,
    )
    for f in sorted(sorted((root / "train").iterdir())[0].iterdir())[4:]:
        f.unlink()
    return root


def counts(split, classes=3):
    return np.bincount(split.labels, minlength=classes).tolist()


def test_limits_keep_every_class_in_proportion(uneven):
    data = open_folder(uneven)
    assert counts(data.split("train")) == [4, 10, 10]
    cut = data.limit(12, 6, seed=0)
    assert counts(cut.split("train")) == [2, 5, 5]  # 12 x (4, 10, 10) / 24
    assert counts(cut.split("valid")) == [2, 2, 2]
    assert len(cut.split("test")) == 6  # not over its size: kept whole
    assert set(cut.split("train").files) <= set(data.split("train").files)
    assert cut.split("train").files == sorted(cut.split("train").files)  # file order kept
    # the first 12 files in sorted order would be 4 of class 0 and 8 of class 1, none of class 2
    small = data.limit(3, 3, seed=0)
    assert counts(small.split("train")) == [1, 1, 1] and counts(small.split("valid")) == [1, 1, 1]
    assert len(data.limit(None, 4, seed=0).split("test")) == 4 and len(data.limit(None, 4).split("train")) == 24


def test_limits_are_drawn_from_the_seed(uneven):
    data = open_folder(uneven)
    a, b, c = (data.limit(12, 6, seed=s).split("train").files for s in (0, 0, 1))
    assert a == b and a != c
    assert counts(data.limit(12, 6, seed=1).split("train")) == [2, 5, 5]
    # each split draws its own numbers: valid is not the train draw's positions
    cut = data.limit(12, 6, seed=0)
    assert cut.split("valid").files != data.split("valid").files[:6]


def test_a_limit_that_would_empty_a_class_names_it(uneven):
    data = open_folder(uneven)
    smallest = data.class_names[0]
    with pytest.raises(DataError, match=rf"train_limit=2 .*3 classes but room for 2 images.*'{smallest}'.*at least 3"):
        data.limit(2, None, seed=0)
    with pytest.raises(DataError, match=r"test_limit=1 .*valid.*at least 3"):
        data.limit(None, 1, seed=0)


def test_config_limits_on_a_folder_are_stratified_by_the_config_seed(uneven, tiny_config):
    from fastcourse.config import load_config
    from fastcourse.run.inputs import limits_seeded, load_dataset

    def cfg(seed):
        return load_config(
            tiny_config(
                seed=seed, data={"name": "image_folder", "path": str(uneven), "train_limit": 12, "test_limit": 6}
            )
        )

    first = load_dataset(cfg(5))
    assert counts(first.split("train")) == [2, 5, 5] and counts(first.split("valid")) == [2, 2, 2]
    assert first.split("train").files == open_folder(uneven).limit(12, 6, seed=5).split("train").files
    assert load_dataset(cfg(6)).split("train").files != first.split("train").files
    with limits_seeded(5):  # an ensemble's members draw from the ensemble's seed, whatever theirs
        assert load_dataset(cfg(6)).split("train").files == first.split("train").files


# --- a labels CSV with missing files ----------------------------------------------------------


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_labels_csv_missing_a_file_skips_and_names_it_wherever_it_sits(tmp_path, capsys, where):
    import pandas as pd

    root = make_image_folder(tmp_path / "digits", "csv", classes=3, per_class=4, size=24, mixed_modes=False)
    table = pd.read_csv(root / "labels.csv")
    row = {"first": 0, "middle": len(table) // 2, "last": len(table) - 1}[where]
    gone = root / "images" / table["filename"][row]
    gone.unlink()
    for check in ("fast", "none"):
        data = open_folder(root, layout="csv", csv="labels.csv", check=check)
        assert len(data.split("train")) == len(table) - 1
        assert [p for p, _ in data.skipped] == [str(gone.absolute())]
        assert str(gone.name) in capsys.readouterr().err and "missing" in data.report["train"].summary()
    with pytest.raises(DataError, match=f"{gone.name}: no such file"):
        open_folder(root, layout="csv", csv="labels.csv", on_error="raise")


def test_a_labels_csv_with_none_of_its_files_is_refused(tmp_path):
    import pandas as pd

    root = make_image_folder(tmp_path / "digits", "csv", classes=3, per_class=2, size=24, mixed_modes=False)
    pd.read_csv(root / "labels.csv").assign(filename=lambda t: "x" + t["filename"]).to_csv(
        root / "other.csv", index=False
    )
    with pytest.raises(DataError, match=r"other.csv: none of its files .*set data.images"):
        open_folder(root, layout="csv", csv="other.csv")
    # named by data.images, the folder is used as it is: every file missing is the scan's error
    with pytest.raises(DataError, match="none of the 6 train images is readable"):
        open_folder(root, layout="csv", csv="other.csv", images="images")
