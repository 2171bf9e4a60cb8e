"""`fastcourse bench`: throughput, roofline, time to accuracy, feature caching and memory,
against the peer in the same run; `--gpu`: the full ensemble on one GPU."""

from __future__ import annotations

import argparse

from fastcourse.cli import arg, command


@command(
    "bench",
    "benchmark fastcourse against plain Keras + ImageDataGenerator (same run)",
    [
        arg("--quick", action="store_true", help="a few thousand images, fewer epochs: a few minutes"),
        arg(
            "--cases",
            default="ladder,choices,time_to_accuracy,vgg16,bn_epoch",
            help="comma-separated: ladder, choices, time_to_accuracy, vgg16, bn_epoch, features, memory, "
            "lesson3 (dogs vs cats minutes from measured rates), fastai (against fastai v2, in its own "
            "environment: make bench-fastai) (default ladder,choices,time_to_accuracy,vgg16,bn_epoch)",
        ),
        arg(
            "--gpu",
            action="store_true",
            help="the full 6 x 35-epoch ensemble with mixed_float16 on one GPU (minutes and accuracy); "
            "without a GPU: one line, exit 0",
        ),
        arg("--dataset", default="fashion_mnist", choices=["mnist", "fashion_mnist"], help="for --gpu"),
        arg("--json", dest="json_path", default="bench.json", help="where to write the JSON (default bench.json)"),
        arg("--seed", type=int, default=0),
    ],
)
def bench(args: argparse.Namespace) -> int:
    from fastcourse.errors import UsageError

    if args.gpu:
        from fastcourse.bench.gpu import gpu_ensemble

        gpu_ensemble(args.dataset, seed=args.seed)
        return 0
    from fastcourse.bench.cases import CASES, run_bench

    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    unknown = set(cases) - set(CASES)
    if unknown:
        raise UsageError(f"--cases: unknown case(s) {sorted(unknown)}; use {', '.join(CASES)}")
    run_bench(quick=args.quick, seed=args.seed, cases=cases, json_path=args.json_path)
    return 0
