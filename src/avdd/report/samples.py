"""What a distilled set's samples look like to a person: the training samples a network sees
(factorised sets decoded into their tiles), and how to draw each modality."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from avdd.data.store import IMAGE, SPECTROGRAM, ModalitySpec, Store
from avdd.ranges import check_settings
from avdd.seeding import generator
from avdd.training.factor import Factor, decoded_per_stored, expand_factor, factor_of, is_factorised
from avdd.training.inputs import read_stored


@dataclass(frozen=True)
class ClassSamples:
    """Per class, its training samples of each modality in the store's units (frames 0..255, dB)."""

    class_names: list[str]
    samples: list[dict[str, torch.Tensor]]  # [class] -> modality -> (n, C, H, W)


def training_samples(store: Store, modalities: Sequence[str] | None = None, max_per_class: int | None = None,
                     shuffle_seed: int | None = None) -> ClassSamples:
    """Up to ``max_per_class`` training samples per class as networks train on them: a factorised
    set's tiles upsampled into samples (decoding is linear, so decoding stored units equals
    denormalising decoded inputs). Only the samples shown are read: a large real store is fine.
    ``shuffle_seed``: a seeded random subset of each class rather than the first ones."""
    check_settings("sample", {"max_per_class": max_per_class, "seed": shuffle_seed})
    split = store.split("train")
    modalities = tuple(modalities or store.modalities)
    factor = factor_of(store)
    per_stored = decoded_per_stored(factor, modalities)
    stored_per_class = None if max_per_class is None else -(-max_per_class // per_stored)
    picks = []
    for c, pool in enumerate(split.class_indices):
        if shuffle_seed is not None:
            pool = pool[torch.randperm(len(pool), generator=generator(shuffle_seed, "report-samples", c)).numpy()]
        picks.append(pool[:stored_per_class])
    index = np.concatenate(picks)
    data = {m: read_stored(split, index, m).to(torch.float32) for m in modalities}
    labels = torch.from_numpy(np.asarray(split.labels[index]))
    return class_samples(data, labels, store.class_names, factor, max_per_class)


def class_samples(stored: Mapping[str, torch.Tensor], labels: torch.Tensor, class_names: Sequence[str],
                  factor: Factor = 1, max_per_class: int | None = None) -> ClassSamples:
    """Stored samples (store units; ``factor`` > 1: tiles, decoded here) grouped by class, up to
    ``max_per_class`` each; also used on a distillation's samples while it runs (avdd/tracking.py)."""
    data = {m: x.detach().to("cpu", torch.float32) for m, x in stored.items()}
    labels = labels.cpu()
    if is_factorised(factor):
        data, labels = expand_factor(data, labels, factor)
    per_class = []
    for c in range(len(class_names)):
        chosen = torch.nonzero(labels == c).flatten()[:max_per_class]
        per_class.append({m: x[chosen] for m, x in data.items()})
    return ClassSamples(list(class_names), per_class)


Image = tuple[np.ndarray, dict[str, Any]]  # pixels and matplotlib imshow arguments


def heatmap(spec: ModalitySpec, sample: torch.Tensor, cmap: str = "viridis", origin: str = "upper") -> Image:
    """First channel, coloured over the train split's mean ± 2.5 std (so sets compare by eye)."""
    mean, std = spec.mean[0], spec.std[0]
    low, high = (mean - 2.5 * std) / spec.scale, (mean + 2.5 * std) / spec.scale
    return sample[0].numpy(), {"cmap": cmap, "origin": origin, "vmin": low, "vmax": high, "aspect": "auto"}


def spectrogram(spec: ModalitySpec, sample: torch.Tensor) -> Image:
    """Mel bands upwards, time to the right, in dB."""
    return heatmap(spec, sample, cmap="magma", origin="lower")


def picture(spec: ModalitySpec, sample: torch.Tensor) -> Image:
    """Stored × scale is the picture in 0..1 (clipped: synthetic values may leave the range)."""
    pixels = (sample * spec.scale).clamp(0, 1)
    if pixels.shape[0] == 1:
        return pixels[0].numpy(), {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    return pixels[:3].permute(1, 2, 0).numpy(), {}


VIEWS: dict[str, Callable[[ModalitySpec, torch.Tensor], Image]] = {SPECTROGRAM: spectrogram, IMAGE: picture}


def view(spec: ModalitySpec, sample: torch.Tensor) -> Image:
    """How to draw one sample: as its modality's kind is drawn."""
    return VIEWS[spec.kind](spec, sample)
