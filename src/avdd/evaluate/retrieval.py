"""Cross-modal retrieval: how well networks trained on a set align the two modalities of real pairs.

Networks are trained with the recognition protocol (ensemble head) on exactly two modalities (the
configuration's, else the store's). On a seeded, class-stratified subset of K real test pairs, each
modality is embedded into the shared space of its own classifier head (softmax probabilities, or
logits), and each query of one modality ranks the K samples of the other by cosine similarity, in
both directions: for audio and frames, each audio query ranks the K frames (A→V, ``a2v``) and each
frame query the K audios (V→A, ``v2a``). Reported: R@1, R@5 and the median rank of the true
partner, mean ± population std over networks × subsets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from avdd.data.store import IMAGE, SPECTROGRAM, Split, Store, open_store
from avdd.device import resolve_device
from avdd.distributed import current, spread
from avdd.errors import AvddError
from avdd.evaluate.recognition import check_compatible, summarise
from avdd.evaluate.retrieval_metrics import partner_ranks, retrieval_scores
from avdd.models.fusion import AVClassifier
from avdd.ranges import check_settings
from avdd.seeding import generator
from avdd.training.inputs import load_batch, load_training_set
from avdd.training.protocol import EvalConfig, train_fresh_network

LETTERS = {SPECTROGRAM: "a", IMAGE: "v"}  # a direction's name by kinds: a2v = spectrograms query images
SPACES = ("probabilities", "logits")


def directions(store: Store, modalities: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Both directions between the two ``modalities`` of ``store``, each (query, target), named by
    their kinds (a2v, v2a) where the kinds differ, else by the modalities' names (left2right)."""
    if len(modalities) != 2:
        raise AvddError(f"retrieval needs exactly two modalities, one to query and one to rank; got "
                        f"{len(modalities)}: {', '.join(modalities)}")
    first, second = modalities
    letters = {m: LETTERS[store.modalities[m].kind] for m in modalities}
    short = letters if letters[first] != letters[second] else {m: m for m in modalities}
    return {f"{short[q]}2{short[t]}": (q, t) for q, t in ((first, second), (second, first))}


def stratified_subset(split: Split, k: int, seed: int, draw: int) -> np.ndarray:
    """``k`` test indices, classes as balanced as possible (round-robin over shuffled classes)."""
    if not 1 <= k <= len(split):
        raise AvddError(f"--subset must be between 1 and the test split's {len(split)} samples, got {k}")
    g = generator(seed, "retrieval-subset", draw)
    pools = [pool[torch.randperm(len(pool), generator=g).numpy()] for pool in split.class_indices]
    class_order = torch.randperm(len(pools), generator=g).tolist()
    picked: list[int] = []
    depth = 0
    while len(picked) < k:
        for c in class_order:
            if depth < len(pools[c]) and len(picked) < k:
                picked.append(int(pools[c][depth]))
        depth += 1
    return np.array(picked)


@torch.no_grad()
def embed_pairs(model: AVClassifier, split: Split, index: np.ndarray, device: torch.device,
                space: str) -> dict[str, torch.Tensor]:
    """Per modality, its own classifier head's output on the samples ``index`` (ensemble head)."""
    model.eval()
    logits = model(load_batch(split, index, model.modalities, device))
    return {m: (z.softmax(dim=1) if space == "probabilities" else z).cpu() for m, z in logits.items()}


@dataclass
class RetrievalResult:
    config: EvalConfig
    subset: int
    subsets: int
    space: str
    scores: dict[str, dict[str, list[float]]]  # direction -> metric -> runs (network-major)
    seconds: list[float]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for direction, metrics in self.scores.items():
            out[direction] = {}
            for metric, runs in metrics.items():
                mean, std = summarise(runs)
                out[direction][metric] = {"mean": mean, "std": std, "runs": runs}
        return {**out, "subset": self.subset, "subsets": self.subsets, "space": self.space,
                "std_kind": "population", "seconds": self.seconds, "config": self.config.to_json()}


def evaluate_retrieval(
    train: str | Path | Store,
    test: str | Path | Store,
    config: EvalConfig | None = None,
    *,
    subset: int = 150,
    subsets: int = 1,
    space: str = "probabilities",
    device: str | torch.device | None = "cpu",
    progress: bool = True,
) -> RetrievalResult:
    """Train ``config.num_eval`` networks on ``train``; score retrieval on ``subsets`` subsets each.
    The two modalities are ``config.modalities``, or without a ``config`` those of ``train``.

    Under a process group the networks are spread over the processes, as in ``evaluate_recognition``.
    """
    if space not in SPACES:
        raise AvddError(f"unknown embedding space {space!r}; known: {', '.join(SPACES)}")
    check_settings("retrieval", {"subset": subset, "subsets": subsets})  # 0 subsets would average nothing: NaN
    device = resolve_device(device)
    train_store = train if isinstance(train, Store) else open_store(train)
    test_store = test if isinstance(test, Store) else open_store(test)
    config = replace(config or EvalConfig(modalities=tuple(train_store.modalities)), fusion="ensemble")
    check_compatible(train_store, test_store, config.modalities)
    named = directions(train_store, config.modalities)
    test_split = test_store.split("test")
    draws = [stratified_subset(test_split, subset, config.seed, j) for j in range(subsets)]
    inputs, labels = load_training_set(train_store, config.modalities, device, config.memory_format)
    bar = tqdm(total=len(current().share(config.num_eval)) * config.epochs, disable=not progress, unit="epoch",
               desc="retrieval")

    def network(run: int) -> tuple[list[dict[str, dict[str, float]]], float]:
        """Network ``run``'s scores per subset (direction -> metric -> value) and its time."""
        start = time.perf_counter()
        model = train_fresh_network(train_store, inputs, labels, config, run, device, bar)
        per_subset = []
        for index in draws:
            embedded = embed_pairs(model, test_split, index, device, space)
            per_subset.append({direction: retrieval_scores(partner_ranks(embedded[query], embedded[target]))
                               for direction, (query, target) in named.items()})
        return per_subset, time.perf_counter() - start

    with bar:
        results = spread(config.num_eval, network)
    scores: dict[str, dict[str, list[float]]] = {d: {"r1": [], "r5": [], "medr": []} for d in named}
    for per_subset, _ in results:  # network-major, as the runs are listed
        for subset_scores in per_subset:
            for direction, metrics in subset_scores.items():
                for metric, value in metrics.items():
                    scores[direction][metric].append(value)
    return RetrievalResult(config, subset, subsets, space, scores, [s for _, s in results])


def format_summary(result: RetrievalResult) -> Sequence[str]:
    rows = result.to_json()
    lines = []
    for direction in result.scores:
        r = rows[direction]
        lines.append(f"{direction.upper()}: R@1 {100 * r['r1']['mean']:.1f} ± {100 * r['r1']['std']:.1f} %, "
                     f"R@5 {100 * r['r5']['mean']:.1f} ± {100 * r['r5']['std']:.1f} %, "
                     f"median rank {r['medr']['mean']:.1f} ± {r['medr']['std']:.1f} (of {result.subset})")
    return lines
