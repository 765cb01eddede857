"""Tables V-VIII: the gain from each ELM component (dynamic FFN dims, head search, relational KD,
sharing), ours per seed beside the paper's GLUE dev averages."""
from __future__ import annotations

import pandas as pd

from elmlib.repro import paper
from elmlib.repro.figures.style import OURS, PAPER, dot_ci, pyplot


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


#: What each ablation switches off, as the paper's tables name it.
LABELS = {"dynamic_ffn": "dynamic FFN dims", "head_search": "head search", "kd": "relational KD",
          "sharing": "sharing blocks"}


def plot_table5_8(df: pd.DataFrame):
    """Per ablation, ours (with - without, points) per seed with mean and 95% CI beside the paper's gain,
    each labelled with the parameters of its two models."""
    plt = pyplot()
    deltas = ablation_deltas(df)
    order = [a for a in paper.ABLATIONS if a in set(deltas.ablation)]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    params = df.groupby(["ablation", "variant"]).params.mean() / 1e6
    for i, a in enumerate(order):
        dot_ci(ax, i - 0.12, 100 * deltas[deltas.ablation == a].delta, OURS,
               label=("ours: seeds, mean and 95% CI" if deltas.seed.nunique() > 1 else "ours (one seed)")
               if i == 0 else None)
        ax.plot([i + 0.12], [deltas[deltas.ablation == a].paper_delta.iloc[0]], "x", ms=9, mew=2, color=PAPER,
                label=f"paper ({df.paper_model.iloc[0]}, GLUE dev avg)" if i == 0 else None)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(order)), [f"{paper.ABLATIONS[a]['table']}: {LABELS.get(a, a)}\n"
                                      f"{params[a, 'with']:.2f}M vs {params[a, 'without']:.2f}M" for a in order])
    ax.set_ylabel(f"with - without ({df.metric.iloc[0]}, points)")
    ax.set_title(f"Ablations: gain from each component ({df.scale.iloc[0]} scale, {df.task.iloc[0]} dev, "
                 f"{deltas.seed.nunique()} seed(s))")
    ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # below the axes, off the data
    return fig
