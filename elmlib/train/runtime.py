"""What every training loop shares: derived seeds, the device a setting names, parameter counts.

Seeds are derived from (seed, offset) and never from a global RNG's history, so a resumed run, every
rank of a data-parallel run and a run whose cache already held a stage all draw the same numbers.
"""
from __future__ import annotations

import random
from typing import Iterable

import torch
from torch import nn

SEED_STRIDE = 1_000_003  # a prime: (seed, offset) pairs of nearby seeds do not collide for offsets below it


def derived_seed(seed: int, offset: int) -> int:
    """The seed of one epoch, step or stream of a run: ``seed * SEED_STRIDE + offset``."""
    return seed * SEED_STRIDE + offset


def seeded_generator(seed: int, offset: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``derived_seed(seed, offset)`` (shuffles, masks)."""
    return torch.Generator().manual_seed(derived_seed(seed, offset))


def path_rng(seed: int, step: int) -> random.Random:
    """The path sampler of one step, derived from (seed, step): every rank and every resume agrees."""
    return random.Random(derived_seed(seed, step))


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` is the GPU when one is visible, else the CPU; any other name is taken as it is."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def count_parameters(params: nn.Module | Iterable[nn.Parameter]) -> int:
    """Number of parameter values, each shared (tied) tensor counted once."""
    if isinstance(params, nn.Module):
        params = params.parameters()
    return sum(p.numel() for p in {id(p): p for p in params}.values())
