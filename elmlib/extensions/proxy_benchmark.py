"""Validating zero-cost proxies on a benchmark: score every architecture at initialisation, fit a
proxy's setting by Kendall tau, and cross-validate it on held-out architectures (beyond the paper).

The benchmark is FlexiBERT's (Serianni & Kalita 2023, :mod:`elmlib.extensions.flexibert`): each record's
architecture is built from a seeded generator and scored by every proxy of
:data:`elmlib.extensions.proxies.PROXIES`; settings are chosen on training folds only.

    from elmlib.extensions.flexibert import load_benchmark
    df, feats = score_benchmark(load_benchmark(), seed=0)           # one row per architecture
    cv = cross_validate(feats, df["glue"], PROXIES["layerwise"])     # held-out Spearman / Kendall per fold
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable

import numpy as np
import pandas as pd
import torch

from elmlib.extensions.flexibert import build_model
from elmlib.extensions.proxies import DEV_SETTINGS, PROXIES, RECOMMENDED, Proxy, ProxyFeatures, proxy_features

@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run with ``n`` intra-op threads (None: leave the setting); one thread is the default for these
    small products on shared CPUs (docs/proxy.md, Speed)."""
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


# ----------------------------------------------------------------------------------------------
# Fitting and cross-validation (numpy/scipy only; settings are chosen by Kendall tau)


def rank_correlations(score, target) -> tuple[float, float]:
    """(Spearman rho, Kendall tau-b) of ``score`` against ``target``."""
    from scipy.stats import kendalltau, spearmanr  # heavy: scipy.stats, needed only for the correlations

    return float(spearmanr(score, target)[0]), float(kendalltau(score, target)[0])


def proxy_values(features: list[ProxyFeatures], proxy: Proxy, setting: float | None = None) -> np.ndarray:
    return np.array([proxy.fn(f, setting) for f in features], dtype=float)


def _best_setting(grid: tuple[float, ...], values_of: Callable[[float], np.ndarray], target) -> float:
    """The grid setting whose values have the highest Kendall tau against ``target``; ties -> the one
    nearest 0.5 (tau rounded to 12 digits, so float noise cannot break a tie)."""
    return max(grid, key=lambda s: (round(rank_correlations(values_of(s), target)[1], 12), -abs(s - 0.5)))


def fit_setting(features: list[ProxyFeatures], target, proxy: Proxy) -> float | None:
    """The grid setting with the highest Kendall tau on (features, target); ties -> the one nearest 0.5."""
    if not proxy.fitted:
        return None
    return float(_best_setting(proxy.grid, lambda s: proxy_values(features, proxy, s), target))


def cross_validate(features: list[ProxyFeatures], target, proxy: Proxy, *, folds: int = 5, repeats: int = 20,
                   seed: int = 0) -> pd.DataFrame:
    """Repeated k-fold: fit the setting on k-1 folds, score the held-out fold.

    Returns one row per held-out fold: repeat, fold, n, setting, rho, tau. Fold assignment comes
    from ``numpy.random.default_rng(seed)``; proxies without settings are simply scored per fold.
    """
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
            if proxy.fitted:  # the rule of fit_setting, on cached values
                setting = _best_setting(proxy.grid, lambda s: values(s)[train], target[train])
            rho, tau = rank_correlations(values(setting)[held], target[held])
            rows.append(dict(repeat=rep, fold=k, n=len(held), setting=setting, rho=rho, tau=tau))
    return pd.DataFrame(rows)


