"""Tables I/II: the found model beside the uniform baselines of the same budget, retrained with the same
recipe, with the paper's ELM model and its GLUE dev average beside ours."""
from __future__ import annotations

import math

import pandas as pd

from elmlib.data.tasks import get_task
from elmlib.repro import paper
from elmlib.repro.figures.style import BASELINES, OURS, OURS_LIGHT, dot_ci, pyplot, ticks


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


def model_colour(name: str, j: int) -> str:
    """The found model green (lighter with inherited weights), the j-th baseline a grey."""
    if name.startswith("ELM"):
        return OURS_LIGHT if "inherited" in name else OURS
    return BASELINES[j % len(BASELINES)]


def plot_table1_2(df: pd.DataFrame):
    """Left: each model's dev metric per seed with mean and 95% CI (points); right: parameters against
    latency per seed."""
    plt = pyplot()
    metric = df.metric.iloc[0]
    d = df[df.metric == metric]
    order = list(dict.fromkeys(d.model))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for i, name in enumerate(order):
        dot_ci(a, i, 100 * d[d.model == name].value, model_colour(name, i))
    a.set_xticks(range(len(order)), [_short(m) for m in order], fontsize=9)
    a.set_xlim(-0.6, len(order) - 0.4)
    a.set_ylabel(f"dev {metric} (%, {d.task.iloc[0]})")
    n = d.seed.nunique()
    a.set_title(f"Same budget, same recipe ({d.scale.iloc[0]} scale, {n} seed(s))\n"
                + ("dots: seeds; large dot and bar: mean and 95% CI" if n > 1 else "one seed: no interval"),
                fontsize=10)
    # One marker per model and seed, named in a legend: the found model's two rows share its size, and
    # averaged over seeds their latencies coincide, so text labels beside the points would overprint.
    for i, name in enumerate(order):
        g = d[d.model == name]
        b.scatter(g.params / 1e6, g.latency_ms, s=40, marker="osD^vP*X"[i % 8], color=model_colour(name, i),
                  edgecolors="k", label=_short(name).replace("\n", " "))
    b.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the axes, off the points
    b.xaxis.set_major_locator(ticks(nbins=4))
    b.set_xlabel("parameters (M)")
    b.set_ylabel("latency (ms, batch 1)")
    b.set_title("Size and latency (one marker per seed)")
    return fig


# Table II's columns under our task names (MNLI-m: MNLI's matched dev, the registry's dev split).
TABLE2_NAMES = {"QNLI": "qnli", "MRPC": "mrpc", "SST-2": "sst2", "CoLA": "cola", "STS-B": "stsb",
                "MNLI-m": "mnli", "RTE": "rte", "QQP": "qqp", "AVG": "AVG"}


def suite_table(metrics: pd.DataFrame, scale: str) -> pd.DataFrame:
    """suite_study.suite_baselines() rows (several seeds) -> per (seed, model, task) the task's headline
    metric (its first in the registry, as GLUE reports it; in points), and per (seed, model) the mean
    over the suite's tasks as task ``AVG``; beside each, the paper model's Table II value of that column
    (GLUE tasks and the average; NaN for a task Table II does not have)."""
    heads = {name: get_task(name).metrics[0] for name in metrics.task.unique()}
    d = metrics[[heads[t] == m for t, m in zip(metrics.task, metrics.metric)]].copy()
    d["value"] = 100 * d["value"]
    keys = ["scale", "seed", "model", "suite", "search_task"]
    avg = d.groupby(keys, sort=False).agg(value=("value", "mean"), params=("params", "first"),
                                          n_tasks=("task", "nunique")).reset_index()
    d["n_tasks"] = 1
    out = pd.concat([d, avg.assign(task="AVG", metric="mean of the tasks' headline metrics")], ignore_index=True)
    model = paper.paper_model(scale)
    table2 = paper.table("table2").query("model == @model")
    by_task = {TABLE2_NAMES[t]: v for t, v in zip(table2.task, table2.value)}
    out["paper_model"] = [model if m.startswith("ELM") else "" for m in out.model]
    out["paper_value"] = [by_task.get(t, math.nan) if m.startswith("ELM") else math.nan
                          for t, m in zip(out.task, out.model)]
    names = {v: k for k, v in TABLE2_NAMES.items()}
    glue = set(out.suite) == {"glue"}
    out["paper_metric"] = [("" if not m.startswith("ELM") or t not in names else
                            f"Table II {names[t]}" + ("" if glue or t != "AVG" else " (GLUE: other tasks)"))
                           for t, m in zip(out.task, out.model)]
    keep = keys + ["task", "metric", "value", "n_tasks", "params", "n_dev", "paper_model", "paper_value",
                   "paper_metric"]
    rank = {name: i for i, name in enumerate(list(dict.fromkeys(metrics.model)) + list(dict.fromkeys(metrics.task)))}
    order = out.seed * len(rank) ** 2 + out.model.map(rank) * len(rank) + out.task.map(rank).fillna(len(rank))
    return out.iloc[order.argsort(kind="stable")].reindex(columns=keep).reset_index(drop=True)


def plot_suite(df: pd.DataFrame):
    """Grouped bars: per suite task (and the average) each model's mean over seeds, seeds as dots; the
    paper's Table II value of its model as a hollow marker where Table II has the column."""
    plt = pyplot()
    tasks = [t for t in dict.fromkeys(df.task) if t != "AVG"] + ["AVG"]
    models = list(dict.fromkeys(df.model))
    fig, ax = plt.subplots(figsize=(max(7, 1.4 * len(tasks)), 4))
    width = 0.8 / len(models)
    for j, name in enumerate(models):
        g = df[df.model == name]
        mean = g.groupby("task").value.mean().reindex(tasks)
        xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(tasks))]
        colour = model_colour(name, j)
        ax.bar(xs, mean, width, label=_short(name).replace("\n", " "), color=colour)
        for x, task in zip(xs, tasks):
            v = g[g.task == task].value
            ax.scatter([x] * len(v), v, color="k", s=8, zorder=3)
    found = df[df.model.str.startswith("ELM")].groupby("task").paper_value.first().reindex(tasks)
    if found.notna().any():
        ax.scatter(range(len(tasks)), found, marker="D", facecolors="none", edgecolors="k", s=40, zorder=4,
                   label=f"paper: {paper.paper_model(df.scale.iloc[0])}, Table II"
                   + ("" if df.suite.iloc[0] == "glue" else " GLUE average (other tasks)"))
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("dev score (points: the task's headline metric)")
    ax.set_title(f"Suite {df.suite.iloc[0]!r}, search on {df.search_task.iloc[0]} ({df.scale.iloc[0]} scale, "
                 f"{df.seed.nunique()} seed(s))")
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))  # below the axes, off the bars
    return fig
