"""Table III: the paper's SQuAD v1.1/v2.0 dev scores and our found encoder's beside them (NaN, with
the reason, where SQuAD could not be run)."""
from __future__ import annotations

import math

import pandas as pd

from elmlib.repro import paper
from elmlib.repro.figures.style import pyplot


def table3_table(scale: str, seed: int, status: str, ours: dict | None = None) -> pd.DataFrame:
    """The paper's Table III and our found model's rows beside it; ``ours`` maps (task, metric) -> value
    and is empty until SQuAD can be run, so our values are NaN with ``status`` saying why."""
    model = paper.paper_model(scale)
    p = paper.table("table3").assign(source="paper", status="reported", paper_value=math.nan)
    mine = p[p.model == model].assign(source="ours", model=f"ELM (found, {scale})",
                                      paper_value=lambda d: d.value, status=status)
    mine["value"] = [(ours or {}).get((t, m), math.nan) for t, m in zip(mine.task, mine.metric)]
    return pd.concat([p, mine], ignore_index=True).assign(scale=scale, seed=seed, paper_model=model)


def plot_table3(df: pd.DataFrame):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    d = df[df.source == "paper"]
    labels = [f"{t} {m}" for t, m in zip(d.task, d.metric)]
    models = list(dict.fromkeys(d.model))
    for k, model in enumerate(models):
        g = d[d.model == model]
        ax.bar([i + (k - len(models) / 2) * 0.8 / len(models) for i in range(len(g))], g.value,
               0.8 / len(models), label=model)
    ax.set_xticks(range(len(dict.fromkeys(labels))), list(dict.fromkeys(labels)))
    ax.set_ylabel("SQuAD dev (%)")
    ours = df[df.source == "ours"]
    ax.set_title("Paper's Table III; ours: " + ("; ".join(sorted(set(ours.status))) if len(ours) else "-"),
                 fontsize=9)
    ax.legend(fontsize=8, ncol=2)
    return fig
