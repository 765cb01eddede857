"""Fig. 3a (CKA between the heads of one layer, paper Sec. III-C) and Figs. 3b and 6 (cosine similarity
between a layer's candidate blocks under relational vs classical KD, Sec. III-D), from a run folder's
``cka.csv`` and ``block_similarity.csv``."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from elmlib.io.inputs import read_json
from elmlib.repro.figures.style import BLOCK_LABELS, pyplot


def middle_layer(num_layers: int) -> int:
    """The paper's "layer 6" (index 5 of 12); for fewer layers, the middle one."""
    return 5 if num_layers >= 12 else num_layers // 2


def fig3a_table(run_dir, scale: str, seed: int, layer: int | None = None) -> pd.DataFrame:
    cka = pd.read_csv(Path(run_dir) / "cka.csv")
    arch = read_json(Path(run_dir) / "arch.json", "found architecture", "finish the search of this run folder")
    layer = middle_layer(len(arch["layers"])) if layer is None else layer
    if layer not in set(cka.layer):
        raise ValueError(f"layer={layer} is not allowed; the run has layers {sorted(set(cka.layer))}")
    out = cka[cka.layer == layer].copy()
    return out.assign(heads_before=int(math.isqrt(len(out))), heads_after=arch["layers"][layer]["heads"],
                      scale=scale, seed=seed)


def plot_fig3a(df: pd.DataFrame):
    plt = pyplot()
    m = df.pivot_table(index="head_i", columns="head_j", values="cka")
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    im = ax.imshow(m.values, cmap="magma", vmin=0, vmax=1)
    n = len(m)
    ax.set_xticks(range(n), [str(i + 1) for i in range(n)])
    ax.set_yticks(range(n), [str(i + 1) for i in range(n)])
    ax.set_xlabel("head")
    ax.set_ylabel("head")
    if n <= 12:
        for (i, j), v in pd.DataFrame(m.values).stack().items():
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="w" if v < 0.6 else "k")
    ax.set_title(f"CKA between heads, layer {df.layer.iloc[0] + 1}\n"
                 f"heads {df.heads_before.iloc[0]} -> {df.heads_after.iloc[0]} after Algorithm 1")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def similarity_table(run_dirs: dict, scale: str, seed: int) -> pd.DataFrame:
    """All block-pair similarities of each run: run_dirs maps kd ("relational"/"classical") -> folder."""
    frames = [pd.read_csv(Path(d) / "block_similarity.csv").assign(kd=kd) for kd, d in run_dirs.items()]
    return pd.concat(frames, ignore_index=True).assign(scale=scale, seed=seed)


def fig3b_table(run_dirs: dict, scale: str, seed: int) -> pd.DataFrame:
    """Mean off-diagonal cosine similarity between a layer's blocks, per layer and KD kind."""
    df = similarity_table(run_dirs, scale, seed)
    off = df[df.block_i != df.block_j]
    return off.groupby(["scale", "seed", "kd", "layer"], as_index=False).similarity.mean()


def plot_fig3b(df: pd.DataFrame):
    """Mean over seeds per layer, whiskers one sd. Points, not bars: the KD kinds differ in the third
    decimal at small scales, which bars drawn from zero would hide."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    kinds = sorted(df.kd.unique())
    for k, kd in enumerate(kinds):
        g = df[df.kd == kd].groupby("layer").similarity.agg(["mean", "std"]).reset_index()
        ax.errorbar(g.layer + 1 + (k - (len(kinds) - 1) / 2) * 0.08, g["mean"], yerr=g["std"].fillna(0), marker="o",
                    capsize=3, label={"classical": "classical KD (KL + MSE)",
                                      "relational": "relational KD (Pearson)"}.get(kd, kd))
    ax.set_xticks(sorted(df.layer.unique() + 1))
    ax.set_xlabel("layer")
    ax.set_ylabel("mean cosine similarity\nbetween blocks")
    n = df.seed.nunique() if "seed" in df else 1
    ax.set_title("Similarity of the candidate blocks' features" + (f" (mean ± sd, {n} seeds)" if n > 1 else ""))
    ax.legend()
    return fig


def fig6_table(run_dirs: dict, scale: str, seed: int, layer: int | None = None) -> pd.DataFrame:
    df = similarity_table(run_dirs, scale, seed)
    layer = middle_layer(df.layer.nunique()) if layer is None else layer
    return df[df.layer == layer].reset_index(drop=True)


def _matrix_panel(ax, m: pd.DataFrame, cmap: str, low: float, high: float, title: str):
    """One block-by-block matrix with the diagonal masked (a block's similarity to itself is 1 by
    definition) and every off-diagonal cell printed to three decimals."""
    values = m.values.copy()
    np.fill_diagonal(values, np.nan)
    colours = plt_colormap(cmap)
    im = ax.imshow(values, cmap=colours, vmin=low, vmax=high)
    labels = [BLOCK_LABELS[c] for c in m.columns]
    ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), v in pd.DataFrame(values).stack().dropna().items():
        dark = v < (low + high) / 2 if cmap == "viridis" else abs(v) > max(abs(low), abs(high)) / 2
        ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8, color="w" if dark else "k")
    ax.set_title(title)
    return im


def plot_fig6(df: pd.DataFrame):
    """Classical and relational KD side by side on one colour scale over the off-diagonal range, and their
    difference (classical - relational: positive where relational KD made two blocks less similar)."""
    plt = pyplot()
    kinds = [k for k in ("classical", "relational") if k in set(df.kd)]
    both = len(kinds) == 2
    fig, axes = plt.subplots(1, len(kinds) + both, figsize=(5.6 * (len(kinds) + both), 4.8), squeeze=False,
                             layout="constrained")
    mats = {kd: df[df.kd == kd].pivot_table(index="block_i", columns="block_j", values="similarity") for kd in kinds}
    off = pd.concat([m.where(~np.eye(len(m), dtype=bool)).stack() for m in mats.values()])
    low, high = float(off.min()), float(off.max())
    high = high if high > low else low + 1e-3  # never an empty range
    where = f"layer {df.layer.iloc[0] + 1}, {df.scale.iloc[0]} scale, seed {df.seed.iloc[0]}"
    for ax, kd in zip(axes[0], kinds):
        im = _matrix_panel(ax, mats[kd], "viridis", low, high, f"{kd} KD ({where})")
    fig.colorbar(im, ax=axes[0][:len(kinds)].tolist(), shrink=0.8,
                 label=f"cosine similarity, off-diagonal range {low:.3f}-{high:.3f}")
    if both:
        diff = mats["classical"] - mats["relational"]
        reach = max(float(diff.where(~np.eye(len(diff), dtype=bool)).abs().max().max()), 1e-4)
        im = _matrix_panel(axes[0][2], diff, "PuOr_r", -reach, reach, "classical - relational")
        fig.colorbar(im, ax=axes[0][2], shrink=0.8, label="difference in cosine similarity")
    return fig


def plt_colormap(name: str):
    """A matplotlib colormap whose masked (NaN) cells are light grey."""
    from matplotlib import colormaps  # heavy: matplotlib, only when a figure is drawn

    return colormaps[name].with_extremes(bad="0.9")
