"""The markdown results table of docs/results.md, from results/*.csv: our numbers (mean ± sd over
seeds) beside the paper's. Each section reads one CSV; a corrupt, empty or truncated CSV is named
in one error line while the other sections are still produced.

    from elmlib.repro.report import report
    print(report("results"))                 # or: python -m elmlib figures --report
    python -m elmlib report --ledger --scale small   # the claims ledger (elmlib.repro.ledger)
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from elmlib.io.files import results_dir
from elmlib.io.inputs import CSV_ERRORS, failure_line, raise_failures, read_results_csv
from elmlib.repro import ledger, paper
from elmlib.repro.figures.ablations import ablation_deltas
from elmlib.repro.figures.architectures import fig5_summary


def _mean_sd(v: pd.Series, scale: float = 1.0, digits: int = 1, sign: bool = False) -> str:
    v = v.dropna() * scale
    if not len(v):
        return "n/a"
    mean = f"{v.mean():{'+' if sign else ''}.{digits}f}"
    return f"{mean} ± {v.std():.{digits}f} (n={len(v)})" if len(v) > 1 else f"{mean} (n=1)"


def _first_metric(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of a results table on its first (headline) metric."""
    return df[df.metric == df.metric.iloc[0]]


def _report_glue(df: pd.DataFrame) -> list[str]:
    d = _first_metric(df)
    out = [f"**Found vs same-budget baselines** ({d.scale.iloc[0]} scale, {d.task.iloc[0]} dev "
           f"{d.metric.iloc[0]} in %, mean ± sd over seeds)", "",
           "| model | params | latency (ms) | ours | paper (model, GLUE dev avg) |", "| --- | --- | --- | --- | --- |"]
    for model, g in d.groupby("model", sort=False):
        p = g.paper_value.dropna()
        out.append(f"| {model} | {g.params.mean() / 1e6:.3f}M | {g.latency_ms.mean():.2f} | "
                   f"{_mean_sd(g.value, 100)} | {(g.paper_model.iloc[0] + ' ' + str(p.iloc[0])) if len(p) else '-'} |")
    return out + [""]


def _report_suite(df: pd.DataFrame) -> list[str]:
    """Tables I/II's protocol: each model's dev value per suite task (percent; each task's own metric)."""
    tasks = [t for t in dict.fromkeys(df.task) if t != "AVG"] + ["AVG"]
    metrics = df.drop_duplicates("task").set_index("task").metric
    out = [f"**Found vs same-budget baselines over the {df.suite.iloc[0]} suite** ({df.scale.iloc[0]} scale, search "
           f"on {df.search_task.iloc[0]}; dev, each task's metric in %, mean ± sd over seeds)", "",
           "| model | " + " | ".join(f"{t} ({metrics[t]})" if t != "AVG" else "average" for t in tasks) + " |",
           "| --- |" + " --- |" * len(tasks)]
    for model, g in df.groupby("model", sort=False):
        out.append(f"| {model} | " + " | ".join(_mean_sd(g[g.task == t].value) for t in tasks) + " |")
    return out + [""]


def _report_ablations(df: pd.DataFrame) -> list[str]:
    out = ["**Ablations**: gain from each component, with - without (points; ours: dev accuracy x 100)", "",
           "| table | component | ours | paper |", "| --- | --- | --- | --- |"]
    for a, g in ablation_deltas(df).groupby("ablation", sort=False):
        out.append(f"| {paper.ABLATIONS[a]['table']} | {a} | {_mean_sd(g.delta, 100, sign=True)} | "
                   f"{g.paper_delta.iloc[0]:+.1f} |")
    return out + [""]


def _report_efficiency(df: pd.DataFrame) -> list[str]:
    total = df.groupby(["variant", "seed"]).seconds.sum().unstack("variant")
    ratio = total["fixed"] / total["dynamic"]
    return [f"**Search cost**, fixed / dynamic FFN dims: ours {_mean_sd(ratio, digits=2)} "
            f"(dynamic {total['dynamic'].mean():.0f} s, fixed {total['fixed'].mean():.0f} s); "
            f"paper {paper.SEARCH_COST_GPU_DAYS['fixed'] / paper.SEARCH_COST_GPU_DAYS['dynamic']:.2f} "
            "(8.5 / 7.1 GPU-days)", ""]


def _grouped_table(d: pd.DataFrame, title: str, key: str, header: list[str], cells) -> list[str]:
    """A markdown table under ``title``: one row per value of ``key`` (in order), ``cells(group)`` after it."""
    out = [title, "", "| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += [f"| {name} | " + " | ".join(cells(g)) + " |" for name, g in d.groupby(key, sort=False)]
    return out + [""]


def _report_proxy_search(df: pd.DataFrame) -> list[str]:
    d = _first_metric(df)
    return _grouped_table(
        d, f"**Search modes** (beyond the paper; {d.task.iloc[0]} dev {d.metric.iloc[0]} in %)", "mode",
        ["mode", "search time (s)", "architectures scored", "found model"],
        lambda g: [f"{g.search_seconds.mean():.0f}", f"{g.evaluations.mean():.0f}", _mean_sd(g.value, 100)])


def _report_importance(df: pd.DataFrame) -> list[str]:
    d = _first_metric(df)
    return _grouped_table(
        d, f"**Importance reordering in the search** (beyond the paper; {d.task.iloc[0]} dev "
           f"{d.metric.iloc[0]} in %)", "variant",
        ["variant", "mean FFN dim", "search score", "found model"],
        lambda g: [f"{g.mean_ffn_dim.mean():.0f}", _mean_sd(g.search_score, 100), _mean_sd(g.value, 100)])


def _report_fig5(df: pd.DataFrame) -> list[str]:
    out = ["**Found architectures** (Fig. 5; paper: more MobileBERT blocks, FFN dims in the middle layers, "
           "few in layer 1)", "",
           "| model | seed | params | BERT / MobileBERT layers | sharing none / qv / kv | mean heads | "
           "widest FFN (layer) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for _, r in fig5_summary(df).iterrows():
        out.append(f"| {r.model} | {r.seed} | {r.params / 1e6:.2f}M | {r.bert} / {r.mobilebert} | "
                   f"{r.none} / {r.qv} / {r.kv} | {r.mean_heads:.1f} | {r.widest_ffn} ({r.widest_layer}) |")
    return out + [""]


def _report_similarity(df: pd.DataFrame) -> list[str]:
    m = df.groupby("kd").similarity.mean()
    line = ("**Block similarity** (mean off-diagonal cosine over layers and seeds): " +
            ", ".join(f"{k} KD {v:.3f}" for k, v in m.items()))
    if {"classical", "relational"} <= set(m.index):
        pairs = df.pivot_table(index=["seed", "layer"], columns="kd", values="similarity").dropna()
        line += (f"; relational below classical in {int((pairs.relational < pairs.classical).sum())} of "
                 f"{len(pairs)} (seed, layer) pairs")
    return [line + "; paper: relational KD makes blocks less similar", ""]


#: The report's sections, in order: results CSV name -> function of its table giving markdown lines.
SECTIONS = {"table1_2_glue": _report_glue, "table1_2_suite": _report_suite, "table5_8_ablations": _report_ablations,
            "efficiency": _report_efficiency, "proxy_search": _report_proxy_search,
            "importance_search": _report_importance, "fig5_architectures": _report_fig5,
            "fig3b_block_similarity": _report_similarity}


def collect_report(results=None) -> tuple[str, list[tuple[str, Exception]]]:
    """(markdown of every section whose CSV exists and reads, failures naming the CSVs that did not);
    ``results``: the folder of the CSVs, ``results/`` of the workspace by default."""
    results = Path(results or results_dir())
    out, failed = [], []
    for name, section in SECTIONS.items():
        path = results / f"{name}.csv"
        if path.exists():
            try:
                out += section(read_results_csv(path))
            except CSV_ERRORS as err:
                failed.append((failure_line(path, err), err))
    return "\n".join(out), failed


def report(results=None) -> str:
    """Markdown: our numbers (mean ± sd over seeds) beside the paper's, from results/*.csv. A corrupt,
    empty or truncated CSV raises a ValueError naming it (the CLI prints the other sections first)."""
    text, failed = collect_report(results)
    raise_failures(failed, "reported")
    return text


SCALE_CHOICES = ("smoke", "micro", "small", "paper")


def command_line_results(results: str | None) -> Path:
    """The results folder of a command: ``--results``, else ``$ELMLIB_RESULTS``, else ``results/`` of the
    workspace (the environment is read here, at the command line, and nowhere in the library)."""
    if results and not Path(results).is_dir():
        raise FileNotFoundError(f"--results {results} is not a folder; give the folder holding the results CSVs")
    return Path(results or os.environ.get("ELMLIB_RESULTS") or results_dir())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default=None, help="results folder (default: $ELMLIB_RESULTS, else results/)")
    parser.add_argument("--scale", choices=SCALE_CHOICES, default=None,
                        help="read <results>/<scale>/ (smoke: <results>/ itself); default: the --results folder")
    parser.add_argument("--ledger", action="store_true",
                        help="print the claims ledger (one row per claim of the paper, with CI, MDE and verdict)")
    parser.add_argument("--short", action="store_true", help="with --ledger: the README's short table")


def main(args: argparse.Namespace) -> int:
    """Print every section that can be produced, then raise a ValueError naming the CSVs that could not."""
    folder = command_line_results(args.results)
    if getattr(args, "scale", None):
        folder = ledger.scale_folder(folder, args.scale)
        if not folder.is_dir():
            raise FileNotFoundError(f"--scale {args.scale}: {folder} is not a folder; run that scale's notebooks first")
    if getattr(args, "ledger", False):
        print(ledger.markdown(ledger.ledger(folder, args.scale or ledger.infer_scale(folder)), short=args.short))
        return 0
    text, failed = collect_report(folder)
    print(text)
    raise_failures(failed, "reported")
    return 0
