"""`python -m benchmarks`: fastcourse's own cases (`fastcourse bench`) and the comparisons
(benchmarks/cases.py), one table and one JSON."""

from __future__ import annotations

import argparse
import sys
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    from benchmarks.cases import COMPARISONS
    from fastcourse.bench.cases import CASES

    names = list(dict.fromkeys([*COMPARISONS, *CASES]))
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a few thousand images, fewer epochs: a few minutes")
    ap.add_argument(
        "--cases",
        default="ladder,choices,time_to_accuracy,vgg16,bn_epoch",
        help=f"comma-separated, of: {', '.join(names)} (default ladder,choices,time_to_accuracy,vgg16,bn_epoch)",
    )
    ap.add_argument("--breakdown", action="store_true", help="time_to_accuracy, fastai: where each side's seconds go")
    ap.add_argument(
        "--json", dest="json_path", default="bench.json", help="where to write the JSON (default bench.json)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    unknown = set(cases) - set(names)
    if unknown:
        print(
            f"python -m benchmarks: --cases: unknown case(s) {sorted(unknown)}; use {', '.join(names)}", file=sys.stderr
        )
        return 2
    from fastcourse.bench.cases import run_bench
    from fastcourse.errors import FastcourseError

    try:
        run_bench(
            quick=args.quick,
            seed=args.seed,
            cases=cases,
            json_path=args.json_path,
            breakdown=args.breakdown,
            more=COMPARISONS,
        )
    except FastcourseError as exc:
        print(f"python -m benchmarks: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
