"""First-order importance of FFN units and attention heads, and function-preserving reordering.

EFTNAS (Munoz, Zheng & Jain, LREC-COLING 2024) ranks the FFN neurons and attention heads of a
fine-tuned transformer by first-order weight importance, the movement-pruning score of Sanh, Wolf
& Rush (NeurIPS 2020), and reorders the weights so that every narrower elastic width, which takes
a *prefix* of the units (`elmlib.model.modeling_elm.elastic_ffn`), keeps the most important ones. Here:

- importance of a unit = sum over batches of sum over the unit's weights of |w * dL/dw|
  (`ImportanceAccumulator`; ``update()`` after each backward);
- `reorder_` / `reorder_block_` permute units and heads in place by descending importance; the
  block computes exactly the same function (the permutation is applied to both sides of the unit);
- `narrow` / `shrink_ffn_` keep the first ``ffn_dim`` units (after reordering: the best ones), as a
  standalone model/block or in place (the counterpart of `elmlib.nas.growth.grow_ffn`).

    acc = ImportanceAccumulator(model)                     # any ElmModel / task model / Supernet / block
    for batch in batches: model(**batch).loss.backward(); acc.update(); model.zero_grad()
    reorder_(model, acc.scores()); small = narrow(model, 64)   # keeps the 64 most important units per FFN

Which weights belong to a unit (biases of the *output* projections are shared by all units and so
belong to none): FFN unit j = row j of ``intermediate.dense.weight``, ``intermediate.dense.bias[j]``
and column j of ``output.dense.weight``. A MobileBERT block with stacked FFNs (``block.ffn``) has
one independent set of units per FFN (``block.ffn_layers``; the elastic width takes the same prefix
in each), so each FFN is scored and permuted on its own. Head h (width W, H heads, d = W / H) = rows
h*d..(h+1)*d of the query, key and value weights and biases and the same columns of
``attention.output.dense.weight``. With Q=V ("qv") or K=V ("kv") sharing there is no value weight:
the shared projection is one parameter, its gradient already sums both uses, and it is counted once.
Per-channel sums are kept, so the head grouping is chosen when scores are read (``scores(heads=)``).

Head reordering is function-preserving at the head number it was grouped with (and at any number
of heads H' where the permutation moves whole H'-heads, e.g. the identity); reorder heads with the
number the model will run with. FFN reordering is function-preserving unconditionally.

What reordering buys a fine-tuned model cut to narrower widths is measured by
`elmlib.repro.importance_study` (``notebooks/importance_reordering.ipynb``, docs/importance.md).
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable, NamedTuple

import torch
from torch import nn

from elmlib.model.modeling_elm import ElmPreTrainedModel

__all__ = ["BlockImportance", "ImportanceAccumulator", "elastic_blocks", "estimate_importance", "narrow",
           "permute_ffn_", "permute_heads_", "reorder_", "reorder_block_", "shrink_ffn_", "unit_order"]


class BlockImportance(NamedTuple):
    ffn: tuple[torch.Tensor, ...]   # one (ffn_dim,) tensor per FFN, in ``block.ffn_layers`` order
    heads: torch.Tensor             # (heads,)


def elastic_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, block) for every ELM block in ``model`` (``model`` itself when it is a block)."""
    found = [(name, m) for name, m in model.named_modules() if hasattr(m, "ffn_layers") and hasattr(m, "attention")]
    if not found:
        raise ValueError(f"{type(model).__name__} holds no ELM block (a module with `ffn_layers` and `attention`)")
    return found


def _attention_params(block: nn.Module) -> tuple[list[nn.Linear], nn.Linear]:
    """The projections whose output rows are head channels (Q, K and V if not shared) and the output dense."""
    att = block.attention.self
    projections = [att.query, att.key] + ([att.value] if hasattr(att, "value") else [])
    return projections, block.attention.output.dense


def _score(p: nn.Parameter) -> torch.Tensor | None:
    return None if p.grad is None else (p.detach() * p.grad.detach()).abs().float()


class ImportanceAccumulator:
    """Accumulates |w * dL/dw| per FFN unit and per attention channel of every block of ``model``.

    Call ``update()`` after each ``backward()`` and before ``zero_grad()`` (gradients accumulated over
    several backward passes are scored as one batch). Blocks that took no part in a step (a supernet's
    other candidates) have no gradient and gain nothing. A block whose FFN grew since the last update
    (`grow_ffn`) gets zeros for its new units (in ``update`` and ``scores``); after a reorder or shrink,
    start a new accumulator.
    """

    def __init__(self, model: nn.Module):
        self.blocks = elastic_blocks(model)
        self.steps = 0
        self._ffn = {name: [torch.zeros(i.weight.shape[0]) for i, _ in b.ffn_layers] for name, b in self.blocks}
        self._att = {name: torch.zeros(b.attention.self.width) for name, b in self.blocks}

    @torch.no_grad()
    def update(self) -> None:
        for name, block in self.blocks:
            for k, (inter, out) in enumerate(block.ffn_layers):
                parts = [(_score(inter.weight), 1), (_score(inter.bias), None), (_score(out.weight), 0)]
                self._ffn[name][k] = self._add(self._ffn[name][k], parts, f"{name} FFN {k}")
            projections, dense = _attention_params(block)
            parts = [(_score(p.weight), 1) for p in projections] + [(_score(p.bias), None) for p in projections]
            self._att[name] = self._add(self._att[name], parts + [(_score(dense.weight), 0)], f"{name} attention")
        self.steps += 1

    @staticmethod
    def _add(total: torch.Tensor, parts, what: str) -> torch.Tensor:
        for s, dim in parts:
            if s is None:
                continue
            s = (s if dim is None else s.sum(dim)).cpu()
            if s.shape[0] > total.shape[0]:  # grown since the last update: new units start at zero
                total = torch.cat([total, total.new_zeros(s.shape[0] - total.shape[0])])
            elif s.shape[0] < total.shape[0]:
                raise ValueError(f"{what}: {s.shape[0]} units now but {total.shape[0]} accumulated; the block "
                                 "shrank, so start a new ImportanceAccumulator")
            total = total + s
        return total

    def state_dict(self) -> dict:
        """What a training checkpoint keeps so a resumed run accumulates exactly the same scores."""
        return {"steps": self.steps, "ffn": {k: [t.clone() for t in v] for k, v in self._ffn.items()},
                "attention": {k: t.clone() for k, t in self._att.items()}}

    def load_state_dict(self, state: dict) -> None:
        names = sorted(name for name, _ in self.blocks)
        if sorted(state["ffn"]) != names or sorted(state["attention"]) != names:
            raise ValueError(f"importance state is for blocks {sorted(state['ffn'])[:3]}..., not this model's "
                             f"{names[:3]}...")
        self.steps = int(state["steps"])
        self._ffn = {k: [t.clone() for t in v] for k, v in state["ffn"].items()}
        self._att = {k: t.clone() for k, t in state["attention"].items()}

    def scores(self, heads: int | dict[str, int] | None = None) -> dict[str, BlockImportance]:
        """Importance per block name; ``heads`` groups the attention channels (default: each block's own)."""
        out = {}
        for name, block in self.blocks:
            h = heads.get(name) if isinstance(heads, dict) else heads
            h = h or block.attention.self.num_heads
            channels = self._att[name]
            if h < 1 or channels.shape[0] % h:
                raise ValueError(f"{name}: heads={h} is not allowed; it must divide the attention width "
                                 f"{channels.shape[0]}")
            # Units grown since the last update (or never on a sampled path since) have importance 0.
            ffn = tuple(torch.cat([t, t.new_zeros(inter.weight.shape[0] - t.shape[0])])
                        for t, (inter, _) in zip(self._ffn[name], block.ffn_layers))
            out[name] = BlockImportance(ffn, channels.view(h, -1).sum(1))
        return out


def estimate_importance(model: nn.Module, batches: Iterable, loss_fn: Callable | None = None, *,
                        max_batches: int | None = None) -> tuple[dict[str, BlockImportance], ImportanceAccumulator]:
    """Importance of ``model``'s units over ``batches`` without changing its weights.

    ``loss_fn(model, batch)`` returns the loss (default ``model(**batch).loss``, a task model with
    labels). Runs in eval mode (no dropout, so repeatable) and leaves ``.grad`` cleared (None)."""
    loss_fn = loss_fn or (lambda m, b: m(**b).loss)
    acc = ImportanceAccumulator(model)
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            loss_fn(model, batch).backward()
            acc.update()
            model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    if acc.steps == 0:
        raise ValueError("batches is empty; importance needs at least one batch")
    return acc.scores(), acc


# --------------------------------------------------------------------------- permutations

def unit_order(scores: torch.Tensor) -> torch.Tensor:
    """Indices by descending importance; ties keep their current order (stable, deterministic)."""
    return torch.sort(-scores.float(), stable=True).indices


def _check_perm(perm: torch.Tensor, n: int, what: str) -> torch.Tensor:
    perm = torch.as_tensor(perm, dtype=torch.long).cpu()
    if perm.shape != (n,) or not torch.equal(perm.sort().values, torch.arange(n)):
        raise ValueError(f"{what}: permutation of shape {tuple(perm.shape)} is not a permutation of the {n} units")
    return perm


def _index_(param: nn.Parameter, index: torch.Tensor, dim: int, optimizer) -> None:
    """Replace ``param.data`` by its ``index`` selection along ``dim`` (the Parameter object stays, so
    optimizer groups remain valid); gradients and same-shaped optimizer state (Adam's moments) follow."""
    index = index.to(param.device)
    if optimizer is not None:
        for key, value in optimizer.state.get(param, {}).items():
            if torch.is_tensor(value) and value.shape == param.shape:
                optimizer.state[param][key] = value.index_select(dim, index)
    grad = None if param.grad is None else param.grad.index_select(dim, index)
    param.data = param.data.index_select(dim, index).contiguous()
    param.grad = grad


@torch.no_grad()
def permute_ffn_(inter: nn.Linear, out: nn.Linear, perm, optimizer=None) -> None:
    """Reorder one FFN's units: unit ``perm[j]`` becomes unit j (rows of inter, columns of out)."""
    perm = _check_perm(perm, inter.weight.shape[0], "FFN")
    _index_(inter.weight, perm, 0, optimizer)
    _index_(inter.bias, perm, 0, optimizer)
    _index_(out.weight, perm, 1, optimizer)


@torch.no_grad()
def permute_heads_(block: nn.Module, perm, heads: int | None = None, optimizer=None) -> None:
    """Reorder a block's heads: head ``perm[h]`` becomes head h, in Q, K, V (a shared projection once)
    and the input columns of ``attention.output.dense``."""
    projections, dense = _attention_params(block)
    width = block.attention.self.width
    heads = heads or block.attention.self.num_heads
    if width % heads:
        raise ValueError(f"heads={heads} is not allowed; it must divide the attention width {width}")
    perm = _check_perm(perm, heads, "heads")
    channels = (perm[:, None] * (width // heads) + torch.arange(width // heads)).flatten()
    for p in projections:
        _index_(p.weight, channels, 0, optimizer)
        _index_(p.bias, channels, 0, optimizer)
    _index_(dense.weight, channels, 1, optimizer)


def reorder_block_(block: nn.Module, scores: BlockImportance, *, ffn: bool = True, heads: bool = True,
                   optimizer=None) -> BlockImportance:
    """Sort a block's FFN units (each stacked FFN separately) and heads by descending importance, in place.

    Returns the scores in the new order (so they stay valid for the block). ``optimizer``: its state
    for these parameters is permuted too, so training can continue."""
    if len(scores.ffn) != len(block.ffn_layers):
        raise ValueError(f"scores hold {len(scores.ffn)} FFN(s) but the block has {len(block.ffn_layers)}")
    new_ffn = []
    for (inter, out), s in zip(block.ffn_layers, scores.ffn):
        if s.shape[0] != inter.weight.shape[0]:
            raise ValueError(f"scores hold {s.shape[0]} FFN units but the block has {inter.weight.shape[0]}")
        order = unit_order(s) if ffn else torch.arange(s.shape[0])
        permute_ffn_(inter, out, order, optimizer)
        new_ffn.append(s[order])
    order = unit_order(scores.heads) if heads else torch.arange(scores.heads.shape[0])
    permute_heads_(block, order, scores.heads.shape[0], optimizer)
    return BlockImportance(tuple(new_ffn), scores.heads[order])


def reorder_(model: nn.Module, scores: dict[str, BlockImportance], *, ffn: bool = True, heads: bool = True,
             optimizer=None) -> dict[str, BlockImportance]:
    """`reorder_block_` for every block of ``model`` (names as `ImportanceAccumulator.scores` gives them)."""
    blocks = elastic_blocks(model)
    missing = [name for name, _ in blocks if name not in scores]
    if missing:
        raise ValueError(f"scores have no entry for block(s) {missing}; they have {sorted(scores)}")
    return {name: reorder_block_(b, scores[name], ffn=ffn, heads=heads, optimizer=optimizer) for name, b in blocks}


# --------------------------------------------------------------------------- shrinking

@torch.no_grad()
def shrink_ffn_(block: nn.Module, new_dim: int, scores: BlockImportance | None = None, optimizer=None) -> None:
    """Keep ``new_dim`` units of every FFN of ``block``, in place: the most important ones when
    ``scores`` is given (reordered first), else the first ones (the elastic prefix). Counterpart of
    `elmlib.nas.growth.grow_ffn`: Parameter objects stay; gradients and optimizer state are cut too."""
    if scores is not None:
        reorder_block_(block, scores, heads=False, optimizer=optimizer)
    for inter, out in block.ffn_layers:
        old = inter.weight.shape[0]
        if not 1 <= new_dim <= old:
            raise ValueError(f"new_dim={new_dim} is not allowed; expected 1..{old} (the FFN has {old} units)")
        keep = torch.arange(new_dim)
        _index_(inter.weight, keep, 0, optimizer)
        _index_(inter.bias, keep, 0, optimizer)
        _index_(out.weight, keep, 1, optimizer)
        inter.out_features = out.in_features = new_dim


def narrow(model: nn.Module, ffn_dim: int | list[int],
           scores: dict[str, BlockImportance] | BlockImportance | None = None):
    """A standalone copy of ``model`` (an ELM model or a single block) whose FFNs keep ``ffn_dim`` units
    (one int, or one per layer; capped at each layer's size): the most important ones when ``scores`` is
    given, else the first ones. ``model`` is not changed. For an ELM model the config's ``ffn_dim`` is
    updated, so the result saves and loads like any exported model."""
    new = copy.deepcopy(model)
    blocks = elastic_blocks(new)
    if isinstance(scores, BlockImportance):  # a single block's scores
        if len(blocks) != 1:
            raise ValueError(f"scores: one BlockImportance given for a model of {len(blocks)} blocks; pass the "
                             "dict that ImportanceAccumulator.scores() returns")
        scores = {blocks[0][0]: scores}
    dims = [ffn_dim] * len(blocks) if isinstance(ffn_dim, int) else list(ffn_dim)
    if len(dims) != len(blocks):
        raise ValueError(f"ffn_dim has {len(dims)} entries but the model has {len(blocks)} blocks")
    for (name, block), dim in zip(blocks, dims):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"{name or 'block'}: ffn_dim={dim!r} is not allowed; expected a positive integer")
        dim = min(dim, block.ffn_layers[0][0].weight.shape[0])
        shrink_ffn_(block, dim, None if scores is None else scores[name])
    if isinstance(new, ElmPreTrainedModel):
        encoder = getattr(new, new.base_model_prefix, new)
        for layer, block in zip(new.config.layers, encoder.encoder.layer):
            layer["ffn_dim"] = block.ffn_layers[0][0].weight.shape[0]
        if encoder is not new:
            encoder.config = new.config
    return new
