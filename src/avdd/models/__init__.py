"""Encoders, fusion heads and the classifier that combines them."""
