"""Studies beside the paper's encoder tables, each drawn from its results CSV alone (so
``python -m elmlib figures`` re-renders them): Table IV (causal-LM students), the FlexiBERT proxy
benchmark (rank correlation of each proxy with GLUE) and importance reordering of FFN units."""
from __future__ import annotations

import pandas as pd

from elmlib.repro.figures.style import REFERENCE, pyplot

#: Table IV's model identifiers -> the labels a reader sees.
CLM_LABELS = {"elm_found": "ELM (searched)", "elm_documented_not_searched": "ELM (documented, not searched)",
              "all_bert": "all BERT", "all_mobilebert": "all MobileBERT", "teacher": "teacher"}
#: FlexiBERT proxies -> labels; the trivial baselines first, the recommended proxy last.
PROXY_LABELS = {"params": "parameters", "nonemb_params": "non-embedding parameters", "n_layers": "depth (layers)",
                "depth_then_hidden": "depth, then hidden size", "zerolm": "ZeroLM-style (whole model)",
                "layerwise": "elmlib layerwise (recommended)"}
ORDER_LABELS = {"original": "as trained", "importance": "most important first", "reversed": "least important first"}


def _with_params(table: pd.DataFrame) -> dict[str, str]:
    """Each Table IV model's label with its parameter count (the comparison is at matched size)."""
    sizes = table.drop_duplicates("model").set_index("model")["params"]
    return {m: f"{CLM_LABELS.get(m, m)}\n{sizes[m] / 1e6:.2f} M" for m in sizes.index}


def plot_table4(table: pd.DataFrame):
    """Rouge-L per held-out instruction dataset (one dot per model) and held-out perplexity per model."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]}, layout="constrained")
    labels = _with_params(table)
    models = list(labels)
    rouge = table[table.metric == "rouge_l"]
    datasets = list(dict.fromkeys(rouge.dataset))
    for k, model in enumerate(models):
        g = rouge[rouge.model == model].set_index("dataset").reindex(datasets)
        x = [i + (k - (len(models) - 1) / 2) * 0.15 for i in range(len(datasets))]
        a.plot(x, g.value, "o", label=labels[model].replace("\n", ", "))
        if g.paper_value.notna().any():
            a.plot(x, g.paper_value, "x", color="0.3", label="paper" if k == 0 else None)
    a.set_xticks(range(len(datasets)), datasets)
    a.set_xlim(-0.5, len(datasets) - 0.5)
    a.set_ylim(0, max(1.0, float(rouge[["value", "paper_value"]].max().max()) * 1.15))
    a.set(ylabel="Rouge-L (F x 100)")
    a.set_title(f"Held-out instructions ({table.scale.iloc[0]} scale, seed {table.seed.iloc[0]}, n = 1)")
    a.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ppl = table[table.metric == "perplexity"].set_index("model").reindex(models)
    bars = b.bar(range(len(models)), ppl.value, color="0.6")
    b.bar_label(bars, fmt="%.0f", fontsize=8)
    b.set_xticks(range(len(models)), [labels[m] for m in models], fontsize=8, rotation=35, ha="right")
    b.set(yscale="log", ylabel="perplexity (log scale)", title="Held-out text")
    return fig


def plot_proxy_flexibert(table: pd.DataFrame):
    """Spearman and Kendall rank correlation with GLUE per proxy: cross-validated (mean and the folds'
    standard deviation), in-sample, and the reference value of docs/related.md where it has one."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, layout="constrained")
    proxies = [p for p in PROXY_LABELS if p in set(table.proxy)] + sorted(set(table.proxy) - set(PROXY_LABELS))
    for ax, metric in zip(axes, ("spearman", "kendall")):
        d = table[table.metric == metric]
        cv = d[d.evaluation.str.startswith("cv")].set_index("proxy").reindex(proxies)
        fit = d[d.evaluation == "in_sample_all"].set_index("proxy").reindex(proxies)
        y = range(len(proxies))
        ax.errorbar(cv.value, y, xerr=cv.spread, fmt="o", capsize=3, label="cross-validated (mean ± s.d. of folds)")
        ax.plot(fit.value, y, "|", markersize=12, color="0.3", label="in-sample")
        ax.plot(cv.reference_value, y, "x", color=REFERENCE, label="reference value")
        ax.axvline(0, color="0.5", lw=0.8, ls=":")  # chance: no rank agreement
        best = cv.value.idxmax()
        ax.set_title(f"{metric.title()}: best cross-validated {cv.value[best]:.2f}\n({PROXY_LABELS.get(best, best)})",
                     fontsize=9)
        ax.set(xlabel=f"{metric} rank correlation with GLUE", xlim=(min(-0.05, cv.value.min() - 0.1), 1.0))
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(len(proxies)), [PROXY_LABELS.get(p, p) for p in proxies])
    n = table.n_arch.iloc[0]
    fig.suptitle(f"FlexiBERT proxy benchmark ({table.scale.iloc[0]} scale, {n} architectures, seed "
                 f"{table.seed.iloc[0]}, {table.n_folds.max()} held-out splits)", fontsize=10)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="outside lower center", ncol=3)
    return fig


def plot_reordering(table: pd.DataFrame):
    """Dev accuracy per FFN width kept, one marker series per unit order (categorical widths, not joined;
    dots, so the free y-axis truncates no bar)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    fractions = sorted(set(table.fraction))
    orders = [o for o in ORDER_LABELS if o in set(table.order)]
    for k, order in enumerate(orders):
        g = table[table.order == order].groupby("fraction").accuracy.mean().reindex(fractions)
        ax.plot([i + (k - 1) * 0.12 for i in range(len(fractions))], 100 * g, "o", label=ORDER_LABELS[order])
    ax.set_xticks(range(len(fractions)), [f"{f:g}" for f in fractions])
    ax.set(xlabel="FFN width kept (fraction of units)", ylabel="dev accuracy (%)")
    ax.grid(alpha=0.3, axis="y")
    n_seeds = table.seed.nunique()
    ax.set_title(f"{table.task.iloc[0]}, {table.layers.iloc[0]} layers ({table.scale.iloc[0]} scale, "
                 f"{n_seeds} seed{'s' if n_seeds > 1 else ''}, {table.dev_rows.iloc[0]} dev rows)", fontsize=10)
    fig.legend(fontsize=8, loc="outside right upper")
    return fig
