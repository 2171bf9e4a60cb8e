"""fastcourse: the fast.ai 2017 Part 1 lessons (MNIST ladder, VGG16 fine-tuning) on Keras 3.

Typical use in a notebook::

    from fastcourse import load_config, run_experiment
    run_dir = run_experiment(load_config("configs/mnist/cnn.yaml"))
"""
import os

# Quiet TensorFlow's start-up notices unless the user asked for them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from fastcourse.config import load_config  # noqa: E402
from fastcourse.experiment import run_experiment  # noqa: E402

__all__ = ["load_config", "run_experiment", "__version__"]
