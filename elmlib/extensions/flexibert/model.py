"""FlexiBERT models: build any architecture of the design space at initialisation, BERT-style names.

FlexiBERT (Tuli et al., "FlexiBERT: Are current transformer architectures too homogeneous and
rigid?", JAIR 2023) lets every encoder layer pick its own token-mixing operation; Serianni & Kalita
(2023, "Training-free Neural Architecture Search for RNNs and Transformers", ACL) pretrained 500 such
small ELECTRA-style models and fine-tuned them on GLUE (data CC BY 4.0; 300 of them ship with elmlib,
see ``elmlib/benchmarks/README.md``). This module turns one benchmark record into a PyTorch model
whose weights are drawn from an explicit ``torch.Generator``; the zero-cost proxies in
:mod:`elmlib.extensions.proxies` score that model.

    from elmlib.extensions.flexibert import load_benchmark, build_model
    entry = load_benchmark()[0]                      # packaged dev file, 300 records
    model = build_model(entry.arch, seed=0)          # nn.Module, BERT-style attribute names

Interpretations (the benchmark gives names, not equations; docs/proxy.md repeats these):

* Embeddings follow ELECTRA-small: vocabulary 30522, embedding width 128, 512 positions, 2 token
  types, LayerNorm, and a linear projection 128 -> hidden when hidden = 256.
* Every layer is ``token mixing -> dense(h,h) + residual + LayerNorm -> FFN + residual + LayerNorm``
  (post-LN, as BERT/ELECTRA). Attribute names mirror transformers' ``BertLayer``:
  ``attention.self`` (the mixing operation), ``attention.output.dense``, ``intermediate.dense``,
  ``output.dense``, so the same proxy code scores BERT-style models.
* "Operation heads" n split the hidden vector into n groups of h/n channels; each head mixes tokens
  on its own group and ``attention.output.dense`` mixes across heads (as in multi-head attention):
  - SA/SDP: standard multi-head scaled dot-product attention, Q/K/V are h x h projections.
  - SA/WMA (weighted multiplicative attention, Luong et al. 2015 in FlexiBERT): scores
    ``softmax(Q_i W_i K_i^T / sqrt(h/n))`` with a learned bias-free matrix W_i (h/n x h/n) per head.
  - LT/DFT: ``Re(FFT2)`` over (tokens, head channels) per head, as FNet (Lee-Thorp et al., NAACL
    2022) does over (tokens, hidden); LT/DCT: orthonormal 2-D DCT-II instead. Both are
    parameter-free (the DCT matrices are non-persistent buffers rebuilt per sequence length).
  - DSC/k: depthwise 1-D convolution over tokens (kernel k, one filter per channel, 'same' padding)
    followed by a pointwise (1x1) convolution inside each head (grouped, n groups), i.e. a
    depthwise-separable convolution per head.
  The published reference code (not used here) adds an input projection before LT and uses a
  ConvBERT-style span-dynamic convolution for DSC; docs/proxy.md reports how that choice moves the
  parameter-count correlation.
* FFN with ``feed_forward_dimension`` d and ``num_feed_forward`` m: ``h -> d`` then (m-1) times
  ``d -> d`` (GELU after each), then ``d -> h``: the m stacked dense layers chain in sequence inside
  one residual block.
* Initialisation as BERT/ELECTRA: weights N(0, 0.02), biases 0, LayerNorm (1, 0), all drawn from one
  ``torch.Generator(seed)`` in module order; the global RNG is never used.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from elmlib.extensions.flexibert.benchmark import FlexiArchitecture, LayerSpec

VOCAB_SIZE, EMBEDDING_SIZE, MAX_POSITIONS, TYPE_VOCAB = 30522, 128, 512, 2
INIT_STD = 0.02


# ----------------------------------------------------------------------------------------------
# Token-mixing operations. Each maps (batch, tokens, hidden) -> (batch, tokens, hidden).


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, h = x.shape
    return x.view(b, t, heads, h // heads).transpose(1, 2)  # (b, heads, t, h/heads)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, n, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, n * d)


class SelfAttention(nn.Module):
    """Multi-head attention, SDP or WMA (per-head bilinear ``Q_i W_i K_i^T``)."""

    def __init__(self, hidden: int, heads: int, kind: str = "SDP"):
        super().__init__()
        self.heads, self.kind = heads, kind
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        if kind == "WMA":
            d = hidden // heads
            self.weight = nn.Parameter(torch.empty(heads, d, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = (_split_heads(f(x), self.heads) for f in (self.query, self.key, self.value))
        if self.kind == "WMA":
            q = q @ self.weight.unsqueeze(0)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:  # (b, t) with 1 = keep
            scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
        return _merge_heads(scores.softmax(-1) @ v)


def dct_matrix(n: int, dtype=torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II matrix C (n x n): ``C @ x`` is the DCT-II of ``x`` along dim 0."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.to(dtype)


class LinearTransform(nn.Module):
    """Parameter-free token mixing: per head, Re(2-D DFT) (FNet) or orthonormal 2-D DCT-II."""

    def __init__(self, hidden: int, heads: int, kind: str = "DFT"):
        super().__init__()
        self.heads, self.kind = heads, kind

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        xh = _split_heads(x, self.heads)  # (b, n, t, d)
        if self.kind == "DFT":
            out = torch.fft.fft2(xh, dim=(-2, -1)).real
        else:
            ct = dct_matrix(xh.shape[-2], xh.dtype).to(xh.device)
            cd = dct_matrix(xh.shape[-1], xh.dtype).to(xh.device)
            out = ct @ xh @ cd.T
        return _merge_heads(out)


class SeparableConv(nn.Module):
    """Depthwise 1-D conv over tokens (kernel k per channel) then a per-head pointwise conv."""

    def __init__(self, hidden: int, heads: int, kernel: int = 5):
        super().__init__()
        self.depthwise = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False)
        self.pointwise = nn.Conv1d(hidden, hidden, 1, groups=heads)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:  # padded tokens must not leak into their neighbours
            x = x * mask[..., None].to(x.dtype)
        return self.pointwise(self.depthwise(x.transpose(1, 2))).transpose(1, 2)


def make_mixer(hidden: int, layer: LayerSpec) -> nn.Module:
    op, param, heads = layer.operation_type, layer.operation_parameter, layer.num_operation_heads
    if op == "SA":
        return SelfAttention(hidden, heads, param)
    if op == "LT":
        return LinearTransform(hidden, heads, param)
    return SeparableConv(hidden, heads, int(param))


# ----------------------------------------------------------------------------------------------
# Layer and model with BertLayer attribute names.


class _DenseNorm(nn.Module):
    """dense -> residual add -> LayerNorm (BertSelfOutput / BertOutput)."""

    def __init__(self, d_in: int, hidden: int):
        super().__init__()
        self.dense = nn.Linear(d_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, hidden: int, layer: LayerSpec):
        super().__init__()
        self.self = make_mixer(hidden, layer)
        self.output = _DenseNorm(hidden, hidden)

    def forward(self, x, mask=None):
        return self.output(self.self(x, mask), x)


class _Intermediate(nn.Module):
    """``dense``: h -> d, then ``stack``: (m-1) further d -> d layers, GELU after each."""

    def __init__(self, hidden: int, dim: int, count: int):
        super().__init__()
        self.dense = nn.Linear(hidden, dim)
        self.stack = nn.ModuleList(nn.Linear(dim, dim) for _ in range(count - 1))

    def forward(self, x):
        x = nn.functional.gelu(self.dense(x))
        for layer in self.stack:
            x = nn.functional.gelu(layer(x))
        return x


class FlexiLayer(nn.Module):
    def __init__(self, hidden: int, layer: LayerSpec):
        super().__init__()
        self.spec = layer
        self.attention = _Attention(hidden, layer)
        self.intermediate = _Intermediate(hidden, layer.feed_forward_dimension, layer.num_feed_forward)
        self.output = _DenseNorm(layer.feed_forward_dimension, hidden)

    def forward(self, x, mask=None):
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class Embeddings(nn.Module):
    """ELECTRA-small embeddings (width 128) with a projection to the hidden size when it differs."""

    def __init__(self, hidden: int):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB_SIZE, EMBEDDING_SIZE, padding_idx=0)
        self.position_embeddings = nn.Embedding(MAX_POSITIONS, EMBEDDING_SIZE)
        self.token_type_embeddings = nn.Embedding(TYPE_VOCAB, EMBEDDING_SIZE)
        self.LayerNorm = nn.LayerNorm(EMBEDDING_SIZE, eps=1e-12)
        self.project = nn.Linear(EMBEDDING_SIZE, hidden) if hidden != EMBEDDING_SIZE else nn.Identity()

    def forward(self, input_ids, token_type_ids=None):
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        tt = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        e = self.word_embeddings(input_ids) + self.position_embeddings(pos) + self.token_type_embeddings(tt)
        return self.project(self.LayerNorm(e))


class _Encoder(nn.Module):
    def __init__(self, arch: FlexiArchitecture):
        super().__init__()
        self.layer = nn.ModuleList(FlexiLayer(arch.hidden_size, spec) for spec in arch.layers)


class FlexiBertModel(nn.Module):
    """Encoder of one FlexiBERT architecture; ``forward(input_ids, attention_mask)`` -> hidden states."""

    def __init__(self, arch: FlexiArchitecture):
        super().__init__()
        self.arch = arch
        self.embeddings = Embeddings(arch.hidden_size)
        self.encoder = _Encoder(arch)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.encoder.layer:
            x = layer(x, attention_mask)
        return x


@torch.no_grad()
def init_weights(model: nn.Module, generator: torch.Generator, std: float = INIT_STD) -> nn.Module:
    """BERT initialisation from ``generator`` only: weights N(0, std), biases 0, LayerNorm (1, 0)."""
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
            continue
        for name, p in module.named_parameters(recurse=False):
            if name == "bias":
                p.zero_()
            else:
                p.normal_(0.0, std, generator=generator)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
    return model


def build_model(arch: FlexiArchitecture | dict, seed: int = 0, *, with_embeddings: bool = True) -> FlexiBertModel:
    """Instantiate ``arch`` with weights drawn from ``torch.Generator().manual_seed(seed)``.

    Modules are created on the meta device (no default init, no global RNG, no wasted time) and then
    materialised on the CPU and filled by :func:`init_weights`. ``with_embeddings=False`` skips
    the 4M-parameter embedding tables for callers that only inspect encoder weights (faster).
    """
    if isinstance(arch, dict):
        arch = FlexiArchitecture.from_dict(arch)
    arch.validate()
    with torch.device("meta"):
        model = FlexiBertModel(arch)
        if not with_embeddings:
            model.embeddings = nn.Module()
    model = model.to_empty(device="cpu")
    return init_weights(model, torch.Generator().manual_seed(int(seed))).eval()
