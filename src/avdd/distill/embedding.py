"""Embeddings of a real training split for coreset selection, cached next to the store.

"trained": the encoders of a network trained on the whole training split with the recognition
protocol (the DC/DM papers' herding baseline); "random": randomly initialised encoders. The joint
embedding of several modalities is their per-modality L2-normalised features, concatenated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avdd.data.store import Store
from avdd.distill.checkpoint import store_cache_path
from avdd.distill.spec import check, setting
from avdd.errors import AvddError
from avdd.files import write_atomic
from avdd.models.fusion import AVClassifier, build_classifier
from avdd.training.inputs import load_batch, load_training_set
from avdd.training.protocol import EvalConfig, network_generators, train_network

EMBEDDING_SOURCES = ("trained", "random")


@dataclass(frozen=True)
class EmbeddingConfig:
    """The embedding network of herding and k-center (nested in their settings as ``embed_*``)."""

    source: str = field(default="trained", metadata=setting("embeddings for herding/k-center (and herding init): "
                                                            "trained or random encoders"))
    epochs: int = field(default=5, metadata=setting("epochs of the embedding network (cached next to the data store)"))
    seed: int = 0  # not a setting: one cached network serves every run's seed

    def __post_init__(self) -> None:
        check("embedding", self)
        if self.source not in EMBEDDING_SOURCES:
            raise AvddError(f"unknown embedding source {self.source!r}; known: {', '.join(EMBEDDING_SOURCES)}")


def joint_embedding(per_modality: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-modality L2-normalised features, concatenated (in the given modality order)."""
    return torch.cat([torch.nn.functional.normalize(f.double(), dim=1) for f in per_modality.values()], dim=1)


def _cache_path(store: Store, modalities: Sequence[str], config: EmbeddingConfig, eval_config: EvalConfig) -> Path:
    key = {"modalities": list(modalities), "embedding": vars(config), "eval": eval_config.to_json()}
    return store_cache_path(store, "embeddings", key).with_suffix(".npz")


@torch.no_grad()
def _embed(model: AVClassifier, store: Store, modalities: Sequence[str], device: torch.device,
           batch_size: int = 256) -> dict[str, np.ndarray]:
    split = store.split("train")
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {m: [] for m in modalities}
    for start in range(0, len(split), batch_size):
        index = np.arange(start, min(start + batch_size, len(split)))
        for m, f in model.features(load_batch(split, index, modalities, device)).items():
            chunks[m].append(f.float().cpu().numpy())
    return {m: np.concatenate(c) for m, c in chunks.items()}


def train_split_embeddings(
    store: Store,
    modalities: Sequence[str],
    config: EmbeddingConfig = EmbeddingConfig(),
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> torch.Tensor:
    """(N, D) joint embedding of every training sample, computed once per store and config."""
    device = torch.device(device)
    eval_config = replace(EvalConfig(), modalities=tuple(modalities), epochs=config.epochs, num_eval=1,
                          seed=config.seed)
    cache = _cache_path(store, modalities, config, eval_config)
    if cache.is_file():
        with np.load(cache) as saved:
            return joint_embedding({m: torch.from_numpy(saved[m]) for m in modalities})
    shapes = {m: store.modalities[m].shape for m in modalities}
    generators = network_generators(config.seed, 0, device)
    model = build_classifier(shapes, store.num_classes, generator=generators["init"]).to(device)
    if config.source == "trained":
        inputs, labels = load_training_set(store, modalities, device)
        with tqdm(total=config.epochs, desc="embedding encoders", disable=not progress, unit="epoch") as bar:
            train_network(model, inputs, labels, eval_config, generators, on_epoch=lambda loss: bar.update())
    features = _embed(model, store, modalities, device)
    # a read-only store: recompute next time; write_atomic's unique temporary name lets two runs
    # (seeds, methods) embed the same store at once
    with contextlib.suppress(AvddError):
        # float arrays: nothing to pickle (np.load reads them without); naming the flag also tells
        # mypy that no key of **features is it
        write_atomic(cache, lambda f: np.savez(f, allow_pickle=False, **features))
    return joint_embedding({m: torch.from_numpy(f) for m, f in features.items()})
