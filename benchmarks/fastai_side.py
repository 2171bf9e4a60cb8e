"""The fastai side of `make bench-fastai`: run by the fastai environment's Python, never imported
by fastcourse (torch and fastai are not fastcourse dependencies).

    python fastai_side.py DATA.npz --seed 0 --target 0.8981 [--data tensor|list|batched --threads N
                                                             --no-bf16 --no-channels-last --compile --roofline]

DATA.npz holds x_train, y_train, x_test, y_test (uint8 28x28 images, integer labels), written by
benchmarks/fastai_peer.py so that both sides train on the same arrays. The model is the course's
batchnorm + dropout CNN, layer for layer as fastcourse's `cnn_bn_dropout`.

fastai's best CPU recipe, each choice measured (docs/performance.md):
- `fit_one_cycle(1, 6e-3)` at batch 128;
- the data: `DataLoaders.from_dsets` over an indexable dataset of two tensors, `num_workers=0`
  (`--data tensor`). `--data list` is the earlier side's Python list of 60,000 (x, y) pairs;
  `--data batched` indexes a whole batch at once through fastai's `create_batch` hook;
- `torch.set_num_threads` to the cores this process may use (`--threads 0` leaves torch's default);
- channels_last, and bfloat16 through `torch.autocast("cpu")` in a small callback (fastai's own
  `to_bf16()` switches CUDA autocast only, so on a CPU it trains in float32);
- `--compile`: `torch.compile` of the model, measured and left out unless it pays.

The seconds counted run from building the DataLoaders and the model to the end of the epoch,
validation excluded, as on fastcourse's side; test accuracy is evaluated after the epoch,
untimed. Prints one JSON line: {"side": "fastai", "seed", "seconds", "accuracy", "epochs",
"images_per_second", "marks"}: `marks` are the clock marks fastcourse.bench.breakdown splits
(with `--roofline`, also the bf16 matmul GFLOP/s measured here after the run).
"""

from __future__ import annotations

import argparse
import json
import os
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


class TensorPairs:
    """An indexable dataset over two tensors: item i is (x[i], y[i])."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


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


class Marks(Callback):
    """The clock marks of fastcourse.bench.breakdown: training begins, the first batch and the
    epoch end; the steady rate from the batches after the first `skip`."""

    def __init__(self, skip: int = 10):
        self.skip, self.fits = skip, []
        self.steady_images = 0
        self.steady_seconds = 0.0

    def start(self):
        self.fits.append({"call": time.perf_counter(), "images": 0})

    def before_fit(self):
        self.fits[-1]["begin"] = time.perf_counter()
        self.batches = 0

    def after_batch(self):
        if not self.training:
            return
        now, fit = time.perf_counter(), self.fits[-1]
        self.batches += 1
        fit["images"] += len(self.yb[0])
        if self.batches == 1:
            fit["first"], fit["first_images"] = now, len(self.yb[0])
        if self.batches == self.skip:
            self.t0, self.n0 = now, fit["images"]
        elif self.batches > self.skip:
            self.t1, self.n1 = now, fit["images"]

    def after_train(self):
        self.fits[-1]["end"] = time.perf_counter()
        if getattr(self, "t1", None) is not None:
            self.steady_images += self.n1 - self.n0
            self.steady_seconds += self.t1 - self.t0
            self.t1 = None


def dataloaders(x, y, x_valid, y_valid, batch: int, kind: str) -> DataLoaders:
    if kind == "list":  # the earlier side: a Python list of (x, y) pairs
        return DataLoaders(
            DataLoader(list(zip(x, y)), bs=batch, shuffle=True, drop_last=True),
            DataLoader(list(zip(x_valid, y_valid)), bs=256),
        )
    train, valid = TensorPairs(x, y), TensorPairs(x_valid, y_valid)
    if kind == "batched":  # one indexing per batch instead of one per image and a collate

        class BatchedDL(DataLoader):
            def create_batches(self, samps):
                idxs = list(samps)
                for i in range(0, len(idxs) - (self.bs - 1 if self.drop_last else 0), self.bs):
                    b = torch.as_tensor(idxs[i : i + self.bs])
                    yield self.dataset.x[b], self.dataset.y[b]

        return DataLoaders.from_dsets(train, valid, bs=batch, num_workers=0, dl_type=BatchedDL)
    return DataLoaders.from_dsets(train, valid, bs=batch, num_workers=0)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, channels_last: bool) -> float:
    model.eval()
    with torch.no_grad():
        preds = []
        for i in range(0, len(x), 1000):
            xb = x[i : i + 1000]
            preds.append(model(xb.contiguous(memory_format=torch.channels_last) if channels_last else xb).argmax(1))
    return float((torch.cat(preds) == y).float().mean())


def bf16_matmul_gflops(size: int = 2048, repeats: int = 7) -> float:
    """bfloat16 matrix multiply throughput through torch (oneDNN), best of `repeats`."""
    a = torch.randn(size, size).to(torch.bfloat16)
    b = torch.randn(size, size).to(torch.bfloat16)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=0.8981)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=6e-3)
    ap.add_argument("--epochs", type=int, default=2, help="at most this many one-epoch cycles")
    ap.add_argument("--data", dest="kind", choices=["tensor", "list", "batched"], default="tensor")
    ap.add_argument("--threads", type=int, default=-1, help="torch threads: -1 the usable cores, 0 torch's default")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false")
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--roofline", action="store_true", help="measure the bf16 matmul after the run")
    args = ap.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.threads:
        torch.set_num_threads(cores if args.threads < 0 else args.threads)
    arrays = np.load(args.data)
    x_train = torch.from_numpy(arrays["x_train"].reshape(-1, 1, 28, 28).astype(np.float32))
    y_train = torch.from_numpy(arrays["y_train"].astype(np.int64))
    x_test = torch.from_numpy(arrays["x_test"].reshape(-1, 1, 28, 28).astype(np.float32))
    y_test = torch.from_numpy(arrays["y_test"].astype(np.int64))
    mean, std = float(x_train.mean()), float(x_train.std())
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    cbs = [SkipValidation()]
    if args.bf16:
        cbs.append(CPUBFloat16())
    if args.channels_last:
        cbs.append(ChannelsLast())
    marks = Marks()
    cbs.append(marks)
    seconds, acc, epochs, evaluation = 0.0, 0.0, 0, 0.0
    start = time.perf_counter()
    dls = dataloaders(x_train, y_train, x_test[:256], y_test[:256], args.batch, args.kind)
    model = course_cnn(mean, std)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trained = torch.compile(model) if args.compile else model
    learn = Learner(dls, trained, loss_func=CrossEntropyLossFlat(), cbs=cbs)
    learn.recorder.train_metrics = False
    build = time.perf_counter() - start
    while epochs < args.epochs:
        marks.start()
        with learn.no_logging(), learn.no_bar():
            learn.fit_one_cycle(1, args.lr * 0.5**epochs)
        epochs += 1
        seconds += time.perf_counter() - start
        t0 = time.perf_counter()
        acc = accuracy(model, x_test, y_test, args.channels_last)
        evaluation += time.perf_counter() - t0
        if acc >= args.target:
            break
        start = time.perf_counter()
    images = sum(f["images"] for f in marks.fits)
    steady = marks.steady_images / marks.steady_seconds if marks.steady_seconds else images / seconds
    out = {
        "side": "fastai",
        "seed": args.seed,
        "seconds": seconds,
        "accuracy": acc,
        "epochs": epochs,
        "reached": acc >= args.target,
        "images_per_second": steady,
        "wall_images_per_second": images / seconds,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "recipe": {k: getattr(args, k) for k in ("kind", "threads", "bf16", "channels_last", "compile", "batch", "lr")},
        "marks": {
            "build": build,
            "fits": marks.fits,
            "steady_images_per_second": steady,
            "bn": 0.0,
            "eval": evaluation,
        },
    }
    if args.roofline:
        out["bf16_matmul_gflops"] = bf16_matmul_gflops()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
