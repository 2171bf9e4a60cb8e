"""Lint and format: ruff (pyflakes, pycodestyle, isort, bugbear) and ruff format, as configured in
pyproject.toml [tool.ruff], over the package and the tests. Fix with `make lint` (see CONTRIBUTING.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["fastcourse", "tests", "benchmarks"]


def _ruff() -> str:
    exe = Path(sys.executable).with_name("ruff")
    found = str(exe) if exe.exists() else shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: `pip install -e '.[dev]'` (or `make install`)")
    return found


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_ruff(), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_ruff_check_is_clean():
    proc = _run("check", "--no-fix", "--output-format", "concise", *TARGETS)
    assert proc.returncode == 0, (
        f"ruff check found problems (`ruff check --fix` fixes some):\n{proc.stdout}{proc.stderr}"
    )


@pytest.mark.integration
def test_ruff_format_is_clean():
    proc = _run("format", "--check", "--output-format", "concise", *TARGETS)
    assert proc.returncode == 0, f"files `ruff format` would change (run it):\n{proc.stdout}{proc.stderr}"


@pytest.mark.integration
def test_ruff_reads_the_projects_settings():
    """The checks above mean what pyproject.toml says: line length 120 and the F, E, W, I, B rule sets."""
    proc = _run("check", "--show-settings", "fastcourse/__init__.py")
    assert proc.returncode == 0, proc.stderr
    settings = proc.stdout
    assert "line_length = 120" in settings
    for rule in ("F401", "E501", "W291", "I001", "B006"):  # one rule of each selected set
        assert rule in settings, f"{rule} is not enabled"


def test_pre_commit_runs_ruff_the_format_and_the_notebook_check():
    import yaml

    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert hooks["ruff"]["entry"].startswith("ruff check")
    assert hooks["ruff-format"]["entry"].startswith("ruff format")
    notebooks = hooks["notebooks-clean"]
    script = notebooks["entry"].split()[1]
    assert (ROOT / script).is_file(), f"the notebook hook runs {script}, which does not exist"
    assert "notebooks/" in notebooks["files"]
