"""Appendix: the search's cost per stage (retraining excluded) with dynamic vs fixed FFN dims, and the
ratio fixed / dynamic beside the paper's GPU-days."""
from __future__ import annotations

import math

import pandas as pd

from elmlib.repro import paper
from elmlib.repro.figures.style import OURS, PAPER, pyplot
from elmlib.repro.records import stage_seconds


def efficiency_table(run_dirs: dict, scale: str, seed: int) -> pd.DataFrame:
    """Seconds per search stage (retraining excluded) with dynamic vs fixed FFN dims."""
    rows = []
    for variant, d in run_dirs.items():
        for stage, s in stage_seconds(d).items():
            if stage != "retrain":
                rows.append(dict(variant=variant, stage=stage, seconds=s,
                                 paper_gpu_days=paper.SEARCH_COST_GPU_DAYS[variant]))
    return pd.DataFrame(rows).assign(scale=scale, seed=seed)


def plot_efficiency(df: pd.DataFrame):
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    per = df.groupby(["variant", "stage"], sort=False).seconds.mean().unstack("stage")
    per.plot.bar(stacked=True, ax=a, rot=0)
    a.set_ylabel("seconds (mean over seeds)")
    a.set_title(f"Our search cost ({df.scale.iloc[0]} scale)")
    per_seed = df.groupby(["variant", "seed"]).seconds.sum().unstack("variant")
    total = per_seed.mean()
    ratio_ours = total.get("fixed", math.nan) / total.get("dynamic", math.nan)
    p = df.groupby("variant").paper_gpu_days.first()
    b.bar(["ours", "paper"], [ratio_ours, p["fixed"] / p["dynamic"]], color=[OURS, PAPER])
    if len(per_seed) > 1 and {"fixed", "dynamic"} <= set(per_seed):
        # Wall times on a shared machine vary with its load: the seeds' own ratios show how much.
        b.scatter([0] * len(per_seed), per_seed.fixed / per_seed.dynamic, color="k", zorder=3, s=16,
                  label="per seed")
        b.legend(fontsize=8)
    b.axhline(1, color="k", lw=0.8)
    b.set_ylabel("cost fixed / cost dynamic")
    b.set_title("Saving from dynamic FFN dims")
    return fig
