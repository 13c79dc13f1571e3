"""What every distillation method returns, and how it is saved.

A distilled set is itself a store (train split only), so every command that takes a dataset takes
a distilled set. Synthetic values are saved in the source store's units (frames on the 0..255
scale, spectrograms in dB) as float32, unclipped, with the source's normalisation constants, so
loading normalises them back exactly as real data; coreset selections keep the source dtype.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avdd.data.store import Store, write_store
from avdd.training.factor import Factor
from avdd.version import code_version

LOG_FILE = "distill_log.json"


@dataclass
class SyntheticSet:
    """Stored samples per modality (in the source's stored units), their labels, and how to use them.

    ``factor``: each stored sample holds factor × factor tiles that train as factor² samples, or
    one such factor per modality (see training/factor.py; 1: none).
    """

    data: dict[str, torch.Tensor]
    labels: torch.Tensor
    factor: Factor = 1
    details: dict[str, Any] = field(default_factory=dict)  # method-specific provenance
    log: dict[str, Any] = field(default_factory=dict)  # per-iteration losses, evaluations (saved beside)

    def cpu(self) -> SyntheticSet:
        return replace(self, data={m: x.detach().cpu() for m, x in self.data.items()}, labels=self.labels.cpu())


def merge_shards(parts: Sequence[SyntheticSet]) -> SyntheticSet:
    """One set from sets of disjoint classes (one per process), ordered as a serial run orders it:
    by class, each class's samples in their own order. Per-iteration losses are sums over classes,
    so the whole set's loss at an iteration is the sum of the shards' (up to float rounding)."""
    labels = torch.cat([p.labels for p in parts])
    order = torch.argsort(labels, stable=True)
    data = {m: torch.cat([p.data[m] for p in parts])[order] for m in parts[0].data}
    log = dict(parts[0].log)
    if "losses" in log:
        rows = zip(*(p.log["losses"] for p in parts), strict=True)
        log["losses"] = [{k: v if k == "iteration" else sum(r[k] for r in row) for k, v in row[0].items()}
                         for row in rows]
    return SyntheticSet(data, labels[order], factor=parts[0].factor, details=parts[0].details, log=log)


def save_synthetic(
    synthetic: SyntheticSet,
    out: str | Path,
    source: Store,
    *,
    provenance: Mapping[str, Any],
    overwrite: bool = False,
) -> Store:
    """Write ``synthetic`` as a train-only store with ``provenance`` (method, settings, seed, …)."""
    modalities = {}
    arrays: dict[str, np.ndarray] = {"labels": synthetic.labels.cpu().numpy().astype(np.int64)}
    for m, x in synthetic.data.items():
        spec = source.modalities[m]
        array = x.detach().cpu().numpy()
        if array.dtype != np.dtype(spec.dtype):
            array = array.astype(np.float32)
            spec = replace(spec, dtype="float32")
        modalities[m] = spec
        arrays[m] = array
    meta_provenance = {
        **provenance,
        "factor": synthetic.factor,
        "source_dataset": {"name": source.name, "path": str(source.path.resolve())},
        "code_version": code_version(),
        **synthetic.details,
    }
    return write_store(
        out, name=f"{source.name}-{provenance.get('method', 'distilled')}", class_names=source.class_names,
        modalities=modalities, splits={"train": arrays}, provenance=meta_provenance, overwrite=overwrite,
        # the log goes in before the store's rename: a store in place is a finished one, log included
        files={LOG_FILE: json.dumps(synthetic.log, indent=1) + "\n"} if synthetic.log else None,
    )
