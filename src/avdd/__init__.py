"""avdd: audio-visual dataset distillation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("avdd")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
