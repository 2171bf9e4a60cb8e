"""Training: the shared trainer (fit in phases or by schedule) and the learning-rate finder."""
from fastcourse.train.trainer import FitResult, compile_model, evaluate, fit, predict, seed_everything  # noqa: F401
