"""Datasets by name. Array datasets (mnist, fashion_mnist, mnist_sample) live in arrays.py;
each loader is registered in DATASETS and returns an ArrayDataset."""
from fastcourse.data.base import DATASETS, ArrayDataset  # noqa: F401
from fastcourse.data import arrays  # noqa: F401  (registers the array datasets)

__all__ = ["DATASETS", "ArrayDataset"]
