"""The on-disk dataset store: ``meta.json`` plus one ``.npy`` per split and modality.

Layout of a store directory::

    meta.json                 name, classes, modalities (shape, dtype, normalisation), splits,
                              provenance, format version
    {split}_labels.npy        int64 (N,)
    {split}_{modality}.npy    frames uint8 (N, C, H, W); spectrograms float16 (N, 1, n_mels, T)

Arrays are opened memory-mapped, so a store larger than RAM works. A store is built in a hidden
temporary directory beside its destination and renamed into place only when complete, so an
interrupted build never leaves anything that opens as a store.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avdd.errors import AvddError

FORMAT = "avdd-store"
FORMAT_VERSION = 1
META_FILE = "meta.json"


@dataclass(frozen=True)
class ModalitySpec:
    """Per-sample shape and storage dtype of one modality, and how to turn it into network input.

    Network input = (stored value * scale - mean[channel]) / std[channel].
    """

    shape: tuple[int, ...]
    dtype: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0

    def __post_init__(self) -> None:
        channels = self.shape[0]
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, channels):
                raise ValueError(f"{name} needs 1 or {channels} values, got {getattr(self, name)}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    def _stats(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        view = (-1,) + (1,) * (len(self.shape) - 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(view)
        std = torch.tensor(self.std, dtype=torch.float32, device=device).view(view)
        return mean, std

    def normalise(self, stored: torch.Tensor) -> torch.Tensor:
        """Stored values (any dtype, on any device) -> float32 network input on that device."""
        mean, std = self._stats(stored.device)
        return (stored.to(torch.float32) * self.scale - mean) / std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> float32 values in the stored units (frames: 0..255)."""
        mean, std = self._stats(x.device)
        return (x.to(torch.float32) * std + mean) / self.scale

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModalitySpec:
        return cls(
            shape=tuple(int(s) for s in data["shape"]),
            dtype=str(data["dtype"]),
            mean=tuple(float(m) for m in data["mean"]),
            std=tuple(float(s) for s in data["std"]),
            scale=float(data.get("scale", 1.0)),
        )


def array_file(split: str, modality: str) -> str:
    return f"{split}_{modality}.npy"


def labels_file(split: str) -> str:
    return f"{split}_labels.npy"


class Split:
    """One split of a store: memory-mapped arrays per modality plus labels."""

    def __init__(self, store: Store, name: str, labels: np.ndarray, arrays: dict[str, np.ndarray]):
        self.store = store
        self.name = name
        self.labels = labels
        self.arrays = arrays

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @cached_property
    def class_indices(self) -> list[np.ndarray]:
        """Sample indices of each class, in store order."""
        order = np.argsort(self.labels, kind="stable")
        bounds = np.searchsorted(self.labels[order], np.arange(self.store.num_classes + 1))
        return [order[bounds[c] : bounds[c + 1]] for c in range(self.store.num_classes)]

    def class_counts(self) -> list[int]:
        return [len(ix) for ix in self.class_indices]


@dataclass
class Store:
    """An opened store. Use :func:`open_store` to get one."""

    path: Path
    meta: dict[str, Any]
    modalities: dict[str, ModalitySpec] = field(init=False)

    def __post_init__(self) -> None:
        self.modalities = {k: ModalitySpec.from_json(v) for k, v in self.meta["modalities"].items()}
        self._splits: dict[str, Split] = {}

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def split_sizes(self) -> dict[str, int]:
        return dict(self.meta["splits"])

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.meta.get("provenance", {}))

    def split(self, name: str) -> Split:
        if name not in self.split_sizes:
            known = ", ".join(self.split_sizes) or "none"
            raise AvddError(f"{self.path}: store has no {name!r} split (it has: {known})")
        if name not in self._splits:
            self._splits[name] = self._open_split(name)
        return self._splits[name]

    def _open_split(self, name: str) -> Split:
        n = self.split_sizes[name]
        labels = _open_array(self.path / labels_file(name), (n,), "int64")
        if n and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise AvddError(
                f"{self.path / labels_file(name)}: labels outside 0..{self.num_classes - 1}; "
                "the store is corrupt, rebuild it"
            )
        arrays = {
            m: _open_array(self.path / array_file(name, m), (n, *spec.shape), spec.dtype)
            for m, spec in self.modalities.items()
        }
        return Split(self, name, labels, arrays)

    def validate(self) -> None:
        """Open every split so that truncated or mismatched arrays are reported now."""
        for name in self.split_sizes:
            self.split(name)


def _open_array(path: Path, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if not path.is_file():
        raise AvddError(f"{path}: array file missing; the store is incomplete, rebuild it")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise AvddError(f"{path}: unreadable or truncated array ({err}); rebuild the store") from None
    if array.shape != shape or array.dtype != np.dtype(dtype):
        raise AvddError(
            f"{path}: holds {array.dtype}{list(array.shape)} but meta.json says {dtype}{list(shape)}; "
            "the store is inconsistent, rebuild it"
        )
    return array


def open_store(path: str | Path) -> Store:
    """Open a store directory, checking its format and that its arrays match ``meta.json``."""
    path = Path(path)
    meta_path = path / META_FILE
    if not path.is_dir():
        raise AvddError(f"{path}: no such directory (expected a dataset store)")
    if not meta_path.is_file():
        raise AvddError(f"{path}: not a dataset store (no {META_FILE}); build one with `avdd data build`")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AvddError(f"{meta_path}: unreadable ({err}); rebuild the store") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AvddError(f"{meta_path}: not an avdd store description")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise AvddError(
            f"{meta_path}: store format version {version} is newer than this avdd supports "
            f"({FORMAT_VERSION}); upgrade avdd"
        )
    try:
        store = Store(path, meta)
        _ = store.class_names, store.split_sizes
    except (KeyError, TypeError, ValueError) as err:
        raise AvddError(f"{meta_path}: malformed store description ({err})") from None
    store.validate()
    return store


class StoreWriter:
    """Builds a store in a temporary directory beside ``out``; :meth:`commit` renames it into place.

    Arrays are pre-allocated memory-mapped files, so they can be filled incrementally. Leaving
    the ``with`` block by an exception removes the temporary directory.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        name: str,
        class_names: list[str],
        modalities: Mapping[str, ModalitySpec],
        split_sizes: Mapping[str, int],
        provenance: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.out = Path(out)
        if self.out.exists() and not overwrite:
            raise AvddError(f"{self.out}: already exists; choose another --out or pass --overwrite")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent))
        self.meta: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "classes": list(class_names),
            "modalities": {m: spec.to_json() for m, spec in modalities.items()},
            "splits": dict(split_sizes),
            "provenance": dict(provenance or {}),
        }
        self.modalities = dict(modalities)
        self._arrays: dict[str, np.memmap] = {}

    def array(self, split: str, modality: str) -> np.memmap:
        """The writable (N, *shape) array of one split and modality."""
        spec = self.modalities[modality]
        return self._alloc(array_file(split, modality), (self.meta["splits"][split], *spec.shape), spec.dtype)

    def labels(self, split: str) -> np.memmap:
        return self._alloc(labels_file(split), (self.meta["splits"][split],), "int64")

    def _alloc(self, filename: str, shape: tuple[int, ...], dtype: str) -> np.memmap:
        if filename not in self._arrays:
            self._arrays[filename] = np.lib.format.open_memmap(
                self.tmp / filename, mode="w+", dtype=dtype, shape=shape
            )
        return self._arrays[filename]

    def commit(self) -> Store:
        """Flush arrays, write ``meta.json`` last, and move the directory into place."""
        for split in self.meta["splits"]:
            self.labels(split)
            for m in self.modalities:
                self.array(split, m)
        for arr in self._arrays.values():
            arr.flush()
        self._arrays.clear()
        (self.tmp / META_FILE).write_text(json.dumps(self.meta, indent=2) + "\n")
        if self.out.exists():
            shutil.rmtree(self.out)
        os.replace(self.tmp, self.out)
        return open_store(self.out)

    def abort(self) -> None:
        self._arrays.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()


def write_store(
    out: str | Path,
    *,
    name: str,
    class_names: list[str],
    modalities: Mapping[str, ModalitySpec],
    splits: Mapping[str, Mapping[str, np.ndarray]],
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Store:
    """Write in-memory arrays as a store. ``splits[split]`` maps "labels" and each modality to arrays."""
    sizes = {s: len(arrays["labels"]) for s, arrays in splits.items()}
    with StoreWriter(
        out,
        name=name,
        class_names=class_names,
        modalities=modalities,
        split_sizes=sizes,
        provenance=provenance,
        overwrite=overwrite,
    ) as writer:
        for split, arrays in splits.items():
            writer.labels(split)[:] = arrays["labels"]
            for m in modalities:
                writer.array(split, m)[:] = arrays[m]
        return writer.commit()
