"""avdd.allocator: freed blocks stay in the process (for the next iteration to reuse)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

MB = 256
# In a fresh process (mallopt changes the whole process): resident memory before and after freeing
# a 256 MB tensor.
CHILD = f"""
import json, sys
import torch
from avdd.allocator import retain_freed_memory
def resident_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
retained = retain_freed_memory() if sys.argv[1] == "retain" else False
tensor = torch.ones({MB} << 18)  # float32: 2**18 elements per MB, every page touched
held = resident_mb()
del tensor
print(json.dumps({{"retained": retained, "released_mb": held - resident_mb()}}))
"""


def released_mb(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_freed_block_is_kept_only_when_retained() -> None:
    system, retained = released_mb("system"), released_mb("retain")
    if not retained["retained"]:
        pytest.skip("the C library is not glibc")
    assert system["released_mb"] > 0.9 * MB  # glibc's default: unmapped on free, faulted in anew next time
    assert retained["released_mb"] < 0.05 * MB
