"""`fastcourse reproduce mnist|fashion_mnist`: every ladder step and the ensemble, one report."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from fastcourse.cli import arg, command


@command(
    "reproduce",
    "run the whole MNIST lesson (ladder + ensemble) and write report.md/.html",
    [
        arg("dataset", nargs="?", choices=["mnist", "fashion_mnist"], help="which dataset's ladder"),
        arg(
            "--quick",
            action="store_true",
            help="smoke run: 2 epochs per step, at most 4,000 training images, 3 members (minutes on 2 CPU cores)",
        ),
        arg(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY.PATH=VALUE",
            help="override a value in every step's config, e.g. --set 'train.schedule.phases=[[1, 1e-3]]'",
        ),
        arg("--steps", help="comma-separated subset of the steps, e.g. linear,hidden,ensemble"),
        arg("--out", default="runs", help="folder for the reproduction directory (default runs/)"),
        arg("--configs", help="a folder of <dataset>/<step>.yaml configs (default: the ones shipped in the package)"),
        arg(
            "--budget",
            metavar="TIME",
            help="fit the ladder + ensemble into this wall time (e.g. 60m, 1h): one-cycle, batch 256, epochs per "
            "step from a short measured calibration run",
        ),
        arg("--resume", metavar="DIR", help="finish an interrupted reproduction: completed steps are kept"),
    ],
)
def reproduce_command(args: argparse.Namespace) -> int:
    from fastcourse.errors import UsageError
    from fastcourse.lessons.reproduce import PLAN_FILE, reproduce

    if not args.dataset and not args.resume:
        raise UsageError("reproduce: name a dataset (mnist or fashion_mnist), or --resume DIR")
    if args.resume and (args.quick or args.overrides or args.steps or args.configs or args.budget):
        raise UsageError(
            f"--resume {args.resume}: a reproduction resumes with the plan it started with "
            "(its reproduce.yaml); drop --quick, --set, --steps, --configs and --budget"
        )
    steps = [s.strip() for s in args.steps.split(",") if s.strip()] if args.steps else None
    try:
        reproduce(
            args.dataset,
            out=args.out,
            quick=args.quick,
            overrides=args.overrides,
            configs_dir=args.configs,
            resume=args.resume,
            steps=steps,
            budget=args.budget,
        )
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM in a step: resume the reproduction, not the step
        step_dir = getattr(exc, "run_dir", None)
        if step_dir is not None and (Path(step_dir).parent / PLAN_FILE).is_file():
            exc.resume = f"fastcourse reproduce --resume {shlex.quote(str(Path(step_dir).parent))}"
        raise
    return 0
