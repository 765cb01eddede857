"""Elastic FFN growth of supernet blocks (paper Sec. III-B, Fig. 1).

After each supernet pretraining epoch the top-K blocks by PCA score grow their FFN by one step.
Growth happens in place: the block keeps its ``nn.Parameter`` objects (so optimizer param groups,
hooks and references stay valid), their ``.data`` is enlarged, and optimizer state tensors
(e.g. Adam's moments) are zero-padded for the new units, as if those units had seen no gradient.

    grow_ffn(net.block(3, "bert", "qv"), 264, optimizer=opt, generator=torch.Generator().manual_seed(0))

New units: incoming weights ~ N(0, std), incoming bias 0; outgoing weights 0 with
``init="zero"`` (default: the block's output is unchanged at the moment of growth, Net2Net-style
function preservation) or ~ N(0, std) with ``init="normal"`` (output changes).

Which blocks grow is a pure choice over score rows (`select_growth`), so it can be tested apart
from training:

    select_growth(scores, sizes, costs, k=21, step=132, ffn_max=1056, params=net.num_params(), cap=cap)
"""
from __future__ import annotations

import torch
from torch import nn

GROWTH_INITS = ("zero", "normal")
# How a block's PCA count becomes its growth score (the paper leaves the form open, Sec. III-B):
# "count" = components explaining the threshold share of variance (W-PCA); "normalized" = that count
# divided by the block's current FFN width, so a saturated narrow block outranks a wide one that
# uses a smaller share of its units (a count is bounded by the width, so a grown block scores higher).
PCA_SCORES = ("count", "normalized")


def growth_score(count: int, ffn_dim: int, form: str = "count") -> float:
    """A block's growth score from its PCA ``count`` at FFN width ``ffn_dim`` (see ``PCA_SCORES``)."""
    if form not in PCA_SCORES:
        raise ValueError(f"pca_score={form!r} is not allowed; expected one of {PCA_SCORES}")
    return count if form == "count" else count / ffn_dim


def blocks_per_epoch(k: int, sharing_blocks: bool) -> int:
    """Blocks grown per epoch: K with all six candidates per layer; K // 3 (at least 1) in the ablation
    without sharing blocks, which keeps 2 of the 6 (paper Table VIII: "growth K/3")."""
    return k if sharing_blocks else max(1, k // 3)


def select_growth(scores, sizes, costs, *, k: int, step: int, ffn_max: int, params: int, cap: float) -> list[int]:
    """Indices of the blocks to grow by one ``step`` this epoch (paper Sec. III-B, Fig. 1): the ``k``
    highest ``scores`` (ties: earlier index first), skipping a block that would pass ``ffn_max`` or
    whose ``costs[i]`` added parameters would take the supernet (``params`` now) over ``cap``; a
    skipped block leaves its place to the next eligible one."""
    chosen: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if len(chosen) == k:
            break
        if sizes[i] + step > ffn_max or params + costs[i] > cap:
            continue
        chosen.append(i)
        params += costs[i]
    return chosen


def _resize_(param: nn.Parameter, new_data: torch.Tensor, dim: int, optimizer: torch.optim.Optimizer | None) -> None:
    old = param.shape[dim]
    added = new_data.shape[dim] - old

    def pad(t: torch.Tensor) -> torch.Tensor:
        shape = list(t.shape)
        shape[dim] = added
        return torch.cat([t, t.new_zeros(shape)], dim)

    if optimizer is not None:
        for key, value in optimizer.state.get(param, {}).items():
            if torch.is_tensor(value) and value.shape == param.shape:
                optimizer.state[param][key] = pad(value)
    grad = None if param.grad is None else pad(param.grad)
    param.data = new_data  # the Parameter object stays: optimizer groups and references remain valid
    param.grad = grad


def grow_ffn(block: nn.Module, new_dim: int, *, init: str = "zero", std: float = 0.02,
             generator: torch.Generator | None = None, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Enlarge every FFN of ``block`` (BERT or MobileBERT, stacked FFNs too) to ``new_dim`` units.

    Call it between steps, when no autograd graph that used the block is alive (drop loss tensors
    first): a live graph keeps the parameters' gradient accumulators with their old shapes."""
    if init not in GROWTH_INITS:
        raise ValueError(f"init={init!r} is not allowed; expected one of {GROWTH_INITS}")
    for inter, out in block.ffn_layers:
        old = inter.weight.shape[0]
        if new_dim <= old:
            raise ValueError(f"new_dim={new_dim} is not allowed; the FFN already has {old} units (must grow)")
        added = new_dim - old
        w = inter.weight
        new_in = torch.randn(added, w.shape[1], generator=generator, device="cpu", dtype=w.dtype).to(w.device) * std
        if init == "zero":
            new_out = out.weight.new_zeros(out.weight.shape[0], added)
        else:
            new_out = (torch.randn(out.weight.shape[0], added, generator=generator, device="cpu",
                                   dtype=w.dtype).to(w.device) * std)
        with torch.no_grad():
            _resize_(inter.weight, torch.cat([w.data, new_in], 0), 0, optimizer)
            _resize_(inter.bias, torch.cat([inter.bias.data, inter.bias.new_zeros(added)], 0), 0, optimizer)
            _resize_(out.weight, torch.cat([out.weight.data, new_out], 1), 1, optimizer)
        inter.out_features = out.in_features = new_dim
