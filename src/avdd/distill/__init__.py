"""Distillation methods and the parametrisations of synthetic sets."""
