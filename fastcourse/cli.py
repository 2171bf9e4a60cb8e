"""`fastcourse` command line: run | list | show-config | preview-augment | lr-find | bench | ...

Errors the user can fix print one line (`fastcourse: error: ...`) and exit 2 (bad input) or
1 (failure at run time); there is no traceback for them.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

from fastcourse.errors import FastcourseError

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, list[tuple[tuple, dict]], Handler]] = {}

# Modules that define commands with @command; each registers itself on import.
COMMAND_MODULES = ["fastcourse.commands"]


def arg(*names, **options) -> tuple[tuple, dict]:
    return names, options


def command(name: str, help: str, args: list[tuple[tuple, dict]] = ()):
    """Register a subcommand: `@command("run", "train", [arg("config")])` over `fn(args) -> int`."""

    def register(fn: Handler) -> Handler:
        COMMANDS[name] = (help, list(args), fn)
        return fn

    return register


def build_parser() -> argparse.ArgumentParser:
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog="fastcourse", description="fast.ai 2017 lessons on Keras 3: experiments from YAML configs."
    )
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


if __name__ == "__main__":
    # `python -m fastcourse.cli`: run the imported module's main, whose COMMANDS the command
    # modules fill (this __main__ copy's registry stays empty)
    from fastcourse.cli import main as _main

    sys.exit(_main())
