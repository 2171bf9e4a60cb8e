"""fastcourse: the fast.ai 2017 Part 1 lessons (MNIST ladder, VGG16 fine-tuning) on Keras 3.

Typical use in a notebook::

    from fastcourse import load_config, run_experiment
    run_dir = run_experiment(load_config("configs/mnist/cnn.yaml"))
"""
import os

# Quiet TensorFlow's start-up notices unless the user asked for them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = ["load_config", "run_experiment", "__version__"]

# Imported on first use (PEP 562): `import fastcourse.<module>` must not load TensorFlow, so
# that commands which only read files (`fastcourse runs`) start at once.
_LAZY = {"load_config": "fastcourse.config", "run_experiment": "fastcourse.experiment"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastcourse' has no attribute {name!r}")
