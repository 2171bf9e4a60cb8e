"""TensorFlow's start-up lines (fastcourse.tf_logs): TF_CPP_MIN_LOG_LEVEL, set by `import fastcourse`
unless the user set it, and the same level applied to the lines TensorFlow 2.21 logs before it
reads that setting. The lines below are what TensorFlow 2.21 printed on the development machine
(2-core CPU, no GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastcourse import tf_logs

ROOT = Path(__file__).resolve().parents[1]

ABSL = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = (
    b"I0000 00:00:1796574222.290351    5297 port.cc:153] oneDNN custom operations are on. You may see slightly "
    b"different numerical results due to floating-point round-off errors from different computation orders."
)
CUDA = b"I0000 00:00:1796574222.291356    5297 cudart_stub.cc:31] Could not find cuda drivers on your machine."
CUINIT = b"E0000 00:00:1796574233.892119    5984 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error"
WARN = b"W0000 00:00:1796574233.892119    5984 some.cc:1] a warning"
FATAL = b"F0000 00:00:1796574233.892119    5984 some.cc:1] Check failed: x"
NOISE_WORDS = ("oneDNN", "cuda drivers", "cuInit", "absl::InitializeLog")


def test_hidden_follows_tensorflow_levels():
    """TF_CPP_MIN_LOG_LEVEL: 0 all, 1 hides info, 2 warnings too, 3 errors too; fatal lines always show."""
    lines = {"absl": ABSL, "info": ONEDNN, "cuda": CUDA, "warning": WARN, "error": CUINIT, "fatal": FATAL}
    shown = {level: {k for k, line in lines.items() if not tf_logs.hidden(line, level)} for level in range(4)}
    assert shown[0] == set(lines)
    assert shown[1] == {"warning", "error", "fatal"}
    assert shown[2] == {"error", "fatal"}
    assert shown[3] == {"fatal"}
    assert not tf_logs.hidden(b"Traceback (most recent call last):", 3)
    assert not tf_logs.hidden(b"I0000 is not a log line", 3)


def test_lines_under_the_level_go_and_every_other_line_passes(capfd):
    with tf_logs._lines_under(3):
        os.write(2, ABSL + b"\n" + ONEDNN + b"\nour own line\n" + CUINIT + b"\n")
        os.write(2, b"a line in two ")
        os.write(2, b"writes\n" + FATAL + b"\nno newline at the end")
    assert capfd.readouterr().err == "our own line\na line in two writes\n" + FATAL.decode() + "\nno newline at the end"
    os.write(2, ONEDNN + b"\n")  # after the block, stderr is stderr again
    assert capfd.readouterr().err == ONEDNN.decode() + "\n"


def test_a_users_level_is_kept(monkeypatch):
    monkeypatch.setattr(tf_logs, "user_level", None)
    monkeypatch.setenv(tf_logs.LEVEL, "1")
    tf_logs.set_default_level()
    assert os.environ[tf_logs.LEVEL] == "1"
    monkeypatch.delenv(tf_logs.LEVEL)
    monkeypatch.setattr(tf_logs, "user_level", None)
    tf_logs.set_default_level()
    assert os.environ[tf_logs.LEVEL] == tf_logs.QUIET
    tf_logs.show_all()  # --verbose: everything, as no level was given
    assert os.environ[tf_logs.LEVEL] == "0"


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in (tf_logs.LEVEL, "FASTCOURSE_TF_LOGS")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT, env={**base, **env}
    )


@pytest.mark.integration
def test_the_learner_in_python_prints_no_tensorflow_start_up_line():
    """The notebook's first training cell, as `python -c`: no oneDNN, CUDA, cuInit or absl line."""
    proc = _python("import fastcourse; fastcourse.Learner.from_dataset('mnist_sample', 'cnn').fit(1)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [w for w in NOISE_WORDS if w in proc.stderr + proc.stdout], proc.stderr[-3000:]


@pytest.mark.integration
def test_a_users_tf_cpp_min_log_level_is_kept_and_shows_the_lines():
    proc = _python(
        "import os, fastcourse; fastcourse.Learner; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])", TF_CPP_MIN_LOG_LEVEL="0"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "0"
    assert "oneDNN" in proc.stderr or "cuda drivers" in proc.stderr, proc.stderr  # TensorFlow's own, unfiltered


@pytest.mark.integration
def test_a_native_crash_while_the_lines_are_read_still_reaches_the_terminal():
    """A segmentation fault inside the block (as a native crash in `import tensorflow` would be)
    kills the process before the reader passes anything on: the fault handler writes it to the
    real stderr."""
    code = "import ctypes; from fastcourse import tf_logs\nwith tf_logs._lines_under(3):\n    ctypes.string_at(0)"
    proc = _python(code)
    assert proc.returncode != 0
    assert "Fatal Python error: Segmentation fault" in proc.stderr, proc.stderr[-3000:]
    assert "string_at" in proc.stderr or "<string>" in proc.stderr, proc.stderr[-3000:]  # the Python stack
