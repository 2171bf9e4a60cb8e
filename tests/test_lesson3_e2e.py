"""Lesson 3 end to end on a generated Statefarm-like JPEG folder, through the CLI as a user runs it:
grouped split -> cached features with 2 augmented passes -> batchnorm head -> ensemble of 3 heads
sharing the cache -> fine-tune with unfrozen blocks -> predict with TTA -> submission -> views.
VGG16 runs at 32x32 from random weights (no ImageNet weights offline)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fastcourse.data.synthetic import make_image_folder

pytestmark = pytest.mark.integration  # every test here starts a process or runs for seconds

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).with_name("fastcourse"))


def cli(*args, cwd) -> str:
    proc = subprocess.run(
        [EXE, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def config(tmp: Path, data_path: Path, **sections) -> Path:
    cfg = {
        "name": sections.pop("name"),
        "seed": 0,
        "out": str(tmp / "runs"),
        "data": {"name": "statefarm", "path": str(data_path), "image_size": [32, 32]},
        "model": {"name": "vgg16", "include_top": False},
        "augment": {"name": "statefarm"},
        "train": {"batch_size": 16, "epochs": 2, "verbose": 0, "schedule": {"name": "one_cycle", "max_lr": 3e-3}},
        **sections,
    }
    path = tmp / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_dir_of(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1].split("run directory: ", 1)[1])


@pytest.mark.slow  # the lesson's whole path in 5 processes, over a minute; each step has its default-tier test
def test_lesson3_from_split_to_submission(tmp_path):
    raw = make_image_folder(tmp_path / "statefarm", "statefarm", classes=10, per_class=6, test=6, size=40, drivers=6)
    # 1. the grouped split: no driver on both sides
    summary = json.loads(cli("split", raw, "--method", "grouped", "--valid", 20, "--json", cwd=tmp_path))
    data = Path(str(raw) + "_split")
    drivers = pd.read_csv(raw / "driver_imgs_list.csv").set_index("img")["subject"]
    names = {s: {p.name for p in (data / s).rglob("*.*")} for s in ("train", "valid")}
    assert names["train"] and names["valid"] and not names["train"] & names["valid"]
    assert not set(drivers[list(names["train"])]) & set(drivers[list(names["valid"])])
    assert summary  # the JSON the command printed for scripts

    # 2-4. features with 2 augmented passes -> BN head -> an ensemble of 3 heads on one cache
    cache = tmp_path / "cache"
    ens = config(
        tmp_path,
        data,
        name="heads",
        task={
            "name": "features",
            "cache_dir": str(cache),
            "passes": 2,
            "head": {"units": 32, "dropout": 0.5, "batchnorm": True},
        },
        ensemble={"members": 3},
    )
    run = run_dir_of(cli("run", ens, cwd=tmp_path))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["ensemble_members"] == 3 and len(metrics["members"]) == 3
    assert metrics["eval_split"] == "valid" and metrics["keras_model"]["max_abs_diff_from_mean_rule"] < 1e-5
    member = json.loads((run / "members" / "0" / "metrics.json").read_text())
    assert member["passes"] == 2 and member["feature_shape"] == [2, 2, 512]
    # the three members shared the cache: 3 passes of train + the valid images, computed once
    assert len(list(cache.glob("*.npy"))) == 4
    probs = np.stack([np.load(run / "members" / str(i) / "eval_probs.npy") for i in range(3)])
    np.testing.assert_allclose(np.load(run / "eval_probs.npy"), probs.mean(0), atol=1e-6)

    # 5. fine-tune: the body frozen for an epoch, then every block at spread rates
    ft = config(
        tmp_path,
        data,
        name="finetune",
        model={"name": "vgg16", "dropout": 0.0},
        task={"name": "finetune", "freeze_epochs": 1, "unfreeze_epochs": 1, "lr_mult": 10},
    )
    ft_run = run_dir_of(cli("run", ft, cwd=tmp_path))
    ft_metrics = json.loads((ft_run / "metrics.json").read_text())
    assert ft_metrics["epochs"] == 2 and ft_metrics["unfreeze_epochs"] == 1

    # 6. predict the valid images with TTA: the same images, in the run's order, rows summing to 1
    cli("predict", run, data / "valid", "--tta", 2, "--out", tmp_path / "pred", cwd=tmp_path)
    pred = pd.read_csv(next((tmp_path / "pred").glob("predictions_*.csv")))
    assert len(pred) == len(names["valid"]) and list(pred.columns[1:]) == [f"c{i}" for i in range(10)]
    np.testing.assert_allclose(pred.iloc[:, 1:].sum(1), 1.0, atol=1e-4)

    # 7. the Kaggle submission: img,c0..c9, clipped, gzip
    cli("submit", run, data / "test", "--kind", "statefarm", "--out", tmp_path / "sub", cwd=tmp_path)
    with gzip.open(next((tmp_path / "sub").glob("*.csv.gz")), "rt") as f:
        sub = pd.read_csv(f)
    assert list(sub.columns) == ["img", *[f"c{i}" for i in range(10)]] and len(sub) == 6
    values = sub.iloc[:, 1:].to_numpy()
    assert values.min() >= (1 - 0.93) / 9 - 1e-6 and values.max() <= 0.93 + 1e-6

    # 8. the lesson's views of the ensemble on the valid folder
    cli("views", run, data / "valid", "--out", tmp_path / "views", cwd=tmp_path)
    pngs = {p.stem for p in (tmp_path / "views").rglob("*.png")}
    assert {"most_confident_incorrect", "most_uncertain", "confusion_matrix"} <= pngs
