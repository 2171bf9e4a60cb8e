"""The package's shape: one-way layers, no import cycles, a command line that starts fast."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["data", "models", "train", "run", "tasks", "results", "lessons", "cli"]


@pytest.mark.integration
def test_layer_contract_holds():
    """import-linter's contracts (pyproject.toml): each layer imports only the layers above it, and no
    module of fastcourse imports the benchmarks/ folder."""
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "2 kept, 0 broken" in proc.stdout  # the layers, and fastcourse never importing benchmarks/


def _import_graph():
    import grimp

    return grimp.build_graph("fastcourse", cache_dir=None)


def _strongly_connected(graph) -> list[set[str]]:
    """Tarjan's algorithm over grimp's module graph: every group of modules that import each other."""
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(m):
        index[m] = low[m] = len(index)
        stack.append(m)
        on.add(m)
        for n in graph.find_modules_directly_imported_by(m):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            group = set()
            while True:
                n = stack.pop()
                on.discard(n)
                group.add(n)
                if n == m:
                    break
            if len(group) > 1:
                groups.append(group)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return groups


def test_no_module_imports_itself_in_a_circle():
    graph = _import_graph()
    assert len(graph.modules) > 50
    assert _strongly_connected(graph) == []


def test_the_cycle_finder_would_see_a_cycle():
    class Fake:
        modules = {"a", "b", "c"}

        @staticmethod
        def find_modules_directly_imported_by(m):
            return {"a": {"b"}, "b": {"a"}, "c": {"a"}}[m]

    assert _strongly_connected(Fake()) == [{"a", "b"}]


@pytest.mark.parametrize("layer", LAYERS[:-1])
def test_no_upper_layer_imports_a_lower_one(layer):
    """The same rule read from the graph directly: `layer` imports nothing from the layers after it."""
    graph = _import_graph()
    below = LAYERS[LAYERS.index(layer) + 1 :]
    for lower in below:
        chains = graph.find_shortest_chains(f"fastcourse.{layer}", f"fastcourse.{lower}")
        assert not chains, f"{layer} imports {lower}: {sorted(chains)[:3]}"


@pytest.mark.integration
@pytest.mark.parametrize("argv", [["--help"], ["list", "configs"]])
def test_help_and_list_configs_import_no_tensorflow_and_start_fast(argv):
    """`--help` and the shipped configs' list import no TensorFlow (`fastcourse list` of the
    registries imports their modules, and so TensorFlow, quietly)."""
    code = (
        "import sys, time; t = time.perf_counter(); from fastcourse.cli import main\n"
        "try:\n    main(%r)\nexcept SystemExit:\n    pass\n"
        "print('TF' if 'tensorflow' in sys.modules else 'noTF', 'keras' in sys.modules)" % (argv,)
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("noTF False"), proc.stdout[-500:]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).with_name("fastcourse")), *argv], capture_output=True, timeout=60, check=True
        )
        times.append(time.perf_counter() - start)
    assert min(times) < 1.5, f"fastcourse {' '.join(argv)}: {min(times):.2f} s"


@pytest.mark.parametrize("variable", ["TASKS", "DATASETS", "AUGMENTATIONS", "MODELS", "SCHEDULES"])
def test_every_module_that_registers_is_in_its_registry_modules(variable):
    """A registry imports only the modules it names: a module with `@X.register` missing from X's
    tuple would leave its functions unknown."""
    import fastcourse.registry

    registry = getattr(fastcourse.registry, variable)
    package = ROOT / "fastcourse"
    decorated = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in package.rglob("*.py")
        if re.search(rf"^@{variable}\.register\(", path.read_text(encoding="utf-8"), re.M)
    }
    assert decorated and decorated == set(registry.modules)


def test_unknown_name_lists_the_known_ones_and_the_nearest():
    from fastcourse.errors import UsageError
    from fastcourse.registry import SCHEDULES

    with pytest.raises(
        UsageError, match=r"unknown schedule 'cosin'; did you mean 'cosine'\? \(known: constant, cosine,"
    ):
        SCHEDULES.get("cosin")
    assert "cosine" in SCHEDULES and "cosin" not in SCHEDULES


def test_list_names_resolve():
    """Every name a registry lists (its modules imported) is callable and has a summary."""
    from fastcourse.data import AUGMENTATIONS, DATASETS
    from fastcourse.models import MODELS
    from fastcourse.tasks import TASKS
    from fastcourse.train.schedules import SCHEDULES

    for registry in (TASKS, MODELS, DATASETS, AUGMENTATIONS, SCHEDULES):
        assert registry.names()
        for name in registry.names():
            assert callable(registry.get(name)) and registry.describe(name), (registry.kind, name)
    assert {"train", "finetune", "features", "sklearn_features"} <= set(TASKS.names())
