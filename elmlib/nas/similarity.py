"""How alike the candidate blocks of each layer of a supernet compute (paper Figs. 3b and 6).

    rows = measure_block_similarity(net, heldout_batches, arch=net.sample(rng), device=device)

Along a path ``arch``, each layer's input is fed to every candidate block of that layer; the mean
cosine similarity of their token features (`elmlib.nas.analysis.block_similarity`), averaged over
the batches, is one row per (layer, block_i, block_j), blocks named by their index in `CANDIDATES`.
"""
from __future__ import annotations

import torch

from elmlib.model.modeling_elm import sdpa_mask
from elmlib.nas.analysis import block_similarity
from elmlib.nas.objective import to_device
from elmlib.nas.space import CANDIDATES, Architecture
from elmlib.nas.supernet import Supernet


@torch.no_grad()
def measure_block_similarity(net: Supernet, batches, arch: Architecture, device: torch.device) -> list[dict]:
    """One row per layer and pair of candidate blocks: ``similarity`` of their outputs (module docstring)."""
    net.eval()
    sums: dict[int, torch.Tensor] = {}
    for batch in batches:
        batch = to_device(batch, device)
        x = net.embeddings(batch["input_ids"], batch["token_type_ids"])
        mask = sdpa_mask(batch["attention_mask"])
        for i, layer in enumerate(arch.layers):
            outs = [net.block(i, b, s)(x, mask, None, None).hidden for b, s in net.candidates]
            sim = block_similarity(outs, batch["attention_mask"]).cpu()
            sums[i] = sums.get(i, 0) + sim / len(batches)
            x = net.block(i, layer.block, layer.sharing)(x, mask, layer.heads, layer.ffn_dim).hidden
    rows = [dict(layer=i, block_i=CANDIDATES.index(net.candidates[a]), block_j=CANDIDATES.index(net.candidates[b]),
                 similarity=float(m[a, b]))
            for i, m in sums.items() for a in range(len(net.candidates)) for b in range(len(net.candidates))]
    net.train()
    return rows
