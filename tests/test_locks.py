"""fastcourse.locks: a second process is refused with the holder's pid; kill -9 frees the lock.
Each child process imports fastcourse (and so TensorFlow): about 7 s each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fastcourse.errors import RunError, UsageError
from fastcourse.locks import hold, holder, pid_path

HOLDER = (
    "import sys; from fastcourse.locks import hold\n"
    "with hold(sys.argv[1]):\n"
    "    print('held', flush=True); sys.stdin.read()\n"
)


def start_holder(folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.integration
def test_second_process_refused_with_pid_and_free_after_kill_9(tmp_path):
    proc = start_holder(tmp_path)
    try:
        assert holder(tmp_path) == proc.pid
        with pytest.raises(RunError) as info:
            with hold(tmp_path):
                pass
        message = str(info.value)
        assert message == (
            f"run directory {tmp_path} is in use by another fastcourse run (pid {proc.pid}); "
            "wait for it to finish, or start a separate run"
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    # the OS released the flock; the dead holder's pid file is simply overwritten
    with hold(tmp_path):
        assert holder(tmp_path) == os.getpid()
    assert not pid_path(tmp_path).exists() and (tmp_path / ".lock").exists()


@pytest.mark.integration
def test_nested_holds_count_and_another_process_sees_our_pid(tmp_path):
    with hold(tmp_path):
        with hold(tmp_path):  # run_experiment -> run_ensemble take the same lock
            pass
        assert holder(tmp_path) == os.getpid()  # the inner release kept the outer hold
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from fastcourse.locks import hold\nwith hold(sys.argv[1]): pass\n",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        )
        assert other.returncode != 0 and f"(pid {os.getpid()})" in other.stderr
    assert not pid_path(tmp_path).exists()


def test_old_holder_pid_inside_the_lock_file_is_read(tmp_path):
    (tmp_path / ".lock").write_text("4242")
    assert holder(tmp_path) == 4242


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_folder_is_a_usage_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(UsageError, match=f"cannot lock run directory {folder}"):
            with hold(folder):
                pass
    finally:
        folder.chmod(0o700)
