"""Ensembles: train N members of one config with different seeds, then combine them.

An experiment with `ensemble: {members: 6}` (and optionally `seeds: [...]`) trains its model,
augmentation and schedule once per member, one after another (or one per GPU at a time with
`parallel: true` where several GPUs are visible). Each member is saved as soon as it finishes::

    <run_dir>/members/<i>/  config.yaml model.keras history.csv metrics.json eval_probs.npy ...

`eval_probs.npy` is written last, so a member is finished when it exists. Running the same
config on the same run directory again (`fastcourse run RUN_DIR`, `resume_ensemble(run_dir)`)
skips the finished members and starts at the first unfinished one, which itself continues from
its last completed epoch (members/<i>/checkpoints/, dropped once the member is saved).
Any task can be an ensemble: the lesson's 5 batchnorm heads on cached features share one
feature cache.

When every member is done, the ensemble is combined from the members' saved predictions on the
evaluation split (test for arrays, valid for folders) by three rules (arithmetic mean, geometric
mean, majority vote), and built as ONE Keras model (shared input, outputs averaged:
models/ensemble.py) saved as <run_dir>/model.keras. metrics.json holds each member's accuracy
and loss on that split (`eval_accuracy`, `eval_loss`), their mean and spread, the ensemble's per
rule, and the wall time of the whole ensemble (`wall_seconds`; each member's own is in its
metrics.json).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from fastcourse import io
from fastcourse.config import ExperimentConfig
from fastcourse.errors import RunError, UsageError
from fastcourse.locks import LOCK
from fastcourse.run import records, rundir
from fastcourse.run.frame import timed
from fastcourse.run.records import LABELS, PROBS
from fastcourse.train.metrics import accuracy, log_loss

RULES = ("mean", "geometric", "vote")
TTA_PROBS = "eval_probs_flip_tta.npy"  # ensemble.tta: flip, the mean over members of (image + mirror) / 2
EPS = 1e-7  # the geometric rule's floor: one member's zero would otherwise veto a class


# --- combination rules: pure numpy over (members, images, classes) -----------------------


def combine(probs: np.ndarray, rule: str = "mean") -> np.ndarray:
    """Combine member probabilities `probs` (M, N, C) into (N, C) scores by `rule`.

    - "mean": the arithmetic mean of the probabilities (what the Keras ensemble model outputs);
    - "geometric": the normalised geometric mean, exp(mean(log p)) / sum;
    - "vote": each member votes for its argmax; scores are vote fractions, and a tie goes to
      the tied class with the highest mean probability.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3:
        raise ValueError(f"member probabilities must be (members, images, classes), got {probs.shape}")
    if rule == "mean":
        return probs.mean(0)
    if rule == "geometric":
        g = np.exp(np.log(np.clip(probs, EPS, 1.0)).mean(0))
        return g / g.sum(1, keepdims=True)
    if rule == "vote":
        m, n, c = probs.shape
        votes = np.zeros((n, c))
        np.add.at(votes, (np.arange(n)[None, :].repeat(m, 0), probs.argmax(2)), 1.0)
        # mean probabilities are < 1 apart, so half of them breaks ties without overturning a vote
        return (votes + 0.5 * probs.mean(0)) / (m + 0.5)
    raise ValueError(f"unknown combination rule {rule!r}; use one of {', '.join(RULES)}")


def summarize(member_probs: np.ndarray, y: np.ndarray, member_metrics: list[dict], split: str = "test") -> dict:
    """Members' accuracy/loss on the evaluation split `split`, with mean and spread, and the
    ensemble's for every rule (metrics.json's evaluation keys, records.evaluation)."""
    acc = np.array([records.eval_accuracy(m) for m in member_metrics], dtype=np.float64)
    loss = np.array([records.eval_loss(m) for m in member_metrics], dtype=np.float64)

    def spread(v):
        return {
            "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()),
            "max": float(v.max()),
        }

    rules = {}
    for rule in RULES:
        scores = combine(member_probs, rule)
        # vote fractions are no probabilities: a vote has no meaningful cross-entropy
        rules[rule] = records.evaluation(split, accuracy(scores, y), None if rule == "vote" else log_loss(scores, y))
    best_member = float(acc.max())
    return {
        "members": [
            {
                "index": i,
                "seed": m.get("seed"),
                **records.evaluation(split, a, lo),
                "epochs": m.get("epochs"),
                "train_seconds": m.get("train_seconds"),
                "wall_seconds": m.get("wall_seconds"),
                **({"reused_from": m["reused_from"]} if m.get("reused_from") else {}),
            }
            for i, (m, a, lo) in enumerate(zip(member_metrics, acc, loss))
        ],
        "member_accuracy": spread(acc),
        "member_loss": spread(loss),
        "rules": rules,
        "gain_over_member_mean": rules["mean"]["eval_accuracy"] - float(acc.mean()),
        "gain_over_best_member": rules["mean"]["eval_accuracy"] - best_member,
    }


# --- training --------------------------------------------------------------------------


def member_seeds(cfg: ExperimentConfig) -> list[int]:
    ens = cfg.ensemble
    return list(ens.seeds) if ens.seeds is not None else [cfg.seed + i for i in range(ens.members)]


def member_config(cfg: ExperimentConfig, index: int, seed: int) -> ExperimentConfig:
    """The single-model config of member `index`: the experiment's own, with its seed."""
    return cfg.model_copy(update={"name": f"{cfg.name}-member{index}", "seed": int(seed), "ensemble": None})


def member_dir(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / "members" / str(index)


def is_finished(mdir: Path) -> bool:
    return (mdir / PROBS).is_file() and (mdir / records.METRICS).is_file()


def trains_as(cfg: ExperimentConfig, index: int, run_cfg: ExperimentConfig) -> bool:
    """Whether member `index` of the ensemble `cfg` would train exactly the single run `run_cfg`:
    the same config apart from the name and what may differ on resume (the output folder,
    verbosity) -- the seed, the epochs and every other setting alike -- and the same draw of
    any data limits (members draw from the ensemble's seed, so it must be the run's too)."""
    if cfg.ensemble is None or run_cfg.ensemble is not None or cfg.seed != run_cfg.seed:
        return False
    seeds = member_seeds(cfg)
    if not 0 <= index < len(seeds):
        return False

    def comparable(c: ExperimentConfig) -> dict:
        d = c.to_dict()
        d.pop("name")
        for key in rundir.RESUME_MAY_DIFFER:
            *parents, leaf = key.split(".")
            node = d
            for part in parents:
                node = node.get(part) or {}
            node.pop(leaf, None)
        return d

    return comparable(member_config(cfg, index, seeds[index])) == comparable(run_cfg)


def adopt_member(run_dir: str | Path, index: int, source: str | Path, cfg: ExperimentConfig) -> Path:
    """Make the finished single run `source` member `index` of the ensemble `cfg` in `run_dir`
    instead of training it (the caller checked `trains_as`): its model, history, metrics and
    evaluation predictions are copied (checkpoints and the lock are not), its metrics.json gains
    `reused_from`, and the member appears at once, finished, so a resumed ensemble keeps it."""
    source, target = Path(source), member_dir(run_dir, index)
    if not is_finished(source):
        raise RunError(f"{source}: not a finished run (no {PROBS} or {records.METRICS}); it cannot be a member")
    io.make_folder(run_dir, "ensemble run directory")
    with rundir.locked(Path(run_dir)):
        try:
            # the member appears whole or not at all; an unfinished member's checkpoints are superseded
            with io.atomic_folder(target) as staging:
                ignore = shutil.ignore_patterns(rundir.CHECKPOINTS, rundir.STARTED, LOCK)
                shutil.copytree(source, staging, ignore=ignore)
                io.write_text(staging / rundir.CONFIG, member_config(cfg, index, member_seeds(cfg)[index]).to_yaml())
                metrics = _member_metrics(staging)
                io.write_json(staging / records.METRICS, {**metrics, "reused_from": str(source.resolve())})
        except OSError as exc:
            raise io.os_error(exc, f"cannot copy {source} into {target}") from None
    return target


def train_member(cfg: ExperimentConfig, task, mdir: Path, data_seed: Optional[int] = None) -> dict:
    """Run the task for one member into `mdir`, like a run of its own: seeded, in the precision and
    distribution scope, checkpointed under `mdir/checkpoints/` (dropped once the member is saved),
    its wall time in its metrics.json. `data_seed` (the ensemble's seed) draws the data limits,
    so that every member sees the same images."""
    from fastcourse.run.frame import run_task
    from fastcourse.run.inputs import limits_seeded

    mdir.mkdir(parents=True, exist_ok=True)
    io.write_text(mdir / "config.yaml", cfg.to_yaml())
    with limits_seeded(cfg.seed if data_seed is None else data_seed):
        metrics = timed(mdir, lambda: run_task(cfg, task, mdir))
    shutil.rmtree(rundir.checkpoint_dir(mdir), ignore_errors=True)
    return metrics


def run_ensemble(cfg: ExperimentConfig, task, run_dir: str | Path) -> Path:
    """Train the members still missing in `run_dir`, then combine them; any task works, since every
    task leaves the same artifacts. Finished members are kept as they are."""
    if cfg.ensemble is None or cfg.ensemble.members < 1:
        raise UsageError(f"{cfg.name}: no `ensemble` section; add `ensemble: {{members: 5}}`")
    run_dir = Path(run_dir)
    with rundir.locked(run_dir):  # already held when called through execute
        if rundir.is_run_dir(run_dir):
            rundir.check_same_config(run_dir, cfg)  # never mix members of another config
        else:
            io.write_text(run_dir / rundir.CONFIG, cfg.to_yaml())

        def train_and_combine() -> Path:
            _train_missing(cfg, task, run_dir)
            return finish_ensemble(cfg, run_dir)

        return timed(run_dir, train_and_combine)  # the wall time of the whole ensemble, every session


def _train_missing(cfg: ExperimentConfig, task, run_dir: Path) -> None:
    """Train the members not finished yet: one after another, or one per GPU."""
    seeds = member_seeds(cfg)
    n = len(seeds)
    pending = [i for i in range(n) if not is_finished(member_dir(run_dir, i))]
    done = n - len(pending)
    print(
        f"fastcourse: ensemble {cfg.name}: {n} x {cfg.task.name} of {cfg.model.name}, augment={cfg.augment.name}"
        f" -> {run_dir}"
        + (f" ({done} finished member(s) kept, resuming at member {pending[0]})" if done and pending else ""),
        flush=True,
    )
    workers = _parallel_devices(cfg) if pending else 0
    if workers > 1:
        _train_parallel(cfg, task, seeds, pending, run_dir, workers)
        return
    member_loop(
        cfg.name,
        seeds,
        pending,
        lambda i, seed: train_member(member_config(cfg, i, seed), task, member_dir(run_dir, i), data_seed=cfg.seed),
    )


def member_loop(
    name: str, seeds: Sequence[int], pending: Iterable[int], train_one: Callable[[int, int], dict], verbose: bool = True
) -> list[dict]:
    """Train the members `pending` (indices into `seeds`) one after another: `train_one(index,
    seed)` trains one and returns its metrics (records.evaluation's keys). Each member is named
    before it trains and its accuracy said after. The one loop of `fastcourse run`'s ensembles and
    of the Learner's ensemble(); returns the members' metrics in order."""
    done = []
    for i in pending:
        if verbose:
            print(f"fastcourse: ensemble {name}: member {i + 1}/{len(seeds)} (seed {seeds[i]})", flush=True)
        m = train_one(i, seeds[i])
        if verbose:
            split, acc = records.eval_split(m), records.eval_accuracy(m)
            print(f"fastcourse: member {i}: {split} accuracy {acc:.4f}", flush=True)
        done.append(m)
    return done


def finish_ensemble(cfg: ExperimentConfig, run_dir: Path) -> Path:
    """Combine the finished members of `run_dir`: rules, the Keras model, metrics.json, plots."""
    import pandas as pd

    from fastcourse.models.ensemble import average_members
    from fastcourse.run import plots
    from fastcourse.run.artifacts import load_model, versions
    from fastcourse.run.inputs import inputs_for
    from fastcourse.train.trainer import predict

    n = len(member_seeds(cfg))
    dirs = [member_dir(run_dir, i) for i in range(n)]
    missing = [str(i) for i, d in enumerate(dirs) if not is_finished(d)]
    if missing:
        raise RunError(
            f"{run_dir}: members {', '.join(missing)} are not finished; run the ensemble again "
            "on this run directory to train them"
        )
    member_metrics = [_member_metrics(d) for d in dirs]
    split = records.eval_split(member_metrics[0]) or "test"
    probs = np.stack([np.load(d / PROBS, allow_pickle=False) for d in dirs])
    labels = np.load(dirs[0] / LABELS, allow_pickle=False)
    for d in dirs[1:]:
        if not np.array_equal(np.load(d / LABELS, allow_pickle=False), labels):
            raise RunError(
                f"{run_dir}: member {d.name} was evaluated on other images than member 0; "
                "was the data changed between members?"
            )
    summary = summarize(probs, labels, member_metrics, split)

    # The ensemble as one model: saved, reloaded in safe mode, and checked against the mean rule
    # on the first evaluation images.
    members = [load_model(d / "model.keras") for d in dirs]
    io.save_model(average_members(members, name=_model_name(cfg.name)), run_dir / "model.keras")
    reloaded = load_model(run_dir / "model.keras")
    inputs = inputs_for(cfg)
    k = min(64, len(inputs.eval))
    mean_probs = combine(probs, "mean")
    model_probs = predict(reloaded, inputs.eval.take(k))
    with io.atomic_path(run_dir / LABELS, suffix=".npy") as tmp:
        np.save(tmp, labels)
    tta = _flip_tta(cfg, members, probs, labels, inputs, split, run_dir) if cfg.ensemble.tta == "flip" else None

    histories = [pd.read_csv(d / "history.csv") for d in dirs]
    mean_history = pd.concat(histories).groupby("epoch", as_index=False).mean()
    io.write_text(run_dir / "history.csv", mean_history.to_csv(index=False))

    rules = summary["rules"]
    first = member_metrics[0]
    # the headline numbers are the arithmetic mean's, as the course averaged predictions
    metrics = records.run_metrics(
        name=cfg.name,
        task=cfg.task.name,
        model=cfg.model.name,
        dataset=first.get("dataset"),
        data_kind=first.get("data_kind"),
        data_source=first.get("data_source"),
        classes=first.get("classes") or [],
        augment=cfg.augment.name,
        split=split,
        accuracy=rules["mean"]["eval_accuracy"],
        loss=rules["mean"]["eval_loss"],
        eval_images=int(len(labels)),
        train_images=first.get("train_images"),
        epochs=first.get("epochs"),
        train_seconds=float(sum(m.get("train_seconds", 0.0) for m in member_metrics)),
        params=int(reloaded.count_params()),
        seed=cfg.seed,
        versions=versions(),
        ensemble_members=n,
        **summary,
        **({"tta": tta} if tta else {}),
        keras_model={
            "path": "model.keras",
            "checked_images": k,
            "max_abs_diff_from_mean_rule": float(np.abs(model_probs - mean_probs[:k]).max()),
        },
    )
    classes = list(first.get("classes") or range(probs.shape[2]))
    plots.plot_learning_curves(
        mean_history.drop(columns="epoch").to_dict("list"),
        run_dir / "learning_curves.png",
        f"{cfg.name}: mean of {n} members",
        split=split,
    )
    cm = plots.confusion_matrix(labels, mean_probs.argmax(1), probs.shape[2])
    plots.plot_confusion_matrix(
        cm,
        [str(c) for c in classes],
        run_dir / "confusion_matrix.png",
        f"{cfg.name} ({n} members): {split} accuracy {metrics['eval_accuracy']:.4f}",
    )
    io.write_json(run_dir / records.METRICS, metrics)
    with io.atomic_path(run_dir / PROBS, suffix=".npy") as tmp:
        np.save(tmp, mean_probs.astype(np.float32))
    acc = summary["member_accuracy"]
    print(
        f"fastcourse: ensemble {cfg.name}: {split} accuracy of the members {acc['mean']:.4f} +- {acc['std']:.4f} "
        f"(min {acc['min']:.4f}, max {acc['max']:.4f}); ensemble mean {rules['mean']['eval_accuracy']:.4f}, "
        f"geometric {rules['geometric']['eval_accuracy']:.4f}, vote {rules['vote']['eval_accuracy']:.4f}"
        + (f"; ensemble + flip TTA {tta['eval_accuracy']:.4f}" if tta else ""),
        flush=True,
    )
    return run_dir


def _flip_tta(cfg: ExperimentConfig, members: list, probs: np.ndarray, labels: np.ndarray, inputs, split, run_dir):
    """`ensemble.tta: flip`: every member also predicts the mirror image of each evaluation image;
    a member's TTA probabilities are the mean of its saved ones and those. Saves their ensemble
    mean as eval_probs_flip_tta.npy and returns its figures (metrics.json's `tta`), which stand
    beside the plain ensemble's, never in place of them."""
    import time

    from fastcourse.data.augment import mirror_images
    from fastcourse.train.trainer import predict

    start = time.perf_counter()
    batch = cfg.train.batch_size
    flipped = np.stack([predict(m, inputs.eval, batch_size=batch, augment=mirror_images) for m in members])
    if flipped.shape != probs.shape:
        raise RunError(
            f"{run_dir}: {flipped.shape[1]} mirrored predictions for {probs.shape[1]} evaluation images; "
            "was the data changed since the members were trained?"
        )
    per_member = (np.asarray(probs, np.float64) + flipped) / 2.0
    mean = combine(per_member, "mean")
    with io.atomic_path(run_dir / TTA_PROBS, suffix=".npy") as tmp:
        np.save(tmp, mean.astype(np.float32))
    acc = np.array([accuracy(p, labels) for p in per_member])
    return {
        "kind": "flip",
        "probs": TTA_PROBS,
        **records.evaluation(split, accuracy(mean, labels), log_loss(mean, labels)),
        "member_accuracy": {"mean": float(acc.mean()), "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0},
        "seconds": time.perf_counter() - start,
    }


# --- helpers ---------------------------------------------------------------------------


def _member_metrics(mdir: Path) -> dict:
    metrics, problem = records.read_metrics(mdir / records.METRICS)
    if metrics is None:
        raise RunError(
            f"{mdir / records.METRICS}: {problem or 'missing'}; delete the folder {mdir} and run the "
            "ensemble again on this run directory to train that member anew"
        )
    return metrics


def _model_name(name: str) -> str:
    # Keras model names: keep them simple identifiers
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "ensemble"


def _parallel_devices(cfg: ExperimentConfig) -> int:
    """How many members may train at once: one per visible GPU with `parallel`, else 1."""
    if not cfg.ensemble.parallel:
        return 1
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    if gpus < 2:
        print(f"fastcourse: ensemble.parallel: {gpus} GPU(s) visible; training members one after another", flush=True)
        return 1
    return gpus


def _train_parallel(
    cfg: ExperimentConfig, task, seeds: list[int], pending: list[int], run_dir: Path, gpus: int
) -> None:
    """One worker process per GPU, each seeing only its own GPU; members are saved as they finish."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")  # a fresh TensorFlow per worker, before it picks its GPU
    queue = ctx.Manager().Queue()
    for g in range(gpus):
        queue.put(g)
    with ProcessPoolExecutor(
        max_workers=min(gpus, len(pending)), mp_context=ctx, initializer=_pick_gpu, initargs=(queue,)
    ) as pool:
        futures = {
            pool.submit(_train_member_worker, cfg.to_dict(), task, i, seeds[i], str(member_dir(run_dir, i))): i
            for i in pending
        }
        for fut in as_completed(futures):
            metrics = fut.result()
            print(
                f"fastcourse: member {futures[fut]}: {records.eval_split(metrics)} accuracy "
                f"{records.eval_accuracy(metrics):.4f}",
                flush=True,
            )


def _pick_gpu(queue) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = str(queue.get())


def _train_member_worker(cfg_dict: dict, task, index: int, seed: int, mdir: str) -> dict:
    cfg = ExperimentConfig.model_validate(cfg_dict)  # checked once already, in the parent process
    return train_member(member_config(cfg, index, seed), task, Path(mdir), data_seed=cfg.seed)
