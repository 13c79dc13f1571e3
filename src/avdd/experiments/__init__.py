"""Experiment configs, the grid runner (avdd run) and the result tables."""
