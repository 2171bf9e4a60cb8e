"""A newcomer's first hour (issue 34): piped output, `list` descriptions, a dataset that is not
there yet, one result line per run, and which weights a backbone starts from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fastcourse.cli import main

ROOT = Path(__file__).resolve().parents[1]
SIGPIPE_EXIT = 141  # what the shell reports for `ls | head` when ls is stopped by SIGPIPE (128 + 13)


def _closed_pipe(*argv: str) -> tuple[int, str]:
    """Run the CLI with stdout a pipe whose reader has already left (`| head` that finished)."""
    proc = subprocess.Popen([sys.executable, "-m", "fastcourse", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the child writes its first line: every write meets EPIPE
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return proc.wait(timeout=120), err


@pytest.mark.integration
def test_piped_output_never_ends_in_a_traceback(tmp_path):
    (tmp_path / "runs" / "a-run").mkdir(parents=True)
    for argv in (("list", "configs"), ("list",), ("runs", str(tmp_path / "runs"))):
        code, err = _closed_pipe(*argv)
        assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err
        assert code == SIGPIPE_EXIT, (argv, code, err)


def test_list_descriptions_are_whole_sentences(capsys):
    assert main(["list"]) == 0
    rows = [line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    described = [row for row in rows if len(row) == 2]  # configs are listed by name only
    assert len(described) > 30
    for name, text in described:
        assert text.rstrip().endswith("."), f"{name}: {text!r} stops mid-sentence"
    one_cycle = dict(described)["one_cycle"]
    assert "cosine up" in one_cycle and "cosine down to" in one_cycle and not one_cycle.endswith("down to")


def test_a_missing_dataset_folder_names_the_command_that_gets_it(tmp_path, monkeypatch, capsys):
    from fastcourse.data import DATASETS
    from fastcourse.errors import DataError

    monkeypatch.chdir(tmp_path)  # no data/ here: a fresh clone before `fastcourse data get`
    assert main(["run", str(ROOT / "configs/dogscats/bn_head.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "fastcourse: error: data/dogscats: no such folder; get it with `fastcourse data get dogscats` "
        "(docs/configs.md), or point data.path at your copy"
    )
    with pytest.raises(DataError, match=r"get it with `fastcourse data get dogscats --to .*/mine/dogs`"):
        DATASETS.get("dogscats")(path=str(tmp_path / "mine" / "dogs"))
    # statefarm's configs read <to>_split, which `data get statefarm --to <to>` writes
    with pytest.raises(DataError, match=r"`fastcourse data get statefarm`"):
        DATASETS.get("statefarm")(path="data/statefarm_split")
    with pytest.raises(DataError, match="point data.path at the dataset's root folder"):
        DATASETS.get("image_folder")(path=str(tmp_path / "photos"))  # nothing to download: no command
    docs = (ROOT / "docs" / "configs.md").read_text()
    assert "FASTCOURSE_MIRROR" in docs and "An archive fetched by hand" in docs


@pytest.mark.integration
def test_a_run_prints_its_result_once(tmp_path, tiny_config, capsys):
    """`make run` printed `fastcourse: NAME: test accuracy A, loss L` and then the CLI's
    `test accuracy: A (test loss L) wall time`; the CLI's line (with the split, the wall time and
    the run directory) is the one kept."""
    import json

    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    assert main(["run", str(cfg), "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    run_dir = Path(out.split("run directory: ")[1].strip())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    accuracy = f"{metrics['eval_accuracy']:.4f}"
    assert [line for line in out.splitlines() if accuracy in line] == [
        next(line for line in out.splitlines() if line.startswith("test accuracy: "))
    ]
    assert out.count(accuracy) == 1 and out.count("accuracy") == 1


def _nbtools():
    import importlib.util

    spec = importlib.util.spec_from_file_location("nbtools", ROOT / "tools" / "notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_notebooks_never_saves_small_mode_over_the_full_run(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbtools = _nbtools()
    path = tmp_path / "lesson.ipynb"
    full = nbformat.v4.new_notebook()
    full.cells = [nbformat.v4.new_code_cell("print(SMALL)")]
    full.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="SMALL = False\n")]
    nbformat.write(full, path)
    committed = path.read_bytes()

    small = nbformat.read(path, as_version=4)
    small.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="SMALL = True\n")]
    target = nbtools.save_executed(small, path, small=True)
    assert target == tmp_path / ".small" / "lesson.ipynb"
    assert path.read_bytes() == committed  # the full run's outputs are untouched
    assert "SMALL = True" in target.read_text()

    assert nbtools.save_executed(small, path, small=False) == path  # --full saves in place
    assert "SMALL = True" in path.read_text()
    assert "notebooks/.small/" in (ROOT / ".gitignore").read_text().splitlines()
    makefile = (ROOT / "Makefile").read_text()
    assert "tools/notebooks.py run $(if $(FULL),--full)" in makefile  # small mode unless FULL=1


def test_notebooks_doc_names_the_eight_shape_classes():
    """docs/notebooks.md lists the stand-in's pretraining classes: SHAPES without circle and square."""
    import re

    from fastcourse.data.synthetic import SHAPES

    text = " ".join((ROOT / "docs" / "notebooks.md").read_text().split())
    listed = re.search(r"eight generated shape classes \(([^)]*)\)", text).group(1).split(", ")
    assert len(listed) == len(SHAPES) - 2 == 8
