"""The growth policy of supernet pretraining (paper Sec. III-B, Figs. 1-2): after every epoch, the PCA
score of every block's FFN activations, then one FFN step for the top-K blocks within a parameter cap.

    rows = pca_scores(net, heldout_batches, threshold=0.99, epoch=0, device=device)
    grown = grow_blocks(net, rows, k=21, cap=growth_cap(net.space, net.candidates), form="normalized",
                        init="zero", generator=torch.Generator().manual_seed(0), optimizer=opt, epoch=0)

A score row names one block (``layer``, its ``block`` index in `CANDIDATES`, ``block_type``,
``sharing``) with its width ``ffn_dim``, PCA ``score`` (a count) and ``normalized`` score (count / width);
``form`` chooses which of the two ranks the blocks (`elmlib.nas.growth.PCA_SCORES`).
"""
from __future__ import annotations

import torch

from elmlib.nas.analysis import PCAAccumulator
from elmlib.nas.growth import grow_ffn, growth_score, select_growth
from elmlib.nas.objective import to_device
from elmlib.nas.space import CANDIDATES, LayerChoice, SearchSpace
from elmlib.nas.supernet import Supernet


def growth_cap(space: SearchSpace, candidates) -> int:
    """Default cap: the supernet's size when every block's FFN equals the hidden size (paper: the
    mean FFN dimension ends near the hidden size)."""
    s = space
    per_layer = sum(s.layer_params(LayerChoice(b, sh, s.hidden_size, s.num_heads)) for b, sh in candidates)
    return s.embedding_params() + s.num_layers * per_layer


@torch.no_grad()
def pca_scores(net: Supernet, batches, threshold: float, epoch: int, device: torch.device) -> list[dict]:
    """Score every block on the same held-out batches, running each candidate as a uniform path: the
    number of principal components explaining ``threshold`` of its FFN activations' variance."""
    net.eval()
    rows = []
    for b, s in net.candidates:
        arch = net.uniform_path(b, s)
        accs = [PCAAccumulator() for _ in arch.layers]
        for batch in batches:
            batch = to_device(batch, device)
            out = net(batch["input_ids"], attention_mask=batch["attention_mask"], arch=arch, output_ffn_hidden=True)
            for acc, act in zip(accs, out.ffn_hidden_states):
                acc.update(act, batch["attention_mask"])
        counts = [acc.score(threshold) for acc in accs]
        rows += [dict(epoch=epoch, layer=i, block=CANDIDATES.index((b, s)), block_type=b, sharing=s,
                      ffn_dim=layer.ffn_dim, score=n, normalized=growth_score(n, layer.ffn_dim, "normalized"))
                 for i, (layer, n) in enumerate(zip(arch.layers, counts))]
    net.train()
    return rows


def choose_growth(space: SearchSpace, rows: list[dict], *, k: int, cap: float, form: str, params: int) -> list[dict]:
    """The score rows of the blocks to grow by one step: the top ``k`` by the ``form`` of their score,
    skipping those at the maximum or whose step would take the supernet (``params`` now) over ``cap``
    (`select_growth`; ties: lower layer, then block)."""
    s = space
    rows = sorted(rows, key=lambda r: (r["layer"], r["block"]))

    def cost(r):  # parameters one step adds to this block
        return (s.layer_params(LayerChoice(r["block_type"], r["sharing"], r["ffn_dim"] + s.ffn_step, s.num_heads))
                - s.layer_params(LayerChoice(r["block_type"], r["sharing"], r["ffn_dim"], s.num_heads)))
    chosen = select_growth([growth_score(r["score"], r["ffn_dim"], form) for r in rows],
                           [r["ffn_dim"] for r in rows], [cost(r) for r in rows], k=k, step=s.ffn_step,
                           ffn_max=s.ffn_max, params=params, cap=cap)
    return [rows[i] for i in chosen]


def grow_blocks(net: Supernet, rows: list[dict], *, k: int, cap: float, form: str, init: str,
                generator: torch.Generator, optimizer, epoch: int) -> list[dict]:
    """Grow the blocks `choose_growth` picks from the score ``rows`` by one FFN step (`grow_ffn`, new
    units drawn from ``generator``, ``optimizer`` state padded); returns one row per grown block."""
    s, grown = net.space, []
    for row in choose_growth(s, rows, k=k, cap=cap, form=form, params=net.num_params()):
        old = row["ffn_dim"]
        grow_ffn(net.block(row["layer"], row["block_type"], row["sharing"]), old + s.ffn_step,
                 init=init, generator=generator, optimizer=optimizer)
        grown.append(dict(epoch=epoch, layer=row["layer"], block=row["block"], block_type=row["block_type"],
                          sharing=row["sharing"], old_ffn_dim=old, new_ffn_dim=old + s.ffn_step,
                          score=row["score"], supernet_params=net.num_params(),
                          normalized=growth_score(row["score"], old, "normalized"), ranked_by=form))
    return grown
