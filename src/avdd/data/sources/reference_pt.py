"""reference-pt: the original authors' prepared ``.pt`` files, converted to a store as they are.

Their layout: a dict with ``audio_{split}`` float (N, 1, 128, 56) log-mels, ``images_{split}``
(N, 3, H, W) as uint8 or as float holding 0..255, ``labels_{split}`` integer (N,), and optionally
``classes`` (names). ``--train`` provides the ``_train`` keys and ``--test`` the ``_test`` ones.
Frames are stored as uint8 with the paper's normalisation; audio mean/std come from the train
split. Files are memory-mapped where torch allows, and converted in chunks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from avdd.data.audio import SPECTROGRAM_SHAPE
from avdd.data.prepare import FRAME_MEAN, FRAME_STD
from avdd.data.sources.registry import PREPARE_SOURCES, DatasetSource, Option
from avdd.data.store import IMAGE, SPECTROGRAM, ModalitySpec, Store, StoreWriter
from avdd.errors import AvddError, first_line
from avdd.files import load_untrusted

CHUNK = 256


def load_reference(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise AvddError(f"{path}: no such file")
    try:
        try:
            data = load_untrusted(path, mmap=True)
        except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
            data = load_untrusted(path)
    except Exception as err:
        raise AvddError(f"{path}: not a readable torch file ({type(err).__name__}: {first_line(err)})") from None
    if not isinstance(data, dict):
        raise AvddError(f"{path}: expected a dict of tensors, got {type(data).__name__}")
    return data


def split_tensors(data: dict[str, Any], split: str, path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(audio, images, labels) of one split, checked against the reference layout."""
    keys = [f"audio_{split}", f"images_{split}", f"labels_{split}"]
    missing = [k for k in keys if not isinstance(data.get(k), torch.Tensor)]
    if missing:
        raise AvddError(f"{path}: no tensor {', '.join(missing)}; is this the authors' {split} file?")
    audio, images, labels = (data[k] for k in keys)
    n = len(labels)
    if labels.dim() != 1 or labels.is_floating_point():
        raise AvddError(f"{path}: labels_{split} must be a 1-D integer tensor, got {labels.dtype}{list(labels.shape)}")
    if tuple(audio.shape) != (n, *SPECTROGRAM_SHAPE):
        raise AvddError(f"{path}: audio_{split} is {list(audio.shape)}, expected [{n}, 1, 128, 56]")
    if images.dim() != 4 or images.shape[0] != n or images.shape[1] != 3:
        raise AvddError(f"{path}: images_{split} is {list(images.shape)}, expected [{n}, 3, H, W]")
    return audio, images, labels


def to_uint8(images: torch.Tensor, path: Path) -> np.ndarray:
    """uint8 frames as they are; float frames must hold 0..255 (the authors divide by 255 on load)."""
    if images.dtype == torch.uint8:
        return images.numpy()
    low, high = float(images.min()), float(images.max())
    if not (low >= -0.5 and high <= 255.5):  # written so that NaN (which compares false) is refused too
        raise AvddError(f"{path}: images hold values in [{low:.3g}, {high:.3g}], expected 0..255; "
                        "normalised frames cannot be imported")
    return images.float().round().clamp(0, 255).to(torch.uint8).numpy()


def class_names(data: dict[str, Any], num_classes: int) -> list[str]:
    names = data.get("classes")
    # the authors' VGG file stores CSV column names here, so use it only when it fits
    if isinstance(names, list | tuple) and len(names) == num_classes and len(set(map(str, names))) == num_classes:
        return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


def import_reference(out: str | Path, *, train: Path, test: Path, overwrite: bool = False,
                     progress: bool = True, provenance: dict[str, Any] | None = None) -> Store:
    """Convert the authors' train and test ``.pt`` files into a store at ``out``; ``provenance``
    adds to what the store records (where a downloading source got the files)."""
    files = {"train": (Path(train), load_reference(Path(train))), "test": (Path(test), load_reference(Path(test)))}
    tensors = {split: split_tensors(data, split, path) for split, (path, data) in files.items()}
    num_classes = 1 + max(int(labels.max()) for _, _, labels in tensors.values() if len(labels))
    if min(int(labels.min()) for _, _, labels in tensors.values() if len(labels)) < 0:
        raise AvddError(f"{train}, {test}: negative labels")
    train_audio = tensors["train"][0]
    sums = [(float(c.double().sum()), float((c.double() ** 2).sum())) for c in train_audio.split(CHUNK)]
    count = train_audio.numel()
    mean, mean_sq = sum(s for s, _ in sums) / count, sum(q for _, q in sums) / count
    if not (math.isfinite(mean) and math.isfinite(mean_sq)):  # any NaN or inf makes a sum non-finite
        raise AvddError(f"{train}: audio_train holds NaN or inf values; the file is corrupt")
    std = float(np.sqrt(max(mean_sq - mean**2, 0.0))) or 1.0
    height, width = tensors["train"][1].shape[2:]
    modalities = {
        "audio": ModalitySpec(SPECTROGRAM_SHAPE, "float16", (mean,), (std,), kind=SPECTROGRAM),
        "frame": ModalitySpec((3, height, width), "uint8", FRAME_MEAN, FRAME_STD, scale=1 / 255, kind=IMAGE),
    }
    files_used = {"source": "reference-pt", "train": str(Path(train).resolve()), "test": str(Path(test).resolve())}
    with StoreWriter(out, name="reference-pt", class_names=class_names(files["train"][1], num_classes),
                     modalities=modalities, split_sizes={s: len(t[2]) for s, t in tensors.items()},
                     provenance={**files_used, **(provenance or {})}, overwrite=overwrite) as writer:
        for split, (audio, images, labels) in tensors.items():
            if tuple(images.shape[2:]) != (height, width):
                raise AvddError(f"{files[split][0]}: frames are {list(images.shape[2:])}, "
                                f"train's are {[height, width]}")
            writer.labels(split)[:] = labels.numpy()
            for start in tqdm(range(0, len(labels), CHUNK), desc=split, unit="chunk", disable=not progress):
                stop = start + CHUNK
                chunk = audio[start:stop].numpy()
                if not np.isfinite(chunk).all():
                    raise AvddError(f"{files[split][0]}: audio_{split} holds NaN or inf values; the file is corrupt")
                writer.array(split, "audio")[start:stop] = chunk.astype(np.float16)
                writer.array(split, "frame")[start:stop] = to_uint8(images[start:stop], files[split][0])
        return writer.commit()


PREPARE_SOURCES.add(
    "reference-pt",
    DatasetSource(
        "reference-pt",
        "the original authors' prepared .pt files (audio_/images_/labels_ train and test)",
        import_reference,
        (
            Option("train", Path, None, "the authors' train .pt file", required=True),
            Option("test", Path, None, "the authors' test .pt file", required=True),
        ),
    ),
)
