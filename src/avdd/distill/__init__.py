"""Distillation methods; importing the package registers every built-in method in ``METHODS``."""

from avdd.distill import coreset, dm, mtt, plus  # noqa: F401  (each registers itself)
