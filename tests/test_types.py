"""The type check of the public API: mypy over the files pyproject.toml [tool.mypy] lists (the
package's exports, the Learner, the config tree, train.trainer.fit, data.sources)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

pytestmark = pytest.mark.integration  # every test here starts a process or runs for seconds

ROOT = Path(__file__).resolve().parents[1]
# path prefixes: the Learner is a module or a package of modules
PUBLIC_API = (
    "fastcourse/__init__.py",
    "fastcourse/learner",
    "fastcourse/config.py",
    "fastcourse/train/trainer.py",
    "fastcourse/data/sources.py",
)


def test_mypy_checks_the_public_api():
    files = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"])
    missing = [api for api in PUBLIC_API if not any(f.startswith(api) for f in files)]
    assert missing == [], f"[tool.mypy] files lacks {missing}"
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mypy found type errors:\n{proc.stdout}{proc.stderr}"
    assert "Success" in proc.stdout
