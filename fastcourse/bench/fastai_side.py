"""The fastai side of `make bench-fastai`: run by the fastai environment's Python, never imported
by fastcourse (torch and fastai are not fastcourse dependencies).

    python fastai_side.py DATA.npz --seed 0 --target 0.8981 [--batch 128 --lr 6e-3 --bf16 --channels-last]

DATA.npz holds x_train, y_train, x_test, y_test (uint8 28x28 images, integer labels), written by
fastcourse.bench.fastai_peer so that both sides train on the same arrays. The model is the
course's batchnorm + dropout CNN, layer for layer as fastcourse's `cnn_bn_dropout`. fastai's best
CPU recipe: `fit_one_cycle(1, lr)`, channels_last, and bfloat16 through `torch.autocast("cpu")`
in a small callback (fastai's own `to_bf16()` switches CUDA autocast only, so on a CPU it trains
in float32). The seconds counted run from building the model to the end of the epoch, validation
excluded, as on fastcourse's side; test accuracy is evaluated after the epoch, untimed. Prints one
JSON line: {"side": "fastai", "seed", "seconds", "accuracy", "epochs", "images_per_second"}.
"""

from __future__ import annotations

import argparse
import json
import time

import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
import numpy as np
import torch
from fastai.callback.core import Callback, CancelValidException
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from torch import nn


class Normalize(nn.Module):
    """One global mean and std, as fastcourse's Normalization layer."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def course_cnn(mean: float, std: float, classes: int = 10) -> nn.Module:
    """Conv32-BN-Conv32-Pool-BN-Conv64-BN-Conv64-Pool-Flatten-BN-Dense512-BN-Dropout(0.5)-Dense."""
    return nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.BatchNorm2d(32),
        nn.Conv2d(32, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(32),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.BatchNorm2d(64),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.BatchNorm1d(1024),
        nn.Linear(1024, 512),
        nn.ReLU(),
        nn.BatchNorm1d(512),
        nn.Dropout(0.5),
        nn.Linear(512, classes),
    )


class CPUBFloat16(Callback):
    """bfloat16 autocast on the CPU around the forward pass and the loss."""

    order = 5

    def before_batch(self):
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16)
        self.autocast.__enter__()

    def after_loss(self):
        self.autocast.__exit__(None, None, None)


class ChannelsLast(Callback):
    order = 6

    def before_batch(self):
        self.learn.xb = tuple(x.contiguous(memory_format=torch.channels_last) for x in self.xb)


class SkipValidation(Callback):
    """The time counted is training; accuracy is measured after the epoch, untimed."""

    def before_validate(self):
        raise CancelValidException()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        preds = torch.cat([model(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return float((preds == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=0.8981)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=6e-3)
    ap.add_argument("--epochs", type=int, default=2, help="at most this many one-epoch cycles")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false")
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    args = ap.parse_args()

    arrays = np.load(args.data)
    x_train = torch.from_numpy(arrays["x_train"].reshape(-1, 1, 28, 28).astype(np.float32))
    y_train = torch.from_numpy(arrays["y_train"].astype(np.int64))
    x_test = torch.from_numpy(arrays["x_test"].reshape(-1, 1, 28, 28).astype(np.float32))
    y_test = torch.from_numpy(arrays["y_test"].astype(np.int64))
    mean, std = float(x_train.mean()), float(x_train.std())
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    train = list(zip(x_train, y_train))
    dls = DataLoaders(
        DataLoader(train, bs=args.batch, shuffle=True, drop_last=True),
        DataLoader(list(zip(x_test[:256], y_test[:256])), bs=256),
    )
    cbs = [SkipValidation()]
    if args.bf16:
        cbs.append(CPUBFloat16())
    if args.channels_last:
        cbs.append(ChannelsLast())
    seconds, acc, epochs = 0.0, 0.0, 0
    start = time.perf_counter()
    model = course_cnn(mean, std)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=cbs)
    learn.recorder.train_metrics = False
    while epochs < args.epochs:
        with learn.no_logging(), learn.no_bar():
            learn.fit_one_cycle(1, args.lr * 0.5**epochs)
        epochs += 1
        seconds += time.perf_counter() - start
        acc = accuracy(model, x_test, y_test)
        if acc >= args.target:
            break
        start = time.perf_counter()
    images = epochs * (len(train) // args.batch) * args.batch
    print(
        json.dumps(
            {
                "side": "fastai",
                "seed": args.seed,
                "seconds": seconds,
                "accuracy": acc,
                "epochs": epochs,
                "reached": acc >= args.target,
                "images_per_second": images / seconds,
                "torch": torch.__version__,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
