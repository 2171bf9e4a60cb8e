"""`fastcourse check` accepts exactly what `fastcourse run` accepts: one rule in one place
(fastcourse.config), applied by the one check (fastcourse.config.load_config) both make.

Every config row of the fault table (tests/test_fault_table.py, the rows run through `check`)
goes through both commands in this process: both refuse it with exit 2 and the same lines. The
refusals come before anything is built, so the run half is as fast as the check half. Configs at
the edges of every range are accepted by both, and run trains them (1 epoch, tiny data).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_fault_table import CASES, Case, tiny

from fastcourse.cli import main

CONFIG_ROWS = [c for c in CASES if c.argv[0] == "check"]


def cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = main(argv)
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_every_config_row_is_here():
    assert len(CONFIG_ROWS) >= 45
    assert {"cfg-pseudo-ratio-1", "cfg-pseudo-rounds-0", "cfg-every-problem-at-once"} <= {c.id for c in CONFIG_ROWS}


@pytest.mark.parametrize("row", CONFIG_ROWS, ids=lambda c: c.id)
def test_check_and_run_agree_on_every_config_row(row: Case, tmp_path, capsys, monkeypatch):
    t = tmp_path / "t"
    t.mkdir()
    row.setup(t)
    monkeypatch.chdir(t)
    target, *extra = [a.format(t=t) for a in row.argv[1:]]
    check = cli(["check", target, *extra], capsys)
    run = cli(["run", target, "--out", str(t / "runs"), *extra], capsys)
    assert check[0] == run[0] == row.exit == 2, (check, run)
    assert len(check[1]) == row.lines and all(line.startswith("fastcourse: error: ") for line in check[1]), check
    if Path(target).is_dir():  # `run` takes a folder for a run directory: its own message, the same exit
        assert "not a run directory" in run[1][0]
    else:
        assert run[1] == check[1]  # the same problems, in the same words
    assert not (t / "runs").exists()  # refused before a run directory was made


def test_check_refuses_a_missing_data_path_and_names_set_overrides_as_run_does(tmp_path, capsys):
    """issue 34: check once said ok for a data.path that does not exist (run refused it after
    TensorFlow started), and named the file for a --set typo."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny(data={"name": "image_folder", "path": str(tmp_path / "nowhere")})))
    check = cli(["check", str(path)], capsys)
    run = cli(["run", str(path), "--out", str(tmp_path / "runs")], capsys)
    assert check[0] == run[0] == 2 and check[1] == run[1], (check, run)
    assert len(check[1]) == 1 and str(tmp_path / "nowhere") in check[1][0], check
    typo = ["--set", "train.bach_size=3"]
    check = cli(["check", str(path), *typo], capsys)
    run = cli(["run", str(path), "--out", str(tmp_path / "runs"), *typo], capsys)
    assert check == run and check[0] == 2, (check, run)
    assert check[1][0].startswith("fastcourse: error: --set train.bach_size: unknown key; did you mean 'batch_size'?")
    assert not any((tmp_path / "runs").iterdir())  # refused before a run directory was made


# Legal configs at the edges of their ranges (and values the features task once refused at run
# time while check passed them): check says ok, run trains them.
LEGAL = {
    "edges": tiny(
        seed=2**32 - 1,
        model={"name": "cnn_bn_dropout", "filters": [4, 8], "dense": 16, "dropout": 0.0},
        augment={"name": "course", "zoom": 0, "rotation": 0},
        train__schedule={"name": "one_cycle", "max_lr": 1e-3, "pct_start": 0.0},
    ),
    "features-linear-head": tiny(
        task={
            "name": "features",
            "passes": 0,
            "pseudo_rounds": 1,
            "pseudo_ratio": 0.0,
            "finetune_scale": 10,
            "head": {"depth": 0, "dropout": 0.0, "units": 8},
        }
    ),
}


@pytest.mark.integration  # whole runs in this process: seconds each
@pytest.mark.parametrize("name", LEGAL)
def test_check_and_run_agree_on_legal_configs(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the features cache goes to ./cache
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(LEGAL[name]))
    assert cli(["check", str(path)], capsys) == (0, [])
    code, err = cli(["run", str(path), "--out", str(tmp_path / "runs")], capsys)
    assert code == 0, err
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "metrics.json").is_file()
