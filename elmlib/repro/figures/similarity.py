"""Fig. 3a (CKA between the heads of one layer, paper Sec. III-C) and Figs. 3b and 6 (cosine similarity
between a layer's candidate blocks under relational vs classical KD, Sec. III-D), from a run folder's
``cka.csv`` and ``block_similarity.csv``."""
from __future__ import annotations

import math
from pathlib import Path

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


def plot_fig6(df: pd.DataFrame):
    plt = pyplot()
    kinds = [k for k in ("classical", "relational") if k in set(df.kd)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.8), squeeze=False, layout="constrained")
    # One colour scale for both panels, so they compare. It starts at the smallest similarity (rounded
    # down to 0.01), not at 0: at our scales every pair lies within a few hundredths of 1, which a 0-1
    # scale paints a single colour. Cells print three decimals for the same reason.
    low = min(math.floor(float(df.similarity.min()) * 100) / 100, 0.99)  # 0.99: never an empty range
    for ax, kd in zip(axes[0], kinds):
        m = df[df.kd == kd].pivot_table(index="block_i", columns="block_j", values="similarity")
        im = ax.imshow(m.values, cmap="viridis", vmin=low, vmax=1)
        labels = [BLOCK_LABELS[c] for c in m.columns]
        ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        for (i, j), v in pd.DataFrame(m.values).stack().items():
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8, color="w" if v < (low + 1) / 2 else "k")
        ax.set_title(f"{kd} KD, layer {df.layer.iloc[0] + 1}")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label=f"cosine similarity (scale from {low:.2f})")
    return fig
