"""Tables V-VIII: the gain from each ELM component (dynamic FFN dims, head search, relational KD,
sharing), ours per seed beside the paper's GLUE dev averages."""
from __future__ import annotations

import pandas as pd

from elmlib.repro import paper
from elmlib.repro.figures.style import OURS, PAPER, pyplot


def table5_8_table(metrics: pd.DataFrame, scale: str) -> pd.DataFrame:
    """experiments.ablations() rows (several seeds) with the paper's GLUE dev averages beside them."""
    model = paper.paper_model(scale)
    out = metrics[["scale", "seed", "ablation", "variant", "task", "metric", "value", "params"]].copy()
    out.insert(3, "table", out.ablation.map(lambda a: paper.ABLATIONS[a]["table"]))
    out["paper_model"] = model
    out["paper_metric"] = "GLUE dev AVG"
    out["paper_value"] = [paper.ablation_value(a, model, v == "with") for a, v in zip(out.ablation, out.variant)]
    return out


def ablation_deltas(df: pd.DataFrame) -> pd.DataFrame:
    """Per ablation and seed: ours (with - without) and the paper's, on the first metric."""
    d = df[df.metric == df.metric.iloc[0]]
    ours = d.pivot_table(index=["ablation", "seed"], columns="variant", values="value").reset_index()
    ours["delta"] = ours["with"] - ours["without"]
    paper_delta = d.pivot_table(index="ablation", columns="variant", values="paper_value")
    ours["paper_delta"] = ours.ablation.map(paper_delta["with"] - paper_delta["without"])
    return ours


def plot_table5_8(df: pd.DataFrame):
    plt = pyplot()
    deltas = ablation_deltas(df)
    order = list(paper.ABLATIONS)
    order = [a for a in order if a in set(deltas.ablation)]
    fig, ax = plt.subplots(figsize=(8, 4))
    stats = deltas.groupby("ablation").delta.agg(["mean", "std"]).loc[order]
    x = range(len(order))
    ax.bar([i - 0.2 for i in x], 100 * stats["mean"], 0.4, yerr=100 * stats["std"].fillna(0), capsize=4,
           label=f"ours ({df.task.iloc[0]} dev {df.metric.iloc[0]}, points = seeds)", color=OURS)
    for i, a in enumerate(order):
        v = 100 * deltas[deltas.ablation == a].delta
        ax.scatter([i - 0.2] * len(v), v, color="k", s=14, zorder=3)
    paper_d = deltas.groupby("ablation").paper_delta.first().loc[order]
    ax.bar([i + 0.2 for i in x], paper_d, 0.4, label=f"paper ({df.paper_model.iloc[0]}, GLUE dev avg)", color=PAPER)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(list(x), [f"{paper.ABLATIONS[a]['table']}: {a}" for a in order])
    ax.set_ylabel("with - without (points)")
    ax.set_title(f"Ablations ({df.scale.iloc[0]} scale): gain from each component")
    ax.legend(fontsize=9)
    return fig
