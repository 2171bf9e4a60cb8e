"""`python -m benchmarks --cases fastai` (`make bench-fastai`): fastcourse against fastai v2 on
PyTorch, the toolkit most learners would pick instead, on the same CPU in one run.

The task (the same on both sides): Fashion-MNIST 60k/10k (the bundled digit sample when it is
not installed), the course's batchnorm + dropout CNN layer for layer, seconds from building the
model until the clean test accuracy reaches the target, evaluation excluded. fastai runs its best
CPU recipe (fastai_side.py: `fit_one_cycle(1, 6e-3)` at batch 128 from `DataLoaders.from_dsets`
over an indexable tensor dataset, torch threads set to the cores, channels_last, bfloat16
autocast); fastcourse runs its time-to-accuracy recipe (fastcourse.bench.recipe.FAST_TO_ACCURACY).
Both sides run in fresh processes, interleaved (the order alternates by seed), 3 seeds each, so a
shared machine's noise hits both alike. With `--breakdown`, each run's seconds are split
(fastcourse.bench.breakdown) and the medians printed side by side.

torch and fastai are not fastcourse dependencies: the fastai side runs in its own virtual
environment, built once at `FASTCOURSE_FASTAI_ENV` (default `.bench-fastai` in the working
directory) from `FASTCOURSE_FASTAI_REQUIREMENTS` (default: torch 2.13.0, the CPU build, and
fastai 2.8.12; fastai pulls a torchvision that the side never imports). The last line printed is
`fastai ratio: 0.83x | machine: ...`: fastcourse's median seconds over fastai's (below 1:
fastcourse is ahead), beside the CPU, its cores, bf16/AMX flags and the load average.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median
from typing import Optional

import numpy as np

from fastcourse.bench import breakdown
from fastcourse.bench.recipe import FASHION_TARGET, SAMPLE_TARGET
from fastcourse.bench.report import Row, machine_line
from fastcourse.errors import UsageError

DEFAULT_REQUIREMENTS = "torch==2.13.0 fastai==2.8.12"
SIDE_SCRIPT = Path(__file__).with_name("fastai_side.py")
ROOT = Path(__file__).resolve().parents[1]  # the repository: `python -m benchmarks.fastai_peer` runs from it


def fastai_python(env: Optional[Path] = None) -> Path:
    """The fastai environment's Python, building the environment on first use (minutes)."""
    env = Path(env or os.environ.get("FASTCOURSE_FASTAI_ENV", ".bench-fastai")).resolve()
    python = env / "bin" / "python"
    if python.is_file() and _has_fastai(python):
        return python
    requirements = os.environ.get("FASTCOURSE_FASTAI_REQUIREMENTS", DEFAULT_REQUIREMENTS).split()
    print(f"bench: building the fastai environment in {env} ({' '.join(requirements)}); once", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *requirements], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise UsageError(
            f"bench: could not build the fastai environment in {env} ({exc}); "
            "set FASTCOURSE_FASTAI_REQUIREMENTS to installable versions, or FASTCOURSE_FASTAI_ENV to a "
            "virtual environment that has fastai"
        ) from None
    return python


def _has_fastai(python: Path) -> bool:
    return subprocess.run([str(python), "-c", "import fastai, torch"], capture_output=True).returncode == 0


def fastcourse_side(
    data_path: str, seed: int, target: float, roofline: bool = False, changes: Optional[dict] = None
) -> dict:
    """One fastcourse run of the time-to-accuracy recipe (called in a fresh process); with
    `roofline`, the bf16 matmul measured after it (for the breakdown). `changes` replace entries
    of FAST_TO_ACCURACY (a lever measured: steps_per_execution, bn_batches...)."""
    from fastcourse.bench.recipe import FAST_TO_ACCURACY, recipe_options, run_fastcourse
    from fastcourse.data import ArrayDataset
    from fastcourse.train.precision import resolve_precision

    arrays = np.load(data_path)
    data = ArrayDataset(
        "bench", arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], [str(c) for c in range(10)]
    )
    recipe = {**FAST_TO_ACCURACY, **(changes or {})}
    policy, _ = resolve_precision(recipe.get("policy", "auto"))
    options = recipe_options(recipe, policy)
    options["jit_compile"] = bool(recipe.get("jit_compile", False))
    curve: list[tuple[float, float]] = []
    marks: dict = {}
    _, ips, _ = run_fastcourse(data, 2, seed, **options, epoch_eval=(curve, target), marks=marks)
    seconds, acc = curve[-1]
    out = {
        "side": "fastcourse",
        "seed": seed,
        "seconds": seconds,
        "accuracy": acc,
        "epochs": len(curve),
        "reached": acc >= target,
        "images_per_second": ips,
        "precision": policy,
        "marks": marks,
        "changes": changes or {},
    }
    if roofline:
        from fastcourse.bench.flops import bf16_matmul_gflops

        out["bf16_matmul_gflops"] = bf16_matmul_gflops()
    return out


def _run_side(command: list[str]) -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise UsageError(f"bench: {' '.join(command[:2])} failed (exit {done.returncode}): {tail}")


def fastai_case(
    data,
    seeds: tuple[int, ...] = (0, 1, 2),
    python: Optional[Path] = None,
    breakdown: bool = False,
    fastai_args: tuple[str, ...] = (),
) -> list[Row]:
    """Both sides, interleaved, one fresh process per run; rows per run and the medians.
    `fastai_args` go to fastai_side.py (a lever: `--data list`, `--threads 0`, `--compile`...)."""
    python = python or fastai_python()
    target = FASHION_TARGET if data.name.startswith("fashion") else SAMPLE_TARGET
    roofline = ["--roofline"] if breakdown else []
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/data.npz"
        np.savez(path, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
        sides = {
            "fastai": [str(python), str(SIDE_SCRIPT), path, "--target", str(target), *fastai_args, *roofline],
            "fastcourse": [sys.executable, "-m", "benchmarks.fastai_peer", path, "--target", str(target), *roofline],
        }
        for k, seed in enumerate(seeds):
            for side in ("fastai", "fastcourse") if k % 2 == 0 else ("fastcourse", "fastai"):
                run = _run_side([*sides[side], "--seed", str(seed)])
                run["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
                print(
                    f"  {side} seed {seed}: {run['seconds']:.1f} s, test accuracy {run['accuracy']:.4f}, "
                    f"{run.get('images_per_second', 0.0):,.0f} images/s steady, load average {run['load_average']:.1f}"
                    + ("" if run["reached"] else f" (target {target} NOT reached)"),
                    flush=True,
                )
                runs.append(run)
    if breakdown:
        from fastcourse.bench.flops import train_flops_per_image
        from fastcourse.bench.recipe import course_model

        for line in breakdown_lines(runs, train_flops_per_image(course_model(data))):
            print(line, flush=True)
    return fastai_rows(runs, target)


def breakdown_lines(runs: list[dict], flops_per_image: float) -> list[str]:
    """Each side's median split (fastcourse.bench.breakdown.phases over each run, the median of
    each phase), its steady images/s and share of the bf16 matmul measured in its own process."""
    lines = []
    for side in ("fastai", "fastcourse"):
        mine = [r for r in runs if r["side"] == side and "marks" in r]
        if not mine:
            continue
        split = [breakdown.phases(r["marks"], r["seconds"]) for r in mine]
        ips = median(r["marks"]["steady_images_per_second"] for r in mine)
        roof = median(r.get("bf16_matmul_gflops", 0.0) for r in mine)
        lines.append(f"breakdown, {side}: median of {len(mine)} runs, {median(r['seconds'] for r in mine):.2f} s")
        for name in breakdown.PHASES:
            seconds = median(s[name] for s in split)
            extra = ""
            if name == "steady steps":
                extra = f"  ({ips:,.0f} images/s"
                if roof:
                    extra += f", {breakdown.roofline_share(ips, flops_per_image, roof):.0%} of bf16 matmul {roof:.0f}"
                extra += ")"
            lines.append(f"  {name:<30} {seconds:7.2f} s{extra}")
        lines.append(f"  {'evaluation (not counted)':<30} {median(r['marks'].get('eval', 0.0) for r in mine):7.2f} s")
    return lines


def fastai_rows(runs: list[dict], target: float) -> list[Row]:
    """One row per run, one median row per side, and the ratio line on fastcourse's median row.
    A run that missed the target counts as not reached: the ratio says so instead of a number."""
    rows = [
        Row(
            "fastai_peer",
            f"{r['side']} seed {r['seed']}",
            r.get("images_per_second", 0.0),
            test_accuracy=r["accuracy"],
            seconds=r["seconds"],
            notes=f"{r['epochs']} epoch(s)" + ("" if r["reached"] else ", target NOT reached"),
        )
        for r in runs
    ]
    medians = {}
    for side in ("fastai", "fastcourse"):
        mine = [r for r in runs if r["side"] == side]
        medians[side] = median(r["seconds"] for r in mine) if all(r["reached"] for r in mine) else None
        rows.append(
            Row(
                "fastai_peer",
                f"{side}: median of {len(mine)}",
                median(r.get("images_per_second", 0.0) for r in mine),
                test_accuracy=median(r["accuracy"] for r in mine),
                seconds=medians[side] or 0.0,
                notes=f"target {target}" + ("" if medians[side] else ", NOT reached by every run"),
            )
        )
    ratio = medians["fastcourse"] / medians["fastai"] if medians["fastcourse"] and medians["fastai"] else None
    rows[-1].ratio_to_peer = ratio
    text = f"fastai ratio: {ratio:.2f}x" if ratio else "fastai ratio: not reached"
    rows[-1].extra["ratio_line"] = f"{text} | {machine_line()}"
    return rows


def main(argv: Optional[list[str]] = None) -> None:
    """The fastcourse side in a fresh process: prints one JSON line."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks.fastai_peer")
    ap.add_argument("data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=FASHION_TARGET)
    ap.add_argument("--roofline", action="store_true")
    ap.add_argument("--set", dest="changes", action="append", default=[], help="KEY=JSON: a recipe entry changed")
    args = ap.parse_args(argv)
    changes = {k: json.loads(v) for k, _, v in (c.partition("=") for c in args.changes)}
    print(json.dumps(fastcourse_side(args.data, args.seed, args.target, args.roofline, changes)), flush=True)


if __name__ == "__main__":
    main()
