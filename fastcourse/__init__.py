"""fastcourse: the fast.ai 2017 Part 1 lessons (MNIST ladder, VGG16 fine-tuning) on Keras 3.

Typical use in a notebook::

    from fastcourse import load_config, run_experiment
    run_dir = run_experiment(load_config("configs/mnist/cnn.yaml"))

`load_config(source, overrides)` makes the whole check `fastcourse run` makes (the config tree,
each named section against its function, the schedule), naming every problem at once;
`fastcourse.config.read_config` is the tree alone.

The package is layered, each layer importing only the ones above it: data, models, train,
run, tasks, results, lessons, cli (import-linter checks it in the tests). `import fastcourse`
imports no TensorFlow; the names below load on first use. fastcourse's own Keras classes
(layers, the schedule in a saved optimizer) are registered as soon as Keras is imported, so
`keras.saving.load_model(path, safe_mode=True)` reads any model fastcourse wrote (import fastcourse,
then keras, or the other way round).
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys
from types import FrameType

# Quiet TensorFlow's start-up notices unless the user asked for them (the `fastcourse` command
# hides them all unless FASTCOURSE_TF_LOGS=1 or --verbose: fastcourse/cli/__init__.py).
_TF_LOG_LEVEL_GIVEN = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fastcourse.version import __version__  # noqa: E402

_LAZY = {
    "load_config": "fastcourse.tasks.check:load_config",
    "run_experiment": "fastcourse.tasks.runner:run_experiment",
    "Learner": "fastcourse.learner:Learner",
    "load_learner": "fastcourse.learner:load_learner",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'fastcourse' has no attribute {name!r}")


def _register_keras_classes() -> None:
    from fastcourse.run.artifacts import register_custom_objects

    register_custom_objects()


def _inside_fastcourse_import() -> bool:
    """Whether one of fastcourse's own modules is being imported right now (further up the stack).
    Then it is importing Keras itself, mid-way through its own code, and registering now would
    import modules that import it back half-made; fastcourse's own loader (run.artifacts.
    load_model) registers before it loads anything."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and str(frame.f_globals.get("__name__", "")).startswith("fastcourse."):
            return True
        frame = frame.f_back
    return False


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Registers fastcourse's Keras classes right after `import keras` completes, so that importing
    fastcourse stays free of TensorFlow and a plain keras.saving.load_model still finds them."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # find the real keras, once
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            if not _inside_fastcourse_import():
                _register_keras_classes()

        spec.loader.exec_module = exec_then_register  # type: ignore[method-assign]  # this one spec's loader
        return spec


if "keras" in sys.modules:
    _register_keras_classes()
elif not any(isinstance(f, _AfterKerasImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterKerasImport())
