"""Zero-cost proxies on the FlexiBERT benchmark (beyond the paper; notebooks/proxy_flexibert.ipynb and
``python -m elmlib proxy``): the correlation table against the GLUE scores and the command (its figure:
`elmlib.repro.figures.extensions.plot_proxy_flexibert`).

    scores, table = run_flexibert(scale="smoke", seed=0)     # per-architecture scores, tidy CV table

The command scores any file of FlexiBERT records (``--data``; default: the packaged dev file) and
writes one CSV row per architecture with provenance beside it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from elmlib.extensions.flexibert import benchmark_entries
from elmlib.extensions.proxies import CAPACITY_MEASURES, DEV_SETTINGS, PROXIES, RECOMMENDED, Proxy
from elmlib.extensions.proxy_benchmark import cross_validate, rank_correlations, score_benchmark
from elmlib.io.files import write_result

#: Reference correlations (Spearman, Kendall) from ../shared/paper/related.md, with their source.
REFERENCES = {
    "params": (0.645, 0.447, "number of parameters, this dev file (related.md)"),
    "zerolm": (0.76, 0.53, "ZeroLM, all 500 FlexiBERT architectures (arXiv 2503.18646)"),
    "layerwise": (0.80, 0.58, "elmlib target (held-out architectures)"),
}

#: Scale presets: how many architectures (None = all) and how much cross-validation.
SCALES = {
    "smoke": dict(n_arch=60, folds=5, repeats=2),
    "micro": dict(n_arch=None, folds=5, repeats=2),
    "small": dict(n_arch=None, folds=5, repeats=5),
    "paper": dict(n_arch=None, folds=5, repeats=20),
}

#: Baselines read from the architecture description, not the weights (no settings). They are in
#: the table to show how much of the ranking the search-space descriptors alone explain; the
#: second one was chosen after a regression of GLUE on the descriptors of this same file
#: (docs/proxy.md), so its figures are optimistic.
BASELINES = {
    "n_layers": lambda df: df["n_layers"].to_numpy(dtype=float),
    "depth_then_hidden": lambda df: df["n_layers"].to_numpy(dtype=float) * 1e4 + df["hidden_size"].to_numpy(),
}


def correlation_table(df, features, *, scale: str = "smoke", seed: int = 0, folds: int = 5,
                      repeats: int = 20) -> pd.DataFrame:
    """Tidy table: per proxy and metric, the cross-validated held-out mean and spread (std over
    folds), the in-sample value on all rows, and the reference figure where one exists.
    Rows for :data:`BASELINES` (descriptor-only rankings) use the same folds."""
    out = []
    glue = df["glue"].to_numpy()
    candidates = [(name, proxy, features, df[name].to_numpy()) for name, proxy in PROXIES.items()]
    for name, values in BASELINES.items():
        v = values(df)
        candidates.append((name, Proxy(name, lambda x, _: x), list(v), v))
    for name, proxy, feats, column in candidates:
        cv = cross_validate(feats, glue, proxy, folds=folds, repeats=repeats, seed=seed)
        full = rank_correlations(column, glue)
        ref = REFERENCES.get(name)
        settings = cv["setting"].dropna()
        for i, metric in enumerate(("spearman", "kendall")):
            col = "rho" if metric == "spearman" else "tau"
            common = dict(proxy=name, metric=metric, n_arch=len(df), scale=scale, seed=seed,
                          reference_value=ref[i] if ref else float("nan"),
                          reference_source=ref[2] if ref else "")
            out.append(dict(common, evaluation=f"cv_heldout_{folds}fold_x{repeats}",
                            value=float(cv[col].mean()), spread=float(cv[col].std(ddof=1)),
                            n_folds=len(cv),
                            fitted_setting=(f"{settings.min():g}..{settings.max():g}" if len(settings) else "")))
            out.append(dict(common, evaluation="in_sample_all", value=full[i], spread=float("nan"),
                            n_folds=0, fitted_setting=(f"{DEV_SETTINGS[name]:g}" if name in DEV_SETTINGS else "")))
    cols = ["proxy", "metric", "evaluation", "value", "spread", "reference_value", "reference_source",
            "n_arch", "n_folds", "fitted_setting", "scale", "seed"]
    return pd.DataFrame(out)[cols]


def run_flexibert(*, scale: str = "smoke", seed: int = 0, data=None, measure: str = "participation"):
    """Score the FlexiBERT benchmark at ``scale`` and build the correlation table.

    Returns ``(scores_df, table_df)``. ``smoke`` uses the first 60 architectures of the file, the
    other scales all of them (300 for the packaged dev file).
    """
    if scale not in SCALES:
        raise ValueError(f"scale = {scale!r} is not allowed; expected one of {list(SCALES)}")
    preset = SCALES[scale]
    entries = benchmark_entries(data, scores=True)  # correlations need every record's GLUE score
    if preset["n_arch"]:
        entries = entries[: preset["n_arch"]]
    df, feats = score_benchmark(entries, seed=seed, measure=measure)
    table = correlation_table(df, feats, scale=scale, seed=seed, folds=preset["folds"], repeats=preset["repeats"])
    table.attrs["wall_time_s"] = df.attrs["wall_time_s"]
    return df, table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", default="flexibert", choices=["flexibert"],
                        help="benchmark format of --data (only FlexiBERT for now)")
    parser.add_argument("--data", default=None,
                        help="benchmark JSON (list of records, any subset); default: the packaged dev file")
    parser.add_argument("--no-scores", action="store_true",
                        help="score architectures only: records need no 'scores' (any are ignored), no correlations")
    parser.add_argument("--out", required=True, help="CSV to write (with a .provenance.json beside it)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and sketch seed")
    parser.add_argument("--measure", default="participation", choices=sorted(CAPACITY_MEASURES),
                        help="capacity of one weight matrix")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on shared CPUs)")


def _print_correlations(df) -> None:
    """In-sample Spearman/Kendall of every proxy against GLUE; a correlation that is undefined (constant
    values) is printed as such, never as a bare NaN."""
    print(f"{'proxy':16s} {'spearman':>9s} {'kendall':>8s}   (in-sample on this file)")
    if df["glue"].nunique() < 2:
        print(f"undefined: all {len(df)} records have the same GLUE score ({df['glue'].iloc[0]:g})")
        return
    for name in [*PROXIES, "score"]:
        if df[name].nunique() < 2:
            print(f"{name:16s} undefined (the proxy is constant on this file)")
            continue
        rho, tau = rank_correlations(df[name], df["glue"])
        print(f"{name:16s} {rho:9.3f} {tau:8.3f}")


def main(args: argparse.Namespace) -> int:
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; give the CSV file to write, e.g. {Path(args.out) / 'proxy.csv'}")
    if args.threads < 1:
        raise ValueError(f"--threads {args.threads} is not allowed; give 1 or more (1 is fastest on shared CPUs)")
    entries = benchmark_entries(args.data, scores=not args.no_scores)  # every record checked before scoring
    df, _ = score_benchmark(entries, seed=args.seed, measure=args.measure, threads=args.threads)
    wall = df.attrs["wall_time_s"]
    config = dict(benchmark=args.benchmark, data=str(args.data) if args.data else "packaged:flexibert_dev.json",
                  scores=not args.no_scores, measure=args.measure, threads=args.threads, settings=DEV_SETTINGS, recommended=RECOMMENDED)
    write_result(df, args.out, config=config, seed=args.seed, wall_time_s=wall, n_architectures=len(df))
    print(f"scored {len(df)} architectures in {wall:.1f} s -> {args.out}")
    if "glue" in df and len(df) > 2:
        _print_correlations(df)
    return 0
