"""Figures, listening and the HTML report of distilled sets and experiment runs."""
