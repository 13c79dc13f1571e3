"""``avdd run --jobs N``: groups of cells run side by side in spawned worker processes.

Cells that share a step (a distilled set, MTT's experts) are one group, run by one worker in their
order, so no step ever runs twice at once; groups share nothing but the real-mean cache, whose
files are written atomically (distill/real_cache.py). Each group is one process (spawn: a fresh
interpreter, as safe with torch as it gets), at most N at a time, largest groups first; a process
that dies (killed, out of memory) loses only its own group.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import warnings
from collections.abc import Callable, Collection, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from typing import Any

import torch

from avdd.allocator import retain_freed_memory
from avdd.distill.checkpoint import sigterm_interrupts
from avdd.errors import show_warning

Post = Callable[[str, int, Any], None]  # (kind, cell index, payload) from a worker to the parent
Worker = Callable[[Sequence[int], Post], None]  # runs the cells of one group (picklable: spawn sends it)


def share_groups(keys: Sequence[Collection[str]]) -> list[list[int]]:
    """The indices of ``keys`` grouped by "shares a key" (connected components), each group in index
    order, largest group first (ties: by first index)."""
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, cell_keys in enumerate(keys):
        for key in cell_keys:
            parent[root(owner.setdefault(key, i))] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(keys)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda group: (-len(group), group[0]))


def threads_per_worker(jobs: int) -> int:
    """The CPU's cores shared out between the workers (small convolutions scale poorly across
    threads: two processes of one thread do about twice the work of one process of two)."""
    return max(1, (os.cpu_count() or 1) // jobs)


def _child(worker: Worker, group: Sequence[int], messages: Connection, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    warnings.showwarning = show_warning  # one `avdd: warning:` line, as in the parent
    retain_freed_memory()  # as the CLI's own process does (avdd/allocator.py): up to 40 % of a DM iteration
    if "OMP_NUM_THREADS" not in os.environ:  # the user's choice wins
        torch.set_num_threads(threads)
    # the parent stops us with SIGTERM: as under the CLI, a distillation keeps its checkpoint on the way out
    with sigterm_interrupts(), contextlib.suppress(KeyboardInterrupt):
        # send writes into the pipe at once: what was posted before a kill still arrives
        worker(group, lambda kind, index, payload: messages.send((kind, index, payload)))


def run_groups(groups: Sequence[Sequence[int]], worker: Worker, jobs: int, receive: Post) -> dict[int, int | None]:
    """Run ``worker(group, post)`` for every group, at most ``jobs`` processes at once; every message
    a worker posts is handed to ``receive`` here. Returns {group number: exit code} for the groups
    whose process failed (killed, or the worker raised). An interruption (Ctrl-C, SIGTERM) stops
    every worker (SIGTERM: each saves its checkpoint) and waits for them."""
    context = multiprocessing.get_context("spawn")
    waiting = list(range(len(groups)))
    running: dict[Connection, tuple[int, SpawnProcess]] = {}
    lost: dict[int, int | None] = {}
    threads = threads_per_worker(jobs)
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                number = waiting.pop(0)
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(target=_child, args=(worker, groups[number], writer, threads))
                process.start()
                writer.close()  # the worker holds the only writer: its end is the pipe's end
                running[reader] = number, process
            for ready in wait(list(running)):
                assert isinstance(ready, Connection)
                try:
                    receive(*ready.recv())
                except EOFError:  # the worker has ended, and every message it sent was read
                    number, process = running.pop(ready)
                    process.join()
                    if process.exitcode != 0:
                        lost[number] = process.exitcode
    finally:
        for _, process in running.values():
            process.terminate()
        for _, process in running.values():
            process.join()
    return lost
