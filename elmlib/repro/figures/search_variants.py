"""Beyond the paper: the search modes (supernet, proxy-assisted, proxy-only) and importance reordering
of elastic FFN widths, each as search cost and the found model's dev metric per variant and seed."""
from __future__ import annotations

import pandas as pd

from elmlib.repro.figures.style import OURS, pyplot


def per_seed_lines(ax, df: pd.DataFrame, x_col: str, order: list, labels: list | None = None) -> None:
    """One line per seed across the variants in ``order``: paired differences of tenths of a point stay
    visible (the y-axis is free, not from zero). Accuracy with the dev set's size (``n_dev``) gets its
    binomial standard error at the seed mean."""
    for seed, g in df.groupby("seed"):
        ax.plot(range(len(order)), g.set_index(x_col).reindex(order).value, marker="o", label=f"seed {seed}")
    ax.set_xticks(range(len(order)), labels or order)
    ax.set_xlim(-0.4, len(order) - 0.6)
    if df.metric.iloc[0] == "accuracy" and "n_dev" in df:
        # The free y-axis magnifies tenths of a point; the binomial standard error of the dev set's size
        # says which of them a single dev set can tell apart.
        mean = df.groupby(x_col)[["value", "n_dev"]].mean().reindex(order)
        ax.errorbar(range(len(order)), mean.value, yerr=(mean.value * (1 - mean.value) / mean.n_dev) ** 0.5,
                    fmt="none", ecolor="grey", capsize=4, label="±1 s.e. of the dev set, at the seed mean")
    ax.legend(fontsize=8)


def plot_proxy_search(df: pd.DataFrame):
    """Search wall time and the found model's dev metric per search mode."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    modes = list(dict.fromkeys(df["mode"]))
    first = df[df.metric == df.metric.iloc[0]]
    t = first.groupby("mode")[["supernet_seconds", "evolution_seconds"]].mean().reindex(modes)
    t.columns = ["supernet training", "evolution"]
    t.plot.bar(stacked=True, ax=a, rot=0)
    a.set_ylabel("seconds (mean over seeds)")
    a.set_xlabel("")
    a.set_title(f"Search cost ({df.scale.iloc[0]} scale)")
    a.legend(loc="upper right")
    # proxy-only has no supernet to inherit from: its found model is trained from scratch
    per_seed_lines(b, first, "mode", modes, [m + ("\n(from scratch)" if m == "proxy_only" else "") for m in modes])
    b.set_ylabel(f"found model, dev {first.metric.iloc[0]}")
    b.set_title(f"Result of the search ({first.task.iloc[0]})")
    return fig


def plot_importance_search(df: pd.DataFrame):
    """The found model's dev metric and its mean FFN width per importance variant."""
    plt = pyplot()
    import seaborn as sns  # heavy: seaborn, only when this figure is drawn

    first = df[df.metric == df.metric.iloc[0]]
    order = list(dict.fromkeys(first.variant))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    per_seed_lines(a, first, "variant", order)
    a.set_ylabel(f"found model, {first.task.iloc[0]} dev {first.metric.iloc[0]}")
    a.set_title(f"Result of the search ({df.scale.iloc[0]} scale)")
    sns.barplot(data=first, x="variant", y="mean_ffn_dim", order=order, ax=b, color=OURS, errorbar="sd")
    b.set_ylabel("mean FFN dim of the found model")
    b.set_title("Widths the search chose")
    for ax in (a, b):
        ax.set_xlabel("")
        ax.set_xticks(range(len(order)), [o.replace(" + ", "\n+ ") for o in order])
    return fig
