"""Zero-cost proxies: rank language-model architectures from their initialised weights, no data.

Implements parameter counts and a ZeroLM-style data-free score (Chen et al., "ZeroLM: Data-Free
Transformer Architecture Search for Language Models", arXiv 2503.18646, 2025): split the network
into token-mixing and FFN sub-modules, measure each sub-module's capacity from the singular values
of its weight matrices, and combine the two with one balance weight; elmlib's ``layerwise`` variant
applies the balance per layer and sums over depth. The functions take any ``nn.Module`` plus a
``role`` function that says which parameter belongs to which sub-module; the default understands
transformers' ``BertLayer`` names, which elmlib's FlexiBERT builder also uses. ``score_architecture``
scores an architecture of elmlib's own space (proxy-assisted and proxy-only search).

    from elmlib.extensions.proxies import proxy_features, zerolm_score
    feats = proxy_features(model)                     # params, capacities, per sub-module
    score = zerolm_score(feats, balance=0.5)          # or: python -m elmlib proxy --benchmark flexibert

Validated on the FlexiBERT benchmark (Serianni & Kalita 2023) by :mod:`elmlib.extensions.proxy_benchmark`;
the cross-validated correlations are in docs/proxy.md and results/paper/proxy_flexibert.csv.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from elmlib.model.modeling_elm import ElmModel
from elmlib.train.runtime import count_parameters

MIXING, FFN = "mixing", "ffn"

# ----------------------------------------------------------------------------------------------
# Which weight belongs to which sub-module


def bert_role(name: str) -> str | None:
    """Role of parameter ``name`` in a BERT-style encoder: ``"mixing"``, ``"ffn"`` or ``None``.

    ``...attention.*`` (``self.query/key/value``, any other token-mixing weights, and
    ``attention.output.dense``) is token mixing; ``...intermediate.*`` and the layer's
    ``output.dense`` are FFN. Embeddings, LayerNorms and task heads are ignored. Works for
    transformers' BertModel/MobileBert-style names and for :mod:`elmlib.extensions.flexibert` models.
    """
    parts = name.split(".")
    if "embeddings" in parts or "LayerNorm" in parts or "layer" not in parts:
        return None
    i = parts.index("layer")
    rest = parts[i + 2:]  # after "layer.<index>."
    if not rest:
        return None
    if rest[0] == "attention":
        return MIXING
    if rest[0] == "intermediate" or (rest[0] == "output" and "dense" in rest):
        return FFN
    return None


def elm_role(name: str) -> str | None:
    """Role of a parameter of an elmlib ``ElmModel``: like :func:`bert_role`, plus MobileBERT's
    bottleneck projections (they feed attention: mixing) and its stacked FFNs (``ffn.<k>.*``: FFN)."""
    parts = name.split(".")
    if "embeddings" in parts or "LayerNorm" in parts or "layer" not in parts:
        return None
    rest = parts[parts.index("layer") + 2:]
    if rest[:1] == ["bottleneck"]:
        return MIXING
    if rest[:1] == ["ffn"]:
        return FFN
    return bert_role(name)


def score_architecture(space, arch, seed: int = 0, proxy: str = "layerwise") -> float:
    """The recommended proxy of an architecture of elmlib's search space, from a seeded initialisation
    (no data, no training): what proxy-assisted and proxy-only search rank candidates by."""
    if proxy not in DEV_SETTINGS:
        raise ValueError(f"proxy={proxy!r} is not allowed; expected one of {sorted(DEV_SETTINGS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ElmModel(space.config(arch))
    features = proxy_features(model, role=elm_role, seed=seed)
    score = layerwise_score if proxy == "layerwise" else zerolm_score
    return float(score(features, DEV_SETTINGS[proxy]))


def weight_matrices(model: nn.Module, role: Callable[[str], str | None] = bert_role
                    ) -> Iterator[tuple[str, str, torch.Tensor]]:
    """Yield ``(name, role, matrix)`` for every weight matrix with a role.

    Linear weights are used as they are; convolution kernels ``(out, in/groups, k)`` become
    ``(out, in/groups * k)``; a 3-D non-convolution parameter ``(heads, a, b)`` (e.g. per-head WMA
    matrices) yields one matrix per head. Biases and vectors are skipped.
    """
    for module_name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            name = f"{module_name}.{pname}" if module_name else pname
            r = role(name)
            if r is None or p.ndim < 2:
                continue
            w = p.detach()
            if isinstance(module, nn.modules.conv._ConvNd):
                yield name, r, w.reshape(w.shape[0], -1)
            elif w.ndim == 2:
                yield name, r, w
            else:
                for h, mat in enumerate(w.reshape(-1, w.shape[-2], w.shape[-1])):
                    yield f"{name}[{h}]", r, mat


# ----------------------------------------------------------------------------------------------
# Capacity of one matrix


def singular_values(w: torch.Tensor) -> torch.Tensor:
    """Singular values of ``w`` via the eigenvalues of its smaller Gram matrix (float64).

    ``eigvalsh(W^T W)`` avoids an SVD (docs/proxy.md, Speed) and is exact up to rounding; negative
    rounding noise is clipped to zero.
    """
    w = w.to(torch.float64)
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    return torch.linalg.eigvalsh(gram).clamp_min(0).sqrt()


def participation_rank(w: torch.Tensor, generator: torch.Generator | None = None, probes: int = 64) -> float:
    """Participation ratio of the squared singular values, ``(sum s^2)^2 / sum s^4``.

    It is the Renyi-2 effective rank of the spectrum ``s^2 / sum s^2`` (1 for a rank-one matrix,
    ``min(m, n)`` for a flat spectrum), computed without an SVD: ``sum s^2 = ||W||_F^2`` and
    ``sum s^4 = ||W^T W||_F^2``. The latter is exact (one Gram product) when ``min(m, n) <= 4 *
    probes`` or ``generator`` is None; for larger matrices it is Hutchinson's unbiased estimate
    ``mean_j ||W^T W z_j||^2`` over ``probes`` Rademacher vectors drawn from ``generator``, which
    costs ``4 * probes * m * n`` instead of ``min(m,n)^2 * max(m,n)`` flops. Its relative error is
    about ``sqrt(2 / probes) * ||(W^T W)^2||_F / tr((W^T W)^2)``: below 1 % for the 512x512 and
    1024x1024 matrices of the FlexiBERT space (tests/test_proxies.py checks it against exact).
    """
    w = w.to(torch.float32)
    if w.shape[0] < w.shape[1]:
        w = w.T  # (m, n) with m >= n: the Gram matrix is n x n
    fro2 = float((w * w).sum())
    if generator is None or w.shape[1] <= 4 * probes:
        gram = w.T @ w
        s4 = float((gram * gram).sum())
    else:
        z = torch.randint(0, 2, (w.shape[1], probes), generator=generator, dtype=torch.float32) * 2 - 1
        y = w.T @ (w @ z)
        s4 = float((y * y).sum()) / probes
    return fro2 * fro2 / s4 if s4 > 0 else 0.0


def effective_rank(sigma: torch.Tensor) -> float:
    """Roy & Vetterli (2007) effective rank: exp of the entropy of the normalised singular values."""
    total = sigma.sum()
    if total <= 0:
        return 0.0
    p = sigma / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


# ----------------------------------------------------------------------------------------------
# Features and proxies


@dataclass
class ProxyFeatures:
    """Everything the proxies need from one model (cheap to keep for 1000s of architectures)."""

    params: int                 # all parameters
    nonemb_params: int          # parameters outside embedding modules
    mixing_params: int
    ffn_params: int
    mixing_capacity: float      # sum of effective ranks of token-mixing matrices
    ffn_capacity: float         # sum of effective ranks of FFN matrices
    layer_mixing_capacity: list[float] = field(default_factory=list)  # per encoder layer
    layer_ffn_capacity: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The scalar features (per-layer lists dropped)."""
        d = asdict(self)
        d.pop("layer_mixing_capacity")
        d.pop("layer_ffn_capacity")
        return d


def _is_embedding_param(name: str) -> bool:
    return "embeddings" in name.split(".")


def num_parameters(model: nn.Module) -> int:
    """Total number of parameters (the baseline every zero-cost proxy has to beat)."""
    return count_parameters(model)


def num_nonembedding_parameters(model: nn.Module) -> int:
    """Parameters outside any module or attribute named ``embeddings`` (lookup tables, their LayerNorm
    and the embedding projection), i.e. what grows with depth and width, not with the vocabulary."""
    return count_parameters(p for n, p in model.named_parameters() if not _is_embedding_param(n))


def _layer_index(name: str) -> int | None:
    parts = name.split(".")
    if "layer" in parts:
        i = parts.index("layer")
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


CAPACITY_MEASURES = {
    "participation": participation_rank,
    "participation_exact": lambda w, generator: participation_rank(w, None),
    "entropy": lambda w, generator: effective_rank(singular_values(w)),
}


def proxy_features(model: nn.Module, role: Callable[[str], str | None] = bert_role,
                   measure: str = "participation", seed: int = 0) -> ProxyFeatures:
    """Parameter counts and SVD capacities of ``model``'s token-mixing and FFN sub-modules.

    ``measure`` picks the capacity of one matrix: ``"participation"`` (Renyi-2 effective rank; large
    matrices use a Hutchinson sketch seeded by ``seed``; the default), ``"participation_exact"``
    (same, always exact) or ``"entropy"`` (Roy & Vetterli's Shannon effective rank from the singular
    values; slower). Same weights and seed -> same features.
    """
    if measure not in CAPACITY_MEASURES:
        raise ValueError(f"measure = {measure!r} is not allowed; expected one of {list(CAPACITY_MEASURES)}")
    capacity = CAPACITY_MEASURES[measure]
    generator = torch.Generator().manual_seed(int(seed))
    params = {MIXING: 0, FFN: 0}
    for n, p in model.named_parameters():
        r = role(n)
        if r in params:
            params[r] += p.numel()
    cap = {MIXING: 0.0, FFN: 0.0}
    per_layer: dict[int, dict[str, float]] = {}
    for name, r, w in weight_matrices(model, role):
        c = capacity(w, generator)
        cap[r] += c
        li = _layer_index(name)
        if li is not None:
            slot = per_layer.setdefault(li, {MIXING: 0.0, FFN: 0.0})
            slot[r] += c
    return ProxyFeatures(
        params=num_parameters(model), nonemb_params=num_nonembedding_parameters(model),
        mixing_params=params[MIXING], ffn_params=params[FFN],
        mixing_capacity=cap[MIXING], ffn_capacity=cap[FFN],
        layer_mixing_capacity=[per_layer[k][MIXING] for k in sorted(per_layer)],
        layer_ffn_capacity=[per_layer[k][FFN] for k in sorted(per_layer)])


def zerolm_score(f: ProxyFeatures, balance: float) -> float:
    """ZeroLM-style score: ``balance * log C_mix + (1 - balance) * log C_ffn``.

    ``C`` is the summed effective rank of a sub-module's weight matrices (ZeroLM's SVD-based
    capacity); logs make the balance a trade of relative (not absolute) capacity, so a sub-module
    with no weights (``C = 0``) is floored at 1 instead of sending the score to -inf.
    """
    return balance * math.log(max(f.mixing_capacity, 1.0)) + (1 - balance) * math.log(max(f.ffn_capacity, 1.0))


def layerwise_score(f: ProxyFeatures, balance: float) -> float:
    """elmlib's proxy: ``sum over layers l of [balance * log C_mix,l + (1 - balance) * log C_ffn,l]``.

    ZeroLM's balance, applied per layer and summed over depth, i.e. the log of the *product* of the
    layers' balanced capacities. Reasoning: stacked layers compose, so expressivity multiplies
    with depth rather than adds (Montufar et al., NeurIPS 2014, count linear regions that grow
    exponentially with depth), while a sum of capacities (ZeroLM, parameter count) lets one wide
    layer stand in for two (docs/proxy.md). Capacities below 1 (a sub-module with no weights) are
    floored at 1.
    """
    return float(sum(balance * math.log(max(m, 1.0)) + (1 - balance) * math.log(max(c, 1.0))
                     for m, c in zip(f.layer_mixing_capacity, f.layer_ffn_capacity)))


@dataclass(frozen=True)
class Proxy:
    """A named proxy: ``fn(features, setting)``; ``grid`` lists the settings CV may pick from."""

    name: str
    fn: Callable[[ProxyFeatures, float | None], float]
    grid: tuple[float, ...] = ()
    description: str = ""

    @property
    def fitted(self) -> bool:
        return bool(self.grid)


BALANCE_GRID = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 11))

PROXIES: dict[str, Proxy] = {
    "params": Proxy("params", lambda f, _: float(f.params), (), "number of parameters"),
    "nonemb_params": Proxy("nonemb_params", lambda f, _: float(f.nonemb_params), (),
                           "parameters outside the embeddings"),
    "zerolm": Proxy("zerolm", zerolm_score, BALANCE_GRID,
                    "ZeroLM-style: balance-weighted log capacity of token mixing vs FFN, whole model"),
    "layerwise": Proxy("layerwise", layerwise_score, BALANCE_GRID,
                       "elmlib: the same balance per layer, log-capacities summed over depth"),
}

#: Settings fitted on the whole FlexiBERT dev file (300 architectures, seed 0) by ``proxy_benchmark.fit_setting``;
#: used for the CLI's columns. ``tests/test_proxies.py::test_dev_settings_refit`` re-fits them.
#: The correlations reported for these proxies are cross-validated, never this fit.
DEV_SETTINGS = {"zerolm": 0.4, "layerwise": 0.5}
#: The recommended proxy: the CLI's ``score`` column.
RECOMMENDED = "layerwise"
