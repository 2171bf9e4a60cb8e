"""The ensemble's member 0 reused from the cnn_bn_dropout step of a reproduction, and the flip TTA
figure reported beside the plain ensemble (fastcourse.run.ensemble, fastcourse.lessons.reproduce)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
import yaml

from fastcourse.cli import main
from fastcourse.config import load_config
from fastcourse.errors import ConfigError
from fastcourse.lessons import reproduce as rp
from fastcourse.run import ensemble
from fastcourse.run.inputs import inputs_for
from fastcourse.shipped import configs_dir
from fastcourse.tasks.runner import run_experiment

# --- flip TTA --------------------------------------------------------------------------


@pytest.mark.integration
def test_flip_tta_is_computed_from_mirrored_images_beside_the_plain_ensemble(tiny_config, tmp_path):
    cfg = load_config(
        tiny_config(
            name="tta-ens",
            data__train_limit=128,
            data__test_limit=64,
            model__filters=[4, 8],
            model__dense=16,
            ensemble={"members": 2, "tta": "flip"},
        )
    )
    run_dir = run_experiment(cfg, run_dir=tmp_path / "ens")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    source = inputs_for(cfg).eval
    x, y = source.x.astype("float32"), source.labels
    mirrored = x[:, :, ::-1, :]
    per_member = []
    for i in range(2):
        mdir = ensemble.member_dir(run_dir, i)
        model = keras.saving.load_model(mdir / "model.keras", safe_mode=True)
        plain = np.load(mdir / "eval_probs.npy")
        per_member.append((plain + model.predict(mirrored, verbose=0)) / 2)
    expected = np.mean(per_member, axis=0)
    tta_probs = np.load(run_dir / ensemble.TTA_PROBS)
    np.testing.assert_allclose(tta_probs, expected, atol=1e-5)
    plain = np.load(run_dir / "eval_probs.npy")
    assert np.abs(tta_probs - plain).max() > 1e-3  # these digit models are not mirror-invariant
    tta = metrics["tta"]
    assert tta["kind"] == "flip" and tta["eval_split"] == "test"
    assert tta["eval_accuracy"] == pytest.approx(float((expected.argmax(1) == y).mean()))
    # the plain figure stays the headline
    assert metrics["eval_accuracy"] == metrics["rules"]["mean"]["eval_accuracy"]
    assert metrics["eval_accuracy"] == pytest.approx(float((plain.argmax(1) == y).mean()))


@pytest.mark.integration
def test_flip_tta_on_an_image_folder_ensemble(tmp_path):
    from fastcourse.data.synthetic import make_image_folder

    root = make_image_folder(
        tmp_path / "shapes", "dogscats", classes=2, per_class=8, valid_per_class=6, test=0, size=24, mixed_modes=False
    )
    cfg = load_config(
        {
            "name": "tta-folder",
            "seed": 3,
            "data": {"name": "image_folder", "path": str(root), "image_size": [24, 24]},
            "model": {"name": "cnn", "filters": [4, 8], "dense": 8},
            "ensemble": {"members": 2, "tta": "flip"},
            "train": {"batch_size": 8, "epochs": 1, "verbose": 0, "precision": "float32"},
        }
    )
    run_dir = run_experiment(cfg, run_dir=tmp_path / "ens")
    images = np.concatenate([np.asarray(b) for b in inputs_for(cfg).eval.batches(8, labels=False)])
    expected = np.mean(
        [
            (
                np.load(ensemble.member_dir(run_dir, i) / "eval_probs.npy")
                + keras.saving.load_model(ensemble.member_dir(run_dir, i) / "model.keras").predict(
                    images[:, :, ::-1, :], verbose=0
                )
            )
            / 2
            for i in range(2)
        ],
        axis=0,
    )
    np.testing.assert_allclose(np.load(run_dir / ensemble.TTA_PROBS), expected, atol=1e-5)
    tta = json.loads((run_dir / "metrics.json").read_text())["tta"]
    assert tta["eval_split"] == "valid" and tta["kind"] == "flip"


def test_tta_is_validated_and_set_for_clothes_not_digits(tiny_config):
    with pytest.raises(ConfigError, match="ensemble.tta"):
        load_config(tiny_config(ensemble={"members": 2, "tta": "mirror"}))
    shipped = configs_dir()
    fashion = yaml.safe_load((shipped / "fashion_mnist" / "ensemble.yaml").read_text())
    digits = yaml.safe_load((shipped / "mnist" / "ensemble.yaml").read_text())
    assert fashion["ensemble"]["tta"] == "flip" and "tta" not in digits["ensemble"]


def test_report_has_the_tta_row_beside_the_plain_ensemble(tmp_path):
    plan = {"dataset": "fashion_mnist", "steps": ["ensemble"]}
    (tmp_path / "ensemble").mkdir()
    metrics = {
        "model": "cnn_bn_dropout",
        "eval_split": "test",
        "eval_accuracy": 0.94,
        "epochs": 16,
        "ensemble_members": 6,
        "member_accuracy": {"mean": 0.935, "std": 0.002},
        "rules": {"geometric": {"eval_accuracy": 0.941}, "vote": {"eval_accuracy": 0.939}},
        "members": [{"index": 0, "reused_from": "/x/cnn_bn_dropout"}, {"index": 1}],
        "tta": {
            "kind": "flip",
            "eval_split": "test",
            "eval_accuracy": 0.945,
            "seconds": 30.0,
            "member_accuracy": {"mean": 0.938, "std": 0.001},
        },
    }
    (tmp_path / "ensemble" / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "ensemble" / "step_time.json").write_text(json.dumps({"seconds": 600.0}))
    table = rp.results_table(tmp_path, plan).set_index("step")
    assert list(table.index) == ["ensemble", "ensemble + flip TTA"]
    assert table.loc["ensemble", "test accuracy"] == 0.94 and table.loc["ensemble + flip TTA", "test accuracy"] == 0.945
    assert table.loc["ensemble + flip TTA", "difference"] == pytest.approx(0.945 - 0.935)
    assert table.loc["ensemble + flip TTA", "minutes"] == pytest.approx(0.5)
    assert "member 0 is the cnn_bn_dropout step's run" in table.loc["ensemble", "notes"]


# --- member 0 reused -------------------------------------------------------------------


@pytest.fixture
def two_steps(tmp_path):
    """configs/mnist/{cnn_bn_dropout,ensemble}.yaml alike but for the ensemble section."""
    folder = tmp_path / "configs" / "mnist"
    folder.mkdir(parents=True)
    for step in ("cnn_bn_dropout", "ensemble"):
        cfg = {
            "name": f"mnist-{step}",
            "seed": 3,
            "data": {"name": "mnist", "train_limit": 96, "test_limit": 48},
            "model": {"name": "cnn_bn_dropout", "filters": [4, 8], "dense": 16},
            "augment": {"name": "course"},
            "train": {"batch_size": 32, "schedule": {"name": "phases", "phases": [[1, 1e-3]]}},
        }
        if step == "ensemble":
            cfg["ensemble"] = {"members": 3}
        (folder / f"{step}.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "configs"


def _reproduce(configs, out, *extra) -> int:
    return main(
        [
            "reproduce",
            "mnist",
            "--quick",
            "--steps",
            "cnn_bn_dropout,ensemble",
            "--configs",
            str(configs),
            "--out",
            str(out),
            "--set",
            "train.verbose=0",
            "--set",
            "train.batch_size=32",
            "--set",
            "train.schedule.phases=[[1, 1e-3]]",
            *extra,
        ]
    )


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """The members trained (their indices), and no MNIST on this machine (the sample stands in)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("FASTCOURSE_MNIST_PATH", raising=False)
    calls: list[int] = []
    original = ensemble.train_member

    def counting(*args, **kwargs):
        calls.append(int(args[2].name))
        if calls[-1] == counting.interrupt_at:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    counting.interrupt_at = None
    monkeypatch.setattr(ensemble, "train_member", counting)
    return counting, calls


@pytest.mark.integration
def test_member0_is_the_cnn_bn_dropout_run_also_on_resume(two_steps, tmp_path, counted, capsys):
    counting, calls = counted
    counting.interrupt_at = 2  # Ctrl-C in the last member
    out = tmp_path / "runs"
    assert _reproduce(two_steps, out) == 130
    assert calls == [1, 2]  # member 0 was never trained
    assert "ensemble member 0 is the cnn_bn_dropout step's run" in capsys.readouterr().out
    (run_dir,) = out.iterdir()
    counting.interrupt_at, calls[:] = None, []
    assert main(["reproduce", "--resume", str(run_dir)]) == 0
    assert calls == [2]  # only the unfinished member; the reused one is kept
    step, member0 = run_dir / "cnn_bn_dropout", ensemble.member_dir(run_dir / "ensemble", 0)
    np.testing.assert_array_equal(np.load(member0 / "eval_probs.npy"), np.load(step / "eval_probs.npy"))
    metrics = json.loads((run_dir / "ensemble" / "metrics.json").read_text())
    assert metrics["ensemble_members"] == 3 and metrics["members"][0]["reused_from"] == str(step.resolve())
    assert metrics["members"][0]["eval_accuracy"] == json.loads((step / "metrics.json").read_text())["eval_accuracy"]
    assert yaml.safe_load((member0 / "config.yaml").read_text())["name"] == "mnist-ensemble-member0"
    notes = pd.read_csv(run_dir / "results.csv").set_index("step").loc["ensemble", "notes"]
    assert "member 0 is the cnn_bn_dropout step's run" in notes


@pytest.mark.slow  # ~15 s; the reuse itself stays in the default tier
@pytest.mark.integration
def test_member0_is_trained_when_the_seeds_differ(two_steps, tmp_path, counted, capsys):
    _, calls = counted
    path = two_steps / "mnist" / "ensemble.yaml"
    path.write_text(path.read_text().replace("seed: 3", "seed: 4").replace("members: 3", "members: 2"))
    assert _reproduce(two_steps, tmp_path / "runs") == 0
    assert calls == [0, 1]
    assert "member 0 is the" not in capsys.readouterr().out


def test_trains_as_compares_everything_but_the_name(tiny_config):
    ens = load_config(tiny_config(name="e", ensemble={"members": 2}))
    single = load_config(tiny_config(name="s"))
    assert ensemble.trains_as(ens, 0, single)
    assert not ensemble.trains_as(ens, 1, single)  # member 1 has seed + 1
    assert ensemble.trains_as(ens, 0, single.model_copy(update={"out": "elsewhere"}))  # may differ on resume
    assert not ensemble.trains_as(ens, 0, load_config(tiny_config(name="s", train__epochs=2)))
    assert not ensemble.trains_as(ens, 0, load_config(tiny_config(name="s", augment={"name": "course"})))
    # member 0 with the run's seed, but the ensemble draws data limits from another seed
    assert not ensemble.trains_as(load_config(tiny_config(seed=5, ensemble={"members": 2, "seeds": [1, 2]})), 0, single)


# --- the budget counts one training fewer ---------------------------------------------


def _costs():
    return {s: {"epoch": 60.0, "fixed": 5.0} for s in ("cnn", "cnn_bn_dropout", "ensemble")}


def test_plan_epochs_gives_the_reused_member_to_every_step():
    costs = _costs()
    plain = rp.plan_epochs(3600.0, costs, members=6)
    reused = rp.plan_epochs(3600.0, costs, members=6, reused=True)
    assert reused["cnn"] > plain["cnn"] and reused["ensemble"] == reused["cnn_bn_dropout"]
    total = sum(rp.step_seconds(s, e, costs[s], 6, reused=True) for s, e in reused.items())
    assert total <= 3600.0 < total + 7 * 60.0  # one more epoch (7 trainings) would not fit
    assert rp.step_seconds("ensemble", 10, costs["ensemble"], 6, reused=True) == 5 * (5 + 600)


def _after_the_step(tmp_path, seconds):
    plan = {
        "steps": ["cnn_bn_dropout", "ensemble"],
        "budget": {
            "seconds": 3600.0,
            "calibration_seconds": 0.0,
            "members": 6,
            "reuse_member0": True,
            "costs": _costs(),
            "epochs": {"cnn_bn_dropout": 8, "ensemble": 8},
        },
    }
    (tmp_path / "cnn_bn_dropout").mkdir()
    (tmp_path / "cnn_bn_dropout" / "metrics.json").write_text("{}")
    (tmp_path / "cnn_bn_dropout" / "step_time.json").write_text(json.dumps({"seconds": seconds}))
    return plan


def test_replan_keeps_the_ensemble_at_the_reused_steps_epochs(tmp_path):
    plan = _after_the_step(tmp_path, 485.0)  # as estimated: 5 x 485 s fit the 3115 s left
    rp.replan(tmp_path, plan)
    assert plan["budget"]["epochs"]["ensemble"] == 8 and plan["budget"]["reuse_member0"]


def test_replan_trains_member0_when_more_epochs_fit(tmp_path):
    plan = _after_the_step(tmp_path, 0.5 * 485.0)  # twice as fast: every member can train longer
    assert rp.replan(tmp_path, plan)
    assert plan["budget"]["epochs"]["ensemble"] > 8 and not plan["budget"]["reuse_member0"]


def test_the_shipped_fashion_ladder_reuses_member0_unless_the_epochs_differ():
    plan = {
        "dataset": "fashion_mnist",
        "steps": list(rp.STEPS),
        "configs_dir": str(configs_dir()),
        "quick": None,
        "overrides": ["train.verbose=0"],
        "data_name": None,
    }
    assert rp.reuses_member0(plan) and rp.reuses_member0(plan, epochs=1)
    budgeted = {**plan, "budget": {"epochs": {"cnn_bn_dropout": 16, "ensemble": 16}}}
    assert rp.reuses_member0(budgeted)
    assert not rp.reuses_member0({**plan, "budget": {"epochs": {"cnn_bn_dropout": 16, "ensemble": 17}}})
    assert rp.reuses_member0({**plan, "budget": {"epochs": {"cnn_bn_dropout": 16, "ensemble": 17}}}, epochs=16)
    assert rp.reuses_member0({**plan, "overrides": ["seed=7"]})  # --set changes both steps alike
    assert not rp.reuses_member0({**plan, "steps": ["ensemble", "cnn_bn_dropout"]})  # it must have run first
    assert not rp.reuses_member0({**plan, "steps": ["cnn", "ensemble"]})


def test_replan_reuses_when_only_one_training_fewer_still_fits(tmp_path, capsys):
    plan = _after_the_step(tmp_path, 405.0)
    b = plan["budget"]
    b["costs"] = {"cnn_bn_dropout": {"epoch": 400.0, "fixed": 5.0}, "ensemble": {"epoch": 10.0, "fixed": 5.0}}
    b["epochs"] = {"cnn_bn_dropout": 1, "ensemble": 1}
    b["calibration_seconds"] = 3600.0 - 405.0 - 80.0 / rp.BUDGET_MARGIN  # 80 s to plan: 5 x 15 s fit, 6 do not
    assert not rp.replan(tmp_path, plan)
    assert b["epochs"]["ensemble"] == 1 and b["reuse_member0"]
    assert "short of one epoch" not in capsys.readouterr().out  # a plan, not the fallback
