"""The core commands: run, list, show-config, preview-augment, lr-find, bench."""
from __future__ import annotations

import argparse
import json

from fastcourse.cli import arg, command
from fastcourse.config import load_config

CONFIG_ARGS = [
    arg("config", help="experiment YAML file, e.g. configs/mnist/cnn.yaml"),
    arg("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
        help="override a config value (repeatable), e.g. --set train.batch_size=128"),
]


@command("run", "train and evaluate an experiment into a new run directory, or resume an "
         "interrupted run from its last completed epoch", [
    arg("config", metavar="CONFIG_OR_RUN_DIR",
        help="experiment YAML file (a new run), or the directory of an unfinished run to resume it, "
             "e.g. runs/mnist-cnn-20260101-120000"),
    CONFIG_ARGS[1],
    arg("--out", help="folder for the run directory (default: the config's `out`, runs/)"),
    arg("--resume", action="store_true",
        help="continue the newest unfinished run of this config under --out from its last completed "
             "epoch (starts a new run if there is none)"),
    arg("--run-dir", metavar="DIR",
        help="run into exactly this directory; if it holds an unfinished run of the same config, "
             "continue that run"),
])
def run(args: argparse.Namespace) -> int:
    import json as _json

    from fastcourse.experiment import run_experiment
    from fastcourse.rundir import resolve

    cfg, run_dir = resolve(args.config, args.overrides, args.out, args.resume, args.run_dir)
    run_dir = run_experiment(cfg, out=args.out, run_dir=run_dir)
    if not (run_dir / "metrics.json").exists():  # a non-chief worker: the chief keeps the results
        print("worker finished; the chief worker wrote the run directory")
        return 0
    metrics = _json.loads((run_dir / "metrics.json").read_text())
    print(f"test accuracy: {metrics['test_accuracy']:.4f}  (test loss {metrics['test_loss']:.4f})")
    print(f"run directory: {run_dir}")
    return 0


@command("show-config", "print the resolved config (defaults filled in, overrides applied)", CONFIG_ARGS)
def show_config(args: argparse.Namespace) -> int:
    print(load_config(args.config, args.overrides).to_yaml(), end="")
    return 0


@command("list", "list the registered models, datasets, augmentations and schedules", [
    arg("what", nargs="?", choices=["models", "datasets", "augmentations", "schedules"], help="one kind only"),
])
def list_registered(args: argparse.Namespace) -> int:
    from fastcourse.augment import AUGMENTATIONS
    from fastcourse.data import DATASETS
    from fastcourse.models import MODELS
    from fastcourse.schedules import SCHEDULES

    kinds = {"models": MODELS, "datasets": DATASETS, "augmentations": AUGMENTATIONS, "schedules": SCHEDULES}
    for kind, registry in kinds.items():
        if args.what and args.what != kind:
            continue
        print(f"{kind}:")
        for name in registry.names():
            print(f"  {name:<22} {registry.describe(name)}")
    return 0


@command("preview-augment", "write a PNG grid of augmented copies of one training image", CONFIG_ARGS + [
    arg("--index", type=int, default=0, help="which training image (default 0)"),
    arg("-n", type=int, default=8, help="how many augmented copies (default 8)"),
    arg("--output", default="augment_preview.png", help="PNG path (default augment_preview.png)"),
])
def preview_augment(args: argparse.Namespace) -> int:
    from fastcourse import augment
    from fastcourse.errors import UsageError
    from fastcourse.experiment import load_data

    cfg = load_config(args.config, args.overrides)
    data = load_data(cfg)
    if not 0 <= args.index < len(data.x_train):
        raise UsageError(f"--index {args.index}: the training set has {len(data.x_train)} images")
    pipeline = augment.build(cfg.augment.name, cfg.augment.args)
    path = augment.preview(pipeline, data.x_train[args.index], args.output, n=args.n, seed=cfg.seed,
                           title=f"{cfg.augment.name} on {data.name}[{args.index}]")
    print(f"preview: {path}")
    return 0


@command("lr-find", "learning-rate range test: save a loss-vs-rate plot and suggest a rate", CONFIG_ARGS + [
    arg("--steps", type=int, default=200, help="steps of the range test (default 200)"),
    arg("--min-lr", type=float, default=1e-7),
    arg("--max-lr", type=float, default=10.0),
    arg("--output", default="lr_find.png", help="plot path (default lr_find.png)"),
])
def lr_find_command(args: argparse.Namespace) -> int:
    from fastcourse.experiment import build_for, load_data
    from fastcourse.train.lr_find import lr_find
    from fastcourse.train.trainer import seed_everything

    cfg = load_config(args.config, args.overrides)
    seed_everything(cfg.seed, cfg.train.deterministic)
    data = load_data(cfg)
    model, augmenter = build_for(cfg, data)
    result = lr_find(model, data.x_train, data.y_train, cfg.train.batch_size, cfg.seed, augmenter,
                     args.min_lr, args.max_lr, args.steps, cfg.train.optimizer if cfg.train.optimizer != "adamw" else "adam")
    path = result.plot(args.output)
    print(json.dumps({"suggested_lr": result.suggestion, "min_loss_lr": result.min_loss_lr, "plot": str(path)}))
    return 0
