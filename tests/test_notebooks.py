"""The notebooks: each runs end to end in small mode (FASTCOURSE_SMALL=1), so none can rot,
and each saved copy carries the outputs of a full run that say which data it used."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # every test here starts a process or runs for seconds

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = {"concepts.ipynb", "mnist.ipynb", "lesson3.ipynb", "statefarm.ipynb"}
# saved outputs (mostly PNG figures) stay small enough to review in a diff and to open quickly
MAX_NOTEBOOK_BYTES = 600_000
MAX_TOTAL_BYTES = 1_500_000
# lesson 3 is a 2-class problem (chance 0.5): every saved step must reach this valid accuracy
LESSON3_STEPS = ("features", "bn_head", "ensemble", "fine_tune", "tta")
LESSON3_MIN_ACCURACY = 0.65

_spec = importlib.util.spec_from_file_location("nbtools", ROOT / "tools" / "notebooks.py")
nbtools = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbtools)


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_every_notebook_is_there():
    assert EXPECTED <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_defines_nothing_the_package_should_own(path):
    nb = nbformat.read(path, as_version=4)
    assert "import fastcourse" in "\n".join(_code(nb)) or "from fastcourse" in "\n".join(_code(nb))
    for source in _code(nb):
        for node in ast.walk(ast.parse(source)):
            assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Lambda)), (
                f"{path.name} defines {getattr(node, 'name', 'a lambda')}: move it into fastcourse"
            )
    assert 'os.environ.get("FASTCOURSE_SMALL"' in _code(nb)[0], "the first cell holds the small-mode switch"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_saved_notebook_carries_a_full_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell was executed"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert "SMALL = False" in _text(code[0]), "saved from a full run, not small mode"
    assert "data:" in "".join(_text(c) for c in code), "the outputs say which data was used"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_saved_outputs_hold_no_machine_paths_or_noise(path):
    nb = nbformat.read(path, as_version=4)
    assert nbtools.problems(nb) == []
    assert not nbtools.clean_notebook(nb), f"run `python tools/notebooks.py clean {path.relative_to(ROOT)}`"
    assert nbtools.output_bytes(nb) < MAX_NOTEBOOK_BYTES


def test_saved_outputs_stay_small():
    total = sum(nbtools.output_bytes(nbformat.read(p, as_version=4)) for p in NOTEBOOKS)
    assert total < MAX_TOTAL_BYTES, f"{total:,} bytes of outputs"


def test_cleaner_removes_noise_and_the_checkout_path_and_check_sees_the_rest():
    root = "/srv/checkout"
    noisy = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796183101.967721   22814 port.cc:153] oneDNN custom operations are on.\n"
        "E0000 00:00:1796183106.794917   22814 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
        "WARNING:tensorflow:5 out of the last 5 calls to <function f> triggered tf.function retracing.\n"
        "/srv/checkout/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found\n"
        "  from .autonotebook import tqdm as notebook_tqdm\n"
        "train:  50%|#    | 1/2\rtrain: 100%|#####| 2/2\n"
        "fastcourse: scanned 300 files in /srv/checkout/runs/notebooks/split/train: 300 ok\n"
    )
    assert nbtools.clean_text(noisy, root) == (
        "train: 100%|#####| 2/2\nfastcourse: scanned 300 files in runs/notebooks/split/train: 300 ok\n"
    )
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "x",
                outputs=[
                    nbformat.v4.new_output("stream", name="stderr", text=noisy[:200]),
                    nbformat.v4.new_output("stream", name="stdout", text="saved: /tmp/elsewhere/run\n"),
                ],
            )
        ]
    )
    assert nbtools.clean_notebook(nb, root) and not nbtools.clean_notebook(nb, root)
    assert nbtools.problems(nb) == ["cell 0: a machine path in the outputs: /tmp/elsewhere/run"]


def test_saved_lesson3_learns_every_step():
    """The saved lesson-3 outputs print `STEP <name> valid_accuracy <x>`; each beats chance (0.5)."""
    nb = nbformat.read(ROOT / "notebooks" / "lesson3.ipynb", as_version=4)
    text = "".join(_text(c) for c in nb.cells if c.cell_type == "code")
    found = {m[0]: float(m[1]) for m in re.findall(r"^STEP (\w+) valid_accuracy ([\d.]+)", text, re.M)}
    assert set(LESSON3_STEPS) <= set(found), found
    low = {k: v for k, v in found.items() if v < LESSON3_MIN_ACCURACY}
    assert not low, f"steps at or near chance: {low}"


# Every notebook runs in small mode in the default test run, so none can rot unnoticed
# (under a minute each on an idle 2-core machine, several on a busy one).
@pytest.mark.notebooks  # minutes each: `make test-notebooks`, which .ci/run runs after `make test`
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_small_mode(path, tmp_path, monkeypatch):
    for key, value in nbtools.QUIET_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FASTCOURSE_SMALL", "1")
    monkeypatch.setenv("FASTCOURSE_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    # the kernel is this interpreter (jupyter_client runs a "python" kernelspec with sys.executable)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    outputs = "".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert "SMALL = True" in outputs and "data:" in outputs
