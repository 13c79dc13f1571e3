"""``python -m avdd ARGV`` for a torchrun job, except that process RANK SIGKILLs itself right after
iteration N, before that iteration's checkpoint: no clean-up at all, like a lost machine.

Usage (tests/test_distributed.py): ``torchrun ... tests/kill_rank.py RANK:N ARGV...``
"""

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from avdd.cli import main
from avdd.distill.synthetic import SyntheticRun

target = tuple(int(part) for part in sys.argv.pop(1).split(":"))
original_run = SyntheticRun.run


def run_then_die(self: SyntheticRun, checkpoint: Any = None, progress: bool = True,
                 on_iteration: Callable[[Any], None] | None = None) -> None:
    def hook(run: SyntheticRun) -> None:
        if (int(os.environ["RANK"]), run.iteration) == target:
            os.kill(os.getpid(), signal.SIGKILL)
        if on_iteration is not None:
            on_iteration(run)

    original_run(self, checkpoint, progress, hook)


SyntheticRun.run = run_then_die  # type: ignore[method-assign]
sys.exit(main(sys.argv[1:]))
