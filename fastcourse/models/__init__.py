"""Layer 2, models: builders (plain functions returning keras.Model, registered by name in
MODELS), the blocks they are made of, and surgery (cut, new top, freeze by block).

Importing this package imports no TensorFlow; `build_model` imports the builder's module."""

from fastcourse.models.registry import MODELS, build_model

__all__ = ["MODELS", "build_model"]
