"""`--budget 60m`: a short measured calibration gives each step's cost, `plan_epochs` allots the
epochs that fit, and `replan` re-allots the epochs of the steps to come by how long the steps so
far really took. The ensemble's member 0 is the cnn_bn_dropout step's run when the two would
train alike (`reuses_member0`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from fastcourse.errors import UsageError
from fastcourse.lessons.reproduce.plan import BUDGET_TRAIN, REUSED_STEP, step_config, step_wall_seconds

EPOCH_SHARE = {"linear": 0.25, "hidden": 0.25}  # the rest: 1 (every CNN step, each ensemble member)
BUDGET_MARGIN = 0.9  # plan to 90% of what the calibration leaves: estimates are estimates
MAX_EPOCHS = 35  # the course's member length: no budget buys more


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
