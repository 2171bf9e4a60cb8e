"""Errors a user can act on. The CLI prints them as one line, without a traceback.

Exit codes follow the CLI convention: 2 for usage and input errors (a bad config, missing
data), 1 for failures at run time (a diverged loss, a full disk).
"""


class FastcourseError(Exception):
    """Base class: a message meant for the user, and the exit code the CLI returns."""

    exit_code = 1


class UsageError(FastcourseError):
    """Bad input: a config, a path, a name. Fix the input and run again."""

    exit_code = 2


class ConfigError(UsageError):
    """An experiment config that fails validation."""


class DataError(UsageError):
    """Data that cannot be found or read."""


class RunError(FastcourseError):
    """A failure while running: divergence, a full disk, a locked run directory."""

    exit_code = 1
