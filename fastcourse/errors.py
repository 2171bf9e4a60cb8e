"""Errors a user can act on. The CLI prints each line of one as `fastcourse: error: <line>`,
without a traceback, and exits with its code (see fastcourse/cli/__init__.py and
docs/messages.md):

    2    bad input: a config, an override, a path, data that cannot be read (UsageError)
    1    a failure at run time: a diverged loss, a full disk, a busy run directory (RunError)
    130  Ctrl-C; 143 SIGTERM (Interrupted)
"""

from __future__ import annotations


class FastcourseError(Exception):
    """Base class: a message meant for the user, and the exit code the CLI returns."""

    exit_code = 1


class UsageError(FastcourseError):
    """Bad input: a config, a path, a name. Fix the input and run again."""

    exit_code = 2


class ConfigError(UsageError):
    """An experiment config that fails validation: one line per problem, all of them at once.

    `ConfigError("c.yaml: train.epochs = 0: ...")` or `ConfigError(*lines)`; `problems` lists them."""

    def __init__(self, *problems: str):
        self.problems = list(dict.fromkeys(line for p in problems for line in str(p).splitlines() if line))
        super().__init__("\n".join(self.problems))


class DataError(UsageError):
    """Data that cannot be found or read."""


class RunError(FastcourseError):
    """A failure while running: divergence, a full disk, a locked run directory."""

    exit_code = 1


class Interrupted(KeyboardInterrupt):
    """A signal that stops a run as Ctrl-C does (SIGTERM): the last checkpoint stays, and the
    CLI prints the command that resumes. A KeyboardInterrupt, so every cleanup that runs for
    Ctrl-C runs for it too. `run_dir` is set by the run directory it stopped (if any)."""

    def __init__(self, signal_name: str = "SIGTERM", exit_code: int = 143):
        super().__init__(signal_name)
        self.signal_name, self.exit_code = signal_name, exit_code
