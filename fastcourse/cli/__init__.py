"""Layer 8, cli: the `fastcourse` command line (argparse). run | check | list | show-config |
preview-augment | lr-find | predict | submit | views | split | bench | ...

Command modules import their work lazily, inside the handlers, so `fastcourse --help` imports no
TensorFlow (`fastcourse list` imports the registered modules, and so TensorFlow). `--out FOLDER`
means the same in every command: the folder the command writes its files into (each command
prints the paths it wrote).

Every problem the user can fix is one line, `fastcourse: error: ...`, naming the file, key or
path and the fix, never a traceback (a config with several problems: one line each). Exit codes:

    0    done
    2    bad input: a config or an override, a path, an --out folder that cannot be made, data
         that cannot be read, a command line argparse refuses (`fastcourse check` on an invalid
         config too)
    1    a failure at run time: a diverged loss, a full disk, a run directory in use
    130  Ctrl-C;  143  SIGTERM. Both keep the last checkpoint and print, on a line of its own,
         the command that resumes the run (`fastcourse run RUN_DIR`).

TensorFlow's, absl's and CUDA's log lines (oneDNN notices, `failed call to cuInit`) are hidden
unless FASTCOURSE_TF_LOGS=1 or --verbose asks for them (fastcourse.tf_logs). docs/messages.md has
the details.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

from fastcourse.errors import FastcourseError, Interrupted

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, list[tuple[tuple, dict]], Handler]] = {}


def arg(*names, **options) -> tuple[tuple, dict]:
    return names, options


def command(name: str, help: str, args: list[tuple[tuple, dict]] = ()):
    """Register a subcommand: `@command("run", "train", [arg("config")])` over `fn(args) -> int`."""

    def register(fn: Handler) -> Handler:
        COMMANDS[name] = (help, list(args), fn)
        return fn

    return register


OUT_ARG = arg(
    "--out",
    metavar="FOLDER",
    default=None,
    help="folder to write into (default: the current folder, or the run directory for commands on a run)",
)


def out_folder(out: str | None, default: str | Path = ".") -> Path:
    """The folder `--out` names (made if missing); a file there is a one-line error."""
    from fastcourse import io

    return io.make_folder(out if out is not None else default, "--out folder")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one `fastcourse: error:` line (exit 2), like every other error."""

    def error(self, message: str):
        command = self.prog.removeprefix("fastcourse").strip()
        self.exit(2, f"fastcourse: error: {command + ': ' if command else ''}{message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    # every module of this package defines commands with @command; importing it registers them
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):  # not __main__
            importlib.import_module(f"{__name__}.{info.name}")
    parser = _Parser(prog="fastcourse", description="fast.ai 2017 lessons on Keras 3: experiments from YAML configs.")
    verbose = dict(
        action="store_true",
        help="show TensorFlow's, absl's and CUDA's log lines (hidden by default; or set FASTCOURSE_TF_LOGS=1)",
    )
    parser.add_argument("--verbose", default=False, **verbose)
    from fastcourse.version import __version__

    parser.add_argument("--version", action="version", version=f"fastcourse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_text, arguments, handler) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        for names, options in arguments:
            p.add_argument(*names, **options)
        p.add_argument("--verbose", default=argparse.SUPPRESS, **verbose)  # also after the command
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_tensorflow(args)
    previous = _stop_on_sigterm()
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a reader that left (`| head`) shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _reader_gone()
    except FastcourseError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"fastcourse: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Interrupted)
        return _interrupted(exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _reader_gone() -> int:
    """The pipe's reader closed it (`fastcourse runs | head -1`): stop quietly, as `ls | head` does,
    with the shell's code for SIGPIPE (128 + 13). The recipe of Python's signal docs: stdout goes to
    devnull, so the interpreter's last flush finds nothing to write."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


# --- Ctrl-C and SIGTERM ----------------------------------------------------------------------


def _stop_on_sigterm():
    """SIGTERM raises Interrupted in the main thread, so it unwinds as Ctrl-C does (atomic writes
    finish or roll back, locks are freed, the last checkpoint stays). Returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        raise Interrupted("SIGTERM", 128 + signum)

    return signal.signal(signal.SIGTERM, on_sigterm)


def _interrupted(exc: KeyboardInterrupt) -> int:
    """Say what stopped the run and the command that resumes it; the exit code (130, 143)."""
    from fastcourse.run.rundir import resume_command

    print(flush=True)  # end the progress bar's line: the message starts a line of its own
    name = getattr(exc, "signal_name", "SIGINT")
    what = "interrupted (Ctrl-C)" if name == "SIGINT" else f"stopped by {name}"
    run_dir = getattr(exc, "run_dir", None)
    resume = getattr(exc, "resume", None) or (resume_command(run_dir) if run_dir is not None else None)
    if resume:
        print(f"fastcourse: {what}; the run keeps its last completed epoch; continue it with:", file=sys.stderr)
        print(resume, file=sys.stderr, flush=True)
    else:
        print(f"fastcourse: {what}", file=sys.stderr, flush=True)
    return int(getattr(exc, "exit_code", 130))


# --- TensorFlow's own log lines --------------------------------------------------------------

TF_LOGS_ENV = "FASTCOURSE_TF_LOGS"
# commands that never import TensorFlow; every other one imports it first, its start-up lines quieted
NO_TENSORFLOW = {"list", "data", "runs", "compare"}


def quiet_tensorflow(args: argparse.Namespace) -> None:
    """Import TensorFlow for a command that needs it, its start-up log lines held to
    TF_CPP_MIN_LOG_LEVEL (fastcourse.tf_logs); `--verbose` or FASTCOURSE_TF_LOGS=1 shows them all."""
    from fastcourse import tf_logs

    if args.verbose or os.environ.get(TF_LOGS_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        tf_logs.show_all()
    if args.command not in NO_TENSORFLOW:
        tf_logs.import_tensorflow()
