"""`fastcourse bench`: what fastcourse does on this machine (time to accuracy and where its
seconds go, VGG16 features, batchnorm statistics, memory, the lesson-3 estimate); `--gpu`: the
full ensemble on one GPU. The comparisons with other toolkits are the repository's `benchmarks/`."""

from __future__ import annotations

import argparse

from fastcourse.cli import arg, command


@command(
    "bench",
    "measure fastcourse on this machine: time to accuracy, features, memory, the lesson-3 estimate",
    [
        arg("--quick", action="store_true", help="a few thousand images, fewer epochs: a few minutes"),
        arg(
            "--cases",
            default="time_to_accuracy,vgg16,bn_epoch",
            help="comma-separated: time_to_accuracy, vgg16, bn_epoch, features, memory, lesson3 (dogs vs cats "
            "minutes from measured rates) (default time_to_accuracy,vgg16,bn_epoch)",
        ),
        arg(
            "--breakdown",
            action="store_true",
            help="time_to_accuracy: split the seconds into model build, fit setup, tracing / first step, steady "
            "steps (images/s, share of a bf16 matmul), batchnorm statistics, other, and the evaluation",
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
        moved = sorted(unknown & {"ladder", "choices", "fastai"})
        hint = f" ({', '.join(moved)}: comparisons, in the repository's benchmarks/: make bench, make bench-fastai)"
        raise UsageError(
            f"--cases: unknown case(s) {sorted(unknown)}; use {', '.join(CASES)}" + (hint if moved else "")
        )
    run_bench(quick=args.quick, seed=args.seed, cases=cases, json_path=args.json_path, breakdown=args.breakdown)
    return 0
