"""The notebooks: each runs end to end in small mode (FASTCOURSE_SMALL=1), so none can rot,
and each saved copy carries the outputs of a full run that say which data it used."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = {"concepts.ipynb", "mnist.ipynb", "lesson3.ipynb", "statefarm.ipynb"}


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
            assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Lambda)), \
                f"{path.name} defines {getattr(node, 'name', 'a lambda')}: move it into fastcourse"
    assert 'os.environ.get("FASTCOURSE_SMALL"' in _code(nb)[0], "the first cell holds the small-mode switch"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_saved_notebook_carries_a_full_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell was executed"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert "SMALL = False" in _text(code[0]), "saved from a full run, not small mode"
    assert "data:" in "".join(_text(c) for c in code), "the outputs say which data was used"


# Every notebook runs in small mode in the default test run, so none can rot unnoticed
# (under a minute each on an idle 2-core machine, several on a busy one).
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_small_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCOURSE_SMALL", "1")
    monkeypatch.setenv("FASTCOURSE_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    # the kernel is this interpreter (jupyter_client runs a "python" kernelspec with sys.executable)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    outputs = "".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert "SMALL = True" in outputs and "data:" in outputs
