"""fastcourse: the fast.ai 2017 Part 1 lessons (MNIST ladder, VGG16 fine-tuning) on Keras 3.

Typical use in a notebook::

    import fastcourse
    learn = fastcourse.Learner.from_dataset("mnist_sample", "cnn")
    learn.fit(1)

or from a config: `fastcourse.run_experiment(fastcourse.load_config("configs/mnist/cnn.yaml"))`.
`load_config(path, overrides)` makes the whole check `fastcourse run` makes, naming every
problem at once.

The package is layered, each layer importing only the ones above it: data, models, train,
run, tasks, results, lessons, cli (import-linter checks it in the tests). `import fastcourse`
imports no TensorFlow; the names below load on first use, importing TensorFlow with its start-up
log lines quieted (fastcourse.tf_logs). `import fastcourse.saving` registers fastcourse's Keras
classes, so that plain `keras.saving.load_model(path)` reads any model fastcourse wrote.
"""

import importlib

from fastcourse import tf_logs
from fastcourse.version import __version__

tf_logs.set_default_level()  # before TensorFlow is imported: it reads the level once

_LAZY = {
    "load_config": "fastcourse.config:load_config",
    "run_experiment": "fastcourse.tasks.runner:run_experiment",
    "Learner": "fastcourse.learner:Learner",
    "load_learner": "fastcourse.learner:load_learner",
    "sweep": "fastcourse.sweeps.study:sweep",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name):
    if name in _LAZY:
        tf_logs.import_tensorflow()  # each of them imports it (a config's check imports the builders)
        module, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'fastcourse' has no attribute {name!r}")
