"""The on-disk dataset store: ``meta.json`` plus one ``.npy`` per split and modality.

Layout of a store directory::

    meta.json                 name, classes, modalities (kind, shape, dtype, normalisation),
                              splits, provenance, format version
    {split}_labels.npy        int64 (N,)
    {split}_{modality}.npy    frames uint8 (N, C, H, W); spectrograms float16 (N, 1, n_mels, T)
    *.csv, *.json             reports and logs (skipped.csv, distill_log.json), if any

Split and modality names are plain names (letters, digits, ``_``, ``-``), checked on reading and on
writing, since they become file names. Arrays are opened memory-mapped, so a store larger than RAM
works. A store is built, extra files included, in a hidden temporary directory beside its
destination (``.{name}.partial-{pid}@{host}-*``) and renamed into place only when complete, so an
interrupted build never leaves anything that opens as a store; the next build of the same
destination removes the temporary directories of builds that died.
"""

from __future__ import annotations

import errno
import glob
import json
import math
import os
import re
import shutil
import socket
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeGuard, cast

import numpy as np
import torch

from avdd.errors import AvddError
from avdd.files import temp_dir
from avdd.formats import META_FILE, STORE_FORMAT
from avdd.outputs import check_store_output, commit_folder

FORMAT_VERSION = 1
# Split and modality names become file names ({split}_{modality}.npy): plain names only, so that no
# name from a CSV or a meta.json can reach outside the store ("../x") or hide a file (".x").
PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]+")
# What a modality holds, which decides how it is drawn, heard and fed; not its name (a store may call
# its spectrograms "sound" and its frames "rgb").
IMAGE = "image"  # pictures: frames, stored as uint8 pixels
SPECTROGRAM = "spectrogram"  # the audio front end's log-mel spectrograms in dB (avdd.data.audio)
KINDS = (IMAGE, SPECTROGRAM)


def check_name(value: object, what: str, where: str) -> str:
    """``value`` if it is a plain name (letters, digits, ``_``, ``-``); else one AvddError naming
    ``where`` (a file and line, or a store) and the value."""
    if not isinstance(value, str) or not PLAIN_NAME.fullmatch(value):
        raise AvddError(f"{where}: {what} {json.dumps(value)} is not a plain name (letters, digits, _ and - "
                        "only); it becomes a file name in the store")
    return value


@dataclass(frozen=True)
class ModalitySpec:
    """What one modality holds (``kind``, one of KINDS), its per-sample shape and storage dtype, and
    how to turn it into network input.

    Network input = (stored value * scale - mean[channel]) / std[channel].
    """

    kind: str = field(kw_only=True)
    shape: tuple[int, ...]
    dtype: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0

    def __post_init__(self) -> None:
        # ValueErrors name the field; open_store adds the file and the modality
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {_show(self.kind)}")
        if not self.shape or not all(_is_int(s) and s > 0 for s in self.shape):
            raise ValueError(f"shape must be a list of positive integers, got {_show(list(self.shape))}")
        if _dtype_kind(self.dtype) not in NUMERIC_KINDS:
            raise ValueError(f"dtype must be a numeric type such as uint8 or float16, got {_show(self.dtype)}")
        channels = self.shape[0]
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, channels):
                raise ValueError(f"{name} needs 1 or {channels} values, got {_show(list(getattr(self, name)))}")
        if not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"mean must be finite, got {_show(list(self.mean))}")
        # a NaN std compares false with 0, so "not > 0" (not "<= 0") is what catches it
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ValueError(f"std must be finite and positive, got {_show(list(self.std))}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be finite and positive, got {_show(self.scale)}")

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
    def from_json(cls, data: object, name: str) -> ModalitySpec:
        """The spec ``data`` (meta.json's entry of modality ``name``) describes; a ValueError naming
        the field if it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"must be an object with shape, dtype, mean and std, got {_show(data)}")
        missing = [k for k in ("shape", "dtype", "mean", "std") if k not in data]
        if missing:
            raise ValueError(f"{missing[0]} is missing")
        if not isinstance(data["dtype"], str):
            raise ValueError(f"dtype must be a string such as uint8 or float16, got {_show(data['dtype'])}")
        return cls(
            kind=data.get("kind", legacy_kind(name)),
            shape=tuple(_items(data, "shape", _is_int, "integers")),
            dtype=data["dtype"],
            mean=tuple(float(m) for m in _items(data, "mean", _is_real, "numbers")),
            std=tuple(float(s) for s in _items(data, "std", _is_real, "numbers")),
            scale=float(_real(data.get("scale", 1.0), "scale")),
        )


def legacy_kind(name: str) -> str:
    """The kind of modality ``name`` in a store written before modalities declared one: every such
    store avdd wrote named its spectrograms "audio" and its frames "frame", and report and listen
    told them apart by that name, so this keeps what they did."""
    return SPECTROGRAM if name == "audio" else IMAGE


NUMERIC_KINDS = ("b", "i", "u", "f")  # bool, signed, unsigned, float: what np.load reads without pickle


def _show(value: object) -> str:
    """``value`` as meta.json would spell it (repr for what JSON cannot hold)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _is_int(value: object) -> TypeGuard[int | np.integer]:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: object) -> TypeGuard[int | float | np.integer | np.floating]:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _real(value: object, key: str) -> float:
    if not _is_real(value):
        raise ValueError(f"{key} must be a number, got {_show(value)}")
    return float(value)


def _items(data: Mapping[str, Any], key: str, is_item: Any, what: str) -> list[Any]:
    """``data[key]`` if it is a list of ``what`` (a string "12" is not a shape of (1, 2))."""
    value = data[key]
    if not isinstance(value, list) or not all(is_item(v) for v in value):
        raise ValueError(f"{key} must be a list of {what}, got {_show(value)}")
    return value


def _dtype_kind(dtype: object) -> str:
    try:
        return np.dtype(dtype).kind  # type: ignore[call-overload]
    except TypeError:
        return ""


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
        self.modalities = {k: ModalitySpec.from_json(v, k) for k, v in self.meta["modalities"].items()}
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


def _require(ok: bool | np.bool_, where: str, key: str, expected: str, value: object) -> None:
    if not ok:
        raise AvddError(f"{where}: {key} must be {expected}, got {_show(value)}")


def check_meta(meta: object, where: str) -> None:
    """One AvddError naming ``where`` and the field when ``meta`` is not a store description this
    avdd reads: a field of the wrong type, a split or modality that is not a plain name, two arrays
    with one file name, non-finite statistics. Both reading and writing a store check this."""
    if not isinstance(meta, dict) or meta.get("format") != STORE_FORMAT:
        raise AvddError(f"{where}: not an avdd store description")
    version = meta.get("format_version")
    _require(_is_int(version) and version >= 1, where, "format_version", "a whole number >= 1", version)
    if cast(int, version) > FORMAT_VERSION:  # an int: _require raised otherwise
        raise AvddError(f"{where}: store format version {version} is newer than this avdd supports "
                        f"({FORMAT_VERSION}); upgrade avdd")
    _require(isinstance(meta.get("name"), str), where, "name", "a string", meta.get("name"))
    classes = meta.get("classes")
    _require(isinstance(classes, list) and bool(classes) and all(isinstance(c, str) for c in classes)
             and len(set(classes)) == len(classes), where, "classes", "a list of distinct class names", classes)
    splits, modalities = meta.get("splits"), meta.get("modalities")
    _require(isinstance(splits, dict), where, "splits", "an object of split name: sample count", splits)
    _require(isinstance(modalities, dict) and bool(modalities), where, "modalities",
             "an object of modality name: {kind, shape, dtype, mean, std}", modalities)
    splits, modalities = cast(dict, splits), cast(dict, modalities)  # dicts: _require raised otherwise
    for split, n in splits.items():
        check_name(split, "split", where)
        _require(_is_int(n) and n >= 0, where, f"splits.{split}", "a sample count (a whole number >= 0)", n)
    for m, spec in modalities.items():
        check_name(m, "modality", where)
        try:
            ModalitySpec.from_json(spec, m)
        except ValueError as err:
            raise AvddError(f"{where}: modalities.{m}: {err}") from None
    _require(isinstance(meta.get("provenance", {}), dict), where, "provenance", "an object", meta.get("provenance"))
    _check_file_names(list(splits), list(modalities), where)


def _check_file_names(splits: list[str], modalities: list[str], where: str) -> None:
    """Refuse names under which two arrays would share a file (split "a_b" with modality "c", and
    split "a" with modality "b_c"; or a modality called "labels")."""
    owners: dict[str, str] = {}
    for split in splits:
        files = [(labels_file(split), f"labels of split {split!r}")]
        files += [(array_file(split, m), f"modality {m!r} of split {split!r}") for m in modalities]
        for file, owner in files:
            if file in owners:
                raise AvddError(f"{where}: the {owners[file]} and the {owner} would both be stored as {file}; "
                                "rename a split or a modality")
            owners[file] = owner


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
    except (OSError, ValueError) as err:  # ValueError: bad JSON, or bytes that are not UTF-8
        raise AvddError(f"{meta_path}: unreadable ({err}); rebuild the store") from None
    check_meta(meta, str(meta_path))
    store = Store(path, meta)
    store.validate()
    return store


class StoreWriter:
    """Builds a store in a temporary directory beside ``out``; :meth:`commit` renames it into place.

    Arrays are pre-allocated memory-mapped files, so they can be filled incrementally; their disk
    space is reserved when they are created, so a full disk is an AvddError then. Leaving the
    ``with`` block by an exception removes the temporary directory. The temporary directory's name
    holds the builder's pid and host, so the next build of ``out`` removes those of killed builds.
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
        self.meta: dict[str, Any] = {
            "format": STORE_FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "classes": list(class_names),
            "modalities": {m: spec.to_json() for m, spec in modalities.items()},
            "splits": dict(split_sizes),
            "provenance": dict(provenance or {}),
        }
        check_meta(self.meta, str(self.out))  # before anything is created: what is written must open
        if len(class_names) == 1:
            warnings.warn(f"{self.out}: the store has a single class ({class_names[0]!r}); recognition on it "
                          "is trivially 100% and distillation has no classes to tell apart", stacklevel=2)
        check_store_output(self.out, overwrite)  # --overwrite replaces only what avdd made (avdd/outputs.py)
        self.overwrite = overwrite
        self.out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.out)
        self.tmp = temp_dir(self.out.parent, _partial_prefix(self.out))
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
            try:
                self._arrays[filename] = _reserved_memmap(self.tmp / filename, shape, np.dtype(dtype))
            except OSError as err:
                raise AvddError(f"{self.out}: cannot reserve {_size(shape, dtype)} for {filename} "
                                f"({err.strerror or err}); free disk space or choose another --out") from None
        return self._arrays[filename]

    def add_file(self, name: str, text: str) -> None:
        """Add a text file (a report, a log) to the store; it is renamed into place with the arrays."""
        if name != Path(name).name or name.startswith(".") or name == META_FILE or name.endswith(".npy"):
            raise ValueError(f"{name!r} is not a name a store's extra file may have")
        self._write(name, text)

    def _write(self, name: str, text: str) -> None:
        try:
            (self.tmp / name).write_text(text, encoding="utf-8", newline="")  # newline="": CSV's \r\n as is
        except OSError as err:
            raise AvddError(f"{self.out}: cannot write {name} ({err.strerror or err}); free disk space or "
                            "choose another --out") from None

    def commit(self) -> Store:
        """Flush arrays, write ``meta.json`` last, and move the directory into place."""
        for split in self.meta["splits"]:
            self.labels(split)
            for m in self.modalities:
                self.array(split, m)
        for arr in self._arrays.values():
            arr.flush()
        self._arrays.clear()
        self._write(META_FILE, json.dumps(self.meta, indent=2) + "\n")
        # never deletes what appeared at out meanwhile; the replaced store waits as a partial until then
        commit_folder(self.tmp, self.out, self.overwrite, aside_prefix=_partial_prefix(self.out))
        return open_store(self.out)

    def abort(self) -> None:
        self._arrays.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()


def _partial_prefix(out: Path) -> str:
    return f".{out.name}.partial-{os.getpid()}@{_host()}-"  # mkdtemp adds 8 of [a-z0-9_]


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or no pid at all): not ours to judge, keep its folder
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove the temporary directories that killed builds of ``out`` on this host left beside it:
    only directories named as :class:`StoreWriter` names them, whose builder's pid is gone."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.partial-([1-9][0-9]*)@([A-Za-z0-9._-]+)-[a-z0-9_]{{8}}")
    removed = []
    for path in out.parent.glob(f".{glob.escape(out.name)}.partial-*"):
        match = pattern.fullmatch(path.name)
        if (match and match[2] == _host() and path.is_dir() and not path.is_symlink()
                and not _alive(int(match[1]))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _size(shape: tuple[int, ...], dtype: str | np.dtype) -> str:
    size, unit = float(math.prod(shape) * np.dtype(dtype).itemsize), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.0f} B" if unit == "B" else f"{size:.1f} {unit}"


def _reserved_memmap(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.memmap:
    """A new ``.npy`` file (the bytes ``np.save`` writes) mapped for writing, its blocks reserved
    before it is mapped: writing through a map of a sparse file on a full disk kills the process
    with SIGBUS, where reserving raises an OSError here."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    nbytes = math.prod(shape) * dtype.itemsize
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        offset = f.tell()
        _reserve(f, offset, nbytes)
    if nbytes == 0:  # nothing to map (mmap refuses a length of 0)
        return np.lib.format.open_memmap(path, mode="r+")
    return np.memmap(path, dtype=dtype, mode="r+", shape=shape, offset=offset)


def _reserve(f: Any, offset: int, nbytes: int) -> None:
    """Allocate ``nbytes`` of ``f`` from ``offset``: posix_fallocate where the system has it, else
    zeros written out (slower, as sure)."""
    if nbytes == 0:
        return
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(f.fileno(), offset, nbytes)
            return
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # unsupported here: fall back
                raise
    chunk = bytes(min(nbytes, 1 << 24))
    f.seek(offset)
    for start in range(0, nbytes, len(chunk)):
        f.write(chunk[: nbytes - start])
    f.flush()
    os.fsync(f.fileno())  # a full disk shows up now, not when the data is written back


def write_store(
    out: str | Path,
    *,
    name: str,
    class_names: list[str],
    modalities: Mapping[str, ModalitySpec],
    splits: Mapping[str, Mapping[str, np.ndarray]],
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    files: Mapping[str, str] | None = None,
) -> Store:
    """Write in-memory arrays as a store. ``splits[split]`` maps "labels" and each modality to arrays;
    ``files`` maps file names to text the store holds beside them (see :meth:`StoreWriter.add_file`)."""
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
        for file, text in (files or {}).items():
            writer.add_file(file, text)
        return writer.commit()
