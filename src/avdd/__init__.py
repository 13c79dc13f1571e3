"""avdd: audio-visual dataset distillation."""

from avdd.version import __version__

__all__ = ["__version__"]
