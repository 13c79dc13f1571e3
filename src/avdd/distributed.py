"""One avdd command as several processes: joining a torchrun job, and the few collectives avdd needs.

avdd runs on torch.distributed as it is: torchrun (or any launcher that sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT) starts the processes, the CLI joins them into one process
group (NCCL on CUDA, gloo on CPU) with :func:`joined`, and library code asks :func:`current` which
process it is. With no process group, every helper here acts as the only process of a job of one,
so the same code runs serially.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from avdd.errors import AvddError

T = TypeVar("T")
R = TypeVar("R")

# Collectives wait this long for the slowest process (minutes): long, because some steps run on the
# main process alone while the others wait (coresets, herding's embedding network on a large store).
TIMEOUT_ENV = "AVDD_DIST_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 120

_solo: contextvars.ContextVar[bool] = contextvars.ContextVar("avdd_solo", default=False)


@dataclass(frozen=True)
class Job:
    """This process's place in the job: ``rank`` of ``world_size`` processes (0 of 1 when serial)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, count: int) -> range:
        """This process's items of ``count``, dealt round-robin."""
        return range(self.rank, count, self.world_size)


SERIAL = Job()  # a job of one process


def launched() -> bool:
    """Whether a launcher started this process as one of several (torchrun sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK; 0 when not launched)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def current() -> Job:
    """The process group's view of this process; a job of one without a group or inside :func:`solo`."""
    if _solo.get() or not (dist.is_available() and dist.is_initialized()):
        return SERIAL
    return Job(dist.get_rank(), dist.get_world_size())


@contextlib.contextmanager
def solo() -> Iterator[None]:
    """Inside the block this process acts alone: :func:`current` is a job of one, so nothing in it
    waits for the other processes (for work done on the main process only)."""
    token = _solo.set(True)
    try:
        yield
    finally:
        _solo.reset(token)


def _timeout() -> timedelta:
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_MINUTES))
    try:
        return timedelta(minutes=float(text))
    except ValueError:
        raise AvddError(f"{TIMEOUT_ENV} must be a number of minutes, got {text!r}") from None


@contextlib.contextmanager
def joined(device: torch.device) -> Iterator[Job]:
    """Join the launcher's job for the block: one process group, NCCL for a CUDA ``device``, else
    gloo. Outside a launched job (or when a group already exists) it only reports :func:`current`."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield current()
        return
    if not dist.is_available():
        raise AvddError("this PyTorch build has no torch.distributed; run avdd as a single process")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's object collectives use the current device
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=_timeout())
    try:
        yield current()
        # leave together: a process tearing down gloo while a peer still exchanges with it (a
        # gather's last send) aborted in ~1 of 4 evaluation runs ("terminate called without an
        # active exception"). Only on success: after a failure the peers may never arrive.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if current().world_size > 1:
        dist.barrier()


def gather_to_main(obj: T) -> list[T] | None:
    """Every process's ``obj`` (picklable; move tensors to the CPU first) on the main process, in
    rank order; None on the others."""
    job = current()
    if job.world_size == 1:
        return [obj]
    out: list[Any] | None = [None] * job.world_size if job.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def gather_all(obj: T) -> list[T]:
    """Every process's ``obj`` on every process, in rank order."""
    job = current()
    if job.world_size == 1:
        return [obj]
    out: list[Any] = [None] * job.world_size
    dist.all_gather_object(out, obj)
    return out


def main_first(compute: Callable[[], T]) -> T:
    """``compute()`` run once, by the main process alone while the others wait, and its result
    handed to every process (e.g. a network trained and cached once instead of P times at once)."""
    job = current()
    if job.world_size == 1:
        return compute()
    value: list[Any] = [None]
    if job.is_main:
        with solo():
            value[0] = compute()
    dist.broadcast_object_list(value, src=0)
    return value[0]


def spread(count: int, compute: Callable[[int], R]) -> list[R]:
    """``[compute(0), ..., compute(count - 1)]`` on every process, the items dealt round-robin over
    the processes. Equal to the serial result when ``compute(i)`` depends on ``i`` alone."""
    job = current()
    mine = [(i, compute(i)) for i in job.share(count)]
    everyone = itertools.chain.from_iterable(gather_all(mine))
    return [value for _, value in sorted(everyone, key=lambda item: item[0])]


def balanced_shards(costs: Sequence[float], parts: int) -> list[list[int]]:
    """Item indices split into ``parts`` lists of near-equal total cost (largest first, each to the
    least loaded part; ties to the lowest index), each list sorted. Deterministic."""
    loads = [0.0] * parts
    shards: list[list[int]] = [[] for _ in range(parts)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        part = min(range(parts), key=lambda p: (loads[p], p))
        shards[part].append(i)
        loads[part] += costs[i]
    return [sorted(s) for s in shards]
