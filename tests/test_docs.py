"""The documentation: the mkdocs site builds with --strict (a page, link or reference to a name that does
not exist fails), every page is in the nav, every `fastcourse.x.y` the docs, the README or a docstring
cites exists, and the README stays a newcomer's page."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
DOTTED = re.compile(r"(?<![\w./-])fastcourse(?:\.[A-Za-z_]\w*)+")


@pytest.mark.integration
def test_the_site_builds_strict(tmp_path):
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}{proc.stderr}"
    # the reference pages were generated from the docstrings, not left empty
    trainer = (tmp_path / "site" / "reference" / "trainer" / "index.html").read_text()
    assert 'id="fastcourse.train.trainer.fit"' in trainer
    print(f"mkdocs build --strict: {seconds:.1f} s")


def _nav_files(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [f for item in node for f in _nav_files(item)]
    if isinstance(node, dict):
        return [f for value in node.values() for f in _nav_files(value)]
    return []


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    nav = _nav_files(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert sorted(pages - set(nav)) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(set(nav) - pages) == [], "nav entries without a page"


def _package():
    griffe = pytest.importorskip("griffe")
    return griffe.load("fastcourse", search_paths=[str(ROOT)], allow_inspection=False)


def _resolves(package, dotted: str, lazy: set[str]) -> bool:
    parts = dotted.split(".")[1:]
    if parts[0] in lazy or parts[0].startswith("__"):
        return True  # fastcourse's lazy exports (its __getattr__) and module dunders
    obj = package
    for part in parts:
        if not (obj.is_module or obj.is_class):
            return True  # an attribute's own attributes (a registry's .get) are not the docs' business
        member = obj.members.get(part)
        if member is None:
            return False
        obj = member.final_target if member.is_alias else member
    return True


def test_every_name_the_docs_and_docstrings_cite_exists():
    """`fastcourse.data.features.attach_head` in a docstring, when attach_head lives elsewhere, fails here."""
    package = _package()
    init = (ROOT / "fastcourse" / "__init__.py").read_text()
    lazy = set(re.findall(r'^\s+"(\w+)": "fastcourse\.', init, re.M))
    assert {"Learner", "load_config", "run_experiment"} <= lazy
    files = [
        *sorted((ROOT / "fastcourse").rglob("*.py")),
        *sorted(DOCS.rglob("*.md")),
        README,
        *[p for p in (ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md") if p.exists()],
    ]
    missing = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in DOTTED.finditer(line):
                name = match.group(0)
                if not _resolves(package, name, lazy):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {name}")
    assert missing == [], "names that do not exist:\n" + "\n".join(missing)


def test_the_readme_is_a_newcomers_page():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines: move details into docs/"
    for command in ("make run", "make test"):
        assert re.search(rf"^{command}\b", text, re.M), f"the README shows `{command}` at the start of a line"
    for target in re.findall(r"\]\(((?!https?:|#)[^)#\s]+)", text):
        assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


def test_the_readme_says_why_each_dependency_is_there():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [
        *project["dependencies"],
        *[r for extra in project["optional-dependencies"].values() for r in extra],
    ]
    names = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements}
    table = "\n".join(line.lower() for line in README.read_text().splitlines() if line.startswith("|"))
    missing = sorted(n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", table))
    assert missing == [], f"dependencies missing from the README's table: {missing}"


def test_drifted_statements_stay_fixed():
    texts = {p: p.read_text() for p in [README, *DOCS.rglob("*.md"), *(ROOT / "fastcourse").rglob("*.py")]}
    for path, text in texts.items():
        for line in text.splitlines():
            assert not ("FeatureSource" in line and re.search(r"memory.mapped", line)), (
                f"{path}: FeatureSource reads with positioned reads, not a memory map: {line.strip()}"
            )
            assert "tests mirror modules" not in line.lower(), f"{path}: {line.strip()}"
            # a count of tests or cases goes stale at the next test; no page quotes one
            assert not (path.suffix == ".md" and re.search(r"\b\d[\d,]* (tests|cases|test cases)\b", line)), (
                f"{path}: quotes a count of tests no test checks: {line.strip()}"
            )
