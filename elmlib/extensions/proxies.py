"""Zero-cost proxies: rank language-model architectures from their initialised weights, no data.

Implements parameter counts and a ZeroLM-style data-free score (Chen et al., "ZeroLM: Data-Free
Transformer Architecture Search for Language Models", arXiv 2503.18646, 2025): split the network
into token-mixing and FFN sub-modules, measure each sub-module's capacity from the singular values
of its weight matrices, and combine the two with one balance weight. The functions take any
``nn.Module`` plus a ``role`` function that says which parameter belongs to which sub-module; the
default understands transformers' ``BertLayer`` names, which elmlib's FlexiBERT builder also uses.

    from elmlib.extensions.proxies import proxy_features, zerolm_score
    feats = proxy_features(model)                     # params, capacities, per sub-module
    score = zerolm_score(feats, balance=0.5)          # or: python -m elmlib proxy --benchmark flexibert

Scored on the FlexiBERT benchmark (Serianni & Kalita 2023) by ``python -m elmlib proxy``; the
cross-validated correlations are in docs/proxy.md and results/paper/proxy_flexibert.csv.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch
from torch import nn

from elmlib.train.runtime import count_parameters

if TYPE_CHECKING:
    import pandas as pd

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
    from elmlib.model.modeling_elm import ElmModel

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

    ``eigvalsh(W^T W)`` is 10-50x faster than an SVD on CPU for 1024x1024 matrices and exact up to
    rounding; negative rounding noise is clipped to zero.
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
    values; ~10x slower). Same weights and seed -> same features.
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
    layer stand in for two. On the FlexiBERT dev file depth is the strongest single factor of GLUE
    (4-layer models average 71.8, 2-layer ones 65.9), which this form credits and the flat sum
    under-credits. Capacities below 1 (a sub-module with no weights) are floored at 1.
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

#: Settings fitted on the whole FlexiBERT dev file (300 architectures, seed 0) by :func:`fit_setting`;
#: used for the CLI's columns. ``tests/test_proxies.py::test_dev_settings_refit`` re-fits them.
#: The correlations reported for these proxies are cross-validated, never this fit.
DEV_SETTINGS = {"zerolm": 0.4, "layerwise": 0.5}
#: The recommended proxy: the CLI's ``score`` column.
RECOMMENDED = "layerwise"


# ----------------------------------------------------------------------------------------------
# Fitting and cross-validation (numpy/scipy only; settings are chosen by Kendall tau)


def rank_correlations(score, target) -> tuple[float, float]:
    """(Spearman rho, Kendall tau-b) of ``score`` against ``target``."""
    from scipy.stats import kendalltau, spearmanr

    return float(spearmanr(score, target)[0]), float(kendalltau(score, target)[0])


def proxy_values(features: list[ProxyFeatures], proxy: Proxy, setting: float | None = None) -> np.ndarray:
    return np.array([proxy.fn(f, setting) for f in features], dtype=float)


def fit_setting(features: list[ProxyFeatures], target, proxy: Proxy) -> float | None:
    """The grid setting with the highest Kendall tau on (features, target); ties -> the one nearest 0.5."""
    if not proxy.fitted:
        return None
    best = max(proxy.grid, key=lambda s: (round(rank_correlations(proxy_values(features, proxy, s), target)[1], 12),
                                          -abs(s - 0.5)))
    return float(best)


def cross_validate(features: list[ProxyFeatures], target, proxy: Proxy, *, folds: int = 5, repeats: int = 20,
                   seed: int = 0) -> "pd.DataFrame":
    """Repeated k-fold: fit the setting on k-1 folds, score the held-out fold.

    Returns one row per held-out fold: repeat, fold, n, setting, rho, tau. Fold assignment comes
    from ``numpy.random.default_rng(seed)``; proxies without settings are simply scored per fold.
    """
    import pandas as pd

    target = np.asarray(target, dtype=float)
    n = len(features)
    if n < 2 * folds:
        raise ValueError(f"cross_validate: {n} architectures are too few for {folds} folds")
    rng = np.random.default_rng(seed)
    values_cache: dict[float | None, np.ndarray] = {}

    def values(setting):
        if setting not in values_cache:
            values_cache[setting] = proxy_values(features, proxy, setting)
        return values_cache[setting]

    rows = []
    for rep in range(repeats):
        order = rng.permutation(n)
        for k, held in enumerate(np.array_split(order, folds)):
            train = np.setdiff1d(order, held)
            setting = None
            if proxy.fitted:  # same rule as fit_setting, on cached values
                setting = max(proxy.grid, key=lambda s: (
                    round(rank_correlations(values(s)[train], target[train])[1], 12), -abs(s - 0.5)))
            rho, tau = rank_correlations(values(setting)[held], target[held])
            rows.append(dict(repeat=rep, fold=k, n=len(held), setting=setting, rho=rho, tau=tau))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# The FlexiBERT benchmark: scoring, correlation table, figure, CLI

#: Reference correlations (Spearman, Kendall) from ../shared/paper/related.md, with their source.
REFERENCES = {
    "params": (0.645, 0.447, "number of parameters, this dev file (related.md)"),
    "zerolm": (0.76, 0.53, "ZeroLM, all 500 FlexiBERT architectures (arXiv 2503.18646)"),
    "layerwise": (0.80, 0.58, "goal of issue 6 (held-out architectures)"),
}

#: Scale presets: how many architectures (None = all) and how much cross-validation.
SCALES = {
    "smoke": dict(n_arch=60, folds=5, repeats=2),
    "small": dict(n_arch=None, folds=5, repeats=5),
    "paper": dict(n_arch=None, folds=5, repeats=20),
}


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run with ``n`` intra-op threads. One thread is the fast choice for these small products on a
    shared machine: with 2 threads and other jobs on the cores, OpenMP spinning made scoring 5-10x
    slower in our measurements (docs/proxy.md)."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def score_benchmark(entries, *, seed: int = 0, measure: str = "participation", threads: int | None = 1):
    """Build every architecture at initialisation (``seed``) and compute all proxies.

    Returns ``(df, features)``: ``df`` has one row per architecture (``id``, ``glue`` when the file
    has scores, ``n_layers``, ``hidden_size``, raw features, one column per proxy at
    :data:`DEV_SETTINGS`, and ``score`` = the recommended proxy); ``features`` is the list of
    :class:`ProxyFeatures` in the same order (for cross-validation). ``df.attrs["wall_time_s"]``
    holds the build-and-score time.
    """
    import pandas as pd

    from elmlib.extensions.flexibert import build_model

    start = time.perf_counter()
    rows, feats = [], []
    with _torch_threads(threads):
        for e in entries:
            f = proxy_features(build_model(e.arch, seed), measure=measure, seed=seed)
            feats.append(f)
            row = {"id": e.id}
            if e.scores is not None:
                row["glue"] = float(e.scores["glue"])
            row.update(n_layers=len(e.arch.layers), hidden_size=e.arch.hidden_size,
                       mixing_capacity=f.mixing_capacity, ffn_capacity=f.ffn_capacity)
            for name, proxy in PROXIES.items():
                row[name] = proxy.fn(f, DEV_SETTINGS.get(name))
            row["score"] = row[RECOMMENDED]
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["wall_time_s"] = time.perf_counter() - start
    return df, feats


#: Baselines read from the architecture description, not the weights (no settings). They are in
#: the table to show how much of the ranking the search-space descriptors alone explain; the
#: second one was chosen after a regression of GLUE on the descriptors of this same file
#: (docs/proxy.md), so its figures are optimistic.
BASELINES = {
    "n_layers": lambda df: df["n_layers"].to_numpy(dtype=float),
    "depth_then_hidden": lambda df: df["n_layers"].to_numpy(dtype=float) * 1e4 + df["hidden_size"].to_numpy(),
}


def correlation_table(df, features, *, scale: str = "smoke", seed: int = 0, folds: int = 5,
                      repeats: int = 20) -> "pd.DataFrame":
    """Tidy table: per proxy and metric, the cross-validated held-out mean and spread (std over
    folds), the in-sample value on all rows, and the reference figure where one exists.
    Rows for :data:`BASELINES` (descriptor-only rankings) use the same folds."""
    import pandas as pd

    out = []
    glue = df["glue"].to_numpy()
    candidates = [(name, proxy, features, df[name].to_numpy()) for name, proxy in PROXIES.items()]
    for name, values in BASELINES.items():
        v = values(df)
        candidates.append((name, Proxy(name, lambda x, _: x), list(v), v))
    for name, proxy, feats, column in candidates:
        cv = cross_validate(feats, glue, proxy, folds=folds, repeats=repeats, seed=seed)
        full = rank_correlations(column, glue)
        ref = REFERENCES.get(name)
        settings = cv["setting"].dropna()
        for i, metric in enumerate(("spearman", "kendall")):
            col = "rho" if metric == "spearman" else "tau"
            common = dict(proxy=name, metric=metric, n_arch=len(df), scale=scale, seed=seed,
                          reference_value=ref[i] if ref else float("nan"),
                          reference_source=ref[2] if ref else "")
            out.append(dict(common, evaluation=f"cv_heldout_{folds}fold_x{repeats}",
                            value=float(cv[col].mean()), spread=float(cv[col].std(ddof=1)),
                            n_folds=len(cv),
                            fitted_setting=(f"{settings.min():g}..{settings.max():g}" if len(settings) else "")))
            out.append(dict(common, evaluation="in_sample_all", value=full[i], spread=float("nan"),
                            n_folds=0, fitted_setting=(f"{DEV_SETTINGS[name]:g}" if name in DEV_SETTINGS else "")))
    cols = ["proxy", "metric", "evaluation", "value", "spread", "reference_value", "reference_source",
            "n_arch", "n_folds", "fitted_setting", "scale", "seed"]
    return pd.DataFrame(out)[cols]


def plot_scatter(df, png_path, *, proxies=("params", "zerolm", "score")):
    """Scatter of each proxy (rank-normalised x) vs GLUE, coloured by depth; writes PNG and PDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from elmlib.repro.figsave import save_figure

    titles = {"params": "number of parameters", "zerolm": "ZeroLM-style (whole model)",
              "score": "elmlib layerwise (recommended)", "nonemb_params": "non-embedding parameters",
              "layerwise": "elmlib layerwise"}
    fig, axes = plt.subplots(1, len(proxies), figsize=(3.3 * len(proxies), 3.2), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), proxies):
        for depth, marker, colour in ((2, "o", "#1b9e77"), (4, "s", "#d95f02")):
            sub = df[df["n_layers"] == depth]
            ax.scatter(sub[name], sub["glue"], s=12, marker=marker, color=colour, alpha=0.7,
                       linewidths=0, label=f"{depth} layers")
        rho, tau = rank_correlations(df[name], df["glue"])
        ax.set_title(f"{titles.get(name, name)}\n(in-sample) rho={rho:.2f}, tau={tau:.2f}", fontsize=9)
        ax.set_xlabel(name, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("GLUE dev score", fontsize=9)
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    png_path = Path(png_path)
    try:
        for path in (png_path, png_path.with_suffix(".pdf")):
            save_figure(fig, path, dpi=200)
    finally:
        plt.close(fig)
    return png_path


def run_flexibert(*, scale: str = "smoke", seed: int = 0, data=None, measure: str = "participation"):
    """Score the FlexiBERT benchmark at ``scale`` and build the correlation table.

    Returns ``(scores_df, table_df)``. ``smoke`` uses the first 60 architectures of the file, the
    other scales all of them (300 for the packaged dev file).
    """
    from elmlib.io.inputs import benchmark_entries

    if scale not in SCALES:
        raise ValueError(f"scale = {scale!r} is not allowed; expected one of {list(SCALES)}")
    preset = SCALES[scale]
    entries = benchmark_entries(data, scores=True)  # correlations need every record's GLUE score
    if preset["n_arch"]:
        entries = entries[: preset["n_arch"]]
    df, feats = score_benchmark(entries, seed=seed, measure=measure)
    table = correlation_table(df, feats, scale=scale, seed=seed, folds=preset["folds"], repeats=preset["repeats"])
    table.attrs["wall_time_s"] = df.attrs["wall_time_s"]
    return df, table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", default="flexibert", choices=["flexibert"],
                        help="benchmark format of --data (only FlexiBERT for now)")
    parser.add_argument("--data", default=None,
                        help="benchmark JSON (list of records, any subset); default: the packaged dev file")
    parser.add_argument("--no-scores", action="store_true",
                        help="score architectures only: records need no 'scores' (any are ignored), no correlations")
    parser.add_argument("--out", required=True, help="CSV to write (with a .provenance.json beside it)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and sketch seed")
    parser.add_argument("--measure", default="participation", choices=sorted(CAPACITY_MEASURES),
                        help="capacity of one weight matrix")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on shared CPUs)")


def _print_correlations(df) -> None:
    """In-sample Spearman/Kendall of every proxy against GLUE; a correlation that is undefined (constant
    values) is printed as such, never as a bare NaN."""
    print(f"{'proxy':16s} {'spearman':>9s} {'kendall':>8s}   (in-sample on this file)")
    if df["glue"].nunique() < 2:
        print(f"undefined: all {len(df)} records have the same GLUE score ({df['glue'].iloc[0]:g})")
        return
    for name in [*PROXIES, "score"]:
        if df[name].nunique() < 2:
            print(f"{name:16s} undefined (the proxy is constant on this file)")
            continue
        rho, tau = rank_correlations(df[name], df["glue"])
        print(f"{name:16s} {rho:9.3f} {tau:8.3f}")


def main(args: argparse.Namespace) -> int:
    from elmlib.io.files import write_result
    from elmlib.io.inputs import benchmark_entries

    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; give the CSV file to write, e.g. {Path(args.out) / 'proxy.csv'}")
    if args.threads < 1:
        raise ValueError(f"--threads {args.threads} is not allowed; give 1 or more (1 is fastest on shared CPUs)")
    entries = benchmark_entries(args.data, scores=not args.no_scores)  # every record checked before scoring
    df, _ = score_benchmark(entries, seed=args.seed, measure=args.measure, threads=args.threads)
    wall = df.attrs["wall_time_s"]
    config = dict(benchmark=args.benchmark, data=str(args.data) if args.data else "packaged:flexibert_dev.json",
                  scores=not args.no_scores, measure=args.measure, threads=args.threads, settings=DEV_SETTINGS, recommended=RECOMMENDED)
    write_result(df, args.out, config=config, seed=args.seed, wall_time_s=wall, n_architectures=len(df))
    print(f"scored {len(df)} architectures in {wall:.1f} s -> {args.out}")
    if "glue" in df and len(df) > 2:
        _print_correlations(df)
    return 0
