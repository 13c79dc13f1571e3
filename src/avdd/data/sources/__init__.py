"""Known datasets, one module each; importing the package registers them all (see registry.py)."""

from avdd.data.sources import (  # noqa: F401  (each registers itself)
    avdigits,
    ave,
    csvfile,
    folder,
    hub,
    music21,
    reference_pt,
    vggs10k,
    vggsound,
)
