"""Fig. 1 (the FFN dims PCA-guided growth gives each block, paper Sec. III-B) and Fig. 2 (the PCA
scores of each layer's blocks over pretraining epochs), from a run folder's ``pca_scores.csv`` and
``growth.csv``."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from elmlib.repro.figures.style import BLOCK_LABELS, COLORS, pyplot, ticks


def fig1_table(run_dir, scale: str, seed: int) -> pd.DataFrame:
    """FFN dim of every (layer, block) after each pretraining epoch (epoch 0 = start)."""
    pca = pd.read_csv(Path(run_dir) / "pca_scores.csv")
    growth_path = Path(run_dir) / "growth.csv"
    growth = pd.read_csv(growth_path) if growth_path.stat().st_size > 1 else pd.DataFrame(columns=["epoch"])
    start = pca[pca.epoch == pca.epoch.min()].assign(epoch=0, grown=False)
    rows = [start]
    for epoch, scores in pca.groupby("epoch"):
        grown = growth[growth.epoch == epoch].set_index(["layer", "block"])["new_ffn_dim"] if len(growth) else {}
        after = scores.copy()
        after["grown"] = [(l, b) in grown for l, b in zip(after.layer, after.block)]
        after["ffn_dim"] = [grown[(l, b)] if g else f for l, b, g, f in
                            zip(after.layer, after.block, after.grown, after.ffn_dim)]
        rows.append(after.assign(epoch=epoch + 1))
    out = pd.concat(rows, ignore_index=True)[["epoch", "layer", "block", "block_type", "sharing", "ffn_dim", "grown"]]
    return out.assign(scale=scale, seed=seed)


def plot_fig1(df: pd.DataFrame):
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1.2, 1]})
    last = df[df.epoch == df.epoch.max()].pivot_table(index="layer", columns="block", values="ffn_dim")
    im = a.imshow(last.values, cmap="viridis", aspect="auto")
    a.set_xticks(range(len(last.columns)), [BLOCK_LABELS[c] for c in last.columns], rotation=35, ha="right")
    a.set_yticks(range(len(last.index)), [str(i + 1) for i in last.index])
    a.set_ylabel("layer")
    a.set_title(f"FFN dim after {df.epoch.max()} epochs")
    for (i, j), v in pd.DataFrame(last.values).stack().items():
        a.text(j, i, int(v), ha="center", va="center", color="w", fontsize=9)
    fig.colorbar(im, ax=a, shrink=0.8)
    for block_type, group in df.groupby("block_type"):
        mean = group.groupby("epoch").ffn_dim.mean()
        b.plot(mean.index, mean.values, "o-", color=COLORS[block_type], label=f"{block_type} blocks")
    b.set_xlabel("pretraining epochs completed")
    b.xaxis.set_major_locator(ticks(integer=True))
    b.set_ylabel("mean FFN dim")
    b.set_title("PCA-guided growth of the top-K blocks")
    b.legend()
    return fig


def fig2_table(run_dir, scale: str, seed: int) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "pca_scores.csv").assign(scale=scale, seed=seed)


def plot_fig2(df: pd.DataFrame):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    cmap = plt.get_cmap("viridis")
    layers = sorted(df.layer.unique())
    for ax, (block_type, title) in zip(axes, (("bert", "(a) BERT blocks"), ("mobilebert", "(b) MobileBERT blocks"))):
        group = df[df.block_type == block_type].groupby(["layer", "epoch"]).score.mean().reset_index()
        for layer in layers:
            g = group[group.layer == layer]
            ax.plot(g.epoch + 1, g.score, "o-", color=cmap(layer / max(1, len(layers) - 1)), label=f"layer {layer + 1}")
        ax.set_title(title)
        ax.set_xlabel("pretraining epoch")
        ax.xaxis.set_major_locator(ticks(integer=True))
    axes[0].set_ylabel("PCA score (components for 99% variance)")
    axes[1].legend(fontsize=8, ncol=2)
    return fig
