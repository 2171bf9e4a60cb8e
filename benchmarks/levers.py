"""`python -m benchmarks.levers [--seeds 0,1,2] [--only fastai,fastcourse] [NAME ...]`: each lever
of `make bench-fastai` measured alone, on both sides, in fresh processes, the variants' order
rotating from seed to seed so that a shared machine's noise hits them alike. For each run: seconds
to the target, test accuracy, steady images/s, the breakdown's phases (fastcourse.bench.breakdown)
and the load average; then each variant's medians, and the JSON (`--json`, default levers.json).

A fastai lever is fastai_side.py's arguments; a fastcourse lever is entries of
fastcourse.bench.recipe.FAST_TO_ACCURACY changed (`python -m benchmarks.fastai_peer --set`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from statistics import median
from typing import Optional

import numpy as np

from benchmarks.fastai_peer import SIDE_SCRIPT, _run_side, fastai_python
from fastcourse.bench import breakdown
from fastcourse.bench.recipe import bench_data, target_for
from fastcourse.bench.report import machine_line

LEVERS: dict[str, tuple[str, list[str]]] = {
    "fastai: best recipe": ("fastai", []),
    "fastai: before (list of pairs, torch's threads)": ("fastai", ["--data", "list", "--threads", "0"]),
    "fastai: list of pairs": ("fastai", ["--data", "list"]),
    "fastai: torch's default threads": ("fastai", ["--threads", "0"]),
    "fastai: whole-batch indexing": ("fastai", ["--data", "batched"]),
    "fastai: float32": ("fastai", ["--no-bf16"]),
    "fastai: no channels_last": ("fastai", ["--no-channels-last"]),
    "fastai: torch.compile": ("fastai", ["--compile"]),
    "fastcourse: recipe": ("fastcourse", []),
    "fastcourse: steps_per_execution 4": ("fastcourse", ["--set", "steps_per_execution=4"]),
    "fastcourse: steps_per_execution 16": ("fastcourse", ["--set", "steps_per_execution=16"]),
    "fastcourse: steps_per_execution 32": ("fastcourse", ["--set", "steps_per_execution=32"]),
    "fastcourse: BN statistics from 2 batches": ("fastcourse", ["--set", "bn_batches=2"]),
    "fastcourse: XLA (jit_compile)": ("fastcourse", ["--set", "jit_compile=true"]),
}


def measure(names: list[str], seeds: tuple[int, ...], python: Optional[str] = None) -> list[dict]:
    data = bench_data(quick=False)
    target = target_for(data)
    fastai = str(python or fastai_python()) if any(LEVERS[n][0] == "fastai" for n in names) else ""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/data.npz"
        np.savez(path, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
        base = {
            "fastai": [fastai, str(SIDE_SCRIPT), path, "--target", str(target)],
            "fastcourse": [sys.executable, "-m", "benchmarks.fastai_peer", path, "--target", str(target)],
        }
        for k, seed in enumerate(seeds):
            order = names[k % len(names) :] + names[: k % len(names)]
            for name in order:
                side, args = LEVERS[name]
                load = os.getloadavg()[0]
                run = _run_side([*base[side], *args, "--seed", str(seed)])
                run.update(variant=name, load_average=load)
                split = breakdown.phases(run["marks"], run["seconds"])
                print(
                    f"{name} | seed {seed} | {run['seconds']:.2f} s | {run['accuracy']:.4f} | "
                    f"{run['images_per_second']:,.0f} images/s | "
                    + ", ".join(f"{p} {v:.2f}" for p, v in split.items())
                    + f" | eval {run['marks'].get('eval', 0.0):.2f} | load {load:.2f}",
                    flush=True,
                )
                runs.append(run)
    return runs


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.levers", description=__doc__)
    ap.add_argument("names", nargs="*", help=f"levers (default all): {'; '.join(LEVERS)}")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--only", default="fastai,fastcourse", help="sides whose levers to run when no name is given")
    ap.add_argument("--json", dest="json_path", default="levers.json")
    args = ap.parse_args(argv)
    names = args.names or [n for n, (side, _) in LEVERS.items() if side in args.only.split(",")]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        print(f"python -m benchmarks.levers: unknown lever(s) {unknown}; use {list(LEVERS)}", file=sys.stderr)
        return 2
    print(machine_line(), flush=True)
    runs = measure(names, tuple(int(s) for s in args.seeds.split(",")))
    print("medians:")
    for name in names:
        mine = [r for r in runs if r["variant"] == name]
        accuracies = ", ".join(f"{r['accuracy']:.4f}" for r in mine)
        print(
            f"  {name}: {median(r['seconds'] for r in mine):.2f} s, "
            f"{median(r['images_per_second'] for r in mine):,.0f} images/s, accuracy {accuracies}",
            flush=True,
        )
    print(machine_line(), flush=True)
    with open(args.json_path, "w") as f:
        json.dump({"machine": machine_line(), "runs": runs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
