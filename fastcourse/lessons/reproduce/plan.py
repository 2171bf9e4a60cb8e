"""The reproduction's plan (reproduce.yaml: dataset, steps, overrides, quick, budget), read and
written here alone, and each step's config built from it: its YAML, the quick shrink, the budget's
training settings, then the user's overrides. A step's wall time over resumes (step_time.json) is
written and read here too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import yaml

from fastcourse import io

STEPS = ("linear", "hidden", "cnn", "cnn_augment", "cnn_bn", "cnn_bn_dropout", "ensemble")

LADDER_DATASETS = ("mnist", "fashion_mnist")  # not the dataset registry: the ladders it can reproduce

# --quick: a smoke reproduction that finishes in minutes on 2 CPU cores. Batch 8 gives the
# batchnorm steps 1,000 updates: BatchNormalization's moving variance starts at 1 and decays by
# 0.99 a step, and the first layer's true variance is ~0.01, so at batch 32 (250 updates) the
# clean test accuracy of the BN models was ~0.15 while their training accuracy was 0.94.
QUICK = {"train_limit": 4000, "test_limit": 1000, "batch_size": 8, "phases": [[1, 1.0e-3], [1, 1.0e-4]], "members": 3}

PLAN_FILE = "reproduce.yaml"
STEP_TIME = "step_time.json"  # in each step's directory: its wall seconds, accumulated over resumes
REUSED_STEP = "cnn_bn_dropout"  # its run is the ensemble's member 0 when the two would train alike

# --budget: the settings every step trains with. Why batch 256
# and which other levers were measured and left out: docs/lessons.md, with the command.
BUDGET_TRAIN = {
    "batch_size": 256,
    "steps_per_execution": 8,
    "precision": "auto",
    "schedule": {"name": "one_cycle", "max_lr": 6e-3},
}


def load_plan(run_dir: Path) -> dict:
    """The plan saved in a reproduction directory."""
    return yaml.safe_load((Path(run_dir) / PLAN_FILE).read_text())


def save_plan(run_dir: Path, plan: dict) -> None:
    io.write_text(Path(run_dir) / PLAN_FILE, yaml.safe_dump(plan, sort_keys=False))


def default_configs_dir() -> Path:
    """The configs shipped inside the package (an installed wheel has them too); `--configs` picks another."""
    from fastcourse.shipped import configs_dir

    return configs_dir()


def step_config(plan: dict, step: str):
    """The validated config of one step: its YAML, the quick shrink, then the user's overrides."""
    from fastcourse.config import load_config, read_yaml

    path = Path(plan["configs_dir"]) / plan["dataset"] / f"{step}.yaml"
    raw = read_yaml(path)
    if plan.get("data_name"):
        raw.setdefault("data", {})["name"] = plan["data_name"]
    if plan.get("quick"):
        _shrink(raw, plan["quick"])
    if plan.get("budget") and plan["budget"].get("epochs"):
        _budget_train(raw, plan["budget"]["epochs"].get(step, 1))
    return load_config(raw, plan.get("overrides", []), origin=str(path))


def _budget_train(raw: dict, epochs: int) -> None:
    train = raw.setdefault("train", {})
    train.update({k: (dict(v) if isinstance(v, dict) else v) for k, v in BUDGET_TRAIN.items()})
    train["epochs"] = int(epochs)


def _shrink(raw: dict, quick: dict) -> None:
    data = raw.setdefault("data", {})
    for key in ("train_limit", "test_limit"):
        data[key] = min(int(data.get(key) or quick[key]), quick[key])
    train = raw.setdefault("train", {})
    train.pop("epochs", None)
    train["batch_size"] = quick["batch_size"]
    train["schedule"] = {"name": "phases", "phases": quick["phases"]}
    ens = raw.get("ensemble")
    if ens and int(ens.get("members", 1)) > quick["members"]:
        ens["members"] = quick["members"]
        if ens.get("seeds"):
            ens["seeds"] = list(ens["seeds"])[: quick["members"]]


def step_wall_seconds(run_dir: Path, step: str) -> Optional[float]:
    """The wall seconds a step has run so far, over resumes; None before it first ran."""
    timer = Path(run_dir) / step / STEP_TIME
    return json.loads(timer.read_text())["seconds"] if timer.is_file() else None


def add_step_seconds(run_dir: Path, step: str, seconds: float) -> None:
    io.write_json(Path(run_dir) / step / STEP_TIME, {"seconds": (step_wall_seconds(run_dir, step) or 0.0) + seconds})
