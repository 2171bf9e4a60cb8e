"""One version source: fastcourse/version.py, read by the package, the CLI and the build."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

import fastcourse
from fastcourse.cli import main
from fastcourse.version import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_the_cli_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastcourse {__version__}"
    assert fastcourse.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_pyproject_reads_the_version_from_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml states a version: it must come from version.py"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastcourse.version.__version__"}


def test_the_changelog_has_a_section_for_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[?{re.escape(__version__)}\]?", changelog, re.M), (
        f"CHANGELOG.md has no '## {__version__}' section"
    )
