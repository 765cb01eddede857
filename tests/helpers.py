"""Small shared builders for the tests."""
import random

import torch

import elmlib

TINY = dict(num_layers=3, hidden_size=32, inner_size=8, num_heads=4, ffn_min=8, ffn_step=8, ffn_max=64,
            embedding_size=16, vocab_size=97, max_position_embeddings=32)


def tiny_space(**overrides) -> "elmlib.SearchSpace":
    return elmlib.SearchSpace(**{**TINY, "name": "tiny-test", **overrides})


def batch(space, batch_size=3, length=12, seed=0, pad_from=8):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, space.vocab_size, (batch_size, length), generator=g)
    mask = torch.ones(batch_size, length, dtype=torch.long)
    if pad_from is not None:
        mask[-1, pad_from:] = 0
        ids[-1, pad_from:] = 0
    return ids, mask


def all_candidate_archs(space, ffn_dim=None):
    """One architecture per candidate block, every layer the same (covers all six blocks)."""
    ffn_dim = ffn_dim or space.ffn_init
    return [elmlib.Architecture.uniform(space.num_layers, b, s, ffn_dim, space.num_heads) for b, s in elmlib.CANDIDATES]


def rng(seed=0):
    return random.Random(seed)
