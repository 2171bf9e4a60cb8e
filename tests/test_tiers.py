"""The test tiers are written by hand on each test (CONTRIBUTING.md). This checks the one rule a
reader can see in the code: a test that starts another process says so with `integration` (or
`slow`), on the function or as its module's `pytestmark`."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PROCESS_NAMES = {"subprocess", "Popen", "multiprocessing"}
TIER_MARKS = {"integration", "slow"}


def _mark_names(decorators: list[ast.expr]) -> set[str]:
    names = set()
    for node in decorators:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and sub.attr in TIER_MARKS:
                names.add(sub.attr)
    return names


def _module_marks(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            return _mark_names([node.value])
    return set()


def _names_in(node: ast.AST) -> set[str]:
    return {sub.id for sub in ast.walk(node) if isinstance(sub, ast.Name)} | {
        sub.attr for sub in ast.walk(node) if isinstance(sub, ast.Attribute)
    }


def unmarked_process_tests(source: str) -> list[str]:
    """Test functions in `source` that use a process API (directly, or through a module-level helper
    they call) without an integration/slow marker."""
    tree = ast.parse(source)
    if _module_marks(tree):
        return []
    helpers = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("test")}

    def starts_process(fn: ast.FunctionDef, seen: set[str]) -> bool:
        names = _names_in(fn)
        if names & PROCESS_NAMES:
            return True
        return any(
            starts_process(helpers[n], seen | {n}) for n in names if n in helpers and n not in seen and n != fn.name
        )

    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and node.name.startswith("test")
        and not _mark_names(node.decorator_list)
        and starts_process(node, set())
    ]


def test_every_test_that_starts_a_process_is_marked():
    missing = {
        path.name: names
        for path in sorted(TESTS.glob("test_*.py"))
        if (names := unmarked_process_tests(path.read_text()))
    }
    assert not missing, f"mark these @pytest.mark.integration (they start a process): {missing}"


def test_the_check_sees_a_helper_and_a_module_mark():
    source = (
        "import subprocess\n"
        "def cli(*a):\n    return subprocess.run(['true'])\n"
        "def test_a():\n    cli()\n"
        "def test_b():\n    return 1\n"
    )
    assert unmarked_process_tests(source) == ["test_a"]
    marked = source.replace("def test_a", "@pytest.mark.integration\ndef test_a")
    assert unmarked_process_tests(marked) == []
    assert unmarked_process_tests("import pytest\npytestmark = pytest.mark.integration\n" + source) == []
