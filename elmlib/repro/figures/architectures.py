"""Fig. 5: the architectures the search found, one row per layer (block type, sharing, FFN dim, heads),
and the per-model summary the paper describes (more MobileBERT blocks, wide FFNs in the middle layers)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from elmlib.io.inputs import read_json

from elmlib.repro.figures.style import COLORS, HATCH, pyplot
from elmlib.repro.records import found_arch


def fig5_table(run_dirs: dict, scale: str, seed: int) -> pd.DataFrame:
    """run_dirs maps a model name (e.g. ELM-Small) -> its run folder; one row per layer, with the
    parameter budget its search ran under (the folder's ``config.json``)."""
    return pd.concat([found_arch(d).assign(model=name, budget=read_json(Path(d) / "config.json")["budget"])
                      for name, d in run_dirs.items()], ignore_index=True).assign(scale=scale, seed=seed)


def fig5_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, seed) of a Fig. 5 table: block and sharing counts, mean heads, the widest FFN and
    its layer (1-based, the first if tied): what the paper says of Fig. 5 (more MobileBERT blocks, FFN dims
    in the middle layers, few in layer 1)."""
    rows = []
    for (model, seed), g in df.groupby(["model", "seed"], sort=False):
        blocks, sharing = g.block.value_counts(), g.sharing.value_counts()
        widest = g.loc[g.ffn_dim.idxmax()]
        rows.append(dict(model=model, seed=seed, params=g.params.iloc[0], layers=len(g),
                         **{b: int(blocks.get(b, 0)) for b in COLORS}, **{s: int(sharing.get(s, 0)) for s in HATCH},
                         mean_heads=g.heads.mean(),
                         widest_ffn=int(widest.ffn_dim), widest_layer=int(widest.layer) + 1))
    return pd.DataFrame(rows)


def plot_fig5(df: pd.DataFrame):
    plt = pyplot()
    from matplotlib.patches import Patch  # heavy: matplotlib, only when a figure is drawn

    groups = list(df.groupby(["model", "seed"], sort=False))
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 2.2 * len(groups) + 0.8), squeeze=False, sharex=True,
                             layout="constrained")
    for ax, ((model, seed), g) in zip(axes[:, 0], groups):
        for _, r in g.iterrows():
            ax.bar(r.layer + 1, r.ffn_dim, color=COLORS[r.block], hatch=HATCH[r.sharing], edgecolor="k")
            ax.text(r.layer + 1, r.ffn_dim, f"{r.heads}h", ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("FFN dim")
        ax.set_ylim(0, g.ffn_dim.max() * 1.25)
        budget = f" of a {g.budget.iloc[0] / 1e6:.1f}M budget" if "budget" in g else ""
        ax.set_title(f"{model} (seed {seed}): {g.params.iloc[0] / 1e6:.2f}M params{budget}", fontsize=11)
    axes[-1, 0].set_xlabel("layer (label: heads)")
    axes[-1, 0].set_xticks(sorted(df.layer.unique() + 1))
    handles = [Patch(color=c, label=b) for b, c in COLORS.items()] + \
              [Patch(facecolor="w", edgecolor="k", hatch=h, label=f"sharing: {s}") for s, h in HATCH.items()]
    fig.legend(handles=handles, loc="outside upper center", ncol=5, fontsize=9)
    return fig
