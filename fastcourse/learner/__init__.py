"""The notebook front door (fastcourse.learner.core.Learner) and its export
(fastcourse.learner.export: learn.export(path), load_learner(path))."""

from fastcourse.learner.core import Learner, load_learner

__all__ = ["Learner", "load_learner"]
