"""Shared fixtures. Tests run offline, quietly, on tiny data.

A test's tier is written on the test itself (CONTRIBUTING.md, "Test tiers and markers"):
`@pytest.mark.integration` or `@pytest.mark.slow`, or a module-level `pytestmark`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # fastcourse's own default (fastcourse.tf_logs)
os.environ["FASTCOURSE_OFFLINE"] = "1"  # never try a download in tests

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def tiny_config():
    """A config dict for a fast run on the bundled sample; tweak and pass to load_config."""

    def make(**overrides):
        cfg = {
            "name": "tiny",
            "seed": 1,
            "data": {"name": "mnist_sample", "train_limit": 512, "test_limit": 256},
            "model": {"name": "cnn", "filters": [8, 16], "dense": 32},
            "augment": {"name": "none"},
            "train": {"batch_size": 64, "verbose": 0, "schedule": {"name": "constant", "lr": 1e-3}, "epochs": 1},
        }
        for key, value in overrides.items():
            node = cfg
            parts = key.split("__")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        return cfg

    return make


@pytest.fixture
def rng():
    return np.random.default_rng(0)
