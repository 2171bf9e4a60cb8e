"""`fastcourse sweep SPEC`: train a config over a search space, each trial a `fastcourse run`, on Optuna."""

from __future__ import annotations

import argparse
import shlex

from fastcourse.cli import arg, command


@command(
    "sweep",
    "run a sweep spec's trials (each a `fastcourse run` into SWEEP/trials/NNN/) on an Optuna study, or "
    "continue it; write SWEEP/trials.csv, report.md, overfitting.png and best.yaml",
    [
        arg("spec", nargs="?", metavar="SPEC", help="sweep spec YAML, or a shipped one: sweeps/overfitting"),
        arg("--quick", action="store_true", help="the spec's quick variant (its `quick:` section), in SWEEP-quick/"),
        arg(
            "--jobs",
            type=int,
            default=None,
            metavar="N",
            help="trial processes at once on this machine (default 1: measured in docs/sweeps.md)",
        ),
        arg(
            "--storage",
            metavar="URL",
            help="the study's storage: postgresql://user@host/db, sqlite:///file.db, redis://host:port "
            "(default: SWEEP/journal.log, no server)",
        ),
        arg(
            "--join",
            action="store_true",
            help="work on the study together with other `fastcourse sweep --join` processes (same "
            "--storage), on this machine or others; each trial runs once",
        ),
        arg("--dashboard", metavar="SWEEP", help="serve optuna-dashboard on the sweep folder's study (localhost)"),
        arg("--port", type=int, default=8080, help="--dashboard's port (default 8080)"),
    ],
)
def sweep(args: argparse.Namespace) -> int:
    from fastcourse.errors import UsageError

    if args.dashboard:
        from fastcourse.sweeps.dashboard import serve

        serve(args.dashboard, args.storage, args.port)
        return 0
    if not args.spec:
        raise UsageError("sweep: give a SPEC file (e.g. sweeps/overfitting), or --dashboard SWEEP")
    from fastcourse.sweeps.spec import load_spec
    from fastcourse.sweeps.study import DEFAULT_JOBS, run_sweep

    checked = load_spec(args.spec, quick=args.quick)
    try:
        df = run_sweep(
            checked, jobs=DEFAULT_JOBS if args.jobs is None else args.jobs, storage=args.storage, join=args.join
        )
    except KeyboardInterrupt as exc:  # say how to continue: the same command
        again = ["fastcourse", "sweep", args.spec]
        again += ["--quick"] * args.quick + (["--jobs", str(args.jobs)] if args.jobs else [])
        again += (["--storage", args.storage] if args.storage else []) + ["--join"] * args.join
        exc.resume = " ".join(shlex.quote(a) for a in again)
        raise
    counts = df["state"].value_counts().to_dict()
    print(f"trials: {len(df)}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    print(f"sweep folder: {checked.folder}")
    return 0
