"""Model builders: plain functions returning keras.Model, registered by name in MODELS.

Importing this package registers every builder module listed here."""
from fastcourse.models.registry import MODELS, build_model  # noqa: F401
from fastcourse.models import mnist  # noqa: F401  (registers the ladder)

__all__ = ["MODELS", "build_model"]
