"""Datasets by name, registered in DATASETS. Array datasets (mnist, fashion_mnist,
mnist_sample) live in arrays.py; every module in this package is imported so its loaders
register themselves."""
from fastcourse.autoimport import import_submodules
from fastcourse.data.base import DATASETS, ArrayDataset

import_submodules(__name__, skip=("base", "make_sample"))

__all__ = ["DATASETS", "ArrayDataset"]
