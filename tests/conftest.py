"""Shared fixtures and the test tiers. Tests run offline, quietly, on tiny data.

Tiers (CONTRIBUTING.md): `make test-fast` runs `-m "not slow and not integration"`, `make test`
runs everything but `slow`, `make test-slow` runs `slow`. The `integration` marker is set here,
centrally, so a test file need not say it: a test is integration when it (or a helper or fixture
of its module) starts another process (a CLI run, a fresh interpreter, a lock holder, ruff, mypy,
mkdocs), or when its file (INTEGRATION_FILES) runs notebooks, tf.distribute or downloads.
"""

from __future__ import annotations

import inspect
import os
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["FASTCOURSE_OFFLINE"] = "1"  # never try a download in tests

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def tiny_config():
    """A config dict for a fast run on the bundled sample; tweak and pass to load_config."""

    def make(**overrides):
        cfg = {
            "name": "tiny",
            "seed": 1,
            "data": {"name": "mnist_sample", "train_limit": 512, "test_limit": 256},
            "model": {"name": "cnn", "filters": [8, 16], "dense": 32},
            "augment": {"name": "none"},
            "train": {"batch_size": 64, "verbose": 0, "schedule": {"name": "constant", "lr": 1e-3}, "epochs": 1},
        }
        for key, value in overrides.items():
            node = cfg
            parts = key.split("__")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        return cfg

    return make


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# Files whose every test is integration, and why (the reason is in the marker's description).
INTEGRATION_FILES = {
    "test_notebooks.py": "runs the notebooks",
    "test_distribute.py": "tf.distribute across processes",
    "test_download.py": "downloads (from a local HTTP server)",
    "test_fault_table.py": "every row is a CLI run in a subprocess",
    "test_kill_resume.py": "kills and resumes CLI runs",
    "test_resume.py": "kills and resumes CLI runs",
    "test_lesson3_e2e.py": "the whole lesson through the CLI",
}
# Names whose use means "another process" (looked up in a test's code, its module's helpers and fixtures).
PROCESS_NAMES = {"subprocess", "Popen", "multiprocessing"}


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _starts_process(fn, module, seen: set[int]) -> bool:
    """Whether `fn`, or a function of `module` it calls (followed transitively), names a process API."""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is None or id(code) in seen:
        return False
    seen.add(id(code))
    names = _code_names(code)
    if names & PROCESS_NAMES:
        return True
    for name in names:
        helper = getattr(module, name, None)
        if isinstance(helper, types.FunctionType) and helper.__module__ == module.__name__:
            if _starts_process(helper, module, seen):
                return True
    return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        filename = item.path.name
        if filename in INTEGRATION_FILES:
            item.add_marker(pytest.mark.integration)
            continue
        module = item.module
        fixtures = getattr(item, "_fixtureinfo", None)
        fixture_funcs = [
            d.func
            for defs in (fixtures.name2fixturedefs.values() if fixtures else ())
            for d in defs
            if getattr(d.func, "__module__", None) == module.__name__
        ]
        seen: set[int] = set()
        if any(_starts_process(fn, module, seen) for fn in [item.function, *fixture_funcs]):
            item.add_marker(pytest.mark.integration)
