"""`fastcourse reproduce mnist|fashion_mnist`: the whole MNIST lesson in one command.

One plan read and rewritten by every step (plan, budget, replan, report), kept in one module
over our ~400-line guide so the plan file has one reader and one writer.

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

import html
import json
import time
from pathlib import Path
from typing import Optional

import yaml

from fastcourse import io
from fastcourse.errors import DataError, UsageError
from fastcourse.run import records

STEPS = ("linear", "hidden", "cnn", "cnn_augment", "cnn_bn", "cnn_bn_dropout", "ensemble")
LADDER_DATASETS = ("mnist", "fashion_mnist")  # not the dataset registry: the ladders it can reproduce

# (reference accuracy, where it comes from). MNIST: the figures the course's notebook printed
# (the 2017 notebooks' printed figures). Fashion-MNIST: the public anchor for that kind of model
# (published results: logistic ~0.84, MLP ~0.885, CNN 0.915, CNN + BN + augmentation 0.935); a range is
# compared at its midpoint.
REFERENCES: dict[str, dict[str, tuple[float, str]]] = {
    "mnist": {
        "linear": (0.9240, "course"),
        "hidden": (0.9397, "course"),
        "cnn": (0.9926, "course"),
        "cnn_augment": (0.9919, "course (peak 0.9945)"),
        "cnn_bn": (0.9945, "course (peak 0.9960)"),
        "cnn_bn_dropout": (0.9945, "course"),
        "ensemble": (0.9969, "course (members 0.995)"),
    },
    "fashion_mnist": {
        "linear": (0.84, "anchor: linear/logistic ~0.84"),
        "hidden": (0.885, "anchor: MLP 0.88-0.89"),
        "cnn": (0.915, "anchor: 2-conv CNN 0.91-0.92"),
        "cnn_augment": (0.915, "anchor: 2-conv CNN 0.91-0.92"),
        "cnn_bn": (0.935, "anchor: conv+BN+augment 0.93-0.94"),
        "cnn_bn_dropout": (0.935, "anchor: conv+BN+augment 0.93-0.94"),
        "ensemble": (0.935, "anchor: conv+BN+augment 0.93-0.94 (single model)"),
    },
}

# --quick: a smoke reproduction that finishes in minutes on 2 CPU cores. Batch 8 gives the
# batchnorm steps 1,000 updates: BatchNormalization's moving variance starts at 1 and decays by
# 0.99 a step, and the first layer's true variance is ~0.01, so at batch 32 (250 updates) the
# clean test accuracy of the BN models was ~0.15 while their training accuracy was 0.94.
QUICK = {"train_limit": 4000, "test_limit": 1000, "batch_size": 8, "phases": [[1, 1.0e-3], [1, 1.0e-4]], "members": 3}
PLAN_FILE = "reproduce.yaml"


def default_configs_dir() -> Path:
    """The configs shipped inside the package (an installed wheel has them too); `--configs` picks another."""
    from fastcourse.shipped import configs_dir

    return configs_dir()


def step_config(plan: dict, step: str):
    """The validated config of one step: its YAML, the quick shrink, then the user's overrides."""
    from fastcourse.config import load_config, read_yaml

    path = Path(plan["configs_dir"]) / plan["dataset"] / f"{step}.yaml"
    raw = read_yaml(path)
    if plan.get("data_name"):
        raw.setdefault("data", {})["name"] = plan["data_name"]
    if plan.get("quick"):
        _shrink(raw, plan["quick"])
    if plan.get("budget") and plan["budget"].get("epochs"):
        _budget_train(raw, plan["budget"]["epochs"].get(step, 1))
    return load_config(raw, plan.get("overrides", []), origin=str(path))


# --budget: settings every step trains with, and each step's share of the epochs. Why batch 256
# and which other levers were measured and left out: docs/lessons.md, with the command.
BUDGET_TRAIN = {
    "batch_size": 256,
    "steps_per_execution": 8,
    "precision": "auto",
    "schedule": {"name": "one_cycle", "max_lr": 6e-3},
}
EPOCH_SHARE = {"linear": 0.25, "hidden": 0.25}  # the rest: 1 (every CNN step, each ensemble member)
BUDGET_MARGIN = 0.9  # plan to 90% of what the calibration leaves: estimates are estimates
MAX_EPOCHS = 35  # the course's member length: no budget buys more
REUSED_STEP = "cnn_bn_dropout"  # its run is the ensemble's member 0 when the two would train alike


def parse_budget(text: str) -> float:
    """Seconds in '60m', '1h', '90s', '1.5h' or a bare number of minutes."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text).lower())
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--budget {text!r}: give a duration such as 60m, 1h or 900s")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "": 60}[m.group(2)]


def step_seconds(step: str, epochs: int, cost: dict, members: int = 1, reused: bool = False) -> float:
    """Estimated wall seconds of one step: per training run, a fixed cost (tracing, the final
    evaluation, batchnorm recalibration, writing the run) plus `epochs` x seconds per epoch.
    The ensemble trains `members` runs, one fewer when its member 0 is the reused
    cnn_bn_dropout step (`reused`)."""
    runs = (members - int(bool(reused))) if step == "ensemble" else 1
    return runs * (cost["fixed"] + epochs * cost["epoch"])


def plan_epochs(
    budget_s: float,
    costs: dict[str, dict],
    members: int = 1,
    max_epochs: int = MAX_EPOCHS,
    share: Optional[dict] = None,
    reused: bool = False,
) -> dict[str, int]:
    """Epochs per step (the ensemble's: per member) that fit `budget_s`, the most that do.

    `costs[step]` = {"epoch": seconds per epoch, "fixed": seconds per training run}, from the
    calibration (measured images/s). Every step gets round(share x E) epochs, at least 1, for
    the largest E <= max_epochs whose estimate stays within the budget; with `reused`, the
    ensemble trains members - 1 runs (member 0 is the cnn_bn_dropout step's, which gets the same
    E), so the run saved goes to every step's epochs. Raises UsageError naming the smallest
    budget that would do when even one epoch each does not fit."""
    share = {**EPOCH_SHARE, **(share or {})}

    def allot(e: int) -> dict[str, int]:
        return {s: max(1, int(round(share.get(s, 1.0) * e))) for s in costs}

    def total(alloc: dict[str, int]) -> float:
        return sum(step_seconds(s, n, costs[s], members, reused) for s, n in alloc.items())

    for e in range(int(max_epochs), 0, -1):
        alloc = allot(e)
        if total(alloc) <= budget_s:
            return alloc
    need = total(allot(1))
    raise UsageError(
        f"--budget: one epoch per step needs about {need / 60:.1f} minutes here; "
        f"give at least {int(need / 60 / BUDGET_MARGIN) + 2}m, or fewer steps or members"
    )


def _budget_train(raw: dict, epochs: int) -> None:
    train = raw.setdefault("train", {})
    train.update({k: (dict(v) if isinstance(v, dict) else v) for k, v in BUDGET_TRAIN.items()})
    train["epochs"] = int(epochs)


def _shrink(raw: dict, quick: dict) -> None:
    data = raw.setdefault("data", {})
    for key in ("train_limit", "test_limit"):
        data[key] = min(int(data.get(key) or quick[key]), quick[key])
    train = raw.setdefault("train", {})
    train.pop("epochs", None)
    train["batch_size"] = quick["batch_size"]
    train["schedule"] = {"name": "phases", "phases": quick["phases"]}
    ens = raw.get("ensemble")
    if ens and int(ens.get("members", 1)) > quick["members"]:
        ens["members"] = quick["members"]
        if ens.get("seeds"):
            ens["seeds"] = list(ens["seeds"])[: quick["members"]]


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
        plan = yaml.safe_load((run_dir / PLAN_FILE).read_text())
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
        io.write_text(run_dir / PLAN_FILE, yaml.safe_dump(plan, sort_keys=False))

    for i, step in enumerate(plan["steps"], start=1):
        sdir = run_dir / step
        if (sdir / "metrics.json").is_file():
            print(f"fastcourse: [{i}/{len(plan['steps'])}] {step}: finished earlier, kept", flush=True)
            continue
        if plan.get("budget") and not sdir.exists() and replan(run_dir, plan):
            io.write_text(run_dir / PLAN_FILE, yaml.safe_dump(plan, sort_keys=False))
        print(f"fastcourse: [{i}/{len(plan['steps'])}] {step}", flush=True)
        if step == "ensemble":
            _reuse_member0(run_dir, plan)
        run_step(step_config(plan, step), sdir)
    table = write_report(run_dir, plan)
    print(table_markdown(table))
    print(f"report: {run_dir / 'report.md'}  {run_dir / 'report.html'}")
    return run_dir


def calibrate(plan: dict, images: int = 3072) -> dict[str, dict]:
    """Measured cost of each step with the budget settings: two short epochs on the first
    `images` training images (the first traces the graph, the second gives images/s).
    Steps with the same model and augmentation share one measurement."""
    from fastcourse.data import augment
    from fastcourse.run.inputs import build_for, inputs_for
    from fastcourse.train.devices import training_scope
    from fastcourse.train.trainer import fit

    probe = {**plan, "budget": {"epochs": {s: 2 for s in plan["steps"]}}}
    measured: dict[tuple, dict] = {}
    costs: dict[str, dict] = {}
    data = None
    for step in plan["steps"]:
        cfg = step_config(probe, step)
        key = (cfg.model.name, json.dumps(cfg.model.args, sort_keys=True, default=str), cfg.augment.name)
        if key not in measured:
            inputs = inputs_for(cfg, data)
            data = inputs.dataset
            sub = inputs.train.take(min(images, len(inputs.train)))
            train = cfg.train.model_copy(
                update={"epochs": 2, "verbose": 0, "bn_recalibrate": 0, "validate_each_epoch": False}
            )
            with training_scope(cfg.train.precision, "none"):
                model = build_for(cfg, inputs)
                t0 = time.perf_counter()
                result = fit(model, sub, train, cfg.seed, augment=augment.build(cfg.augment.name, cfg.augment.args))
                wall = time.perf_counter() - t0
            ips = len(sub) / max(result.epoch_seconds[-1], 1e-6)
            n_train, n_test = len(inputs.train), len(inputs.eval)
            infer = 3.0 * ips  # inference runs about 3x training (no backward pass)
            recal = min(cfg.train.bn_recalibrate, -(-n_train // cfg.train.batch_size)) * cfg.train.batch_size
            measured[key] = {
                "images_per_second": ips,
                "epoch": n_train / ips + (n_test / infer if cfg.train.validate_each_epoch else 0.0),
                "fixed": max(0.0, wall - 2 * len(sub) / ips) + (n_test + recal) / infer + 3.0,
            }
            print(
                f"fastcourse: budget calibration: {step}: {ips:.0f} images/s "
                f"({measured[key]['epoch']:.1f} s per epoch of {n_train} images)",
                flush=True,
            )
        costs[step] = measured[key]
    return costs


def budget_plan(plan: dict, budget_s: float) -> dict:
    """Calibrate, then allocate epochs per step within what the calibration left of the budget."""
    start = time.perf_counter()
    costs = calibrate(plan)
    members = 1
    if "ensemble" in plan["steps"]:
        members = int(getattr(step_config(plan, "ensemble").ensemble, "members", 1) or 1)
    reused = reuses_member0(plan, epochs=1)  # the budget gives both steps the same epochs
    left = (budget_s - (time.perf_counter() - start)) * BUDGET_MARGIN
    epochs = plan_epochs(left, costs, members, max_epochs=MAX_EPOCHS, reused=reused)
    estimate = sum(step_seconds(s, e, costs[s], members, reused) for s, e in epochs.items())
    print(
        f"fastcourse: budget {budget_s / 60:.1f} min: epochs per step {epochs} (ensemble: {members} members "
        "each"
        + (f", member 0 the {REUSED_STEP} step's run, {members - 1} trained" if reused else "")
        + f"), estimated {estimate / 60:.1f} min of training after "
        f"{(time.perf_counter() - start) / 60:.1f} min of calibration",
        flush=True,
    )
    return {
        "seconds": budget_s,
        "epochs": epochs,
        "members": members,
        "reuse_member0": reused,
        "estimate_seconds": estimate,
        "calibration_seconds": time.perf_counter() - start,
        "settings": BUDGET_TRAIN,
        "images_per_second": {s: c["images_per_second"] for s, c in costs.items()},
        "costs": {s: {"epoch": c["epoch"], "fixed": c["fixed"]} for s, c in costs.items()},
    }


def step_wall_seconds(run_dir: Path, step: str) -> Optional[float]:
    timer = Path(run_dir) / step / "step_time.json"
    return json.loads(timer.read_text())["seconds"] if timer.is_file() else None


def replan(run_dir: Path, plan: dict) -> bool:
    """Before a step starts: re-allot the epochs of the steps not started yet to the budget left.

    The calibration's estimates are off by some factor on any machine (measured here: 40.1
    estimated minutes took 31.2), and whole epochs per step leave time over. So the steps run so
    far give the factor (their wall time over their estimate, held to 0.5..2; only once they make
    up a tenth of the budget, so that two tiny steps do not decide it), and the time they left
    goes to the steps still to come. Steps already started keep their epochs (a resumed step must
    train as planned). Returns whether any step's epochs changed."""
    b = plan["budget"]
    costs = b.get("costs")
    if not costs:
        return False
    reused = bool(b.get("reuse_member0"))
    done = {s: step_wall_seconds(run_dir, s) for s in plan["steps"]}
    started = [s for s in plan["steps"] if (Path(run_dir) / s).exists()]
    todo = [s for s in plan["steps"] if s not in started]
    finished = [s for s in started if done[s] is not None and (Path(run_dir) / s / "metrics.json").is_file()]
    estimated = sum(step_seconds(s, b["epochs"][s], costs[s], b["members"], reused) for s in finished)
    if not todo or estimated < 0.1 * b["seconds"]:  # too little run yet to judge the estimates by
        return False
    factor = min(2.0, max(0.5, sum(done[s] for s in finished) / max(estimated, 1e-6)))
    left = b["seconds"] - b.get("calibration_seconds", 0.0) - sum(done[s] or 0.0 for s in started)
    scaled = {s: {"epoch": costs[s]["epoch"] * factor, "fixed": costs[s]["fixed"] * factor} for s in todo}
    try:
        if reused and todo == ["ensemble"]:
            epochs = _ensemble_after_reused_step(b, scaled, left * BUDGET_MARGIN)
        else:
            epochs = plan_epochs(left * BUDGET_MARGIN, scaled, b["members"], max_epochs=MAX_EPOCHS, reused=reused)
    except UsageError:
        epochs = {s: 1 for s in todo}
        print(
            f"fastcourse: budget: {left / 60:.1f} min left is short of one epoch per remaining step; one epoch each",
            flush=True,
        )
    changed = {s: e for s, e in epochs.items() if e != b["epochs"][s]}
    if reused != bool(b.get("reuse_member0")):
        changed = {**changed, "ensemble": epochs["ensemble"]}  # the plan changed: it is saved
    if changed:
        b["epochs"].update(changed)
        print(
            f"fastcourse: budget: the steps so far took {factor:.2f}x their estimate; {left / 60:.1f} min "
            f"left, so epochs now {', '.join(f'{s} {e}' for s, e in epochs.items())}",
            flush=True,
        )
    return bool(changed)


def _ensemble_after_reused_step(b: dict, scaled: dict, budget_s: float) -> dict[str, int]:
    """The ensemble's epochs once the cnn_bn_dropout step has run: its epochs, so that its run is
    member 0 and only members - 1 train, when that fits `budget_s`; more epochs for every member
    (all trained) when the time left buys more; else the most that fit (all trained)."""
    pinned = b["epochs"][REUSED_STEP]
    keep = step_seconds("ensemble", pinned, scaled["ensemble"], b["members"], reused=True) <= budget_s
    try:
        free = plan_epochs(budget_s, scaled, b["members"], max_epochs=MAX_EPOCHS)  # every member trained
    except UsageError:
        if keep:  # one training fewer still fits
            return {"ensemble": pinned}
        raise
    if keep and free["ensemble"] <= pinned:
        return {"ensemble": pinned}
    b["reuse_member0"] = False
    print(
        f"fastcourse: budget: the ensemble's members get {free['ensemble']} epochs, not the {REUSED_STEP} "
        f"step's {pinned}, so member 0 is trained, not reused",
        flush=True,
    )
    return free


def reuses_member0(plan: dict, epochs: Optional[int] = None) -> bool:
    """Whether the ensemble's member 0 would train exactly the cnn_bn_dropout step (the same config
    after the quick shrink, the budget and the overrides; the same seed and epochs), so that
    step's finished run can stand in for it. `epochs`: as if the budget gave both steps that many."""
    from fastcourse.run.ensemble import trains_as

    steps = plan["steps"]
    if REUSED_STEP not in steps or "ensemble" not in steps or steps.index(REUSED_STEP) > steps.index("ensemble"):
        return False
    if epochs is not None:
        given = (plan.get("budget") or {}).get("epochs") or {}
        plan = {**plan, "budget": {"epochs": {**given, REUSED_STEP: epochs, "ensemble": epochs}}}
    return trains_as(step_config(plan, "ensemble"), 0, step_config(plan, REUSED_STEP))


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
    timer = sdir / "step_time.json"
    before = json.loads(timer.read_text())["seconds"] if timer.is_file() else 0.0
    start = time.perf_counter()
    try:
        run_experiment(cfg, run_dir=sdir)
    finally:
        io.write_json(timer, {"seconds": before + time.perf_counter() - start})
    if (sdir / records.METRICS).is_file():  # the step's result, once (a run prints none of its own)
        print(records.result_line(cfg.name, json.loads((sdir / records.METRICS).read_text())), flush=True)


# --- the report ------------------------------------------------------------------------


def results_table(run_dir: Path, plan: dict):
    """One row per finished step: accuracy, reference, difference, epochs, minutes."""
    import pandas as pd

    refs = REFERENCES[plan["dataset"]]
    rows = []
    for step in plan["steps"]:
        sdir = run_dir / step
        if not (sdir / "metrics.json").is_file():
            continue
        m = json.loads((sdir / "metrics.json").read_text())
        timer = sdir / "step_time.json"
        seconds = json.loads(timer.read_text())["seconds"] if timer.is_file() else m.get("train_seconds", 0.0)
        ref, source = refs[step]
        note = ""
        if "member_accuracy" in m:
            acc, rules = m["member_accuracy"], m["rules"]
            note = (
                f"{m['ensemble_members']} members {acc['mean']:.4f} ± {acc['std']:.4f}; "
                f"geometric {records.eval_accuracy(rules['geometric']):.4f}, "
                f"vote {records.eval_accuracy(rules['vote']):.4f}"
            )
            reused = [str(x["index"]) for x in m.get("members", []) if x.get("reused_from")]
            if reused:
                note += f"; member {', '.join(reused)} is the {REUSED_STEP} step's run (not trained again)"
        row = {
            "step": step,
            "model": m.get("model"),
            "augment": m.get("augment"),
            "data": m.get("dataset"),
            # the reproduced datasets are arrays: their evaluation split is test
            "test accuracy": records.eval_accuracy(m),
            "reference": ref,
            "difference": records.eval_accuracy(m) - ref,
            "reference source": source,
            "epochs": m.get("epochs"),
            "minutes": seconds / 60.0,
            "notes": note,
        }
        rows.append(row)
        tta = m.get("tta")
        if tta:  # beside the plain ensemble, never instead of it
            rows.append(
                {
                    **row,
                    "step": f"{step} + {tta['kind']} TTA",
                    "test accuracy": records.eval_accuracy(tta),
                    "difference": records.eval_accuracy(tta) - ref,
                    "minutes": tta["seconds"] / 60.0,
                    "notes": (
                        "the same members on the mean of each test image and its mirror image; members "
                        f"{tta['member_accuracy']['mean']:.4f} ± {tta['member_accuracy']['std']:.4f}; "
                        "minutes: the extra predictions"
                    ),
                }
            )
    return pd.DataFrame(rows)


def table_markdown(table) -> str:
    return table.to_markdown(index=False, floatfmt=("", "", "", "", ".4f", ".4f", "+.4f", "", "", ".1f", ""))


def write_report(run_dir: Path, plan: dict):
    """results.csv, report.md, report.html and learning_curves.png in the reproduction directory."""
    table = results_table(run_dir, plan)
    io.write_text(run_dir / "results.csv", table.to_csv(index=False))
    plot_all_curves(run_dir, plan, run_dir / "learning_curves.png")
    ds = plan["dataset"]
    intro = (
        "Clean test accuracy of every ladder step and the ensemble, compared with "
        + ("the course's printed figures" if ds == "mnist" else "public anchors for each kind of model")
        + "."
    )
    q = plan.get("quick")
    settings = [
        f"quick smoke run: at most {q['train_limit']} training and {q['test_limit']} test images, "
        f"batch {q['batch_size']}, phases {q['phases']}, {q['members']} ensemble members"
        if q
        else (
            "each step's model and augmentation from its config, its training from the budget"
            if plan.get("budget")
            else "each step's config (the course's settings)"
        )
    ]
    b = plan.get("budget")
    if b:
        settings.append(
            f"budget {b['seconds'] / 60:.0f} min (estimated {b['estimate_seconds'] / 60:.1f} min of "
            f"training): one-cycle, batch {b['settings']['batch_size']}, precision "
            f"{b['settings']['precision']}; epochs per step {b['epochs']} (after the first steps the "
            "epochs of the steps to come follow the time they left)"
        )
    settings += [f"overridden in every step: {o}" for o in plan.get("overrides", [])]
    if plan.get("data_name"):
        settings.append(f"data: {plan['data_name']} (the real data is not on this machine)")
    settings.append("minutes are wall time on this machine")
    lines = [
        f"# Reproduction: the MNIST lesson on {ds}",
        "",
        intro,
        "",
        *[f"- {item}" for item in settings],
        "",
        table_markdown(table),
        "",
        "![learning curves of all steps](learning_curves.png)",
        "",
    ]
    io.write_text(run_dir / "report.md", "\n".join(lines))
    formats = {"test accuracy": "{:.4f}", "reference": "{:.4f}", "difference": "{:+.4f}", "minutes": "{:.1f}"}
    table_html = table.to_html(index=False, border=0, formatters={k: v.format for k, v in formats.items()})
    items = "".join(f"<li>{html.escape(item)}</li>" for item in settings)
    io.write_text(
        run_dir / "report.html",
        "\n".join(
            [
                "<!doctype html><html><head><meta charset='utf-8'>",
                f"<title>fastcourse reproduction: {html.escape(ds)}</title>",
                "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse}"
                " td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}</style></head><body>",
                f"<h1>Reproduction: the MNIST lesson on {html.escape(ds)}</h1>",
                f"<p>{html.escape(intro)}</p><ul>{items}</ul>",
                table_html,
                "<p><img src='learning_curves.png' alt='learning curves of all steps'></p>",
                "</body></html>",
                "",
            ]
        ),
    )
    return table


def plot_all_curves(run_dir: Path, plan: dict, path: Path) -> Path:
    """Clean test accuracy and training loss per epoch, every finished step on one figure."""
    import pandas as pd
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is never switched
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 4.2))
    ax_acc, ax_loss = fig.subplots(1, 2)
    for step in plan["steps"]:
        hist = run_dir / step / "history.csv"
        if not (run_dir / step / "metrics.json").is_file() or not hist.is_file():
            continue
        h = pd.read_csv(hist)
        label = step + (" (member mean)" if step == "ensemble" else "")
        if "val_accuracy" in h:
            (line,) = ax_acc.plot(h["epoch"], h["val_accuracy"], marker="o", ms=3, label=label)
            if step == "ensemble":  # the combined ensemble beside its members' mean
                acc = records.eval_accuracy(json.loads((run_dir / step / "metrics.json").read_text()))
                ax_acc.plot(
                    h["epoch"].iloc[-1],
                    acc,
                    marker="*",
                    ms=14,
                    color=line.get_color(),
                    linestyle="none",
                    label="ensemble (averaged)",
                )
        if "loss" in h:
            ax_loss.plot(h["epoch"], h["loss"], marker="o", ms=3, label=label)
    for ax, title in ((ax_acc, "clean test accuracy"), (ax_loss, "training loss")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(f"{plan['dataset']}: learning curves of every step")
    return io.save_figure(fig, path)


__all__ = ["reproduce", "REFERENCES", "STEPS", "results_table", "write_report"]
