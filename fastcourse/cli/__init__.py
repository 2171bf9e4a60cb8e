"""Layer 8, cli: the `fastcourse` command line (argparse). run | check | list | show-config |
preview-augment | lr-find | predict | submit | views | split | bench | ...

Command modules import their work lazily, inside the handlers, so `fastcourse --help` and
`fastcourse list` import no TensorFlow. `--out FOLDER` means the same in every command: the
folder the command writes its files into (each command prints the paths it wrote).

Errors the user can fix print one line (`fastcourse: error: ...`) and exit 2 (bad input) or
1 (failure at run time); there is no traceback for them.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Callable

from fastcourse.errors import FastcourseError

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


OUT_ARG = arg("--out", metavar="FOLDER", default=None,
              help="folder to write into (default: the current folder, or the run directory for commands on a run)")


def out_folder(out: str | None, default: str | Path = ".") -> Path:
    """The folder `--out` names (made if missing); a file there is a one-line error."""
    from fastcourse import io

    return io.make_folder(out if out is not None else default, "--out folder")


def build_parser() -> argparse.ArgumentParser:
    # every module of this package defines commands with @command; importing it registers them
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):  # not __main__
            importlib.import_module(f"{__name__}.{info.name}")
    parser = argparse.ArgumentParser(
        prog="fastcourse", description="fast.ai 2017 lessons on Keras 3: experiments from YAML configs."
    )
    from fastcourse.version import __version__

    parser.add_argument("--version", action="version", version=f"fastcourse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_text, arguments, handler) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        for names, options in arguments:
            p.add_argument(*names, **options)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except FastcourseError as exc:
        print(f"fastcourse: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fastcourse: interrupted", file=sys.stderr)
        return 130
