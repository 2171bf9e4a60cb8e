"""`fastcourse sweep`: the spec's validation, sweeps end to end on arrays and on an image folder,
processes sharing one study, kill -9 and resume, a crashed trial, PostgreSQL and the dashboard.

Each trial's figures are checked against the run directory the trial's `fastcourse run` wrote
(metrics.json, history.csv) and against what Optuna's own storage holds for the study."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from fastcourse.data.synthetic import make_image_folder
from fastcourse.errors import ConfigError
from fastcourse.sweeps.report import GAP, trials_frame, verdict, write_report
from fastcourse.sweeps.spec import load_spec
from fastcourse.sweeps.study import JOURNAL, open_storage

TINY = {  # a base config that trains in a second or two
    "name": "tiny",
    "seed": 1,
    "data": {"name": "mnist_sample", "train_limit": 256, "test_limit": 128},
    "model": {"name": "cnn", "filters": [8, 16], "dense": 32},
    "augment": {"name": "none"},
    "train": {"batch_size": 64, "verbose": 0, "schedule": {"name": "constant", "lr": 1e-3}, "epochs": 1},
}
GRID4 = {"model.dropout": [0.0, 0.5], "model.batchnorm": [False, True]}


def write_spec(tmp_path: Path, name="s", base=TINY, space=GRID4, **extra) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {"name": name, "base": "base.yaml", "space": space, "sampler": {"name": "grid"}, "out": str(tmp_path / "sw")}
    spec.update(extra)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def problems_of(tmp_path: Path, **spec) -> list[str]:
    path = write_spec(tmp_path, **spec)
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    lines = str(err.value).splitlines()
    assert all(line.startswith(str(path)) for line in lines), lines  # one line per problem, naming the file
    return lines


def sweep_cli(*args, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastcourse", "sweep", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        **kw,
    )


def check_against_runs(folder: Path, n: int) -> pd.DataFrame:
    """trials.csv agrees with each trial's run directory and with Optuna's record of the study."""
    df = pd.read_csv(folder / "trials.csv", index_col="trial")
    assert list(df.index) == list(range(n)) and set(df["state"]) == {"complete"}, df
    study = optuna.load_study(study_name=folder.name, storage=open_storage(None, folder))
    values = {t.number: t.value for t in study.get_trials()}
    for number, row in df.iterrows():
        run = folder / "trials" / f"{number:03d}"
        metrics = json.loads((run / "metrics.json").read_text())
        history = pd.read_csv(run / "history.csv")
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert row["eval_accuracy"] == pytest.approx(metrics["eval_accuracy"]) == pytest.approx(values[number])
        assert row["train_accuracy"] == pytest.approx(history["accuracy"].iloc[-1])
        assert row["gap"] == pytest.approx(row["train_accuracy"] - row["eval_accuracy"])
        assert row["verdict"] == verdict(row["gap"])
        for key in [c for c in df.columns if c.startswith(("model.", "augment."))]:  # the trial's parameters
            node = config
            for part in key.split("."):
                node = node[part]
            assert node == row[key], (number, key)
    return df


# --- the spec (unit) ---------------------------------------------------------------------------


def test_shipped_overfitting_spec_is_the_lessons_grid(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweeps" / "overfitting").mkdir(parents=True)  # its own sweep folder: the same command continues
    sweep = load_spec("sweeps/overfitting")
    assert sweep.n_trials == 12 and len(sweep.grid) == 12
    assert {(p["model.dropout"], p["augment.name"], p["model.batchnorm"]) for p in sweep.grid} == {
        (d, a, b) for d in (0.0, 0.25, 0.5) for a in ("none", "course") for b in (False, True)
    }
    quick = load_spec("sweeps/overfitting", quick=True)
    assert quick.folder.name == "overfitting-quick" and quick.trial_config(quick.grid[0], 0)["data"]["train_limit"]


def test_spec_typos_are_one_line_each_with_did_you_mean(tmp_path):
    lines = problems_of(tmp_path, sampler={"nmae": "grid"}, objectiv="loss")
    assert any("sampler.nmae: unknown key; did you mean 'name'?" in line for line in lines), lines
    assert any("objectiv: unknown key; did you mean 'objective'?" in line for line in lines), lines


def test_space_keys_and_values_are_checked_as_configs_are(tmp_path):
    lines = problems_of(tmp_path, space={"model.dropuot": [0.0, 0.5], "model.batchnorm": [False]})
    assert len(lines) == 1 and "model.dropuot: unknown key; did you mean 'dropout'?" in lines[0], lines
    lines = problems_of(tmp_path, space={"model.dropout": [0.0, 1.5]})
    assert len(lines) == 1 and "space.model.dropout: model.dropout = 1.5" in lines[0] and "out of range" in lines[0]
    lines = problems_of(tmp_path, space={"augment.name": ["none", "corse"]})
    assert len(lines) == 1 and "augment.name" in lines[0] and "course" in lines[0], lines


def test_spec_rules(tmp_path):
    grid_range = problems_of(tmp_path, space={"train.schedule.lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    assert any("a range cannot be a grid axis" in line for line in grid_range), grid_range
    no_trials = problems_of(tmp_path, sampler={"name": "tpe"})
    assert any("trials: required with sampler tpe" in line for line in no_trials), no_trials
    bad_range = problems_of(
        tmp_path, sampler={"name": "random"}, trials=3, space={"train.schedule.lr": {"low": 0, "high": 1, "log": True}}
    )
    assert any("log: true needs low > 0" in line for line in bad_range), bad_range
    ok = load_spec(
        write_spec(
            tmp_path,
            sampler={"name": "tpe", "seed": 3},
            trials=5,
            space={
                "train.schedule.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                "train.batch_size": {"low": 32, "high": 128},
            },
        )
    )
    assert (
        ok.n_trials == 5 and ok.spec.space["train.batch_size"].is_int and not ok.spec.space["train.schedule.lr"].is_int
    )


def test_report_counts_gaps_and_best_against_optuna(tmp_path):
    """The report's verdicts follow lesson 3's reading of the gap, and its best trial is Optuna's."""
    sweep = load_spec(write_spec(tmp_path))
    folder = tmp_path / "sw" / "s"
    (folder / "trials").mkdir(parents=True)
    study = optuna.create_study(direction="maximize", study_name="s")
    figures = [(0.99, 0.95), (0.90, 0.96), (0.97, 0.965), (0.80, 0.97)]  # overfits, underfits, balanced, best
    for (number, params), (train, valid) in zip(enumerate(sweep.grid), figures):
        (folder / "trials" / f"{number:03d}.yaml").write_text(yaml.safe_dump(sweep.trial_config(params, number)))
        attrs = {"train_accuracy": train, "eval_accuracy": valid, "eval_loss": 1 - valid, "eval_split": "test"}
        dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in sweep.spec.space.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=valid, user_attrs=attrs))
    write_report(sweep, study, folder)
    df = trials_frame(sweep, study)
    assert list(df["verdict"]) == ["overfits", "underfits", "balanced", "underfits"]
    assert GAP == 0.01 and df.loc[2, "gap"] == pytest.approx(0.005)
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert best["model"]["dropout"] == study.best_trial.params["model.dropout"] == 0.5
    assert best["model"]["batchnorm"] is study.best_trial.params["model.batchnorm"] is True
    report = (folder / "report.md").read_text()
    assert "Trials: 4 of 4: 4 complete, 0 pruned, 0 failed" in report and "**Best trial: 003**" in report
    assert "gap +0.0400" in report and (folder / "overfitting.png").stat().st_size > 10_000


# --- sweeps end to end (integration) -----------------------------------------------------------


@pytest.mark.integration
def test_four_trials_on_arrays_through_python(tmp_path, monkeypatch):
    import fastcourse

    monkeypatch.chdir(tmp_path)
    df = fastcourse.sweep(str(write_spec(tmp_path)), jobs=2)
    folder = tmp_path / "sw" / "s"
    assert len(df) == 4 and set(df["state"]) == {"complete"}
    check_against_runs(folder, 4)
    runs = subprocess.run(
        [sys.executable, "-m", "fastcourse", "runs", str(folder)], capture_output=True, text=True, check=True
    ).stdout
    assert all(f"trials/{n:03d}" in runs for n in range(4)) and runs.count("finished") == 4, runs
    best = df["eval_accuracy"].astype(float).idxmax()
    assert yaml.safe_load((folder / "best.yaml").read_text())["model"]["dropout"] == df.loc[best, "model.dropout"]


@pytest.mark.integration
def test_four_trials_on_an_image_folder_through_the_cli(tmp_path):
    root = make_image_folder(
        tmp_path / "shapes", "dogscats", classes=2, per_class=12, valid_per_class=4, test=2, size=32
    )
    base = {
        "name": "shapes",
        "seed": 0,
        "data": {"name": "image_folder", "path": str(root), "image_size": [32, 32]},
        "model": {"name": "cnn", "filters": [4, 8], "dense": 16},
        "augment": {"name": "none"},
        "train": {"batch_size": 8, "epochs": 1, "verbose": 0},
    }
    spec = write_spec(
        tmp_path, name="folder", base=base, space={"model.dropout": [0.0, 0.5], "augment.name": ["none", "dogscats"]}
    )
    done = sweep_cli(spec, "--jobs", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    df = pd.read_csv(tmp_path / "sw" / "folder" / "trials.csv", index_col="trial")
    assert set(df["state"]) == {"complete"} and set(df["eval_split"]) == {"valid"}  # folders evaluate on valid
    for number, row in df.iterrows():
        metrics = json.loads((tmp_path / "sw" / "folder" / "trials" / f"{number:03d}" / "metrics.json").read_text())
        assert metrics["augment"] == row["augment.name"] and metrics["eval_accuracy"] == pytest.approx(
            row["eval_accuracy"]
        )
    assert "trials: 4: 4 complete" in done.stdout


@pytest.mark.slow  # ~20 s of two sweep processes
@pytest.mark.integration
def test_two_processes_share_one_journal_no_trial_lost_or_run_twice(tmp_path):
    spec = write_spec(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "fastcourse", "sweep", str(spec), "--join", "--jobs", "1"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folder = tmp_path / "sw" / "s"
    df = check_against_runs(folder, 4)
    combos = sorted(zip(df["model.dropout"], df["model.batchnorm"]))
    assert combos == sorted((d, b) for d in (0.0, 0.5) for b in (False, True))  # each grid point once
    started = [{line.split()[2] for line in out.splitlines() if line.endswith("started")} for out in outs]
    assert started[0] | started[1] == {"000", "001", "002", "003"} and not started[0] & started[1], outs
    for n in range(4):  # each trial's run was started by one process, once
        assert (folder / "trials" / f"{n:03d}.log").read_text().count("$ ") == 1


def _wait_for(condition, timeout=600.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _epochs_done(run: Path) -> int:
    try:
        return json.loads((run / "checkpoints" / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow  # ~30 s of sweeps killed and restarted
@pytest.mark.integration
def test_kill_9_then_the_same_command_resumes(tmp_path):
    """kill -9 the sweep and its trial (a machine that dies) mid-trial: the rerun keeps the finished
    trial, continues the interrupted one from its checkpoint, and the totals add up."""
    base = {**TINY, "data": {"name": "mnist_sample", "train_limit": 1024, "test_limit": 128}}
    base["train"] = {**TINY["train"], "epochs": 4}
    spec = write_spec(tmp_path, base=base, space={"model.dropout": [0.0, 0.5]})
    command = [sys.executable, "-m", "fastcourse", "sweep", str(spec), "--jobs", "1"]
    first = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    folder = tmp_path / "sw" / "s"
    try:
        _wait_for(lambda: _epochs_done(folder / "trials" / "001") >= 1, what="trial 001's first epoch")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the sweep and its trial process
        first.wait()
    assert (folder / "trials" / "000" / "metrics.json").is_file() and not (
        folder / "trials" / "001" / "metrics.json"
    ).exists()
    stopped_at = _epochs_done(folder / "trials" / "001")
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "trial 001: continuing" in again.stdout and "trial 000" not in again.stdout  # 000 is not run again
    log = (folder / "trials" / "001.log").read_text()
    assert log.count("$ ") == 2 and f"resuming {folder / 'trials' / '001'} after {stopped_at} completed epoch(s)" in log
    assert (folder / "trials" / "000.log").read_text().count("$ ") == 1
    df = check_against_runs(folder, 2)
    assert list(df["epochs"]) == [4, 4]
    assert "Trials: 2 of 2: 2 complete, 0 pruned, 0 failed, 0 running, 0 waiting" in (folder / "report.md").read_text()


@pytest.mark.slow  # ~15 s
@pytest.mark.integration
def test_kill_9_of_the_sweep_alone_its_trials_run_finishes_and_counts_once(tmp_path):
    """kill -9 the sweep process but not its trial's run: the rerun waits for that run and takes
    its result, without starting the trial again."""
    base = {**TINY, "data": {"name": "mnist_sample", "train_limit": 512, "test_limit": 128}}
    base["train"] = {**TINY["train"], "epochs": 3}
    spec = write_spec(tmp_path, base=base, space={"model.dropout": [0.25]})
    command = [sys.executable, "-m", "fastcourse", "sweep", str(spec)]
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "sw" / "s"
    _wait_for((folder / "trials" / "000" / ".lock.pid").is_file, what="trial 000's run")
    first.kill()
    first.wait()
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "trial 000: continuing" in again.stdout
    assert (folder / "trials" / "000.log").read_text().count("$ ") == 1  # its run was never started again
    assert list(check_against_runs(folder, 1)["epochs"]) == [3]


@pytest.mark.slow  # ~25 s
@pytest.mark.integration
def test_a_crashed_trial_is_failed_and_the_sweep_goes_on(tmp_path):
    base = {**TINY, "data": {"name": "mnist_sample", "train_limit": 1024, "test_limit": 128}}
    base["train"] = {**TINY["train"], "epochs": 3}
    spec = write_spec(tmp_path, base=base, space={"model.dropout": [0.0, 0.25, 0.5]})
    sweep = subprocess.Popen(
        [sys.executable, "-m", "fastcourse", "sweep", str(spec), "--jobs", "1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pid_file = tmp_path / "sw" / "s" / "trials" / "000" / ".lock.pid"
    _wait_for(pid_file.is_file, what="trial 000's process")
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # as the kernel's OOM killer would
    out = sweep.communicate(timeout=900)[0]
    assert sweep.returncode == 0, out
    df = pd.read_csv(tmp_path / "sw" / "s" / "trials.csv", index_col="trial")
    assert list(df["state"]) == ["failed", "complete", "complete"]
    assert df.loc[0, "error"].startswith("killed by signal 9")
    report = (tmp_path / "sw" / "s" / "report.md").read_text()
    assert "Trials: 3 of 3: 2 complete, 0 pruned, 1 failed" in report and "- 000: killed by signal 9" in report


@pytest.mark.integration
def test_median_pruner_stops_a_worse_trial_from_its_per_epoch_records(tmp_path):
    """Trial 001 (a learning rate 10,000 times smaller) is below trial 000's figure at the same epoch:
    the sweep reads that from the run's checkpoint records, Optuna's MedianPruner says prune, and
    the run is stopped before its last epoch."""
    base = {**TINY, "data": {"name": "mnist_sample", "train_limit": 1024, "test_limit": 128}}
    base["train"] = {**TINY["train"], "epochs": 12}
    spec = write_spec(
        tmp_path,
        space={"train.schedule.lr": [1e-3, 1e-7]},
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    )
    done = sweep_cli(spec, "--jobs", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / "sw" / "s"
    df = pd.read_csv(folder / "trials.csv", index_col="trial")
    assert list(df["state"]) == ["complete", "pruned"], df
    assert not (folder / "trials" / "001" / "metrics.json").exists()
    study = optuna.load_study(study_name="s", storage=open_storage(None, folder))
    first, pruned = study.get_trials()
    history = json.loads((folder / "trials" / "001" / "checkpoints" / "state.json").read_text())["history"]
    reported = [pruned.intermediate_values[step] for step in sorted(pruned.intermediate_values)]
    assert reported == pytest.approx(history["val_accuracy"][: len(reported)]) and len(reported) < 12
    step = max(pruned.intermediate_values)
    assert pruned.intermediate_values[step] < first.intermediate_values[step]  # what the median rule compares
    assert optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0).prune(study, pruned)


# --- PostgreSQL and the dashboard (slow) -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_join_processes_finish_one_study_on_postgresql(tmp_path):
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb)")
    pg = bins[-1].parent
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    home = Path(tempfile.mkdtemp(prefix="fastcourse-pg-"))  # not under pytest's tmp: its parents are root's alone
    data, port = home / "data", _free_port()
    if as_user:
        shutil.chown(home, "postgres")
    initdb = [*as_user, pg / "initdb", "-D", data, "-U", "postgres", "--auth=trust"]
    subprocess.run(initdb, check=True, capture_output=True)
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_user, pg / "pg_ctl", "-D", data, "-o", options, "-l", home / "log", "-w", "start"], check=True)
    try:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        spec = write_spec(tmp_path, name="pg")
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "fastcourse", "sweep", str(spec), "--storage", url, "--join", "--jobs", "1"],
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=900)[0] for p in procs]
        print("\n".join(outs))
        assert [p.returncode for p in procs] == [0, 0], outs
        study = optuna.load_study(study_name="pg", storage=url)
        trials = study.get_trials()
        assert len(trials) == 4 and {t.state.name for t in trials} == {"COMPLETE"}
        assert sorted((t.params["model.dropout"], t.params["model.batchnorm"]) for t in trials) == sorted(
            (d, b) for d in (0.0, 0.5) for b in (False, True)
        )
        started = [{line.split()[2] for line in out.splitlines() if line.endswith("started")} for out in outs]
        assert started[0] | started[1] == {"000", "001", "002", "003"} and not started[0] & started[1], outs
    finally:
        subprocess.run([*as_user, pg / "pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.slow
def test_dashboard_serves_the_study_to_a_headless_browser(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium (/usr/bin/chromium): apt-get install chromium")
    folder = tmp_path / "sw" / "dash"
    folder.mkdir(parents=True)
    study = optuna.create_study(study_name="dash", storage=open_storage(None, folder), direction="maximize")
    study.optimize(lambda t: t.suggest_float("model.dropout", 0, 0.5), n_trials=3)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "fastcourse", "sweep", "--dashboard", folder, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: _answers(port), timeout=60, what="the dashboard")
        shot = Path(os.environ.get("FASTCOURSE_DASHBOARD_SHOT", tmp_path / "dashboard.png"))
        browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
        url = f"http://127.0.0.1:{port}/dashboard"
        dom = subprocess.run([*browser, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        subprocess.run(
            [*browser, f"--screenshot={shot}", "--window-size=1280,800", url], capture_output=True, timeout=120
        )
        assert "dash" in dom, dom[-2000:]  # the study's name, rendered by the page's script
        assert shot.stat().st_size > 10_000
    finally:
        server.terminate()  # SIGTERM: the command stops as on Ctrl-C
        server.wait(timeout=60)
    assert JOURNAL == "journal.log"


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
