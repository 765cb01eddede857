"""Summarise the PCA score study (run.sh beside this file) from its run folders' growth.csv and
pca_scores.csv: what grows under each score form, against the paper's Figs. 2 and 5.

    python results/micro/run_records/pca-score-study/summarise.py RUN_ROOT [OUT_CSV]

Writes a tidy CSV (one row per form, seed, layer and candidate block: its final FFN dimension and the
number of epochs it grew) and prints the markdown table of docs/results.md.
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

HERE = Path(__file__).resolve().parent


def folders(root: Path):
    for path in sorted(root.glob("*-seed*")):
        if (path / "pretrain.done.json").exists():
            form, seed = path.name.rsplit("-seed", 1)
            yield form, int(seed), path


def final_profile(form: str, seed: int, path: Path) -> pd.DataFrame:
    """Every block's FFN after the last epoch (its starting size plus its growth steps)."""
    scores = pd.read_csv(path / "pca_scores.csv")
    growth = pd.read_csv(path / "growth.csv")
    start = scores[scores.epoch == 0].copy()
    grown = growth.groupby(["layer", "block"]).size().rename("growth_steps")
    step = int((growth.new_ffn_dim - growth.old_ffn_dim).iloc[0]) if len(growth) else 0
    start = start.join(grown, on=["layer", "block"]).fillna({"growth_steps": 0})
    start["growth_steps"] = start.growth_steps.astype(int)
    start["final_ffn_dim"] = start.ffn_dim + step * start.growth_steps
    start["scale"], start["seed"], start["task"], start["pca_score"] = "micro", seed, "rotten_tomatoes", form
    return start[["scale", "seed", "task", "pca_score", "layer", "block", "block_type", "sharing",
                  "final_ffn_dim", "growth_steps"]]


def epoch_overlap(growth: pd.DataFrame) -> float:
    """Mean share of an epoch's grown blocks that also grew the epoch before (1 = the same blocks)."""
    sets = [set(map(tuple, g[["layer", "block"]].values)) for _, g in growth.groupby("epoch")]
    pairs = [len(a & b) / max(1, len(b)) for a, b in zip(sets, sets[1:])]
    return float(np.mean(pairs)) if pairs else float("nan")


def per_run(form: str, seed: int, path: Path, profile: pd.DataFrame) -> dict:
    growth = pd.read_csv(path / "growth.csv")
    scores = pd.read_csv(path / "pca_scores.csv")
    by_layer = profile.groupby("layer").final_ffn_dim.mean()
    first_epoch = scores[scores.epoch == 0].groupby("layer").score.mean()
    last_epoch = scores[scores.epoch == scores.epoch.max()].groupby("layer").score.mean()
    return dict(form=form, seed=seed, events=len(growth),
                mobilebert_share=float((growth.block_type == "mobilebert").mean()) if len(growth) else float("nan"),
                distinct_blocks=growth[["layer", "block"]].drop_duplicates().shape[0],
                repeat_share=epoch_overlap(growth),
                ffn_first=float(by_layer.iloc[0]), ffn_middle=float(by_layer.iloc[1:-1].mean()),
                ffn_last=float(by_layer.iloc[-1]),
                middle_minus_ends=float(by_layer.iloc[1:-1].mean() - (by_layer.iloc[0] + by_layer.iloc[-1]) / 2),
                layers_rising=int((last_epoch > first_epoch).sum()), layers=len(first_epoch),
                score_spread_first=float(first_epoch.max() - first_epoch.min()))


def ci(values) -> str:
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return f"{v.mean():.2f} (n=1)"
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return f"{v.mean():.2f} ± {half:.2f} (n={len(v)})"


def main(root: str, out: str | None = None) -> None:
    runs = list(folders(Path(root)))
    profiles = [final_profile(f, s, p) for f, s, p in runs]
    table = pd.concat(profiles, ignore_index=True)
    out = Path(out) if out else HERE.parent.parent / "pca_score_study.csv"
    table.to_csv(out, index=False)
    summary = pd.DataFrame([per_run(f, s, p, prof) for (f, s, p), prof in zip(runs, profiles)])
    cols = ["mobilebert_share", "distinct_blocks", "repeat_share", "ffn_first", "ffn_middle", "ffn_last",
            "middle_minus_ends", "layers_rising"]
    print("| pca_score | " + " | ".join(cols) + " |")
    print("| --- | " + " | ".join("---" for _ in cols) + " |")
    for form, g in summary.groupby("form"):
        print(f"| {form} | " + " | ".join(ci(g[c]) for c in cols) + " |")
    print(f"\n{len(runs)} runs; per-run rows:\n{summary.to_string(index=False)}")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
