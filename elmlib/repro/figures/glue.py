"""Tables I/II: the found model beside the uniform baselines of the same budget, retrained with the same
recipe, with the paper's ELM model and its GLUE dev average beside ours."""
from __future__ import annotations

import math

import pandas as pd

from elmlib.repro import paper
from elmlib.repro.figures.style import pyplot, ticks


def table1_2_table(metrics: pd.DataFrame, scale: str) -> pd.DataFrame:
    """experiments.baselines() rows (several seeds) + the paper's ELM model beside the found model."""
    model = paper.paper_model(scale)
    dev_avg = paper.table("table2").query("model == @model and task == 'AVG'").value.iloc[0]
    found = metrics.model.str.startswith("ELM")
    keep = ["scale", "seed", "model", "task", "metric", "value", "params", "non_embedding_params", "latency_ms",
            "inherit_weights", "arch"]
    out = metrics[keep].copy()
    out["paper_model"] = [model if f else "" for f in found]
    out["paper_value"] = [dev_avg if f else math.nan for f in found]
    out["paper_metric"] = ["GLUE dev AVG (Table II)" if f else "" for f in found]
    out["paper_params_m"] = [paper.TABLE2[model][0] if f else math.nan for f in found]
    return out


def _short(model: str) -> str:
    return (model.replace("ELM (found, inherited weights)", "ELM found\n(inherited)")
            .replace("ELM (found, supernet weights inherited; not in the paper)", "ELM found\n(inherited)")
            .replace("ELM (found, from scratch)", "ELM found\n(scratch)").replace(" (Q=V)", "\n(Q=V)"))


def _seed_points(ax, df, x_col, y_col, order):
    for i, name in enumerate(order):
        v = df[df[x_col] == name][y_col]
        ax.scatter([i] * len(v), v, color="k", s=14, zorder=3)


def plot_table1_2(df: pd.DataFrame):
    plt = pyplot()
    metric = df.metric.iloc[0]
    d = df[df.metric == metric]
    order = list(dict.fromkeys(d.model))
    stats = d.groupby("model", sort=False).agg(value=("value", "mean"), std=("value", "std")).loc[order]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.bar(range(len(order)), stats.value, yerr=stats["std"].fillna(0), capsize=4,
          color=["#55A868" if m.startswith("ELM") else "#8C8C8C" for m in order])
    _seed_points(a, d, "model", "value", order)
    a.set_xticks(range(len(order)), [_short(m) for m in order], fontsize=9)
    a.set_ylabel(f"dev {metric} ({d.task.iloc[0]})")
    a.set_ylim(max(0, d.value.min() - 0.1), min(1, d.value.max() + 0.05) if d.value.max() <= 1 else None)
    a.set_title(f"Same budget, same recipe ({d.scale.iloc[0]} scale, {d.seed.nunique()} seed(s))")
    # One marker per model and seed, named in a legend: the found model's two rows share its size, and
    # averaged over seeds their latencies coincide, so text labels beside the points would overprint.
    for i, name in enumerate(order):
        g = d[d.model == name]
        b.scatter(g.params / 1e6, g.latency_ms, s=40, marker="osD^vP*X"[i % 8], alpha=0.8,
                  label=_short(name).replace("\n", " "))
    b.legend(fontsize=8)
    b.xaxis.set_major_locator(ticks(nbins=4))
    b.set_xlabel("parameters (M)")
    b.set_ylabel("latency (ms, batch 1)")
    b.set_title("Size and latency")
    return fig
