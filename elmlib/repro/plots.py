"""Re-render the paper's figures from ``results/*.csv`` alone (seconds; no training): the registry
of results CSV -> plot function of `elmlib.repro.figures`, and the ``figures`` command.

    render_all("results", "figures")           # every figure whose CSV exists
    python -m elmlib figures                   # the same; --report prints the markdown results table
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from elmlib.io.files import figures_dir, results_dir
from elmlib.io.inputs import CSV_ERRORS, failure_line, raise_failures, read_results_csv
from elmlib.repro.figsave import save
from elmlib.repro.figures import (
    ablations, architectures, chat, efficiency, extensions, glue, growth, search_variants, similarity, squad,
)
from elmlib.repro.figures.style import pyplot
from elmlib.repro.report import collect_report, command_line_results

#: Results CSV name (also the figure's file name) -> the function drawing it from that table.
PLOTS = {"fig1_ffn_growth": growth.plot_fig1, "fig2_pca_curves": growth.plot_fig2,
         "fig3a_cka_heads": similarity.plot_fig3a, "fig3b_block_similarity": similarity.plot_fig3b,
         "fig4_chat_examples": chat.plot_fig4,
         "fig5_architectures": architectures.plot_fig5, "fig6_block_similarity_matrix": similarity.plot_fig6,
         "table1_2_glue": glue.plot_table1_2, "table1_2_suite": glue.plot_suite, "table3_squad": squad.plot_table3,
         "table5_8_ablations": ablations.plot_table5_8, "efficiency": efficiency.plot_efficiency,
         "proxy_search": search_variants.plot_proxy_search,
         "importance_search": search_variants.plot_importance_search,
         "table4_clm": extensions.plot_table4, "proxy_flexibert": extensions.plot_proxy_flexibert,
         "importance_reordering": extensions.plot_reordering}


def _render(results: Path, figures: Path, only: tuple[str, ...] = ()) -> tuple[list[str], list[tuple[str, Exception]]]:
    """Draw every figure whose results CSV exists (those named in ``only``, when given); a CSV that cannot
    be read or drawn is recorded in the failures and the others are still drawn. Returns (names drawn,
    failures)."""
    import matplotlib  # heavy: matplotlib, only when figures are drawn

    matplotlib.use("Agg")
    plt = pyplot()
    done, failed = [], []
    for name, plot in PLOTS.items():
        path = Path(results) / f"{name}.csv"
        if not path.exists() or (only and name not in only):
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


def render_all(results: str | os.PathLike | None = None, figures: str | os.PathLike | None = None) -> list[str]:
    """Re-render every figure whose results CSV exists (folders: ``results/`` and ``figures/`` of the
    workspace by default); returns the names drawn. A corrupt, empty or truncated CSV does not stop the
    others: they are drawn, then a ValueError names every failed CSV."""
    done, failed = _render(Path(results or results_dir()), Path(figures or figures_dir()))
    raise_failures(failed, "rendered")
    return done


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default=None, help="results folder (default: $ELMLIB_RESULTS, else results/)")
    parser.add_argument("--figures", default=None, help="figures folder (default: $ELMLIB_FIGURES, else figures/)")
    parser.add_argument("--report", action="store_true", help="print the markdown results table instead")
    parser.add_argument("--only", default="", help="comma-separated figure names to draw (default: all)")
    parser.add_argument("--list", action="store_true", help="print the figure names, one per line, and exit")


def main(args: argparse.Namespace) -> int:
    """Re-render the figures (or print the report); every usable CSV is used, then a ValueError names
    the CSVs that were not (the CLI prints it as one ``error:`` line and exits 2)."""
    if args.list:
        print("\n".join(PLOTS))
        return 0
    only = tuple(n for n in args.only.split(",") if n)
    unknown = sorted(set(only) - set(PLOTS))
    if unknown:
        raise ValueError(f"--only {','.join(unknown)} is not a figure; expected names from {', '.join(PLOTS)}")
    results = command_line_results(args.results)
    if args.report:
        text, failed = collect_report(results)
        print(text)
        raise_failures(failed, "reported")
        return 0
    # The environment is read here, at the command line; the library takes its folders as arguments.
    figures = Path(args.figures or os.environ.get("ELMLIB_FIGURES") or figures_dir())
    names, failed = _render(results, figures, only)
    print(f"re-rendered {len(names)} figures: {', '.join(names) or ('none' if failed else 'none (no results/*.csv yet)')}")
    raise_failures(failed, "rendered")
    return 0
