"""`fastcourse bench`: throughput, roofline and time to accuracy against the peer."""
from __future__ import annotations

import argparse

from fastcourse.cli import arg, command


@command("bench", "benchmark fastcourse against plain Keras + ImageDataGenerator (same run)", [
    arg("--quick", action="store_true", help="a few thousand images, fewer epochs: a few minutes"),
    arg("--cases", default="ladder,choices,time_to_accuracy,vgg16",
        help="comma-separated: ladder, choices, time_to_accuracy, vgg16 (default all)"),
    arg("--json", dest="json_path", default="bench.json", help="where to write the JSON (default bench.json)"),
    arg("--seed", type=int, default=0),
])
def bench(args: argparse.Namespace) -> int:
    from fastcourse.lessons.bench import CASES, run_bench
    from fastcourse.errors import UsageError

    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    unknown = set(cases) - set(CASES)
    if unknown:
        raise UsageError(f"--cases: unknown case(s) {sorted(unknown)}; use {', '.join(CASES)}")
    run_bench(quick=args.quick, seed=args.seed, cases=cases, json_path=args.json_path)
    return 0
