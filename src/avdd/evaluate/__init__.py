"""Evaluation of a training set (real or distilled) on real test data."""
