"""The six ELM encoder blocks (paper Sec. III-A, Fig. 5) and their elastic FFN.

A layer is one of six blocks: {BERT, MobileBERT} x {no sharing, query=value ("qv"), key=value
("kv")}. Attribute names follow transformers' ``BertLayer`` / ``MobileBertLayer``
(``attention.self.query``, ``attention.output.dense``, ``intermediate.dense``, ``output.dense``, ...)
so pretrained state dicts load into a block directly. Self-contained (torch + transformers only):
``save_pretrained`` copies this file next to the weights with ``modeling_elm.py``, which imports it.

    block = build_block(config, "mobilebert", "qv", ffn_dim=512, heads=4)   # config: ElmConfig
    out = block(x, mask, ffn_dim=256)     # out.hidden: (B, N, hidden); the FFN runs its first 256 units

Sharing: with "qv" the value projection *is* the query projection (no ``value`` weight), so the
value vectors equal the query vectors; "kv" likewise with the key. In a MobileBERT block, query
and key read the shared attention bottleneck (inner size) while an unshared value reads the full
hidden state (as in MobileBERT); a shared value reads the bottleneck too, since one weight can
only serve one input size. The shared weight's gradient is the sum of both uses (autograd).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache

from .configuration_elm import ElmConfig


class NoNorm(nn.Module):
    """MobileBERT's element-wise affine replacement for LayerNorm."""

    def __init__(self, size: int, eps: float | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias


def make_norm(kind: str, size: int, eps: float) -> nn.Module:
    return nn.LayerNorm(size, eps=eps) if kind == "layer_norm" else NoNorm(size)


class BlockOutput(NamedTuple):
    hidden: torch.Tensor                      # (B, N, hidden)
    attn_probs: torch.Tensor | None = None    # (B, heads, N, N), when asked
    head_outputs: torch.Tensor | None = None  # (B, heads, N, head_dim): per-head context, for CKA
    ffn_hidden: torch.Tensor | None = None    # (B, N, ffn_dim): FFN activations, for PCA


def elastic_ffn(inter: nn.Linear, out: nn.Linear, act, x: torch.Tensor, ffn_dim: int | None):
    """Run an FFN on its first ``ffn_dim`` units (all when None); returns (activations, output)."""
    full = inter.weight.shape[0]
    if ffn_dim is None or ffn_dim == full:
        h = act(inter(x))
        return h, out(h)
    if ffn_dim > full:
        raise ValueError(f"ffn_dim={ffn_dim} exceeds this block's {full} allocated FFN units")
    h = act(F.linear(x, inter.weight[:ffn_dim], inter.bias[:ffn_dim]))
    return h, F.linear(h, out.weight[:, :ffn_dim], out.bias)


class SelfAttention(nn.Module):
    """Multi-head attention projections with optional value sharing; heads settable per call."""

    def __init__(self, qk_in: int, v_in: int, width: int, heads: int, sharing: str, dropout: float):
        super().__init__()
        self.query = nn.Linear(qk_in, width)
        self.key = nn.Linear(qk_in, width)
        if sharing == "none":
            self.value = nn.Linear(v_in, width)
        self.sharing, self.width, self.num_heads, self.dropout_p = sharing, width, heads, dropout

    def forward(self, qk_in, v_in, mask, heads=None, need_probs=False, cache: Cache | None = None,
                layer_idx: int | None = None, is_causal: bool = False):
        """``mask``: boolean (True = attend) or None; ``is_causal`` (only with ``mask=None``): the
        lower-triangular mask of a cache-less causal pass. ``cache`` appends this call's keys and values
        (a transformers ``Cache``, slot ``layer_idx``) and attends over all of them."""
        batch, length, _ = qk_in.shape
        heads = heads or self.num_heads
        if self.width % heads:
            raise ValueError(f"heads={heads} does not divide the attention width {self.width}")
        q = self.query(qk_in)
        k = self.key(qk_in)
        v = q if self.sharing == "qv" else k if self.sharing == "kv" else self.value(v_in)
        q, k, v = (t.view(batch, length, heads, -1).transpose(1, 2) for t in (q, k, v))
        if cache is not None:  # with Q=V / K=V sharing the cached values are the shared projection
            k, v = cache.update(k, v, layer_idx)
        p = self.dropout_p if self.training else 0.0
        if not need_probs:  # fused kernel on the fast path
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                                  is_causal=is_causal and mask is None), None
        scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
        if is_causal and mask is None:
            mask = torch.ones(length, k.shape[2], dtype=torch.bool, device=q.device).tril(k.shape[2] - length)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        probs = scores.softmax(-1)
        return F.dropout(probs, p) @ v, probs


def _merge_heads(ctx: torch.Tensor) -> torch.Tensor:
    batch, heads, length, dim = ctx.shape
    return ctx.transpose(1, 2).reshape(batch, length, heads * dim)


class Holder(nn.Module):
    """A named container, so attribute paths match transformers' (e.g. ``attention.output.dense``)."""

    def __init__(self, /, **modules: nn.Module):
        super().__init__()
        for name, module in modules.items():
            setattr(self, name, module)


class BertBlock(nn.Module):
    """Post-LN BERT layer (Devlin et al. 2019) with elastic FFN and optional Q/K=V sharing."""

    block_type = "bert"

    def __init__(self, config: ElmConfig, sharing: str, ffn_dim: int, heads: int):
        super().__init__()
        h, eps = config.hidden_size, config.layer_norm_eps
        self.sharing, self.heads = sharing, heads
        self.attention = Holder(
            self=SelfAttention(h, h, h, heads, sharing, config.attention_probs_dropout_prob),
            output=Holder(dense=nn.Linear(h, h), LayerNorm=nn.LayerNorm(h, eps=eps),
                           dropout=nn.Dropout(config.hidden_dropout_prob)),
        )
        self.intermediate = Holder(dense=nn.Linear(h, ffn_dim))
        self.output = Holder(dense=nn.Linear(ffn_dim, h), LayerNorm=nn.LayerNorm(h, eps=eps),
                              dropout=nn.Dropout(config.hidden_dropout_prob))
        self.act = ACT2FN[config.hidden_act]

    @property
    def ffn_layers(self) -> list[tuple[nn.Linear, nn.Linear]]:
        return [(self.intermediate.dense, self.output.dense)]

    def forward(self, x, mask=None, heads=None, ffn_dim=None, need_attn=False, need_heads=False,
                need_ffn=False, cache=None, layer_idx=None, is_causal=False) -> BlockOutput:
        att = self.attention
        ctx, probs = att.self(x, x, mask, heads, need_attn, cache, layer_idx, is_causal)
        a = att.output.LayerNorm(att.output.dropout(att.output.dense(_merge_heads(ctx))) + x)
        inter, o = elastic_ffn(self.intermediate.dense, self.output.dense, self.act, a, ffn_dim)
        out = self.output.LayerNorm(self.output.dropout(o) + a)
        return BlockOutput(out, probs, ctx if need_heads else None, inter if need_ffn else None)


class MobileBertBlock(nn.Module):
    """MobileBERT layer (Sun et al. 2020): bottlenecks around attention and FFN(s) at ``inner_size``.

    Matches ``MobileBertLayer`` with ``use_bottleneck=True``, ``key_query_shared_bottleneck=True``,
    ``use_bottleneck_attention=False``, ``num_feedforward_networks=mobilebert_num_ffn``. Every
    stacked FFN has the block's FFN dimension. Deliberate difference: every norm uses
    ``layer_norm_eps`` (transformers' ``MobileBertOutput`` keeps LayerNorm's default 1e-5).
    """

    block_type = "mobilebert"

    def __init__(self, config: ElmConfig, sharing: str, ffn_dim: int, heads: int):
        super().__init__()
        h, i, eps, norm = config.hidden_size, config.inner_size, config.layer_norm_eps, config.mobilebert_norm
        self.sharing, self.heads = sharing, heads
        self.bottleneck = Holder(
            input=Holder(dense=nn.Linear(h, i), LayerNorm=make_norm(norm, i, eps)),
            attention=Holder(dense=nn.Linear(h, i), LayerNorm=make_norm(norm, i, eps)),
        )
        self.attention = Holder(
            self=SelfAttention(i, h, i, heads, sharing, config.attention_probs_dropout_prob),
            output=Holder(dense=nn.Linear(i, i), LayerNorm=make_norm(norm, i, eps)),
        )
        if config.mobilebert_num_ffn > 1:
            self.ffn = nn.ModuleList(
                Holder(intermediate=Holder(dense=nn.Linear(i, ffn_dim)),
                        output=Holder(dense=nn.Linear(ffn_dim, i), LayerNorm=make_norm(norm, i, eps)))
                for _ in range(config.mobilebert_num_ffn - 1)
            )
        self.intermediate = Holder(dense=nn.Linear(i, ffn_dim))
        self.output = Holder(
            dense=nn.Linear(ffn_dim, i), LayerNorm=make_norm(norm, i, eps),
            bottleneck=Holder(dense=nn.Linear(i, h), LayerNorm=make_norm(norm, h, eps),
                               dropout=nn.Dropout(config.hidden_dropout_prob)),
        )
        self.act = ACT2FN[config.hidden_act]

    @property
    def ffn_layers(self) -> list[tuple[nn.Linear, nn.Linear]]:
        stacked = [(f.intermediate.dense, f.output.dense) for f in getattr(self, "ffn", [])]
        return stacked + [(self.intermediate.dense, self.output.dense)]

    def forward(self, x, mask=None, heads=None, ffn_dim=None, need_attn=False, need_heads=False,
                need_ffn=False, cache=None, layer_idx=None, is_causal=False) -> BlockOutput:
        layer_input = self.bottleneck.input.LayerNorm(self.bottleneck.input.dense(x))
        shared = self.bottleneck.attention.LayerNorm(self.bottleneck.attention.dense(x))
        att = self.attention
        ctx, probs = att.self(shared, x if self.sharing == "none" else shared, mask, heads, need_attn, cache,
                              layer_idx, is_causal)
        a = att.output.LayerNorm(att.output.dense(_merge_heads(ctx)) + layer_input)
        for stacked in getattr(self, "ffn", []):
            _, o = elastic_ffn(stacked.intermediate.dense, stacked.output.dense, self.act, a, ffn_dim)
            a = stacked.output.LayerNorm(o + a)
        inter, o = elastic_ffn(self.intermediate.dense, self.output.dense, self.act, a, ffn_dim)
        o = self.output.LayerNorm(o + a)
        bn = self.output.bottleneck
        out = bn.LayerNorm(bn.dropout(bn.dense(o)) + x)
        return BlockOutput(out, probs, ctx if need_heads else None, inter if need_ffn else None)


BLOCKS = {"bert": BertBlock, "mobilebert": MobileBertBlock}


def build_block(config: ElmConfig, block: str, sharing: str, ffn_dim: int, heads: int) -> nn.Module:
    return BLOCKS[block](config, sharing, ffn_dim, heads)
