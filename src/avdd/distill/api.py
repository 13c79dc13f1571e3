"""``distill``: one call from a real store to a saved distilled store, with checkpoints and logs."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from avdd.data.store import Store, open_store
from avdd.distill.base import SyntheticSet, get_method, save_synthetic
from avdd.errors import AvddError
from avdd.evaluate.recognition import EvalConfig, evaluate_recognition, resolve_device


def checkpoint_path(out: Path) -> Path:
    return out.parent / f".{out.name}.checkpoint.pt"


def distill(
    data: str | Path,
    out: str | Path,
    method: str,
    *,
    modalities: Sequence[str],
    ipc: int,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    eval_every: int = 0,
    eval_config: EvalConfig | None = None,
    **settings: Any,
) -> Store:
    """Distill the train split of store ``data`` with ``method`` into the store ``out``.

    ``settings`` are the method's own (see ``get_method(method).settings``); None means default.
    Iterative methods checkpoint beside ``out`` and continue from there with ``resume``; with
    ``eval_every`` K > 0 the synthetic set is evaluated every K iterations (``eval_config``).
    """
    entry = get_method(method)
    given = {k: v for k, v in settings.items() if v is not None}
    unknown = sorted(set(given) - set(entry.settings))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise AvddError(f"method {method!r} does not take {flags}")
    if ipc < 1:
        raise AvddError(f"--ipc must be at least 1, got {ipc}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise AvddError(f"{out}: already exists; choose another --out or pass --overwrite")
    checkpoint = checkpoint_path(out)
    if checkpoint.exists() and not resume:
        raise AvddError(f"{checkpoint}: an interrupted run left a checkpoint; pass --resume to continue it "
                        "or delete the file to start over")
    store = open_store(data)
    missing = [m for m in modalities if m not in store.modalities]
    if missing:
        raise AvddError(f"{store.path}: no modality {missing[0]!r} (has: {', '.join(store.modalities)})")
    dev = resolve_device(device)
    evaluations: list[dict[str, Any]] = []

    def evaluate_now(run: Any) -> None:
        if eval_every > 0 and run.iteration % eval_every == 0:
            accuracy = _evaluate_synthetic(
                SyntheticSet(run.stored(), run.labels.cpu(), factor=run.config.factor), store,
                eval_config or EvalConfig(modalities=tuple(modalities)), dev)
            evaluations.append({"iteration": run.iteration, **accuracy})

    synthetic = entry.run(store, modalities=tuple(modalities), ipc=ipc, seed=seed, device=dev, progress=progress,
                          checkpoint=checkpoint, resume=resume, on_iteration=evaluate_now, **given)
    if evaluations:
        synthetic.log["evaluations"] = evaluations
    provenance = {"method": method, "ipc": ipc, "seed": seed, "modalities": list(modalities),
                  "settings": {k: str(v) if isinstance(v, Path) else v for k, v in given.items()}}  # JSON-safe
    saved = save_synthetic(synthetic, out, store, provenance=provenance, overwrite=overwrite)
    checkpoint.unlink(missing_ok=True)
    return saved


def _evaluate_synthetic(synthetic: SyntheticSet, source: Store, config: EvalConfig,
                        device: torch.device) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        saved = save_synthetic(synthetic, Path(tmp) / "set", source, provenance={"method": "intermediate"})
        result = evaluate_recognition(saved, source, config, device=device, progress=False)
    return {"mean": result.mean, "std": result.std, "runs": result.runs}
