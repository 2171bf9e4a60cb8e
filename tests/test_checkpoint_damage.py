"""A damaged last checkpoint (fastcourse.train.checkpoint): the last two are kept, a damaged last
one is named as damaged and the run resumes from the one before, redoing the epoch it lost, and
ends with the metrics of an uninterrupted run on the same seed. A sound file of another model is
still refused as "no longer matches". Tolerance as tests/test_kill_resume.py: the redone epoch
runs the same ops on the same batches and dropout draws, so accuracy agrees to 1e-6 and the
loss to a relative 1e-4."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import keras
import pandas as pd
import pytest
import yaml

from fastcourse.cli import main
from fastcourse.train import checkpoint

EPOCHS = 3


@pytest.fixture
def dropout_yaml(tmp_path, tiny_config):
    """Dropout and augmentation: a redone epoch must draw what the lost one drew."""
    cfg = tiny_config(
        name="ckpt",
        data={"name": "mnist_sample", "train_limit": 256, "test_limit": 128},
        model={"name": "cnn_bn_dropout", "filters": [4, 8], "dense": 16},
        augment={"name": "course"},
        train={"batch_size": 32, "verbose": 0, "epochs": EPOCHS, "schedule": {"name": "one_cycle", "max_lr": 3e-3}},
    )
    path = tmp_path / "ckpt.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _interrupted(monkeypatch, capsys, config: Path, run_dir: Path, epochs: int) -> Path:
    """Run `config` into `run_dir`, Ctrl-C right after the `epochs`-th checkpoint."""
    real = checkpoint.save

    def save(model, folder, state):
        real(model, folder, state)
        if state.epoch >= epochs:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save)
    assert main(["run", str(config), "--run-dir", str(run_dir)]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    return run_dir / "checkpoints"


def _same_metrics(a: Path, b: Path) -> None:
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert mb["eval_accuracy"] == pytest.approx(ma["eval_accuracy"], abs=1e-6)
    assert mb["eval_loss"] == pytest.approx(ma["eval_loss"], rel=1e-4, abs=1e-6)


@pytest.fixture
def straight(dropout_yaml, tmp_path, capsys):
    """The uninterrupted run of the same config and seed."""
    run_dir = tmp_path / "straight"
    assert main(["run", str(dropout_yaml), "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    return run_dir


@pytest.mark.integration
def test_truncated_last_checkpoint_resumes_from_the_one_before(dropout_yaml, straight, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    folder = _interrupted(monkeypatch, capsys, dropout_yaml, run_dir, 2)
    # the last two are kept; state.json names the one before the last
    assert sorted(p.name for p in folder.glob("*.keras")) == ["epoch-0001.keras", "epoch-0002.keras"]
    state = checkpoint.read_state(folder)
    assert state["model_file"] == "epoch-0002.keras" and state["previous"]["model_file"] == "epoch-0001.keras"
    assert state["previous"]["epoch"] == 1 and len(state["previous"]["seed_states"]) == len(state["seed_states"])
    last = folder / "epoch-0002.keras"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a copy or a full disk cut it short

    assert main(["run", str(run_dir)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "no longer matches" not in out + err
    (line,) = [s for s in out.splitlines() if "is damaged" in s]
    assert line == (
        f"fastcourse: checkpoint {last} is damaged (truncated? not a whole .keras zip): "
        "resuming from epoch 1 instead; epoch 2 is redone"
    )
    _same_metrics(straight, run_dir)
    history = pd.read_csv(run_dir / "history.csv")
    assert len(history) == EPOCHS  # epoch 1 restored, epoch 2 redone once, epoch 3: no duplicate
    assert history["loss"].tolist() == pytest.approx(pd.read_csv(straight / "history.csv")["loss"].tolist(), rel=1e-4)


@pytest.mark.slow  # ~15 s; the truncated-checkpoint fallback stays in the default tier
@pytest.mark.integration
def test_zero_byte_only_checkpoint_starts_from_the_beginning(dropout_yaml, straight, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    folder = _interrupted(monkeypatch, capsys, dropout_yaml, run_dir, 1)
    only = folder / "epoch-0001.keras"
    only.write_bytes(b"")
    assert main(["run", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert (
        f"fastcourse: checkpoint {only} is damaged (zero bytes): starting from the beginning instead; epoch 1 is redone"
    ) in out.splitlines()
    _same_metrics(straight, run_dir)


@pytest.mark.integration
def test_a_sound_checkpoint_of_another_model_is_still_a_mismatch(dropout_yaml, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    folder = _interrupted(monkeypatch, capsys, dropout_yaml, run_dir, 1)
    other = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    other.save(folder / "epoch-0001.keras")  # readable, whole, and not this run's model
    assert checkpoint.damage(folder / "epoch-0001.keras") is None
    assert main(["run", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no longer matches its checkpoint" in err and "damaged" not in err


def test_damage_names_what_is_wrong_with_a_model_file(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    good = tmp_path / "good.keras"
    model.save(good)
    body = good.read_bytes()
    assert checkpoint.damage(good) is None
    cases = {"empty.keras": b"", "half.keras": body[: len(body) // 2], "text.keras": b"not a zip at all"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert checkpoint.damage(tmp_path / "empty.keras") == "zero bytes"
    assert checkpoint.damage(tmp_path / "half.keras") == "truncated? not a whole .keras zip"
    assert checkpoint.damage(tmp_path / "text.keras") == "truncated? not a whole .keras zip"
    assert checkpoint.damage(tmp_path / "missing.keras") == "missing"
    # a flipped byte inside the weights: the zip's own CRC finds it
    with zipfile.ZipFile(good) as archive:
        info = archive.getinfo(checkpoint.WEIGHTS_MEMBER)
        assert info.compress_type == zipfile.ZIP_STORED  # so the byte below is the member's data
    # the member's data follows its local header (30 bytes, then its name and extra field)
    name_len, extra_len = struct.unpack("<HH", body[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    flipped = bytearray(body)
    flipped[start + info.file_size // 2] ^= 0xFF
    (tmp_path / "flipped.keras").write_bytes(bytes(flipped))
    assert checkpoint.damage(tmp_path / "flipped.keras") == f"{checkpoint.WEIGHTS_MEMBER} fails its CRC check"
    # a zip without weights
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    assert checkpoint.damage(tmp_path / "other.keras") == f"no {checkpoint.WEIGHTS_MEMBER} in it"
