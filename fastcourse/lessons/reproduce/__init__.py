"""`fastcourse reproduce mnist|fashion_mnist`: the whole MNIST lesson in one command.

One module per job: this one runs the steps; `plan` reads and writes the plan file and builds
each step's config; `budget` plans the time budget; `report` writes the md/html/png report.

Runs every ladder step (configs/<dataset>/{linear,hidden,cnn,cnn_augment,cnn_bn,
cnn_bn_dropout}.yaml) and the ensemble (ensemble.yaml) into one reproduction directory::

    <out>/reproduce-<dataset>-<stamp>/
        reproduce.yaml          the plan: dataset, steps, overrides, quick (read back on resume)
        <step>/                 each step's run directory (an ensemble's holds members/<i>/)
        results.csv report.md report.html learning_curves.png

`--budget 60m` fits the whole ladder plus the ensemble into a wall-time budget: every step
trains with one-cycle (batch 256, steps_per_execution 8, precision auto); a short measured
calibration run gives each step's images/s, and `plan_epochs` allocates epochs per step so the
estimate stays under the budget (the CNN steps and each ensemble member get the same epochs,
linear and hidden a quarter of them). Before each later step, `replan` corrects the estimates
by how long the steps so far really took and gives the time left to the steps to come. Without
the real MNIST, `--budget` and `--quick` run on the bundled sample (the offline proof).

A step is finished when its metrics.json exists; `--resume DIR` reruns only the rest (an
unfinished ensemble continues at its first unfinished member). The table compares our clean
test accuracy with the course's printed figure (MNIST, the 2017 notebooks) or the public
anchor for that kind of model (Fashion-MNIST: published results for that kind of model).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from fastcourse.errors import DataError, UsageError
from fastcourse.lessons.reproduce.budget import (
    BUDGET_MARGIN,
    EPOCH_SHARE,
    MAX_EPOCHS,
    budget_plan,
    parse_budget,
    plan_epochs,
    replan,
    reuses_member0,
    step_seconds,
)
from fastcourse.lessons.reproduce.plan import (
    BUDGET_TRAIN,
    LADDER_DATASETS,
    PLAN_FILE,
    QUICK,
    REUSED_STEP,
    STEPS,
    add_step_seconds,
    default_configs_dir,
    load_plan,
    save_plan,
    step_config,
)
from fastcourse.lessons.reproduce.report import REFERENCES, results_table, table_markdown, write_report
from fastcourse.run import records


def reproduce(
    dataset: str,
    out: str | Path = "runs",
    quick: bool = False,
    overrides: Optional[list[str]] = None,
    configs_dir: str | Path | None = None,
    resume: str | Path | None = None,
    steps: Optional[list[str]] = None,
    budget: Optional[str] = None,
) -> Path:
    """Run (or finish) a reproduction; return its directory holding report.md and report.html."""
    from fastcourse.run.experiment import new_run_dir

    if resume:
        run_dir = Path(resume)
        if not (run_dir / PLAN_FILE).is_file():
            raise UsageError(f"--resume {run_dir}: no {PLAN_FILE} there; not a reproduction directory")
        plan = load_plan(run_dir)
        if dataset and dataset != plan["dataset"]:
            raise UsageError(f"--resume {run_dir}: it reproduces {plan['dataset']}, not {dataset}")
        print(
            f"fastcourse: resuming the {plan['dataset']} reproduction in {run_dir} "
            "(its saved plan and overrides apply)",
            flush=True,
        )
    else:
        if dataset not in LADDER_DATASETS:
            raise UsageError(f"reproduce {dataset!r}: unknown; choose one of {', '.join(LADDER_DATASETS)}")
        steps = list(steps or STEPS)
        unknown = [s for s in steps if s not in STEPS]
        if unknown:
            raise UsageError(f"--steps {unknown[0]!r}: unknown step; choose from {', '.join(STEPS)}")
        cdir = Path(configs_dir) if configs_dir else default_configs_dir()
        missing = [s for s in steps if not (cdir / dataset / f"{s}.yaml").is_file()]
        if missing:
            raise UsageError(
                f"{cdir / dataset}: no {missing[0]}.yaml; pass --configs pointing at a folder "
                f"holding {dataset}/<step>.yaml, or leave it out to use the shipped configs"
            )
        plan = {
            "dataset": dataset,
            "steps": steps,
            "quick": dict(QUICK) if quick else None,
            "overrides": list(overrides or []),
            "configs_dir": str(cdir.resolve()),
            "data_name": _stand_in_data(dataset) if (quick or budget) else None,
        }
        for step in steps:  # every config must be valid before hours of training start
            step_config(plan, step)
        if budget:
            plan["budget"] = budget_plan(plan, parse_budget(budget))
        run_dir = new_run_dir(out, f"reproduce-{dataset}" + ("-quick" if quick else ""))
        save_plan(run_dir, plan)

    for i, step in enumerate(plan["steps"], start=1):
        sdir = run_dir / step
        if (sdir / "metrics.json").is_file():
            print(f"fastcourse: [{i}/{len(plan['steps'])}] {step}: finished earlier, kept", flush=True)
            continue
        if plan.get("budget") and not sdir.exists() and replan(run_dir, plan):
            save_plan(run_dir, plan)
        print(f"fastcourse: [{i}/{len(plan['steps'])}] {step}", flush=True)
        if step == "ensemble":
            _reuse_member0(run_dir, plan)
        run_step(step_config(plan, step), sdir)
    table = write_report(run_dir, plan)
    print(table_markdown(table))
    print(f"report: {run_dir / 'report.md'}  {run_dir / 'report.html'}")
    return run_dir


def _reuse_member0(run_dir: Path, plan: dict) -> None:
    """Before the ensemble step: make the finished cnn_bn_dropout run its member 0 when they match."""
    from fastcourse.run.ensemble import adopt_member, is_finished, member_dir

    source, sdir = run_dir / REUSED_STEP, run_dir / "ensemble"
    if not (source / "metrics.json").is_file() or is_finished(member_dir(sdir, 0)) or not reuses_member0(plan):
        return
    cfg = step_config(plan, "ensemble")
    adopt_member(sdir, 0, source, cfg)
    print(
        f"fastcourse: ensemble member 0 is the {REUSED_STEP} step's run (same config, seed {cfg.seed}, "
        f"{cfg.train.epochs} epochs): reused, not trained again",
        flush=True,
    )


def _stand_in_data(dataset: str) -> Optional[str]:
    """For --quick and --budget: the bundled MNIST sample stands in when the real MNIST is not on
    this machine (the offline proof of the recipe)."""
    if dataset != "mnist":
        return None
    from fastcourse.data import DATASETS as LOADERS

    try:
        LOADERS.get("mnist")(download=False)
        return None
    except DataError:
        print(
            "fastcourse: MNIST is not on this machine; this reproduction uses the bundled "
            "mnist_sample (5,000 real digits)",
            flush=True,
        )
        return "mnist_sample"


def run_step(cfg, sdir: Path) -> None:
    """Run one step into `sdir`; its wall time accumulates in step_time.json over resumes."""
    from fastcourse.tasks.runner import run_experiment

    sdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        run_experiment(cfg, run_dir=sdir)
    finally:
        add_step_seconds(sdir.parent, sdir.name, time.perf_counter() - start)
    if (sdir / records.METRICS).is_file():  # the step's result, once (a run prints none of its own)
        print(records.result_line(cfg.name, json.loads((sdir / records.METRICS).read_text())), flush=True)


__all__ = [
    "BUDGET_MARGIN",
    "BUDGET_TRAIN",
    "EPOCH_SHARE",
    "MAX_EPOCHS",
    "PLAN_FILE",
    "QUICK",
    "REFERENCES",
    "STEPS",
    "budget_plan",
    "default_configs_dir",
    "parse_budget",
    "plan_epochs",
    "replan",
    "reproduce",
    "results_table",
    "reuses_member0",
    "run_step",
    "step_config",
    "step_seconds",
    "write_report",
]
