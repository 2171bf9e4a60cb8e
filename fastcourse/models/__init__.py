"""Model builders: plain functions returning keras.Model, registered by name in MODELS.

Every module in this package is imported, so its builders register themselves."""
from fastcourse.autoimport import import_submodules
from fastcourse.models.registry import MODELS, build_model

import_submodules(__name__, skip=("registry",))

__all__ = ["MODELS", "build_model"]
