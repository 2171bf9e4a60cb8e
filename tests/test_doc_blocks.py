"""The README's and docs' code blocks run as tests: every ```python and ```bash block of README.md
and docs/*.md is one test (id: file:line of its opening fence), run in a fresh process in a
temporary folder that holds what the block names: `photos/cat/`, `photos/dog/` for a block that
reads photos/, the repository's `configs/`, and `/tmp/doc` moved into the temporary folder. A block
that stops working fails here.

A block that cannot run here says why in an HTML comment right before its fence, which the
rendered page does not show:

    <!-- test: skip downloads dogscats (fast.ai's archive) -->

and is skipped with that reason. Blocks that run as written but too long for the default tier
(a shipped config's full run, the bundled digits through an ensemble) or that need a download
for one argument (ImageNet weights) are run with the argument changes in ADAPT, each with its
reason; lines that install the package (`pip install -e .`) are left out: the tests run in that
installed environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

pytestmark = pytest.mark.integration  # every block runs in a process of its own

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
FENCE = re.compile(r"^(\s*)(```+)\s*([\w-]*)")
MARKER = re.compile(r"^<!--\s*test:\s*skip\s+(.+?)\s*-->$")

# (page, the text in its block) -> (replacement, why). Applied only where the text is found, so a
# block that changes runs as written.
ADAPT: dict[tuple[str, str], tuple[str, str]] = {
    ("README.md", "image_size=160, valid_pct=0.2)"): (
        'image_size=32, valid_pct=0.2, model_args={"weights": None}, precision="float32")',
        "ImageNet weights cannot be downloaded in the tests, and MobileNetV2 at 160 pixels (and its bfloat16 "
        "graph) through lr_find's 100 steps takes many minutes on 2 cores; the rest runs as written",
    ),
    ("docs/quickstart.md", 'DATASETS.get("mnist_sample")(), augment="course")'): (
        'DATASETS.get("mnist_sample")(), augment="course", train_limit=512, test_limit=256)',
        "4,000 digits through lr_find, 2 + 3 epochs and a 5-member ensemble take minutes on 2 cores",
    ),
    ("", "fastcourse run configs/mnist_sample/cnn.yaml"): (
        "fastcourse run configs/mnist_sample/cnn.yaml --set 'train.schedule.phases=[[1, 1.0e-3]]'"
        " --set data.train_limit=512 --set data.test_limit=256",
        "the default experiment's 6 epochs on 4,000 digits take a minute on 2 cores",
    ),
}
# lines the tests' environment already did
INSTALLED = ("pip install -e .",)


@dataclass
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    skip: Optional[str]

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def find_blocks() -> list[Block]:
    """Every fenced python/bash block of the pages, with the skip reason its marker gives."""
    found = []
    for path in PAGES:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            indent, fence, language = m.groups()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)), len(lines))
            if language in LANGUAGES:
                above = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
                marker = MARKER.match(above)
                code = "\n".join(line[len(indent) :] for line in lines[i + 1 : end])
                rel = str(path.relative_to(ROOT))
                found.append(Block(rel, i + 1, LANGUAGES[language], code, marker.group(1) if marker else None))
            i = end + 1
    return found


BLOCKS = find_blocks()


def test_the_pages_have_blocks_and_every_marker_sits_on_one():
    pages = {b.page for b in BLOCKS}
    assert {"README.md", "docs/learner.md", "docs/quickstart.md"} <= pages
    assert [b.id for b in BLOCKS if not b.skip], "no block runs"
    for path in PAGES:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("<!-- test:"):
                assert MARKER.match(line.strip()), f"{path.name}:{i + 1}: write <!-- test: skip REASON -->"
                after = next((x for x in lines[i + 1 :] if x.strip()), "")
                m = FENCE.match(after)
                assert m and m.group(3) in LANGUAGES, f"{path.name}:{i + 1}: a marker goes right before a code fence"


def _prepared(block: Block, work: Path) -> str:
    code = block.code.replace("/tmp/doc", str(work / "doc"))
    for (page, old), (new, _why) in ADAPT.items():
        if page in ("", block.page) and old in code:
            code = code.replace(old, new)
    if block.language == "bash":
        code = "\n".join(f": # {line}" if line.strip().startswith(INSTALLED) else line for line in code.splitlines())
    if "photos/" in code:
        from test_class_folders_layout import write_photos

        write_photos(work / "photos")
    return code


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_block_runs(block: Block, tmp_path):
    if block.skip:
        pytest.skip(block.skip)
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(ROOT / "configs")
    code = _prepared(block, work)
    script = work / ("block.py" if block.language == "python" else "block.sh")
    script.write_text(code + "\n")
    command = [sys.executable, str(script)] if block.language == "python" else ["bash", "-e", str(script)]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MPLBACKEND": "Agg",
    }
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"{block.id} stopped working (exit {proc.returncode}):\n{code}\n--- stdout\n{proc.stdout[-3000:]}"
        f"\n--- stderr\n{proc.stderr[-3000:]}"
    )
