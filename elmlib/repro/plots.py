"""Tables and figures of the paper's artifacts (Figs. 1-3, 5, 6; Tables I-III, V-VIII; appendix cost).

Compute and plotting are separate: ``*_table`` functions turn run folders into the tidy tables the
notebooks write to ``results/<notebook>.csv``; ``plot_*`` functions draw a figure from such a table
alone, so ``python -m elmlib figures`` re-renders every figure from ``results/`` in seconds and
``python -m elmlib figures --report`` prints the markdown results table of docs/results.md.

    df = fig2_table(main_run("smoke"), scale="smoke", seed=0)
    save(plot_fig2(df), "fig2_pca_curves")          # figures/fig2_pca_curves.png and .pdf
    print(report())                                 # markdown from results/*.csv
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import pandas as pd

from elmlib.repro import paper
from elmlib.repro.records import found_arch, stage_seconds
from elmlib.repro.figsave import save_figure
from elmlib.io.files import figures_dir, results_dir
from elmlib.io.inputs import CSV_ERRORS, failure_line, raise_failures, read_json, read_results_csv
from elmlib.nas.space import CANDIDATES

BLOCK_LABELS = [f"{b[:4] if b == 'bert' else 'Mob'}-{s}" for b, s in CANDIDATES]  # index = paper Fig. 6 order
COLORS = {"bert": "#4C72B0", "mobilebert": "#DD8452"}
HATCH = {"none": "", "qv": "//", "kv": ".."}


def _style():
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "figure.dpi": 110, "savefig.bbox": "tight"})
    return plt


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def save(fig, name: str, folder: str | os.PathLike | None = None) -> list[Path]:
    """Write ``<folder>/<name>.png`` and ``.pdf`` (folder: figures_dir() by default), atomically.
    The PDF carries no creation date, so re-rendering unchanged results rewrites identical bytes."""
    folder = Path(folder or figures_dir())
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        png = path.suffix == ".png"
        save_figure(fig, path, dpi=150 if png else None, metadata=None if png else {"CreationDate": None})
    return paths


def middle_layer(num_layers: int) -> int:
    """The paper's "layer 6" (index 5 of 12); for fewer layers, the middle one."""
    return 5 if num_layers >= 12 else num_layers // 2


# --------------------------------------------------------------------------- Fig. 1: FFN growth

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
    plt = _style()
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
    b.xaxis.set_major_locator(_integer_ticks())
    b.set_ylabel("mean FFN dim")
    b.set_title("PCA-guided growth of the top-K blocks")
    b.legend()
    return fig


# --------------------------------------------------------------------------- Fig. 2: PCA curves

def fig2_table(run_dir, scale: str, seed: int) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "pca_scores.csv").assign(scale=scale, seed=seed)


def plot_fig2(df: pd.DataFrame):
    plt = _style()
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
        ax.xaxis.set_major_locator(_integer_ticks())
    axes[0].set_ylabel("PCA score (components for 99% variance)")
    axes[1].legend(fontsize=8, ncol=2)
    return fig


# --------------------------------------------------------------------------- Fig. 3a: CKA of heads

def fig3a_table(run_dir, scale: str, seed: int, layer: int | None = None) -> pd.DataFrame:
    cka = pd.read_csv(Path(run_dir) / "cka.csv")
    arch = read_json(Path(run_dir) / "arch.json", "found architecture", "finish the search of this run folder")
    layer = middle_layer(len(arch["layers"])) if layer is None else layer
    if layer not in set(cka.layer):
        raise ValueError(f"layer={layer} is not allowed; the run has layers {sorted(set(cka.layer))}")
    out = cka[cka.layer == layer].copy()
    return out.assign(heads_before=int(math.isqrt(len(out))), heads_after=arch["layers"][layer]["heads"],
                      scale=scale, seed=seed)


def plot_fig3a(df: pd.DataFrame):
    plt = _style()
    m = df.pivot_table(index="head_i", columns="head_j", values="cka")
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    im = ax.imshow(m.values, cmap="magma", vmin=0, vmax=1)
    n = len(m)
    ax.set_xticks(range(n), [str(i + 1) for i in range(n)])
    ax.set_yticks(range(n), [str(i + 1) for i in range(n)])
    ax.set_xlabel("head")
    ax.set_ylabel("head")
    if n <= 12:
        for (i, j), v in pd.DataFrame(m.values).stack().items():
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="w" if v < 0.6 else "k")
    ax.set_title(f"CKA between heads, layer {df.layer.iloc[0] + 1}\n"
                 f"heads {df.heads_before.iloc[0]} -> {df.heads_after.iloc[0]} after Algorithm 1")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


# --------------------------------------------------------------------------- Figs. 3b and 6: block similarity

def similarity_table(run_dirs: dict, scale: str, seed: int) -> pd.DataFrame:
    """All block-pair similarities of each run: run_dirs maps kd ("relational"/"classical") -> folder."""
    frames = [pd.read_csv(Path(d) / "block_similarity.csv").assign(kd=kd) for kd, d in run_dirs.items()]
    return pd.concat(frames, ignore_index=True).assign(scale=scale, seed=seed)


def fig3b_table(run_dirs: dict, scale: str, seed: int) -> pd.DataFrame:
    """Mean off-diagonal cosine similarity between a layer's blocks, per layer and KD kind."""
    df = similarity_table(run_dirs, scale, seed)
    off = df[df.block_i != df.block_j]
    return off.groupby(["scale", "seed", "kd", "layer"], as_index=False).similarity.mean()


def plot_fig3b(df: pd.DataFrame):
    """Mean over seeds per layer, whiskers one sd. Points, not bars: the KD kinds differ in the third
    decimal at small scales, which bars drawn from zero would hide."""
    plt = _style()
    fig, ax = plt.subplots(figsize=(7, 4))
    kinds = sorted(df.kd.unique())
    for k, kd in enumerate(kinds):
        g = df[df.kd == kd].groupby("layer").similarity.agg(["mean", "std"]).reset_index()
        ax.errorbar(g.layer + 1 + (k - (len(kinds) - 1) / 2) * 0.08, g["mean"], yerr=g["std"].fillna(0), marker="o",
                    capsize=3, label={"classical": "classical KD (KL + MSE)",
                                      "relational": "relational KD (Pearson)"}.get(kd, kd))
    ax.set_xticks(sorted(df.layer.unique() + 1))
    ax.set_xlabel("layer")
    ax.set_ylabel("mean cosine similarity\nbetween blocks")
    n = df.seed.nunique() if "seed" in df else 1
    ax.set_title("Similarity of the candidate blocks' features" + (f" (mean ± sd, {n} seeds)" if n > 1 else ""))
    ax.legend()
    return fig


def fig6_table(run_dirs: dict, scale: str, seed: int, layer: int | None = None) -> pd.DataFrame:
    df = similarity_table(run_dirs, scale, seed)
    layer = middle_layer(df.layer.nunique()) if layer is None else layer
    return df[df.layer == layer].reset_index(drop=True)


def plot_fig6(df: pd.DataFrame):
    plt = _style()
    kinds = [k for k in ("classical", "relational") if k in set(df.kd)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.8), squeeze=False, layout="constrained")
    # One colour scale for both panels, so they compare. It starts at the smallest similarity (rounded
    # down to 0.01), not at 0: at our scales every pair lies within a few hundredths of 1, which a 0-1
    # scale paints a single colour. Cells print three decimals for the same reason.
    low = min(math.floor(float(df.similarity.min()) * 100) / 100, 0.99)  # 0.99: never an empty range
    for ax, kd in zip(axes[0], kinds):
        m = df[df.kd == kd].pivot_table(index="block_i", columns="block_j", values="similarity")
        im = ax.imshow(m.values, cmap="viridis", vmin=low, vmax=1)
        labels = [BLOCK_LABELS[c] for c in m.columns]
        ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        for (i, j), v in pd.DataFrame(m.values).stack().items():
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8, color="w" if v < (low + 1) / 2 else "k")
        ax.set_title(f"{kd} KD, layer {df.layer.iloc[0] + 1}")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label=f"cosine similarity (scale from {low:.2f})")
    return fig


# --------------------------------------------------------------------------- Fig. 5: found architectures

def fig5_table(run_dirs: dict, scale: str, seed: int) -> pd.DataFrame:
    """run_dirs maps a model name (e.g. ELM-Small) -> its run folder; one row per layer."""
    return pd.concat([found_arch(d).assign(model=name) for name, d in run_dirs.items()],
                     ignore_index=True).assign(scale=scale, seed=seed)


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
    plt = _style()
    from matplotlib.patches import Patch

    groups = list(df.groupby(["model", "seed"], sort=False))
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 2.2 * len(groups) + 0.8), squeeze=False, sharex=True,
                             layout="constrained")
    for ax, ((model, seed), g) in zip(axes[:, 0], groups):
        for _, r in g.iterrows():
            ax.bar(r.layer + 1, r.ffn_dim, color=COLORS[r.block], hatch=HATCH[r.sharing], edgecolor="k")
            ax.text(r.layer + 1, r.ffn_dim, f"{r.heads}h", ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("FFN dim")
        ax.set_ylim(0, g.ffn_dim.max() * 1.25)
        ax.set_title(f"{model} (seed {seed}): {g.params.iloc[0] / 1e6:.2f}M params", fontsize=11)
    axes[-1, 0].set_xlabel("layer (label: heads)")
    axes[-1, 0].set_xticks(sorted(df.layer.unique() + 1))
    handles = [Patch(color=c, label=b) for b, c in COLORS.items()] + \
              [Patch(facecolor="w", edgecolor="k", hatch=h, label=f"sharing: {s}") for s, h in HATCH.items()]
    fig.legend(handles=handles, loc="outside upper center", ncol=5, fontsize=9)
    return fig


# --------------------------------------------------------------------------- Tables I/II, V-VIII, III

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
    from matplotlib.ticker import MaxNLocator

    plt = _style()
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
    b.xaxis.set_major_locator(MaxNLocator(nbins=4))
    b.set_xlabel("parameters (M)")
    b.set_ylabel("latency (ms, batch 1)")
    b.set_title("Size and latency")
    return fig


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
    plt = _style()
    deltas = ablation_deltas(df)
    order = list(paper.ABLATIONS)
    order = [a for a in order if a in set(deltas.ablation)]
    fig, ax = plt.subplots(figsize=(8, 4))
    stats = deltas.groupby("ablation").delta.agg(["mean", "std"]).loc[order]
    x = range(len(order))
    ax.bar([i - 0.2 for i in x], 100 * stats["mean"], 0.4, yerr=100 * stats["std"].fillna(0), capsize=4,
           label=f"ours ({df.task.iloc[0]} dev {df.metric.iloc[0]}, points = seeds)", color="#55A868")
    for i, a in enumerate(order):
        v = 100 * deltas[deltas.ablation == a].delta
        ax.scatter([i - 0.2] * len(v), v, color="k", s=14, zorder=3)
    paper_d = deltas.groupby("ablation").paper_delta.first().loc[order]
    ax.bar([i + 0.2 for i in x], paper_d, 0.4, label=f"paper ({df.paper_model.iloc[0]}, GLUE dev avg)", color="#8C8C8C")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(list(x), [f"{paper.ABLATIONS[a]['table']}: {a}" for a in order])
    ax.set_ylabel("with - without (points)")
    ax.set_title(f"Ablations ({df.scale.iloc[0]} scale): gain from each component")
    ax.legend(fontsize=9)
    return fig


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
    plt = _style()
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


# --------------------------------------------------------------------------- efficiency (appendix)

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
    plt = _style()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    per = df.groupby(["variant", "stage"], sort=False).seconds.mean().unstack("stage")
    per.plot.bar(stacked=True, ax=a, rot=0)
    a.set_ylabel("seconds (mean over seeds)")
    a.set_title(f"Our search cost ({df.scale.iloc[0]} scale)")
    per_seed = df.groupby(["variant", "seed"]).seconds.sum().unstack("variant")
    total = per_seed.mean()
    ratio_ours = total.get("fixed", math.nan) / total.get("dynamic", math.nan)
    p = df.groupby("variant").paper_gpu_days.first()
    b.bar(["ours", "paper"], [ratio_ours, p["fixed"] / p["dynamic"]], color=["#55A868", "#8C8C8C"])
    if len(per_seed) > 1 and {"fixed", "dynamic"} <= set(per_seed):
        # Wall times on a shared machine vary with its load: the seeds' own ratios show how much.
        b.scatter([0] * len(per_seed), per_seed.fixed / per_seed.dynamic, color="k", zorder=3, s=16,
                  label="per seed")
        b.legend(fontsize=8)
    b.axhline(1, color="k", lw=0.8)
    b.set_ylabel("cost fixed / cost dynamic")
    b.set_title("Saving from dynamic FFN dims")
    return fig


def _per_seed_lines(ax, df: pd.DataFrame, x_col: str, order: list, labels: list | None = None) -> None:
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
    """Issue 6: search wall time and the found model's dev metric per search mode."""
    plt = _style()
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
    _per_seed_lines(b, first, "mode", modes, [m + ("\n(from scratch)" if m == "proxy_only" else "") for m in modes])
    b.set_ylabel(f"found model, dev {first.metric.iloc[0]}")
    b.set_title(f"Result of the search ({first.task.iloc[0]})")
    return fig


def plot_importance_search(df: pd.DataFrame):
    """Issue 6: the found model's dev metric and its mean FFN width per importance variant."""
    plt = _style()
    sns = __import__("seaborn")
    first = df[df.metric == df.metric.iloc[0]]
    order = list(dict.fromkeys(first.variant))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    _per_seed_lines(a, first, "variant", order)
    a.set_ylabel(f"found model, {first.task.iloc[0]} dev {first.metric.iloc[0]}")
    a.set_title(f"Result of the search ({df.scale.iloc[0]} scale)")
    sns.barplot(data=first, x="variant", y="mean_ffn_dim", order=order, ax=b, color="#55A868", errorbar="sd")
    b.set_ylabel("mean FFN dim of the found model")
    b.set_title("Widths the search chose")
    for ax in (a, b):
        ax.set_xlabel("")
        ax.set_xticks(range(len(order)), [o.replace(" + ", "\n+ ") for o in order])
    return fig


# --------------------------------------------------------------------------- registry, report, CLI

PLOTS = {"fig1_ffn_growth": plot_fig1, "fig2_pca_curves": plot_fig2, "fig3a_cka_heads": plot_fig3a,
         "fig3b_block_similarity": plot_fig3b, "fig5_architectures": plot_fig5,
         "fig6_block_similarity_matrix": plot_fig6, "table1_2_glue": plot_table1_2, "table3_squad": plot_table3,
         "table5_8_ablations": plot_table5_8, "efficiency": plot_efficiency, "proxy_search": plot_proxy_search,
         "importance_search": plot_importance_search}


def _render(results, figures) -> tuple[list[str], list[tuple[str, Exception]]]:
    """Draw every figure whose results CSV exists; a CSV that cannot be read or drawn is recorded in
    the failures and the others are still drawn. Returns (names drawn, failures)."""
    import matplotlib

    matplotlib.use("Agg")
    plt = _style()
    results = Path(results or results_dir())
    done, failed = [], []
    for name, plot in PLOTS.items():
        path = results / f"{name}.csv"
        if not path.exists():
            continue
        open_before = set(plt.get_fignums())
        try:
            fig = plot(read_results_csv(path))
        except CSV_ERRORS as err:
            failed.append((failure_line(path, err), err))
            for number in set(plt.get_fignums()) - open_before:  # a half-drawn figure
                plt.close(number)
            continue
        try:
            save(fig, name, figures)
        finally:
            plt.close(fig)
        done.append(name)
    return done, failed


def render_all(results=None, figures=None) -> list[str]:
    """Re-render every figure whose results CSV exists; returns the names drawn. A corrupt, empty or
    truncated CSV does not stop the others: they are drawn, then a ValueError names every failed CSV."""
    done, failed = _render(results, figures)
    raise_failures(failed, "rendered")
    return done


def report(results=None) -> str:
    """Markdown results table from results/*.csv (see :func:`elmlib.repro.report.report`)."""
    from elmlib.repro.report import report as markdown_report

    return markdown_report(results)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default=None, help="results folder (default: results/ or $ELMLIB_RESULTS)")
    parser.add_argument("--figures", default=None, help="figures folder (default: figures/ or $ELMLIB_FIGURES)")
    parser.add_argument("--report", action="store_true", help="print the markdown results table instead")


def main(args: argparse.Namespace) -> int:
    """Re-render the figures (or print the report); every usable CSV is used, then a ValueError names
    the CSVs that were not (the CLI prints it as one ``error:`` line and exits 2)."""
    if args.results and not Path(args.results).is_dir():
        raise FileNotFoundError(f"--results {args.results} is not a folder; give the folder holding the results CSVs")
    if args.report:
        from elmlib.repro.report import collect_report

        text, failed = collect_report(args.results)
        print(text)
        raise_failures(failed, "reported")
        return 0
    names, failed = _render(args.results, args.figures)
    print(f"re-rendered {len(names)} figures: {', '.join(names) or ('none' if failed else 'none (no results/*.csv yet)')}")
    raise_failures(failed, "rendered")
    return 0
