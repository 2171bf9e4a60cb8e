"""The core commands: run, list, show-config, preview-augment, lr-find, check."""

from __future__ import annotations

import argparse
import json
import sys

from fastcourse.cli import OUT_ARG, arg, command, out_folder

CONFIG_ARGS = [
    arg("config", help="experiment YAML file, e.g. configs/mnist/cnn.yaml"),
    arg(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value (repeatable), e.g. --set train.batch_size=128",
    ),
]


@command(
    "run",
    "train and evaluate an experiment into a new run directory, or resume an "
    "interrupted run from its last completed epoch",
    [
        arg(
            "config",
            metavar="CONFIG_OR_RUN_DIR",
            help="experiment YAML file (a new run), or the directory of an unfinished run to resume it, "
            "e.g. runs/mnist-cnn-20260101-120000",
        ),
        CONFIG_ARGS[1],
        arg(
            "--out",
            metavar="FOLDER",
            help="folder under which the run directory is made (default: the config's `out`, runs/)",
        ),
        arg(
            "--resume",
            action="store_true",
            help="continue the newest unfinished run of this config under --out from its last completed "
            "epoch (starts a new run if there is none)",
        ),
        arg(
            "--run-dir",
            metavar="DIR",
            help="run into exactly this directory; if it holds an unfinished run of the same config, continue that run",
        ),
        arg(
            "--tensorboard",
            action="store_true",
            help="log scalars, the per-step learning rate and augmented samples to RUN/tensorboard/",
        ),
    ],
)
def run(args: argparse.Namespace) -> int:
    from fastcourse.config import load_config
    from fastcourse.run.rundir import resolve
    from fastcourse.tasks.runner import run_experiment

    overrides = [*args.overrides, *(["train.tensorboard=true"] if args.tensorboard else [])]
    # the config as `fastcourse check` checks it (every problem at once), then the run directory
    cfg, run_dir = resolve(args.config, overrides, args.out, args.resume, args.run_dir, load=load_config)
    run_dir = run_experiment(cfg, out=args.out, run_dir=run_dir)
    if not (run_dir / "metrics.json").exists():  # a non-chief worker: the chief keeps the results
        print("worker finished; the chief worker wrote the run directory")
        return 0
    from fastcourse.run import records

    metrics = json.loads((run_dir / "metrics.json").read_text())
    split, loss, wall = records.eval_split(metrics), records.eval_loss(metrics), metrics.get("wall_seconds")
    print(
        f"{split} accuracy: {records.eval_accuracy(metrics):.4f}  ({split} loss "
        f"{'-' if loss is None else f'{loss:.4f}'})" + ("" if wall is None else f"  wall time {wall:.1f} s")
    )
    print(f"run directory: {run_dir}")
    return 0


@command("show-config", "print the resolved config (defaults filled in, overrides applied)", CONFIG_ARGS)
def show_config(args: argparse.Namespace) -> int:
    from fastcourse.config import load_config

    print(load_config(args.config, args.overrides).to_yaml(), end="")
    return 0


@command(
    "list",
    "list the registered tasks, models, datasets, augmentations, schedules and the shipped configs",
    [
        arg(
            "what",
            nargs="?",
            choices=["tasks", "models", "datasets", "augmentations", "schedules", "configs"],
            help="one kind only",
        ),
    ],
)
def list_registered(args: argparse.Namespace) -> int:
    # listing imports the registered modules, and so TensorFlow: quieted first (fastcourse.tf_logs)
    from fastcourse import tf_logs
    from fastcourse.data import AUGMENTATIONS, DATASETS
    from fastcourse.models import MODELS
    from fastcourse.tasks import TASKS
    from fastcourse.train.schedules import SCHEDULES

    kinds = {
        "tasks": TASKS,
        "models": MODELS,
        "datasets": DATASETS,
        "augmentations": AUGMENTATIONS,
        "schedules": SCHEDULES,
    }
    if args.what != "configs":
        tf_logs.import_tensorflow()
    for kind, registry in kinds.items():
        if args.what and args.what != kind:
            continue
        print(f"{kind}:")
        for name in registry.names():
            print(f"  {name:<22} {registry.describe(name)}")
    if args.what in (None, "configs"):  # the shipped configs, run by name: fastcourse run mnist_sample/cnn
        from fastcourse.shipped import shipped_names

        print("configs:")
        for name in shipped_names():
            print(f"  {name}")
    return 0


def _example(source, index: int):
    """One clean example of a Source, as float32 0-255 (arrays and image folders alike)."""
    import numpy as np

    from fastcourse.errors import UsageError

    if not 0 <= index < len(source):
        raise UsageError(f"--index {index}: the training set has {len(source)} images")
    batch = next(iter(source.take(index + 1).batches(index + 1, labels=False)))
    return np.asarray(batch)[index]


@command(
    "preview-augment",
    "write a PNG grid of augmented copies of one training image",
    CONFIG_ARGS
    + [
        arg("--index", type=int, default=0, help="which training image (default 0)"),
        arg("-n", type=int, default=8, help="how many augmented copies (default 8)"),
        OUT_ARG,
    ],
)
def preview_augment(args: argparse.Namespace) -> int:
    from fastcourse.config import load_config
    from fastcourse.data import augment
    from fastcourse.run.inputs import inputs_for

    cfg = load_config(args.config, args.overrides)
    inputs = inputs_for(cfg)
    pipeline = augment.build(cfg.augment.name, cfg.augment.args)
    if getattr(pipeline, "mixes_labels", False):  # augment.mix: a batch of images, mixed with their labels
        from fastcourse.data.mix import preview_mix

        x, y = next(iter(inputs.train.take(args.index + args.n).batches(args.index + args.n)))
        path = preview_mix(
            pipeline,
            x[args.index :],
            y[args.index :],
            inputs.class_names,
            out_folder(args.out) / "augment_preview.png",
            seed=cfg.seed,
            title=f"{cfg.augment.name} + {cfg.augment.mix.name} on {inputs.name}[{args.index}:]",
        )
        print(f"preview: {path}")
        return 0
    path = augment.preview(
        pipeline,
        _example(inputs.train, args.index),
        out_folder(args.out) / "augment_preview.png",
        n=args.n,
        seed=cfg.seed,
        title=f"{cfg.augment.name} on {inputs.name}[{args.index}]",
    )
    print(f"preview: {path}")
    return 0


@command(
    "lr-find",
    "learning-rate range test: save a loss-vs-rate plot and suggest a rate",
    CONFIG_ARGS
    + [
        arg("--steps", type=int, default=200, help="steps of the range test (default 200)"),
        arg("--min-lr", type=float, default=1e-7),
        arg("--max-lr", type=float, default=10.0),
        arg(
            "--suggest",
            default="valley",
            choices=["valley", "slide", "minimum", "steep"],
            help="fastai's rule for the suggested rate (default valley, fastai's default)",
        ),
        OUT_ARG,
    ],
)
def lr_find_command(args: argparse.Namespace) -> int:
    from fastcourse.config import load_config

    # what the task trains first: the model, a features head, a frozen fine-tune (tasks/lr_find.py)
    from fastcourse.tasks.lr_find import lr_find_for

    cfg = load_config(args.config, args.overrides)
    found = lr_find_for(cfg, args.steps, args.min_lr, args.max_lr, where=args.config, suggest_by=args.suggest)
    path = found.finder.plot(out_folder(args.out) / "lr_find.png", found.title)
    if found.finder.suggestion is None:  # the one line; the JSON below says the same with null
        print(f"fastcourse: {found.finder.message()}", file=sys.stderr)
    print(
        json.dumps(
            {
                "suggested_lr": found.finder.suggestion,
                "suggested_by": found.finder.method,
                "suggestions": found.finder.suggestions,
                "no_descent": found.finder.no_descent,
                "min_loss_lr": found.finder.min_loss_lr,
                "task": found.task,
                "fits": found.what,
                "plot": str(path),
            }
        )
    )
    return 0


@command(
    "check",
    "validate a config as `run` would, without running it: exit 0 when it is valid, 2 "
    "naming every problem (one line each) when not",
    CONFIG_ARGS,
)
def check(args: argparse.Namespace) -> int:
    from fastcourse.config import load_config

    cfg = load_config(args.config, args.overrides)  # a ConfigError: every problem, one line each (exit 2)
    from fastcourse.run.inputs import folder_summary

    summary = folder_summary(cfg)  # an image folder: its layout and images per split (as `run` opens it)
    if summary:
        print(f"{args.config}: {summary}")
    print(f"{args.config}: ok")
    return 0
