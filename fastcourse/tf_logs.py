"""TensorFlow's start-up log lines: quieted by TensorFlow's own setting, TF_CPP_MIN_LOG_LEVEL.

`import fastcourse` sets TF_CPP_MIN_LOG_LEVEL to 3 unless it is set already (a user's own value
is kept): TensorFlow's C++ log lines below that level are hidden (1 hides info lines such as the
oneDNN notice, 2 warnings too, 3 errors too, such as `failed call to cuInit` on a machine without
a GPU; 0 shows them all). `fastcourse --verbose` and FASTCOURSE_TF_LOGS=1 show them all.

TensorFlow 2.21 writes a few lines while its libraries load, before it reads that setting:
absl's "All log messages before absl::InitializeLog()" notice, the oneDNN notice and "Could not
find cuda drivers" (once per library). `import_tensorflow` applies the same level to those lines:
while `import tensorflow` runs, what TensorFlow writes to stderr is read line by line, a log
line under the level is dropped, and every other line is passed on as soon as it is complete.
The front doors import TensorFlow through it: the `fastcourse` command, and
`fastcourse.Learner`, `fastcourse.load_config`, `fastcourse.run_experiment` and `fastcourse.load_learner`.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import sys
import threading
from typing import Iterator

LEVEL = "TF_CPP_MIN_LOG_LEVEL"
QUIET = "3"
# what the user set before fastcourse was imported (None: fastcourse's QUIET applies)
user_level: str | None = None

# absl's log line: severity letter, date (0000 before absl is initialised), time, thread, file:line]
_LOG_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
_ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def set_default_level() -> None:
    """TF_CPP_MIN_LOG_LEVEL=3 unless the user set it (called by `import fastcourse`)."""
    global user_level
    if user_level is None:
        user_level = os.environ.get(LEVEL)
    os.environ.setdefault(LEVEL, QUIET)


def show_all() -> None:
    """Show TensorFlow's log lines (`--verbose`): the user's own level, else 0. Takes effect on a
    TensorFlow imported afterwards."""
    os.environ[LEVEL] = user_level if user_level is not None else "0"


def min_level() -> int:
    """TF_CPP_MIN_LOG_LEVEL as TensorFlow reads it (0 when unset or not a number)."""
    try:
        return int(os.environ.get(LEVEL, "0"))
    except ValueError:
        return 0


def hidden(line: bytes, level: int) -> bool:
    """Whether TF_CPP_MIN_LOG_LEVEL=`level` hides this line of TensorFlow's. absl's notice only
    announces the log lines that follow it, so it goes with the info lines."""
    if line.startswith(_ABSL_NOTICE):
        return level >= 1
    match = _LOG_LINE.match(line)
    return match is not None and _SEVERITY[match[1]] < level


def import_tensorflow():
    """`import tensorflow`, with the lines TensorFlow logs before it reads TF_CPP_MIN_LOG_LEVEL
    held to that level too. Returns the module."""
    if "tensorflow" not in sys.modules:
        level = min_level()
        if level > 0:
            with _lines_under(level):
                import tensorflow  # noqa: F401
        else:
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]


@contextlib.contextmanager
def _lines_under(level: int) -> Iterator[None]:
    """Read stderr (file descriptor 2) through a pipe, line by line, while the block runs; pass on
    each complete line at once unless `hidden` drops it."""
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no stderr descriptor: nothing to read
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    # A native crash while TensorFlow loads ends the process before this reader can pass its last
    # bytes on: Python's fault handler writes the crash and the Python stack straight to the
    # terminal's stderr instead, so the crash is never silent.
    # (A handler the user enabled is left as they set it.)
    own_handler = not faulthandler.is_enabled()
    if own_handler:
        faulthandler.enable(file=original)

    def forward() -> None:
        pending = b""
        while chunk := os.read(read_end, 1 << 16):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not hidden(line, level))
            _write_all(original, kept)
        if pending and not hidden(pending, level):
            _write_all(original, pending)

    reader = threading.Thread(target=forward, name="tensorflow-start-up-lines", daemon=True)
    reader.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last writer is gone: the reader drains it and ends
        reader.join()
        if own_handler:
            faulthandler.disable()
        os.close(read_end)
        os.close(original)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
