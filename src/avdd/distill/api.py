"""``distill``: one call from a real store to a saved distilled store, with checkpoints and logs.

Under a process group (``torchrun ... -m avdd distill``) a sharded method distills each process's
share of the classes, checkpointing per process, and the main process gathers the shares and
writes the one store; other methods run on the main process while the others wait.
"""

from __future__ import annotations

import glob
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from avdd import distributed
from avdd.data.store import Store, open_store
from avdd.device import resolve_device
from avdd.distill.registry import METHODS, MethodSpec, RunContext
from avdd.distill.result import SyntheticSet, merge_shards, save_synthetic
from avdd.distributed import Job
from avdd.errors import AvddError
from avdd.evaluate.recognition import evaluate_recognition
from avdd.outputs import check_store_output
from avdd.ranges import check_settings
from avdd.training.factor import decoded_per_stored, factor_of, is_factorised
from avdd.training.protocol import EvalConfig

IterationHook = Callable[[Any, dict[str, Any] | None], None]  # (the run, this iteration's evaluation or None)


def checkpoint_path(out: Path, job: Job = distributed.SERIAL) -> Path:
    """Where process ``job.rank`` of ``job.world_size`` checkpoints a run writing ``out``."""
    shard = "" if job.world_size == 1 else f".rank{job.rank}-of-{job.world_size}"
    return out.parent / f".{out.name}.checkpoint{shard}.pt"


def _check_checkpoints(out: Path, job: Job, resume: bool) -> None:
    """Refuse to start over a run's leftovers without --resume, or to resume them with another number
    of processes (their class shares would differ)."""
    found = sorted(out.parent.glob(f".{glob.escape(out.name)}.checkpoint*.pt"))
    if found and not resume:
        raise AvddError(f"{found[0]}: an interrupted run left a checkpoint; pass --resume to continue it "
                        "or delete the file to start over")
    ours = {checkpoint_path(out, Job(r, job.world_size)) for r in range(job.world_size)}
    foreign = [f for f in found if f not in ours]
    if foreign:
        raise AvddError(f"{foreign[0]}: left by a run with another number of processes; resume it with that "
                        f"number (this run has {job.world_size}) or delete the file to start over")


def distill(
    data: str | Path,
    out: str | Path,
    method: str,
    *,
    modalities: Sequence[str],
    ipc: int,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    eval_every: int = 0,
    eval_config: EvalConfig | None = None,
    on_iteration: IterationHook | None = None,
    **settings: Any,
) -> Store | None:
    """Distill the train split of store ``data`` with ``method`` into the store ``out``.

    ``settings`` are the method's own (``METHODS.get(method).setting_names``, flat: ``embed_epochs``);
    None means default; the provenance records those given (but for settings that cannot change the
    set, such as the real-mean cache folder).
    Iterative methods checkpoint beside ``out`` and continue from there with ``resume``; with
    ``eval_every`` K > 0 the synthetic set is evaluated every K iterations (``eval_config``).
    ``on_iteration(run, evaluation)`` is called after every iteration of an iterative method with
    the run (``.iteration``, ``.history``, ``.stored()``) and that iteration's evaluation or None
    (experiment tracking, avdd/tracking.py); it must not change the run.
    Under a process group every process calls this; the main process returns the store, the others
    None, after it is written.
    """
    entry = METHODS.get(method)
    chosen = entry.build(settings, method)  # names it does not take, values out of range: errors here
    check_settings("distillation", {"ipc": ipc, "seed": seed, "eval_every": eval_every})
    # the provenance records what changes the set: not where a cache was
    given = {k: v for k, v in settings.items() if v is not None and k not in entry.result_free}
    out = Path(out)
    check_store_output(out, overwrite)  # before the work, not only at the final rename
    job = distributed.current()
    _check_checkpoints(out, job, resume)
    distributed.barrier()  # no process writes a checkpoint before every process has looked for leftovers
    checkpoint = checkpoint_path(out, job)
    store = open_store(data)
    refuse_factorised(store)
    missing = [m for m in modalities if m not in store.modalities]
    if missing:
        raise AvddError(f"{store.path}: no modality {missing[0]!r} (has: {', '.join(store.modalities)})")
    dev = resolve_device(device)
    evaluations: list[dict[str, Any]] = []

    def after_iteration(run: Any) -> None:
        evaluation = None
        if eval_every > 0 and run.iteration % eval_every == 0:
            # every process of a sharded run gets here at the same iteration: all evaluate the whole set
            part = SyntheticSet(run.stored(), run.labels, factor=run.config.factor).cpu()
            accuracy = _evaluate_synthetic(merge_shards(distributed.gather_all(part)), store,
                                           eval_config or EvalConfig(modalities=tuple(modalities)), dev)
            evaluation = {"iteration": run.iteration, **accuracy}
            evaluations.append(evaluation)
        if on_iteration is not None:
            on_iteration(run, evaluation)

    context = RunContext(store, tuple(modalities), ipc, seed, dev, progress, checkpoint, resume, after_iteration)
    synthetic = _run_method(entry, job, context, chosen)
    saved = None
    if synthetic is not None:
        if evaluations:
            synthetic.log["evaluations"] = evaluations
        settings_json = {k: str(v) if isinstance(v, Path) else v for k, v in given.items()}  # e.g. mtt's experts
        provenance = {"method": method, "ipc": ipc, "seed": seed, "modalities": list(modalities),
                      "settings": settings_json, "world_size": job.world_size}
        saved = save_synthetic(synthetic, out, store, provenance=provenance, overwrite=overwrite)
    distributed.barrier()  # checkpoints go only once the store is written: a failed write can resume
    checkpoint.unlink(missing_ok=True)
    return saved


def refuse_factorised(store: Store) -> None:
    """Refuse a factorised distilled set as the data to distill (or train experts) on: each of its
    stored samples is a mosaic of tiles that only evaluation decodes, so it would pass as one sample."""
    factor = factor_of(store)
    if is_factorised(factor):
        source = store.provenance.get("source_dataset")
        path = source.get("path") if isinstance(source, dict) else None
        raise AvddError(f"{store.path}: a factorised distilled set "
                        f"({decoded_per_stored(factor, store.modalities)} tiles per stored sample) "
                        "cannot be --data; evaluate it, or use its source store" + (f" {path}" if path else ""))


def _run_method(entry: MethodSpec, job: Job, context: RunContext, settings: Any) -> SyntheticSet | None:
    """The whole synthetic set on the main process, None on the others."""
    if not entry.sharded:
        if not job.is_main:
            return None
        with distributed.solo():
            return entry.run(context, settings)
    part = entry.run(context, settings)
    parts = distributed.gather_to_main(part.cpu())
    return None if parts is None else merge_shards(parts)


def _evaluate_synthetic(synthetic: SyntheticSet, source: Store, config: EvalConfig,
                        device: torch.device) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        saved = save_synthetic(synthetic, Path(tmp) / "set", source, provenance={"method": "intermediate"})
        result = evaluate_recognition(saved, source, config, device=device, progress=False)
    return {"mean": result.mean, "std": result.std, "runs": result.runs}
