"""The test tiers of tests/conftest.py: the lists that put a test into `integration` name tests that
exist, and the marking finds a test that starts another process."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import conftest

TESTS = Path(__file__).resolve().parent


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test")}


def test_every_listed_file_and_test_exists():
    for filename in conftest.INTEGRATION_FILES:
        assert (TESTS / filename).is_file(), f"INTEGRATION_FILES names {filename}, which does not exist"
    for entry in conftest.END_TO_END:
        filename, name = entry.split("::")
        assert (TESTS / filename).is_file(), f"END_TO_END names {filename}, which does not exist"
        function = name.split("[")[0]
        assert function in _test_functions(TESTS / filename), f"END_TO_END names {entry}, which is no test"


FAKE_TEST_MODULE = """


def cli(*args):
    return subprocess.run(["true", *args], check=False)


def uses_cli():
    return cli("x")


def in_process():
    return sum(range(3))
"""


def test_a_helper_that_starts_a_process_makes_its_callers_integration():
    module = types.ModuleType("fake_test_module")
    exec(compile(FAKE_TEST_MODULE, "fake_test_module.py", "exec"), module.__dict__)
    assert conftest._starts_process(module.uses_cli, module, set())
    assert conftest._starts_process(module.cli, module, set())
    assert not conftest._starts_process(module.in_process, module, set())
