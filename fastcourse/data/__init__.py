"""Layer 1, data: what a batch is. Array datasets (arrays.py), image folders (folders.py),
splits, augmentation, the feature cache, and the Sources that every trainer call reads.

Datasets are registered by name in DATASETS (data/base.py); importing this package imports no
TensorFlow."""

from fastcourse.data.base import AUGMENTATIONS, DATASETS, ArrayDataset

__all__ = ["AUGMENTATIONS", "DATASETS", "ArrayDataset"]
