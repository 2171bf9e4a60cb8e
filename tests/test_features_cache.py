"""The features cache (fastcourse.data.features) finds a damaged file and recomputes it: a
truncated, zero-byte or foreign file (another cache's, copied in) is named in one line and
computed again, never read into training; an untouched file is reused for the cost of a stat;
runs that share a cache wait for its writer (tests/test_shared_cache.py runs two processes)."""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest

from fastcourse.data.features import check_cached, manifest_path, precompute_features
from fastcourse.data.sources import ArraySource


def _conv(seed: int = 0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, keras.layers.Conv2D(4, 3, name="last_conv")(inputs))


@pytest.fixture
def source():
    x = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 1)).astype("uint8")
    return ArraySource(x, np.arange(40) % 2, 2)


def _cached(conv, source, cache):
    (path,) = precompute_features(conv, source, cache, batch_size=16, verbose=False, desc="f")
    return path


@pytest.fixture
def cached(source, tmp_path):
    """A cache holding one file, its true values (the conv part run directly) and the conv part."""
    conv = _conv()
    path = _cached(conv, source, tmp_path / "cache")
    truth = conv.predict(source.x.astype("float32"), verbose=0)
    np.testing.assert_allclose(np.load(path), truth, rtol=1e-5, atol=1e-5)
    return path, truth, conv


def _recomputed(capsys, conv, source, path, truth, words: list[str]) -> None:
    """The next run names `path` in one line with `words`, and ends with the true values there."""
    assert _cached(conv, source, path.parent) == path
    lines = [s for s in capsys.readouterr().out.splitlines() if path.name in s]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"fastcourse: features cache {path.parent}: {path.name} ") and line.endswith(
        "; recomputing it"
    )
    assert all(w in line for w in words), line
    np.testing.assert_allclose(np.load(path), truth, rtol=1e-5, atol=1e-5)
    assert check_cached(path, json.loads(manifest_path(path).read_text())["key"], {}, truth.shape, "float32") is None


def test_untouched_file_is_reused_for_a_stat(cached, source, capsys):
    path, truth, conv = cached
    record = json.loads(manifest_path(path).read_text())["file"]
    assert record["bytes"] == path.stat().st_size and len(record["crc32"]) == 8
    stamp = path.stat().st_mtime_ns
    capsys.readouterr()
    assert _cached(conv, source, path.parent) == path
    assert path.stat().st_mtime_ns == stamp and capsys.readouterr().out == ""


def test_truncated_file_is_named_and_recomputed(cached, source, capsys):
    path, truth, conv = cached
    size = path.stat().st_size
    os.truncate(path, size // 2)
    _recomputed(capsys, conv, source, path, truth, ["is truncated", f"({size // 2} of {size} bytes)"])


def test_zero_byte_file_is_named_and_recomputed(cached, source, capsys):
    path, truth, conv = cached
    size = path.stat().st_size
    path.write_bytes(b"")
    _recomputed(capsys, conv, source, path, truth, ["is empty", f"(0 of {size} bytes)"])


def test_another_caches_file_copied_in_is_named_and_recomputed(cached, source, tmp_path, capsys):
    path, truth, conv = cached
    other = _cached(_conv(seed=1), source, tmp_path / "other")  # another conv part: same shape, other values
    assert other.name != path.name and other.stat().st_size == path.stat().st_size
    shutil.copy2(other, path)  # keeps the other file's mtime, as `cp -p` would
    assert not np.allclose(np.load(path), truth)
    _recomputed(capsys, conv, source, path, truth, ["is damaged or another file", "CRC-32"])


def test_another_caches_file_with_its_manifest_is_named_and_recomputed(cached, source, tmp_path, capsys):
    path, truth, conv = cached
    other = _cached(_conv(seed=1), source, tmp_path / "other")
    shutil.copy2(other, path)
    shutil.copy2(manifest_path(other), manifest_path(path))
    _recomputed(capsys, conv, source, path, truth, ["belongs to another cache", other.name.split("-")[-1][:-4]])


def test_a_flipped_byte_is_found_once_the_file_was_touched(cached, source, capsys):
    path, truth, conv = cached
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, new mtime: the CRC is checked
    _recomputed(capsys, conv, source, path, truth, ["CRC-32 differs"])


def test_a_copy_with_the_same_bytes_is_reused_and_its_stat_recorded(cached, source, capsys):
    path, truth, conv = cached
    body = path.read_bytes()
    path.unlink()
    path.write_bytes(body)  # a restored backup: new inode and times, the same bytes
    capsys.readouterr()
    stamp = path.stat().st_mtime_ns
    assert _cached(conv, source, path.parent) == path
    assert capsys.readouterr().out == "" and path.stat().st_mtime_ns == stamp  # reused, not recomputed
    assert json.loads(manifest_path(path).read_text())["file"]["stat"][1] == stamp  # next time: a stat


def test_missing_manifest_and_a_manifest_without_checksum(cached, source, capsys):
    path, truth, conv = cached
    manifest = manifest_path(path)
    saved = json.loads(manifest.read_text())
    manifest.unlink()
    stamp = path.stat().st_mtime_ns
    _recomputed(capsys, conv, source, path, truth, [f"has no manifest ({manifest.name} is missing)"])
    assert path.stat().st_mtime_ns != stamp
    # a cache written before manifests held a checksum: adopted when whole, its checksum recorded
    old = {k: v for k, v in saved.items() if k not in ("key", "file")}
    manifest.write_text(json.dumps(old))
    stamp = path.stat().st_mtime_ns
    assert _cached(conv, source, path.parent) == path and path.stat().st_mtime_ns == stamp
    assert json.loads(manifest.read_text())["file"]["crc32"] == saved["file"]["crc32"]
    manifest.write_text(json.dumps(old))
    os.truncate(path, path.stat().st_size - 16)  # ... and refused when cut short
    _recomputed(capsys, conv, source, path, truth, ["is truncated"])
