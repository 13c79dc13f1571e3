"""Deriving independent random streams from one seed, without touching the global RNG.

Every random draw of a run is keyed by (seed, purpose, iteration, class, …): the same keys give the
same numbers whatever process, rank or order asks for them, which makes resumed and sharded runs
equal to uninterrupted single-process ones.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed that depends only on ``seed`` and ``keys`` (stable across runs and platforms)."""
    digest = hashlib.blake2b(repr((seed, *keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def generator(seed: int, *keys: object, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))
