"""The wheel carries its configs: built, installed into a fresh virtual environment and run
from an empty folder, it lists and runs the shipped configs by name and reproduces offline. It
ships the product only: no benchmarks/, no torch or fastai code, no code that installs packages.

The fresh environment borrows this environment's dependencies (TensorFlow and the rest) through
a .pth line, so nothing is downloaded; the editable install's finder is not active there, so the
fastcourse that runs is the wheel's copy (asserted)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from pathlib import Path

import pytest

from fastcourse.errors import ConfigError
from fastcourse.shipped import configs_dir, resolve_config, shipped_names

ROOT = Path(__file__).resolve().parents[1]


def _build_wheel(dest: Path) -> Path:
    """`pip wheel` on a copy of the project (setuptools writes build/ beside the sources)."""
    src = dest / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in ("fastcourse", "benchmarks"):  # benchmarks/ beside it, as in the repository: left out
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(dest / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (dest / "dist").glob("fastcourse-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


def test_resolution_path_then_name_then_close_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = configs_dir() / "mnist_sample" / "cnn.yaml"
    for name in ("mnist_sample/cnn", "mnist_sample/cnn.yaml", "configs/mnist_sample/cnn.yaml"):
        assert resolve_config(name) == shipped, name
    own = tmp_path / "mnist_sample" / "cnn.yaml"  # a user's own file of the same name wins
    own.parent.mkdir()
    own.write_text("name: mine\n")
    assert resolve_config("mnist_sample/cnn.yaml") == Path("mnist_sample/cnn.yaml")
    with pytest.raises(ConfigError, match=r"mnist_sampel/cnn: no such config.*did you mean mnist_sample/cnn"):
        resolve_config("mnist_sampel/cnn")
    with pytest.raises(ConfigError, match="no such config"):
        resolve_config("../../etc/passwd")
    assert "mnist/linear" in shipped_names() and "dogscats/bn_head" in shipped_names()


def test_load_config_takes_a_shipped_name(tmp_path, monkeypatch):
    from fastcourse import load_config

    monkeypatch.chdir(tmp_path)
    assert load_config("mnist/linear", ["train.batch_size=32"]).train.batch_size == 32
    assert load_config("mnist/linear").model.name == load_config(configs_dir() / "mnist/linear.yaml").model.name


@pytest.mark.integration
def test_wheel_lists_every_shipped_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"fastcourse/configs/{n}.yaml" for n in shipped_names()}
    assert len(shipped) > 30 and shipped <= names, sorted(shipped - names)[:5]
    assert "fastcourse/data/sample/mnist_sample.npz" in names or any(
        n.startswith("fastcourse/data/sample/") for n in names
    )


INSTALLERS = {"pip", "pip3", "ensurepip", "uv", "conda", "mamba"}


def _product_faults(name: str, source: str) -> list[str]:
    """What a module of the wheel must not hold: an import of torch or fastai, or code that
    installs packages (an installer's name as a command word, `-m pip`, an import of pip).
    A message telling the user what to install ("pip install tensorboard") is words, not code."""
    faults = []
    for node in ast.walk(ast.parse(source)):
        modules = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        faults += [
            f"{name}: imports {m}" for m in modules if m.split(".")[0] in {"torch", "fastai", "pip", "ensurepip"}
        ]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in INSTALLERS or re.search(r"-m\s+(pip|ensurepip)\b", node.value):
                faults.append(f"{name}: installer command word {node.value!r}")
    return faults


def test_product_faults_finds_what_it_looks_for():
    assert _product_faults("a.py", "import torch\nfrom fastai.learner import Learner\n") == [
        "a.py: imports torch",
        "a.py: imports fastai.learner",
    ]
    runs_pip = 'subprocess.run([sys.executable, "-m", "pip", "install", "torch"])'
    assert _product_faults("b.py", runs_pip) == ["b.py: installer command word 'pip'"]
    assert _product_faults("c.py", 'os.system("python -m pip install fastai")')
    assert _product_faults("d.py", 'raise UsageError("needs tensorboard: pip install tensorboard")') == []


@pytest.mark.integration
def test_wheel_ships_the_product_only(wheel):
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    assert not [n for n in names if n.startswith("benchmarks/")], "benchmarks/ is the repository's, not the wheel's"
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"fastcourse"}
    assert not [n for n in names if re.search(r"fastai|torch", n.rsplit("/", 1)[-1])]
    faults = [f for n in names if n.endswith(".py") for f in _product_faults(n, archive.read(n).decode())]
    assert faults == []


def _fresh_env(where: Path, wheel: Path) -> Path:
    venv.EnvBuilder(with_pip=False).create(where)
    py = where / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # dependencies from this environment, after the fresh one's own site-packages; a directory named
    # in a .pth file is only appended to sys.path, its own .pth files (the editable finder) never run
    Path(purelib, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return where / "bin"


@pytest.mark.slow  # ~20 s; the wheel's file list stays in the default tier
@pytest.mark.integration
def test_installed_wheel_runs_shipped_configs_from_an_empty_folder(wheel, tmp_path):
    start = time.perf_counter()
    bin_dir = _fresh_env(tmp_path / "venv", wheel)
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3")

    def run(*args: str, timeout: int = 300) -> str:
        proc = subprocess.run(
            [str(bin_dir / args[0]), *args[1:]], cwd=work, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
        return proc.stdout

    where = run(
        "python", "-c", "import fastcourse, fastcourse.shipped as s; print(fastcourse.__file__); print(s.configs_dir())"
    ).split()
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where), where

    listed = run("fastcourse", "list")
    assert "configs:" in listed and "  mnist_sample/cnn" in listed and "  dogscats/bn_head" in listed

    out = run(
        "fastcourse",
        "run",
        "mnist_sample/cnn",
        "--set",
        "train.schedule.phases=[[1, 1.0e-3]]",
        "--set",
        "data.train_limit=512",
        "--set",
        "data.test_limit=256",
        "--set",
        "train.verbose=0",
    )
    accuracy = float(out.split("test accuracy:")[1].split()[0])
    assert accuracy > 0.3, out  # one epoch on 512 digits: far above the 0.1 of chance
    assert list((work / "runs").glob("mnist_sample-cnn-*/metrics.json"))

    out = run("fastcourse", "reproduce", "mnist", "--quick", "--steps", "linear", timeout=600)
    assert "| linear" in out, out[-1500:]
    (report,) = (work / "runs").glob("reproduce-mnist-quick-*/report.md")
    assert "linear" in report.read_text()
    print(f"wheel install + list + run + reproduce: {time.perf_counter() - start:.1f} s")
